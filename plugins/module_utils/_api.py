# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The one client of the P2P VPS marketplace API (contract v1).

Robustness against a marketplace that misbehaves (docs/threat-model.md):

* one overall deadline per call (``timeout`` seconds) that covers connecting, every retry,
  the waits between them, the headers and the whole body. Each attempt runs in a daemon
  thread that the call waits for only until the deadline, so a server that drips one byte a
  second (in the TLS handshake, the headers or the body) or goes silent cannot hold a call
  longer than that;
* a plain retry loop with exponential backoff on connection errors (the request was never
  sent), on a connection the server closed or reset before answering (idempotent calls only:
  a kept-alive connection the server has just timed out looks the same) and on HTTP
  502/503/504 (503 only for calls that are not idempotent), honouring
  ``Retry-After`` up to a cap, and never retrying when the wait would not fit before the
  deadline;
* answers bigger than ``max_body`` bytes are refused, compressed answers are refused;
* redirects are never followed (a 3xx is an error), so the bearer token goes nowhere else;
* typed errors: `MarketplaceUnreachable` (connection errors, timeouts, 5xx),
  `MarketplaceRejected` (4xx and 3xx; status, error code and detail), `MarketplaceMalformed`
  (not JSON, NaN, wrong shape, too big). Tokens never appear in messages or reprs; URLs in
  messages carry neither credentials nor query strings.

