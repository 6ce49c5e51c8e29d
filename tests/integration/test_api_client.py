# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The marketplace client (module_utils/_api.py) against the real reference server and against
tiny raw-socket servers on loopback that misbehave on purpose (dripping, huge, redirecting,
busy, not JSON). Every test is bounded in time; nothing leaves 127.0.0.1."""
from __future__ import annotations

import base64
import json

import socket
import struct
import threading
import time

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    MAX_BODY,
    MAX_DETAIL,
    MarketplaceClient,
    MarketplaceError,
    MarketplaceMalformed,
    MarketplaceRejected,
    MarketplaceUnreachable,
)
from tests.fixtures.common import free_port
from tests.fixtures.sockets import LoopbackServer, read_request

TOKEN = 'raw-test-token-Ux7_secret'
SLACK = 2.5     # seconds a call may take beyond its deadline on a busy 2-core CI machine


def fake_key(seed=1, comment='pi@test'):
    blob = struct.pack('>I', 11) + b'ssh-ed25519' + struct.pack('>I', 32) + bytes([seed]) * 32
    return 'ssh-ed25519 %s %s' % (base64.b64encode(blob).decode(), comment)


FACTS = {'memory_mb': 3793, 'disk_gb': 29.1, 'cpu_model': 'Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)',
         'cpu_count': 4, 'architecture': 'arm64', 'os': 'Debian GNU/Linux 12 (bookworm)',
         'docker_version': '20.10.24+dfsg1'}


# ------------------------------------------------------------------ raw-socket fake server

class RawServer(LoopbackServer):
    """Accepts connections on loopback; `handler(conn, request)` writes whatever bytes it likes.

    `requests` records (method, path, headers dict) of every request received.
    """

    def __init__(self, handler):
        self.handler = handler
        self.requests = []
        super().__init__()
        self.url = 'http://127.0.0.1:%d' % self.port

    def serve(self, conn):
        conn.settimeout(30)
        try:
            received = read_request(conn)
            if received is None:
                return
            line, headers, body = received
            method, path, dummy = line.split(' ', 2)
            request = {'method': method, 'path': path, 'headers': headers, 'body': body}
            self.requests.append(request)
            self.handler(conn, request)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


def answer(status, body=b'', headers=None, reason='X'):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    lines = ['HTTP/1.1 %d %s' % (status, reason), 'Content-Type: application/json',
             'Content-Length: %d' % len(body), 'Connection: close']
    lines += ['%s: %s' % item for item in (headers or {}).items()]
    return ('\r\n'.join(lines) + '\r\n\r\n').encode() + body


@pytest.fixture
def raw_server():
    servers = []

    def make(handler):
        server = RawServer(handler)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def client_for(url, **kwargs):
    kwargs.setdefault('timeout', 5)
    return MarketplaceClient(url, TOKEN, **kwargs)


def timed(call):
    start = time.monotonic()
    try:
        result = call()
    except MarketplaceError as exc:
        return exc, time.monotonic() - start
    return result, time.monotonic() - start


def assert_clean(exc):
    """No token, no query string, short, one line."""
    text = str(exc) + repr(exc)
    assert TOKEN not in text
    assert '?' not in str(exc).split(': ', 1)[0]
    assert len(str(exc)) < 600 and '\n' not in str(exc)


# ------------------------------------------------------------------ misbehaving servers

def test_sends_bearer_token_and_parses_json(raw_server):
    server = raw_server(lambda conn, req: conn.sendall(answer(200, {'id': 'd1', 'status': 'new'})))
    device = client_for(server.url).get_device('d1')
    assert device == {'id': 'd1', 'status': 'new'}
    headers = server.requests[0]['headers']
    assert headers['authorization'] == 'Bearer ' + TOKEN
    assert headers['accept-encoding'] == 'identity' and headers['accept'] == 'application/json'
    assert server.requests[0]['path'] == '/api/v1/devices/d1'


@pytest.mark.parametrize('where', ['headers', 'body'])
def test_dripping_server_is_cut_at_the_deadline(raw_server, where):
    """One byte a second must not hold a call longer than its timeout (connect + whole body)."""
    stop = threading.Event()

    def drip(conn, req):
        body = b'{"id": "d1", "padding": "' + b'x' * 200 + b'"}'
        data = answer(200, body)
        head_len = data.index(b'\r\n\r\n') + 4
        start = 0 if where == 'headers' else head_len
        if start:
            conn.sendall(data[:start])
        for i in range(start, len(data)):
            if stop.is_set():
                return
            conn.sendall(data[i:i + 1])
            time.sleep(0.2)

    server = raw_server(drip)
    try:
        exc, elapsed = timed(lambda: client_for(server.url, timeout=3).get_device('d1'))
    finally:
        stop.set()
    assert isinstance(exc, MarketplaceUnreachable), exc
    assert 'deadline of 3 s' in str(exc)
    assert 2.5 < elapsed < 3 + SLACK
    assert len(server.requests) == 1      # a timed-out call is not retried
    assert_clean(exc)


def test_silent_server_is_cut_at_the_deadline(raw_server):
    server = raw_server(lambda conn, req: time.sleep(20))
    exc, elapsed = timed(lambda: client_for(server.url, timeout=2).checkin('d1', {}))
    assert isinstance(exc, MarketplaceUnreachable), exc
    assert elapsed < 2 + SLACK


def test_server_silent_after_the_headers_is_cut_at_the_deadline(raw_server):
    def silent_body(conn, req):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"id":')
        time.sleep(20)

    server = raw_server(silent_body)
    exc, elapsed = timed(lambda: client_for(server.url, timeout=2).get_device('d1'))
    assert isinstance(exc, MarketplaceUnreachable), exc
    assert 'deadline of 2 s' in str(exc) and elapsed < 2 + SLACK
    assert len(server.requests) == 1
    assert_clean(exc)


def test_client_answers_again_after_a_deadline(raw_server):
    """A call cut at its deadline leaves its connection behind; the next call on the same client works."""
    def first_silent(conn, req):
        if len(server.requests) == 1:
            time.sleep(20)
        else:
            conn.sendall(answer(200, {'id': 'd1'}))

    server = raw_server(first_silent)
    client = client_for(server.url, timeout=1)
    exc, dummy = timed(lambda: client.get_device('d1'))
    assert isinstance(exc, MarketplaceUnreachable) and 'deadline' in str(exc), exc
    assert client.get_device('d1') == {'id': 'd1'}
    client.close()


def test_huge_body_is_refused(raw_server):
    big = b'{"id": "d1", "x": "' + b'a' * (MAX_BODY + 10) + b'"}'
    server = raw_server(lambda conn, req: conn.sendall(answer(200, big)))
    exc, elapsed = timed(lambda: client_for(server.url).get_device('d1'))
    assert isinstance(exc, MarketplaceMalformed), exc
    assert 'too big' in str(exc) and elapsed < 5
    assert_clean(exc)


def test_huge_chunked_body_without_length_is_refused(raw_server):
    def endless(conn, req):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n')
        chunk = b'a' * 65536
        try:
            conn.sendall(b'1\r\n[\r\n')
            for dummy in range(64):       # 4 MiB, more than the cap
                conn.sendall(b'%x\r\n%s\r\n' % (len(chunk), chunk))
        except OSError:
            pass

    server = raw_server(endless)
    exc, dummy = timed(lambda: client_for(server.url).get_device('d1'))
    assert isinstance(exc, MarketplaceMalformed) and 'too big' in str(exc), exc


def test_redirect_is_not_followed_and_the_token_goes_nowhere(raw_server):
    target = raw_server(lambda conn, req: conn.sendall(answer(200, {'id': 'elsewhere'})))
    location = target.url + '/api/v1/devices/d1?sig=abc'
    server = raw_server(lambda conn, req: conn.sendall(answer(302, b'', {'Location': location})))
    for call in (lambda c: c.get_device('d1'), lambda c: c.checkin('d1', {})):
        exc, dummy = timed(lambda: call(client_for(server.url)))
        assert isinstance(exc, MarketplaceRejected), exc
        assert exc.status == 302 and exc.error == 'redirect'
        assert 'not followed' in str(exc) and target.url in str(exc) and 'sig=abc' not in str(exc)
        assert_clean(exc)
    assert target.requests == []
    assert len(server.requests) == 2


def test_redirect_body_is_not_read(raw_server):
    """requests reads the body of a redirect it does not follow; we do not (no size or time cap there)."""
    def endless_redirect(conn, req):
        try:
            conn.sendall(b'HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.invalid/\r\n'
                         b'Content-Length: 1000000000\r\n\r\n')
            for dummy in range(50):
                conn.sendall(b'x' * 65536)
                time.sleep(0.1)
        except OSError:
            pass

    server = raw_server(endless_redirect)
    exc, elapsed = timed(lambda: client_for(server.url, timeout=10).get_device('d1'))
    assert isinstance(exc, MarketplaceRejected) and exc.status == 301, exc
    assert 'https://elsewhere.invalid/' in str(exc) and elapsed < 2


def test_retry_after_is_capped_and_the_deadline_kept(raw_server):
    server = raw_server(lambda conn, req: conn.sendall(
        answer(503, {'error': 'busy', 'detail': 'come back later'}, {'Retry-After': '9999'})))
    # the capped wait (10 s) does not fit in a 6 s deadline: give up at once, do not sleep 9999 s
    exc, elapsed = timed(lambda: client_for(server.url, timeout=6).checkin('d1', {}))
    assert isinstance(exc, MarketplaceUnreachable), exc
    assert exc.status == 503 and 'HTTP 503 busy: come back later' in str(exc)
    assert elapsed < 2 and len(server.requests) == 1
    # a smaller cap is honoured: retried after ~1 s each, until the retries are used up
    del server.requests[:]
    exc, elapsed = timed(lambda: client_for(server.url, timeout=20, retries=2, max_retry_after=1).checkin('d1', {}))
    assert isinstance(exc, MarketplaceUnreachable) and 'after 3 attempts' in str(exc), exc
    assert len(server.requests) == 3 and 1.8 < elapsed < 4
    assert_clean(exc)


def test_busy_answer_with_an_endless_body_is_read_only_up_to_the_cap(raw_server):
    """The body of an answer that is retried is read like any other: capped in size and time."""
    def busy_endless(conn, req):
        conn.sendall(b'HTTP/1.1 503 Busy\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n')
        chunk = b'b' * 65536
        try:
            for dummy in range(64):       # 4 MiB, more than the cap
                conn.sendall(b'%x\r\n%s\r\n' % (len(chunk), chunk))
        except OSError:
            pass

    server = raw_server(busy_endless)
    exc, elapsed = timed(lambda: client_for(server.url, timeout=10, retries=1, backoff=0.1).get_device('d1'))
    assert isinstance(exc, MarketplaceUnreachable) and exc.status == 503, exc
    assert 'HTTP 503' in str(exc) and elapsed < 10
    assert len(server.requests) == 2
    assert_clean(exc)


def test_total_retry_time_stays_within_the_deadline(raw_server):
    server = raw_server(lambda conn, req: conn.sendall(answer(503, {'error': 'busy'}, {'Retry-After': '2'})))
    exc, elapsed = timed(lambda: client_for(server.url, timeout=5, retries=20).get_device('d1'))
    assert isinstance(exc, MarketplaceUnreachable), exc
    assert elapsed < 5 + SLACK and 2 <= len(server.requests) <= 3


def test_gateway_errors_are_retried_then_succeed(raw_server):
    answers = [answer(502, b'<html>Bad Gateway</html>'), answer(504, b''), answer(200, {'id': 'd1'})]
    server = raw_server(lambda conn, req: conn.sendall(answers[min(len(server.requests), 3) - 1]))
    device, elapsed = timed(lambda: client_for(server.url, timeout=10, backoff=0.1).get_device('d1'))
    assert device == {'id': 'd1'}, device
    assert len(server.requests) == 3 and elapsed < 3


def test_creating_is_not_retried_on_a_gateway_error(raw_server):
    """A 502/504 may come after the server created the device: a retry could create two."""
    server = raw_server(lambda conn, req: conn.sendall(answer(502, b'')))
    exc, dummy = timed(lambda: client_for(server.url).create_device('pi'))
    assert isinstance(exc, MarketplaceUnreachable) and exc.status == 502, exc
    assert len(server.requests) == 1


def test_server_error_500_is_unreachable_not_retried(raw_server):
    server = raw_server(lambda conn, req: conn.sendall(answer(500, {'error': 'internal', 'detail': 'boom'})))
    exc, dummy = timed(lambda: client_for(server.url).checkin('d1', {}))
    assert isinstance(exc, MarketplaceUnreachable) and 'HTTP 500 internal: boom' in str(exc), exc
    assert len(server.requests) == 1


@pytest.mark.parametrize('body, words', [
    (b'<html>oops</html>', 'not JSON'),
    (b'{"id": NaN}', 'not JSON'),
    (b'', 'empty'),
    (b'[]', 'JSON object'),
    (b'"text"', 'JSON object'),
    (b'{"status": "new"}', 'has no "id"'),
    (b'\xff\xfe{}', 'not JSON'),
])
def test_malformed_answers(raw_server, body, words):
    server = raw_server(lambda conn, req: conn.sendall(answer(200, body)))
    exc, dummy = timed(lambda: client_for(server.url).get_device('d1'))
    assert isinstance(exc, MarketplaceMalformed), exc
    assert 'malformed' in str(exc) and words in str(exc)
    assert_clean(exc)


def test_compressed_answer_is_refused(raw_server):
    server = raw_server(lambda conn, req: conn.sendall(answer(200, b'\x1f\x8b\x08', {'Content-Encoding': 'gzip'})))
    exc, dummy = timed(lambda: client_for(server.url).get_device('d1'))
    assert isinstance(exc, MarketplaceMalformed) and 'compressed' in str(exc), exc


def test_register_and_page_shapes_are_checked(raw_server):
    server = raw_server(lambda conn, req: conn.sendall(answer(200, {'device': {'id': 'd1'}, 'tunnel': {'host': 'h'}})))
    exc, dummy = timed(lambda: client_for(server.url).register('d1', FACTS, fake_key()))
    assert isinstance(exc, MarketplaceMalformed) and 'tunnel of the register answer has no' in str(exc), exc
    pages = [{'items': [{'id': 'a'}], 'next_cursor': 'c1'}, {'items': [{'id': 'b'}], 'next_cursor': 'c1'}]
    server = raw_server(lambda conn, req: conn.sendall(answer(200, pages[min(len(server.requests), 2) - 1])))
    seen = []
    with pytest.raises(MarketplaceMalformed) as exc:
        for page in client_for(server.url).iter_devices(page_size=1):
            seen.extend(page)
    assert 'cursor repeats' in str(exc.value) and [d['id'] for d in seen] == ['a', 'b']
    assert [r['path'] for r in server.requests] == ['/api/v1/devices?limit=1', '/api/v1/devices?limit=1&cursor=c1']
    server = raw_server(lambda conn, req: conn.sendall(answer(200, {'items': {}, 'next_cursor': None})))
    with pytest.raises(MarketplaceMalformed):
        client_for(server.url).list_devices()


@pytest.mark.parametrize('body, words', [
    ({'items': {}, 'next_cursor': None}, 'list of objects'),
    ({'items': [{'hostname': 'a.web.test'}, 'b.web.test'], 'next_cursor': None}, 'list of objects'),
    ({'items': []}, 'has no "next_cursor"'),
    ({'items': [], 'next_cursor': 7}, 'next_cursor'),
    ({'items': [], 'next_cursor': ''}, 'next_cursor'),
    ([], 'JSON object'),
])
def test_route_page_shapes_are_checked(raw_server, body, words):
    server = raw_server(lambda conn, req: conn.sendall(answer(200, body)))
    with pytest.raises(MarketplaceMalformed) as exc:
        list(client_for(server.url).iter_routes(page_size=2))
    assert words in str(exc.value), exc.value
    assert_clean(exc.value)
    assert server.requests[0]['path'] == '/api/v1/routes?limit=2'


def test_route_pages_follow_the_cursor(raw_server):
    pages = [{'items': [{'hostname': 'a.web.test'}], 'next_cursor': 'c1'},
             {'items': [{'hostname': 'b.web.test'}, {'port': 'junk'}], 'next_cursor': None}]
    server = raw_server(lambda conn, req: conn.sendall(answer(200, pages[len(server.requests) - 1])))
    seen = list(client_for(server.url).iter_routes(page_size=1000))
    assert seen == [pages[0]['items'], pages[1]['items']]
    assert [r['path'] for r in server.requests] == ['/api/v1/routes?limit=1000', '/api/v1/routes?limit=1000&cursor=c1']


def test_rejection_detail_is_truncated_and_token_scrubbed(raw_server):
    detail = 'token %s is bad; ' % TOKEN + 'y' * 5000
    server = raw_server(lambda conn, req: conn.sendall(answer(403, {'error': 'forbidden', 'detail': detail})))
    exc, dummy = timed(lambda: client_for(server.url).get_device('d1'))
    assert isinstance(exc, MarketplaceRejected), exc
    assert exc.status == 403 and exc.error == 'forbidden'
    assert len(exc.detail) <= MAX_DETAIL and TOKEN not in exc.detail
    assert_clean(exc)


def test_connection_dropped_mid_answer(raw_server):
    def drop(conn, req):
        conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":')
        conn.shutdown(socket.SHUT_RDWR)

    server = raw_server(drop)
    exc, elapsed = timed(lambda: client_for(server.url).get_device('d1'))
    assert isinstance(exc, MarketplaceUnreachable) and elapsed < 3, exc
    assert_clean(exc)


@pytest.mark.parametrize('how', ['close', 'reset'])
def test_a_connection_dropped_before_the_answer_is_retried_for_idempotent_calls_only(raw_server, how):
    """What a kept-alive connection looks like when the server has just timed it out: the request
    goes out and the connection closes (or is reset) with no answer."""
    calls = []

    def drop_first(conn, req):
        calls.append(req['method'])
        if len(calls) > 1:
            conn.sendall(answer(200, {'id': 'r1', 'device_id': 'd1', 'renter': 'alice'}))
        elif how == 'reset':
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))

    server = raw_server(drop_first)
    client = client_for(server.url, retries=2, backoff=0.1)
    assert client.get_rental('r1')['id'] == 'r1'
    assert calls == ['GET', 'GET']

    del calls[:]
    exc, dummy = timed(lambda: client.create_rental('d1', 'alice', ssh_public_key='ssh-ed25519 AAAA x', hours=1))
    assert isinstance(exc, MarketplaceUnreachable) and calls == ['POST'], (exc, calls)
    assert_clean(exc)


def test_nothing_listening_fails_fast_after_retries():
    port = free_port()
    exc, elapsed = timed(lambda: client_for('http://127.0.0.1:%d/' % port, timeout=10, retries=2,
                                            backoff=0.2).get_device('d1'))
    assert isinstance(exc, MarketplaceUnreachable), exc
    assert 'Connection refused' in str(exc) and '3 attempts' in str(exc)
    assert 'http://127.0.0.1:%d/api/v1/devices/d1' % port in str(exc)
    assert 0.3 < elapsed < 3
    assert_clean(exc)


def test_tls_to_a_plain_server_is_a_clear_error(raw_server):
    server = raw_server(lambda conn, req: None)
    exc, dummy = timed(lambda: client_for(server.url.replace('http://', 'https://'), timeout=3).get_device('d1'))
    assert isinstance(exc, MarketplaceUnreachable), exc
    assert_clean(exc)


# ------------------------------------------------------------------ the real reference server

def operator_client(marketplace, **kwargs):
    kwargs.setdefault('timeout', 10)
    return MarketplaceClient(marketplace.url, marketplace.operator_token, **kwargs)


def test_every_method_against_the_server(marketplace):
    operator = operator_client(marketplace)
    created = operator.create_device('pi-api-1', description='kitchen shelf', owner='alice-owner')
    device_id, device_token = created['id'], created['device_token']
    device = MarketplaceClient(marketplace.url, device_token, timeout=10)
    assert repr(device).count(device_token) == 0

    fresh = device.get_device(device_id)
    assert fresh['id'] == device_id and fresh['registered'] is False and fresh['status'] == 'new'
    assert operator.get_device(device_id)['name'] == 'pi-api-1'

    registered = device.register(device_id, FACTS, fake_key())
    tunnel = registered['tunnel']
    assert registered['device']['registered'] is True and registered['device']['facts'] == FACTS
    assert isinstance(tunnel['remote_port'], int) and tunnel['remote_port'] > 0
    again = device.register(device_id, FACTS, fake_key())
    assert again['tunnel']['remote_port'] == tunnel['remote_port']          # idempotent

    answer = device.checkin(device_id, {'lease_id': None, 'container': 'absent'})
    assert answer['lease'] is None and isinstance(answer['checkin_interval_s'], int)
    assert device.get_device(device_id)['status'] == 'online'

    rental = operator.create_rental(device_id, 'alice', ssh_public_key=fake_key(9, 'alice@laptop'), hours=1)
    assert rental['device_id'] == device_id and rental['active'] is True
    lease = device.checkin(device_id)['lease']
    assert lease['id'] == rental['id'] and lease['ssh_authorized_keys'] == [fake_key(9, 'alice@laptop')]
    assert operator.get_rental(rental['id'])['id'] == rental['id']
    ended = operator.end_rental(rental['id'])
    assert ended['id'] == rental['id'] and ended['ended_at']
    assert device.checkin(device_id)['lease'] is None

    with pytest.raises(MarketplaceRejected) as exc:
        operator.create_rental(device_id, 'root', ssh_public_key=fake_key(9), hours=1)
    assert 400 <= exc.value.status < 500 and exc.value.detail

    device.delete_device(device_id)
    with pytest.raises(MarketplaceRejected) as exc:
        operator.get_device(device_id)
    assert exc.value.status == 404
    device.close()
    operator.close()


def test_paging_one_call_per_page(marketplace):
    operator = operator_client(marketplace)
    ids = {operator.create_device('pi-page-%d' % i)['id'] for i in range(5)}
    pages = list(operator.iter_devices(page_size=2))
    seen = [d['id'] for page in pages for d in page]
    assert ids <= set(seen) and len(seen) == len(set(seen))
    assert all(len(page) <= 2 for page in pages) and len(pages) >= 3
    first = operator.list_devices(limit=2)
    assert len(first['items']) == 2 and isinstance(first['next_cursor'], str)
    assert list(operator.iter_devices(page_size=500, status='online')) is not None


def test_wrong_token_is_rejected_without_showing_it(marketplace):
    operator = operator_client(marketplace)
    a = operator.create_device('pi-auth-a')
    b = operator.create_device('pi-auth-b')
    wrong = 'wrong-' + a['device_token'][::-1]
    with pytest.raises(MarketplaceRejected) as exc:
        MarketplaceClient(marketplace.url, wrong, timeout=10).get_device(a['id'])
    assert exc.value.status == 401 and 'HTTP 401' in str(exc.value)
    assert wrong not in str(exc.value) + repr(exc.value) + (exc.value.detail or '')
    with pytest.raises(MarketplaceRejected) as exc:      # device A's token on device B
        MarketplaceClient(marketplace.url, a['device_token'], timeout=10).checkin(b['id'], {})
    assert exc.value.status == 403
    assert a['device_token'] not in str(exc.value)


def test_validation_error_carries_code_and_short_detail(marketplace):
    operator = operator_client(marketplace)
    created = operator.create_device('pi-invalid')
    device = MarketplaceClient(marketplace.url, created['device_token'], timeout=10)
    with pytest.raises(MarketplaceRejected) as exc:
        device.register(created['id'], dict(FACTS, memory_mb=-1, cpu_model='x' * 3000), fake_key())
    assert exc.value.status in (400, 422) and exc.value.error
    assert exc.value.detail and len(exc.value.detail) <= MAX_DETAIL
    assert len(str(exc.value)) < 600 and created['device_token'] not in str(exc.value)


def test_server_down_then_up_succeeds_through_retries(marketplace):
    operator = operator_client(marketplace)
    created = operator.create_device('pi-flaky')
    device = MarketplaceClient(marketplace.url, created['device_token'], timeout=40, retries=10, backoff=0.5)
    marketplace.stop()
    starter = threading.Timer(3.0, marketplace.start)
    started = time.monotonic()
    starter.start()
    try:
        answer = device.checkin(created['id'], {})
    finally:
        starter.join()
    elapsed = time.monotonic() - started
    assert answer['lease'] is None
    assert 3.0 <= elapsed < 40


def test_server_down_throughout_is_unreachable_in_bounded_time(marketplace):
    operator = operator_client(marketplace)
    created = operator.create_device('pi-down')
    device = MarketplaceClient(marketplace.url, created['device_token'], timeout=4, retries=10, backoff=0.5)
    marketplace.stop()
    try:
        exc, elapsed = timed(lambda: device.checkin(created['id'], {}))
    finally:
        marketplace.start()
    assert isinstance(exc, MarketplaceUnreachable), exc
    assert 'cannot connect' in str(exc) and 'attempts' in str(exc)
    assert '/api/v1/devices/%s/checkin' % created['id'] in str(exc)
    assert created['device_token'] not in str(exc)
    assert elapsed < 4 + SLACK
    assert device.checkin(created['id'], {})['lease'] is None      # and back when the server is
