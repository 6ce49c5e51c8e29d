# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The marketplace client's HTTP/1.1 transport: one kept-alive connection, standard library only.

The device agent imports the client at every run; the requests library alone cost about as much
CPU as the rest of a run that changes nothing. This transport does what _api.py needs and no more:

* TLS verified against the system's trusted certificates (``SSL_CERT_FILE`` and, as requests
  did, ``REQUESTS_CA_BUNDLE`` name another bundle), or not verified at all;
* the proxies of the environment (``https_proxy``, ``http_proxy``, ``all_proxy``, ``no_proxy``,
  either case), as requests used them: CONNECT for https, the absolute form for http;
* errors before an answer sorted into the kinds the retry loop needs (`TransportError.kind`).

Redirects are never followed and nothing is decompressed: _api.py refuses both.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import socket
import ssl
from urllib.parse import unquote, urlsplit

#: The connection could not be made: nothing was sent, any call may be retried.
CONNECT = 'connect'
#: The server closed or reset the connection before answering: the request may have arrived.
DROPPED = 'dropped'
#: The TLS handshake failed (an untrusted or wrong certificate, or no TLS on the other side).
TLS = 'tls'
#: A socket operation waited longer than its timeout.
TIMEOUT = 'timeout'
#: The server answered something that is not HTTP.
PROTOCOL = 'protocol'

_DROPPED_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)


class TransportError(Exception):
    """No answer. `kind` is one of the constants above; `reason` is short, for messages."""

    def __init__(self, kind, reason):
        super(TransportError, self).__init__('%s: %s' % (kind, reason))
        self.kind = kind
        self.reason = reason


def _reason(exc):
    return '%s (%s)' % (str(exc) or type(exc).__name__, type(exc).__name__)


def ca_bundle():
    """The certificate bundle named by the environment, or None for the system's default."""
    for name in ('SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):
        value = os.environ.get(name)
        if value:
            return value
    return None


def tls_context(validate_certs):
    if not validate_certs:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = ca_bundle()
    if bundle and os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


def _proxy_variable(scheme):
    for name in ('%s_proxy' % scheme, 'all_proxy'):
        value = os.environ.get(name) or os.environ.get(name.upper())
        if value:
            return value
    return None


def proxy_for(scheme, host):
    """The proxy URL the environment gives for `scheme`://`host`, or None (no proxy, or no_proxy
    names the host)."""
    proxy = _proxy_variable(scheme)
    if not proxy:
        return None
    import urllib.request   # only with a proxy: its import costs more than the rest of this file

    if urllib.request.proxy_bypass_environment(host):
        return None
    return proxy


class Proxy(object):
    """An HTTP proxy: host, port and the Proxy-Authorization header of its URL's credentials."""

    def __init__(self, url):
        if '://' not in url:
            url = 'http://' + url
        parts = urlsplit(url)
        if parts.scheme != 'http' or not parts.hostname:
            raise TransportError(CONNECT, 'unsupported proxy %s://%s (an http:// proxy is needed)'
                                 % (parts.scheme, parts.hostname or ''))
        self.host = parts.hostname
        self.port = parts.port or 8080
        self.headers = {}
        if parts.username is not None:
            pair = '%s:%s' % (unquote(parts.username), unquote(parts.password or ''))
            self.headers['Proxy-Authorization'] = 'Basic ' + base64.b64encode(pair.encode('utf-8')).decode('ascii')


def _closed_by_peer(conn):
    """Whether a kept-alive connection was closed (or written to) by the server while idle: it
    is readable before anything was sent. Sending on it would fail, and a call that is not
    idempotent could not be retried."""
    if conn.sock is None:
        return True
    try:
        readable = select.select([conn.sock], [], [], 0)[0]
    except (OSError, ValueError):
        return True
    return bool(readable)


class Connection(object):
    """One HTTP/1.1 connection to the origin of `base_url`, opened on first use and kept alive
    while the server allows it. Not thread-safe."""

    def __init__(self, base_url, validate_certs=True):
        parts = urlsplit(base_url)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if self.scheme == 'https' else 80)
        self._context = tls_context(validate_certs) if self.scheme == 'https' else None
        proxy = proxy_for(self.scheme, self.host)
        self.proxy = Proxy(proxy) if proxy else None
        self._conn = None

    def _origin(self):
        host = '[%s]' % self.host if ':' in self.host else self.host
        return '%s://%s:%d' % (self.scheme, host, self.port)

    def _open(self, timeout):
        target = (self.proxy.host, self.proxy.port) if self.proxy else (self.host, self.port)
        if self.scheme == 'https':
            conn = http.client.HTTPSConnection(*target, timeout=timeout, context=self._context)
            if self.proxy:
                conn.set_tunnel(self.host, self.port, headers=self.proxy.headers)
        else:
            conn = http.client.HTTPConnection(*target, timeout=timeout)
        try:
            conn.connect()
        except BaseException as exc:
            conn.close()
            raise self._connecting_error(exc)
        return conn

    @staticmethod
    def _connecting_error(exc):
        if isinstance(exc, ssl.SSLError):
            return TransportError(TLS, _reason(exc))
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return TransportError(TIMEOUT, 'connecting: %s' % _reason(exc))
        if isinstance(exc, OSError):
            # also a proxy that refuses the tunnel: OSError('Tunnel connection failed: 403 ...')
            return TransportError(CONNECT, _reason(exc))
        return exc

    def request(self, method, target, body, headers, connect_timeout, read_timeout):
        """Send one request (`target`: path and query) and read the answer's head: an
        http.client.HTTPResponse whose body the caller reads, then passes to release()."""
        if self._conn is not None and _closed_by_peer(self._conn):
            self.close()
        if self._conn is None:
            self._conn = self._open(connect_timeout)
        conn = self._conn
        conn.sock.settimeout(read_timeout)
        if self.proxy and self.scheme == 'http':
            target = self._origin() + target
            headers = dict(headers, **self.proxy.headers)
        try:
            conn.request(method, target, body=body, headers=headers)
            response = conn.getresponse()
        except BaseException as exc:
            self._discard(conn)
            raise self._sending_error(exc)
        response.p2pvps_connection = conn
        return response

    @staticmethod
    def _sending_error(exc):
        if isinstance(exc, _DROPPED_ERRORS):
            return TransportError(DROPPED, _reason(exc))
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return TransportError(TIMEOUT, _reason(exc))
        if isinstance(exc, (http.client.HTTPException, ssl.SSLError, OSError)):
            return TransportError(PROTOCOL, _reason(exc))
        return exc

    def release(self, response, failed=False):
        """After the answer's body was read: keep its connection for the next call if the server
        allows it; after a failure, or an answer left unread or cut short, close it."""
        if failed or response.will_close or not response.isclosed():
            self._discard(response.p2pvps_connection)

    def _discard(self, conn):
        # Only that connection: a call that passed its deadline may fail later, in its own thread,
        # when the next call already uses a new connection.
        if self._conn is conn:
            self._conn = None
        conn.close()

    def close(self):
        if self._conn is not None:
            self._discard(self._conn)