HTTP goes through _http.py (the standard library's http.client, one kept-alive connection).
The client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import math
import os
import re
import stat
import threading
import time
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from ansible.module_utils.basic import env_fallback

from ansible_collections.p2pvps.fleet.plugins.module_utils import _http

API_PREFIX = '/api/v1'
USER_AGENT = 'p2pvps.fleet/0.1.0'

#: Biggest answer accepted, in bytes (the largest legitimate one is a 500-device page).
MAX_BODY = 1024 * 1024
#: Longest wait honoured from a ``Retry-After`` header, in seconds.
MAX_RETRY_AFTER = 10.0
#: Longest exponential backoff between two attempts, in seconds.
MAX_BACKOFF = 5.0
#: A retry is only made when at least this much time is left for it after the wait.
MIN_ATTEMPT_TIME = 0.5
#: Longest error detail quoted from the server.
MAX_DETAIL = 300
#: Bytes of the answer read at a time.
READ_CHUNK = 16384

_TOKEN_RE = re.compile(r'^[\x21-\x7e]{1,4096}$')
_DIGITS_RE = re.compile(r'^\s*[0-9]+\s*$')
_CONTROL_RE = re.compile(r'[\x00-\x1f\x7f]+')
_OBJECT_REPR_RE = re.compile(r'(<[^<>]* object at 0x[0-9a-fA-F]+>|\w+\(host=[^()]*\)):?\s*')


# ---------------------------------------------------------------- errors

class MarketplaceError(Exception):
    """Base of every error of the marketplace client. The message never holds a token."""

    def __init__(self, message, method=None, url=None, status=None):
        super(MarketplaceError, self).__init__(message)
        self.message = message
        self.method = method
        self.url = url
        self.status = status

    def __str__(self):
        return self.message


class MarketplaceUnreachable(MarketplaceError):
    """No usable answer: connection error, timeout or deadline, HTTP 5xx (after retries)."""


class MarketplaceRejected(MarketplaceError):
    """The marketplace refused the call: HTTP 4xx (or a 3xx, which is never followed)."""

    def __init__(self, message, method=None, url=None, status=None, error=None, detail=None):
        super(MarketplaceRejected, self).__init__(message, method=method, url=url, status=status)
        self.error = error
        self.detail = detail


class MarketplaceMalformed(MarketplaceError):
    """The answer is not what the contract says: not JSON, wrong shape, too big."""


# ---------------------------------------------------------------- small pure helpers

def display_url(url):
    """`url` as it may be shown: without user info, query string or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ''
        if ':' in host:
            host = '[%s]' % host
        if parts.port:
            host = '%s:%d' % (host, parts.port)
        return urlunsplit((parts.scheme, host, parts.path, '', ''))
    except ValueError:
        return '<invalid URL>'


def truncate(text, limit=MAX_DETAIL):
    """One line of at most `limit` characters (control characters become spaces)."""
    text = _CONTROL_RE.sub(' ', text).strip()
    if len(text) > limit:
        text = text[:limit - 3].rstrip() + '...'
    return text


def scrub(text, secrets):
    """`text` with every secret in `secrets` replaced by ********."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, '********')
    return text


def normalize_base_url(url):
    """The base URL without a trailing slash; ValueError with a clear message when unusable."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError('the marketplace URL is empty')
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ValueError('the marketplace URL %s is not a valid URL' % display_url(url))
    if parts.scheme not in ('http', 'https'):
        raise ValueError('the marketplace URL %s must start with https:// (or http://)' % display_url(url))
    if not parts.hostname:
        raise ValueError('the marketplace URL %s has no host' % display_url(url))
    if parts.username is not None or parts.password is not None:
        raise ValueError('the marketplace URL %s must not contain credentials; use the token options'
                         % display_url(url))
    if parts.query or parts.fragment:
        raise ValueError('the marketplace URL %s must not have a query string or fragment' % display_url(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip('/'), '', ''))


def path_segment(value, what='id'):
    """One URL path segment from an id, percent-encoded (no way to leave the path)."""
    if not isinstance(value, str) or not value or len(value) > 200 or value in ('.', '..'):
        raise ValueError('invalid %s %r' % (what, value if isinstance(value, str) else type(value).__name__))
    return quote(value, safe='')


def describe_json(value):
    """A short name of a JSON value's type, for messages."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'a boolean'
    if isinstance(value, (int, float)):
        return 'a number'
    if isinstance(value, str):
        return 'a string'
    if isinstance(value, list):
        return 'a list'
    if isinstance(value, dict):
        return 'an object'
    return type(value).__name__


def _reject_constant(name):
    raise ValueError('%s is not valid JSON' % name)


def parse_json(body):
    """Parse an answer body; ValueError when it is not strict JSON (NaN and Infinity included)."""
    try:
        text = body.decode('utf-8')
    except UnicodeDecodeError:
        raise ValueError('not UTF-8')
    return json.loads(text, parse_constant=_reject_constant)


def error_fields(body):
    """(error code, detail) from an error answer body (bytes), whatever shape it has."""
    try:
        data = parse_json(body)
    except ValueError:
        text = body[:MAX_DETAIL * 2].decode('utf-8', 'replace')
        return None, truncate(text) or None
    if not isinstance(data, dict):
        return None, truncate(json.dumps(data, separators=(',', ':')))
    code = data.get('error')
    code = truncate(code, 64) if isinstance(code, str) else None
    detail = data.get('detail')
    if detail is None:
        detail = data.get('message')
    if detail is not None and not isinstance(detail, str):
        detail = json.dumps(detail, separators=(',', ':'), default=str)
    return code, truncate(detail) if detail else None


def check_object(data, keys, what):
    """`data` must be a JSON object holding `keys`; the problem as a string, or None."""
    if not isinstance(data, dict):
        return 'expected a JSON object (%s), got %s' % (what, describe_json(data))
    missing = [key for key in keys if key not in data]
    if missing:
        return '%s has no %s' % (what, ', '.join('"%s"' % key for key in missing))
    return None


def retry_statuses(idempotent):
    """HTTP statuses retried: 502/503/504 for idempotent calls, only 503 otherwise (a 502/504
    from a gateway may come after the server did the work)."""
    return (502, 503, 504) if idempotent else (503,)


def retry_after_seconds(value, cap=MAX_RETRY_AFTER):
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), at most `cap`;
    None when there is no header, it cannot be parsed or it asks for no wait."""
    if not value:
        return None
    if _DIGITS_RE.match(value):
        seconds = float(value)
    else:
        date = email.utils.parsedate_tz(value)
        try:
            seconds = email.utils.mktime_tz(date) - time.time()
        except (TypeError, ValueError, OverflowError):  # None or an absurd date
            return None
    if seconds <= 0:
        return None
    return min(seconds, cap)


def backoff_seconds(factor, retry):
    """The wait before retry number `retry` (1 for the first) when the server asks for none:
    urllib3's schedule (none, then `factor` * 2, * 4, ...), at most MAX_BACKOFF."""
    if retry <= 1:
        return 0.0
    return min(factor * 2 ** (retry - 1), MAX_BACKOFF)


def time_left(deadline):
    """Seconds until `deadline` (a time.monotonic() value), at least 0.01: a socket timeout."""
    return max(0.01, deadline - time.monotonic())


def is_connect_error(exc):
    """Whether a transport error means that no connection was made, so the request was never
    sent and any call may be retried."""
    return exc.kind == _http.CONNECT


def is_dropped_before_answer(exc):
    """Whether a transport error means that the server closed or reset the connection before
    any answer: the request may have been sent, so only an idempotent call may be retried."""
    return exc.kind == _http.DROPPED


def _reason_text(exc):
    """What went wrong, short and without object reprs."""
    reason = getattr(exc, 'reason', None) or str(exc)
    return truncate(_OBJECT_REPR_RE.sub('', reason) or type(exc).__name__, 200)


def _content_length(headers):
    length = headers.get('Content-Length') or ''
    return int(length) if _DIGITS_RE.match(length) else None


# ---------------------------------------------------------------- deadline

class _DeadlinePassed(Exception):
    pass


class _ConnectionLost(Exception):
    pass


def finish_before(deadline, function, *args):
    """function(*args) run in a daemon thread: its result or its exception, or _DeadlinePassed
    when it is still running at `deadline`. A late thread is left behind as a daemon: it stops
    at its next chunk of the body or when a read waits longer than the call's timeout, and at
    the latest with the process."""
    outcome = {}

    def run():
        try:
            outcome['result'] = function(*args)
        except BaseException as exc:  # handed over to the caller
            outcome['error'] = exc

    thread = threading.Thread(target=run, name='p2pvps-marketplace-call')
    thread.daemon = True
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        raise _DeadlinePassed()
    if 'error' in outcome:
        raise outcome['error']
    return outcome['result']


# ---------------------------------------------------------------- the client

class MarketplaceClient(object):
    """Client of the marketplace API v1 for one token (a device's or the operator's).

    `timeout` is the overall deadline of each call in seconds: connecting, retries with their
    waits, and reading the whole answer. `retries` is how many times a call is retried after
    a connection error or HTTP 502/503/504; `backoff` is the backoff factor between them.
    """

    def __init__(self, base_url, token, validate_certs=True, timeout=30, retries=3, backoff=0.5,
                 max_body=MAX_BODY, max_retry_after=MAX_RETRY_AFTER, user_agent=USER_AGENT):
        try:
            self.base_url = normalize_base_url(base_url)
        except ValueError as exc:
            raise MarketplaceError(str(exc))
        if not isinstance(token, str) or not _TOKEN_RE.match(token):
            # Never quote the token: it may be almost right.
            raise MarketplaceError('the marketplace token is empty or has characters that cannot be sent '
                                   'in an HTTP header (spaces, line breaks, non-ASCII)')
        try:
            timeout = float(timeout)
        except (TypeError, ValueError):
            raise MarketplaceError('timeout must be a number of seconds')
        if math.isnan(timeout) or not 0 < timeout <= 3600:
            raise MarketplaceError('timeout must be more than 0 and at most 3600 seconds')
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 20:
            raise MarketplaceError('retries must be an integer between 0 and 20')
        self._token = token
        self.validate_certs = bool(validate_certs)
        self.timeout = timeout
        self.retries = retries
        self.backoff = max(0.0, float(backoff))
        self.max_body = int(max_body)
        self.max_retry_after = float(max_retry_after)
        self._headers = {
            'Accept': 'application/json',
            'Accept-Encoding': 'identity',
            'User-Agent': user_agent,
        }
        try:
            self._connection = _http.Connection(self.base_url, self.validate_certs)
        except (_http.TransportError, ValueError, OSError) as exc:
            # a proxy of the environment that cannot be used, or a certificate bundle that cannot be read
            raise MarketplaceError('cannot set up the connection to %s: %s'
                                   % (display_url(self.base_url), _reason_text(exc)))

    def __repr__(self):
        return '%s(%r)' % (type(self).__name__, display_url(self.base_url))

    def close(self):
        self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    # ------------------------------------------------------------ plumbing

    def _error(self, cls, text, method, url, **kwargs):
        message = scrub('%s %s: %s' % (method, display_url(url), text), [self._token])
        return cls(message, method=method, url=display_url(url), **kwargs)

    def _exchange(self, method, url, params, data, deadline, idempotent):
        """(status, headers, body bytes, attempts) of one call, retried as the class docstring says."""
        attempts = 1
        while True:
            try:
                status, headers, body = self._attempt(method, url, params, data, deadline)
            except _http.TransportError as exc:
                wait = self._wait_after_error(exc, attempts, idempotent)
                if not self._retry_fits(wait, attempts, deadline):
                    raise self._request_error(exc, method, url, attempts)
            else:
                wait = self._wait_after_answer(status, headers, attempts, idempotent)
                if not self._retry_fits(wait, attempts, deadline):
                    return status, headers, body, attempts
            time.sleep(wait)
            attempts += 1

    def _wait_after_error(self, exc, attempts, idempotent):
        """Seconds to wait before retrying after `exc`; None when it is not retried."""
        if is_connect_error(exc) or (idempotent and is_dropped_before_answer(exc)):
            return backoff_seconds(self.backoff, attempts)
        return None

    def _wait_after_answer(self, status, headers, attempts, idempotent):
        """Seconds to wait before retrying after an HTTP `status`; None when it is not retried."""
        if status not in retry_statuses(idempotent):
            return None
        return (retry_after_seconds(headers.get('Retry-After'), self.max_retry_after)
                or backoff_seconds(self.backoff, attempts))

    def _retry_fits(self, wait, attempts, deadline):
        """Whether one more attempt is made: retryable, retries left, and time left after the wait."""
        return (wait is not None and attempts <= self.retries
                and time.monotonic() + wait + MIN_ATTEMPT_TIME <= deadline)

    def _attempt(self, method, url, params, data, deadline):
        """(status, headers, body bytes) of one HTTP exchange that must end by `deadline`. Errors
        before an answer come as transport errors (for the retry loop), others as MarketplaceError."""
        try:
            return finish_before(deadline, self._send, method, url, params, data, deadline)
        except _DeadlinePassed:
            # The late attempt's connection is closed, never reused.
            self._connection.close()
            raise self._deadline_error(method, url)
        except (_http.TransportError, _ConnectionLost) as exc:
            # Each socket operation may take the time left: a timeout is the deadline.
            if getattr(exc, 'kind', None) == _http.TIMEOUT or time.monotonic() >= deadline:
                raise self._deadline_error(method, url)
            if isinstance(exc, _ConnectionLost):
                raise self._error(MarketplaceUnreachable, 'connection lost while reading the answer: %s' % exc,
                                  method, url)
            raise

    def _send(self, method, url, params, data, deadline):
        """One HTTP exchange -> (status, headers, body bytes); _attempt runs it in its own thread."""
        left = time_left(deadline)
        headers = dict(self._headers, Authorization='Bearer %s' % self._token)
        if data is not None:
            headers['Content-Type'] = 'application/json'
        target = urlsplit(url).path + ('?' + urlencode(params) if params else '')
        # A long-poll's deadline is later than `timeout`; connecting still gets `timeout` at most.
        response = self._connection.request(method, target, data, headers, min(left, self.timeout), left)
        try:
            body = self._body(response, method, url, deadline)
        except BaseException:
            self._connection.release(response, failed=True)
            raise
        self._connection.release(response)
        return response.status, response.headers, body

    def _body(self, response, method, url, deadline):
        """The answer's body; empty for a redirect (never read) and for an error status with an
        unusable body (the status is what gets reported)."""
        status = response.status
        if 300 <= status < 400:
            return b''
        try:
            return self._read_body(response, deadline)
        except MarketplaceMalformed as exc:
            if status < 300:
                raise self._error(MarketplaceMalformed, 'malformed answer: %s' % exc, method, url)
            return b''

    def _read_body(self, response, deadline):
        """The whole body: MarketplaceMalformed when it is compressed or bigger than max_body,
        _DeadlinePassed when it is still coming at `deadline`, _ConnectionLost when it is cut short."""
        length = _content_length(response.headers)
        if length is not None and length > self.max_body:
            raise MarketplaceMalformed('answer too big (%d bytes; at most %d accepted)' % (length, self.max_body))
        encoding = (response.headers.get('Content-Encoding') or 'identity').strip().lower()
        if encoding not in ('', 'identity'):
            raise MarketplaceMalformed('compressed answer (Content-Encoding: %s) not accepted' % truncate(encoding, 40))
        chunks = []
        size = 0
        while True:
            try:
                chunk = response.read(READ_CHUNK)
            except (http.client.HTTPException, OSError, ValueError) as exc:
                raise _ConnectionLost(_reason_text(exc))
            if not chunk:
                break
            if time.monotonic() >= deadline:
                raise _DeadlinePassed()
            size += len(chunk)
            if size > self.max_body:
                raise MarketplaceMalformed('answer too big (more than %d bytes)' % self.max_body)
            chunks.append(chunk)
        if length is not None and size < length:
            # http.client returns what came before the server closed the connection
            raise _ConnectionLost('got %d of %d bytes' % (size, length))
        return b''.join(chunks)

    def _deadline_error(self, method, url):
        return self._error(MarketplaceUnreachable,
                           'no complete answer within the deadline of %g s (timeout)' % self.timeout, method, url)

    def _request_error(self, exc, method, url, attempts=1):
        text = _reason_text(exc)
        if exc.kind == _http.TLS:
            return self._error(MarketplaceUnreachable, 'TLS error (certificate not trusted? see validate_certs): %s'
                               % text, method, url)
        if exc.kind in (_http.CONNECT, _http.DROPPED, _http.PROTOCOL):
            if attempts > 1:
                text += ' (%d attempts)' % attempts
            return self._error(MarketplaceUnreachable, 'cannot connect or connection lost: %s' % text, method, url)
        return self._error(MarketplaceError, 'request failed: %s' % text, method, url)

    def _call(self, method, path, params=None, body=None, idempotent=True, allow_empty=False, held_s=0):
        """Do one API call; returns the parsed JSON answer (None for an allowed empty answer). `held_s`: how
        long the server may hold the answer on purpose (a long-poll), added to the call's deadline."""
        url = self.base_url + API_PREFIX + path
        data = None
        if body is not None:
            try:
                data = json.dumps(body, allow_nan=False, separators=(',', ':')).encode('utf-8')
            except (TypeError, ValueError) as exc:
                raise self._error(MarketplaceError, 'the request cannot be sent as JSON: %s' % exc, method, url)
        deadline = time.monotonic() + self.timeout + held_s
        status, headers, raw, attempts = self._exchange(method, url, params, data, deadline, idempotent)

        if 300 <= status < 400:
            location = headers.get('Location')
            where = ' to %s' % display_url(location) if location else ''
            raise self._error(MarketplaceRejected, 'answered HTTP %d, a redirect%s; redirects are not followed '
                              '(is the marketplace URL right?)' % (status, where), method, url,
                              status=status, error='redirect', detail=None)
        if status >= 400:
            code, detail = error_fields(raw)
            text = 'HTTP %d' % status
            if code:
                text += ' %s' % code
            if detail:
                text += ': %s' % detail
            if status >= 500:
                if attempts > 1:
                    text += ' (after %d attempts)' % attempts
                raise self._error(MarketplaceUnreachable, 'server error, %s' % text, method, url, status=status)
            hint = ''
            if status == 401:
                hint = ' (is the token right?)'
            elif status == 403:
                hint = ' (does this token have rights on this object?)'
            raise self._error(MarketplaceRejected, 'rejected, %s%s' % (text, hint), method, url, status=status,
                              error=code, detail=scrub(detail, [self._token]) if detail else detail)
        if status < 200:
            raise self._error(MarketplaceMalformed, 'malformed answer: unexpected HTTP %d' % status, method, url,
                              status=status)
        if not raw.strip():
            if allow_empty:
                return None
            raise self._error(MarketplaceMalformed, 'malformed answer: empty (HTTP %d)' % status, method, url,
                              status=status)
        try:
            return parse_json(raw)
        except ValueError as exc:
            start = truncate(raw[:40].decode('utf-8', 'replace'), 40)
            raise self._error(MarketplaceMalformed, 'malformed answer, not JSON (%s; it starts with %r)'
                              % (truncate(str(exc), 80), start), method, url, status=status)

    def _shape(self, data, keys, what, method, path):
        problem = check_object(data, keys, what)
        if problem:
            raise self._error(MarketplaceMalformed, 'malformed answer: %s' % problem, method,
                              self.base_url + API_PREFIX + path)
        return data

    def _device_path(self, device_id, suffix=''):
        try:
            return '/devices/%s%s' % (path_segment(device_id, 'device id'), suffix)
        except ValueError as exc:
            raise MarketplaceError(str(exc))

    # ------------------------------------------------------------ devices

    def get_device(self, device_id):
        """The device object (operator or that device's token)."""
        path = self._device_path(device_id)
        return self._shape(self._call('GET', path), ('id',), 'device', 'GET', path)

    def register(self, device_id, facts, tunnel_public_key):
        """Register or refresh a device (idempotent) -> {device, tunnel}."""
        path = self._device_path(device_id, '/register')
        answer = self._call('POST', path, body={'facts': facts, 'tunnel_public_key': tunnel_public_key})
        self._shape(answer, ('device', 'tunnel'), 'register answer', 'POST', path)
        self._shape(answer['device'], ('id',), 'device of the register answer', 'POST', path)
        self._shape(answer['tunnel'], ('host', 'port', 'user', 'host_key', 'remote_port'),
                    'tunnel of the register answer', 'POST', path)
        return answer

    def checkin(self, device_id, observed=None, report=None, lease_etag=None, wait_s=0):
        """Heartbeat -> the answer object; the lease in it is validated by _lease.parse_checkin().

        report: more fields of the request body (the wipe receipts and their key, _receipts.py).
        A long-poll when `wait_s` > 0 and `lease_etag` (of the answer the device runs) is given: the
        marketplace holds the answer up to `wait_s` seconds while the device's lease keeps that etag,
        and the call's deadline is `wait_s` plus the timeout."""
        path = self._device_path(device_id, '/checkin')
        body = dict(report or {}, observed=observed if observed is not None else {})
        params = None
        if wait_s and lease_etag is not None:
            body['lease_etag'] = lease_etag
            params = {'wait': str(int(wait_s))}
        answer = self._call('POST', path, params=params, body=body, held_s=wait_s if params else 0)
        return self._shape(answer, (), 'check-in answer', 'POST', path)

    def list_devices(self, limit=100, cursor=None, **filters):
        """One page of devices -> {items: [...], next_cursor: str or None} (operator)."""
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 500:
            raise MarketplaceError('page size must be an integer from 1 to 500')
        params = {'limit': str(limit)}
        if cursor is not None:
            params['cursor'] = cursor
        for name, value in sorted(filters.items()):
            if value is None:
                continue
            if isinstance(value, bool):
                value = 'true' if value else 'false'
            params[name] = str(value)
        return self._page('/devices', params, 'device page')

    def iter_devices(self, page_size=100, **filters):
        """Yield the devices page by page (a list per page, one call per page)."""
        return self._pages(lambda cursor: self.list_devices(limit=page_size, cursor=cursor, **filters), '/devices')

    def list_routes(self, limit=500, cursor=None):
        """One page of web routes -> {items: [...], next_cursor: str or None} (gateway or operator token).

        Only the page's shape is checked here; each item is validated by its user
        (_web_routes.parse_routes), so that one bad item never hides the others."""
        return self._gateway_page('/routes', 'route page', limit, cursor)

    def iter_routes(self, page_size=500):
        """Yield the web routes page by page (a list per page, one call per page)."""
        return self._pages(lambda cursor: self.list_routes(limit=page_size, cursor=cursor), '/routes')

    def list_tunnel_keys(self, limit=500, cursor=None):
        """One page of device tunnel keys -> {items: [...], next_cursor: str or None} (gateway or operator
        token); each item is validated by _tunnel_keys.parse_entries."""
        return self._gateway_page('/tunnel-keys', 'tunnel key page', limit, cursor)

    def iter_tunnel_keys(self, page_size=500):
        """Yield the device tunnel keys page by page."""
        return self._pages(lambda cursor: self.list_tunnel_keys(limit=page_size, cursor=cursor), '/tunnel-keys')

    def _gateway_page(self, path, what, limit, cursor):
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
            raise MarketplaceError('page size must be an integer from 1 to 1000')
        params = {'limit': str(limit)}
        if cursor is not None:
            params['cursor'] = cursor
        return self._page(path, params, what)

    def _page(self, path, params, what):
        """GET one keyset page and check its shape: {items: [objects], next_cursor: str or null}."""
        url = self.base_url + API_PREFIX + path
        answer = self._call('GET', path, params=params)
        self._shape(answer, ('items', 'next_cursor'), what, 'GET', path)
        if not isinstance(answer['items'], list) or not all(isinstance(item, dict) for item in answer['items']):
            raise self._error(MarketplaceMalformed, 'malformed answer: items of the %s must be a list of objects'
                              % what, 'GET', url)
        cursor = answer['next_cursor']
        if cursor is not None and (not isinstance(cursor, str) or not cursor or len(cursor) > 2048):
            raise self._error(MarketplaceMalformed, 'malformed answer: next_cursor must be a non-empty string or '
                              'null', 'GET', url)
        return answer

    def _pages(self, fetch, path):
        seen = set()
        cursor = None
        while True:
            page = fetch(cursor)
            yield page['items']
            cursor = page['next_cursor']
            if cursor is None:
                return
            if cursor in seen:
                raise self._error(MarketplaceMalformed, 'malformed answer: the paging cursor repeats', 'GET',
                                  self.base_url + API_PREFIX + path)
            seen.add(cursor)

    def create_device(self, name, description=None, owner=None):
        """Create a device (operator) -> {id, device_token, device}. The token is shown only once."""
        body = {'name': name}
        if description is not None:
            body['description'] = description
        if owner is not None:
            body['owner'] = owner
        answer = self._call('POST', '/devices', body=body, idempotent=False)
        return self._shape(answer, ('id', 'device_token'), 'create device answer', 'POST', '/devices')

    def delete_device(self, device_id):
        """Delete a device (operator or that device); ends its lease first."""
        self._call('DELETE', self._device_path(device_id), allow_empty=True)

    # ------------------------------------------------------------ rentals

    def create_rental(self, device_id, renter, ssh_public_key=None, ssh_public_keys=None, hours=None,
                      duration_s=None, limits=None, image=None):
        """Create a lease on a device (operator) -> the rental object."""
        body = {'device_id': device_id, 'renter': renter}
        for name, value in (('ssh_public_key', ssh_public_key), ('ssh_public_keys', ssh_public_keys),
                            ('hours', hours), ('duration_s', duration_s), ('limits', limits), ('image', image)):
            if value is not None:
                body[name] = value
        answer = self._call('POST', '/rentals', body=body, idempotent=False)
        return self._shape(answer, ('id',), 'rental', 'POST', '/rentals')

    def _rental_path(self, rental_id):
        try:
            return '/rentals/%s' % path_segment(rental_id, 'rental id')
        except ValueError as exc:
            raise MarketplaceError(str(exc))

    def get_rental(self, rental_id):
        path = self._rental_path(rental_id)
        return self._shape(self._call('GET', path), ('id',), 'rental', 'GET', path)

    def end_rental(self, rental_id):
        """End a lease now (operator) -> the rental object (ended_at set)."""
        path = self._rental_path(rental_id)
        answer = self._call('DELETE', path, allow_empty=True)
        if answer is None:
            return None
        return self._shape(answer, ('id',), 'rental', 'DELETE', path)


class DeviceClient(object):
    """A MarketplaceClient bound to one device id (what device-side modules use)."""

    def __init__(self, client, device_id):
        self.client = client
        self.device_id = device_id

    def __repr__(self):
        return 'DeviceClient(%r, %r)' % (self.client, self.device_id)

    def get_device(self):
        return self.client.get_device(self.device_id)

    def register(self, facts, tunnel_public_key):
        return self.client.register(self.device_id, facts, tunnel_public_key)

    def checkin(self, observed=None, report=None, lease_etag=None, wait_s=0):
        return self.client.checkin(self.device_id, observed, report, lease_etag=lease_etag, wait_s=wait_s)

    def delete(self):
        self.client.delete_device(self.device_id)

    def close(self):
        self.client.close()


# ---------------------------------------------------------------- modules

#: How every module reaches the marketplace API (doc fragment p2pvps.fleet._marketplace.connection).
CONNECTION_ARGS = dict(
    marketplace_url=dict(type='str', fallback=(env_fallback, ['P2PVPS_MARKETPLACE_URL'])),
    validate_certs=dict(type='bool', default=True),
    timeout=dict(type='int', default=30),
)

#: Options of device-side modules (doc fragments p2pvps.fleet._marketplace and .connection).
MARKETPLACE_COMMON_ARGS = dict(
    CONNECTION_ARGS,
    device_id=dict(type='str', fallback=(env_fallback, ['P2PVPS_DEVICE_ID'])),
    device_token=dict(type='str', no_log=True, fallback=(env_fallback, ['P2PVPS_DEVICE_TOKEN'])),
    device_token_file=dict(type='path'),
)


def read_token_file(path, what='device token'):
    """The token in `path` (stripped) and whether every user may read it; ValueError with a
    message that never holds the content. `what` names the token in messages."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ValueError('cannot read the %s file %s: %s' % (what, path, exc.strerror))
    if not stat.S_ISREG(info.st_mode):
        raise ValueError('the %s file %s is not a regular file' % (what, path))
    if info.st_size > 8192:
        raise ValueError('the %s file %s is too big to hold a token' % (what, path))
    try:
        with open(path, 'rb') as handle:
            raw = handle.read(8193)
    except OSError as exc:
        raise ValueError('cannot read the %s file %s: %s' % (what, path, exc.strerror))
    try:
        token = raw.decode('utf-8').strip()
    except UnicodeDecodeError:
        raise ValueError('the %s file %s is not text' % (what, path))
    if not token:
        raise ValueError('the %s file %s is empty' % (what, path))
    return token, bool(info.st_mode & (stat.S_IROTH | stat.S_IWOTH))


def _module_token(module, kind):
    """The `kind` ('device' or 'gateway') token from O(<kind>_token_file) when it is set, otherwise from
    O(<kind>_token) (or its environment variable); module.fail_json() when there is none. A token read
    from a file is added to the module's no_log values."""
    params = module.params
    token_file = params.get(kind + '_token_file')
    if not token_file:
        token = params.get(kind + '_token')
        if not token:
            module.fail_json(msg='a %(kind)s token is required: set %(kind)s_token_file or %(kind)s_token (or the '
                                 'environment variable P2PVPS_%(env)s_TOKEN)' % {'kind': kind, 'env': kind.upper()})
        return token
    try:
        token, world_readable = read_token_file(token_file, '%s token' % kind)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.no_log_values.add(token)
    if world_readable:
        module.warn('the %s token file %s can be read by every user of this host; make it 0600' % (kind, token_file))
    return token


DEVICE_REQUIRED = (('device_id', 'P2PVPS_DEVICE_ID'),)


def missing_connection_option(params, required=()):
    """The message for the first of marketplace_url and `required` ((option, environment variable) pairs)
    that `params` lacks, else None."""
    for name, env in (('marketplace_url', 'P2PVPS_MARKETPLACE_URL'),) + tuple(required):
        if not params.get(name):
            return '%s is required (the option or the environment variable %s)' % (name, env)
    return None


def _module_client(module, kind, required, retries, backoff):
    """A MarketplaceClient from the module's CONNECTION_ARGS and its `kind` token, or module.fail_json()."""
    params = module.params
    missing = missing_connection_option(params, required)
    if missing:
        module.fail_json(msg=missing)
    token = _module_token(module, kind)
    try:
        return MarketplaceClient(params['marketplace_url'], token, validate_certs=params['validate_certs'],
                                 timeout=params['timeout'], retries=retries, backoff=backoff)
    except MarketplaceError as exc:
        module.fail_json(msg=str(exc))


def client_from_module(module, retries=3, backoff=0.5):
    """A DeviceClient from the module's MARKETPLACE_COMMON_ARGS (the device token), or module.fail_json()."""
    client = _module_client(module, 'device', DEVICE_REQUIRED, retries, backoff)
    return DeviceClient(client, module.params['device_id'])


# ---------------------------------------------------------------- gateway modules

#: Options of modules that run on a tunnel server's web gateway (module web_routes; doc fragments
#: p2pvps.fleet._marketplace.connection and .gateway).
MARKETPLACE_GATEWAY_ARGS = dict(
    CONNECTION_ARGS,
    gateway_token=dict(type='str', no_log=True, fallback=(env_fallback, ['P2PVPS_GATEWAY_TOKEN'])),
    gateway_token_file=dict(type='path'),
    web_port_min=dict(type='int', default=30000),
    web_port_max=dict(type='int', default=30999),
    page_size=dict(type='int', default=500),
    fail_on_api_error=dict(type='bool', default=False),
)


def check_gateway_params(module):
    """module.fail_json() on a web port range or page size of MARKETPLACE_GATEWAY_ARGS that cannot be."""
    params = module.params
    if not 1 <= params['web_port_min'] <= params['web_port_max'] <= 65535:
        module.fail_json(msg='web_port_min and web_port_max must be ports with web_port_min <= web_port_max')
    if not 1 <= params['page_size'] <= 1000:
        module.fail_json(msg='page_size must be from 1 to 1000')


def exit_on_api_error(module, api_error, result, kept, summary):
    """After a failed gateway read: fail with O(fail_on_api_error), else warn that `kept` was kept
    and exit unchanged; `summary(result, check_mode)` is the module's one-line msg."""
    result['api_error'] = api_error
    if module.params['fail_on_api_error']:
        module.fail_json(msg=api_error, **result)
    module.warn('%s (%s); %s' % (kept[0], api_error, kept[1]))
    module.exit_json(msg=summary(result, module.check_mode), **result)


def gateway_client_from_module(module, retries=3, backoff=0.5):
    """A MarketplaceClient with the gateway token from the module's MARKETPLACE_GATEWAY_ARGS, or
    module.fail_json()."""
    return _module_client(module, 'gateway', (), retries, backoff)


def read_gateway_list(module, pages):
    """(every item of a list the gateway reads, None) or (None, the API error); `pages(client)`
    yields the list page by page (MarketplaceClient.iter_routes, .iter_tunnel_keys)."""
    client = gateway_client_from_module(module)
    items = []
    try:
        for page in pages(client):
            items.extend(page)
    except MarketplaceError as exc:
        return None, str(exc)
    finally:
        client.close()
    return items, None
