# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The marketplace client's own HTTP transport (module_utils/_http.py) over real sockets on loopback:
kept-alive connections, TLS verified with a test CA made by openssl, and the environment's proxies
through a small forwarding proxy. Nothing leaves 127.0.0.1."""
from __future__ import annotations

import base64
import json
import select
import socket
import ssl
import subprocess
import threading

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils._api import MarketplaceClient, MarketplaceUnreachable
from tests.fixtures.sockets import LoopbackServer, read_request

TOKEN = 'transport-test-token-Jd82_secret'
DEVICE = {'id': 'd1', 'status': 'online'}
RENTAL = {'id': 'r1', 'device_id': 'd1', 'renter': 'alice'}
PROXY_VARIABLES = ('http_proxy', 'https_proxy', 'all_proxy', 'no_proxy')


class Server(LoopbackServer):
    """An HTTP/1.1 server on loopback that keeps connections alive, optionally over TLS. With
    `close_when_idle`, it closes each connection right after an answer (without saying so), as a
    server whose keep-alive timeout has just passed."""

    def __init__(self, tls=None, close_when_idle=False):
        self.tls = tls
        self.close_when_idle = close_when_idle
        self.requests = []
        self.closed_after_answer = threading.Semaphore(0)
        super().__init__()

    def url(self, host='127.0.0.1'):
        return '%s://%s:%d' % ('https' if self.tls else 'http', host, self.port)

    def serve(self, conn):
        conn.settimeout(10)
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while True:
                request = read_request(conn)
                if request is None:
                    return
                self.requests.append(request[:2])
                body = json.dumps(RENTAL if request[0].startswith('POST') else DEVICE).encode()
                conn.sendall(b'HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s'
                             % (201 if request[0].startswith('POST') else 200, len(body), body))
                if self.close_when_idle:
                    conn.close()
                    self.closed_after_answer.release()
                    return
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


class Proxy(LoopbackServer):
    """A forwarding proxy: CONNECT tunnels, and absolute-form requests (one per connection).
    Records each request line and its Proxy-Authorization header."""

    def __init__(self):
        self.seen = []
        super().__init__()
        self.url = 'http://127.0.0.1:%d' % self.port

    def serve(self, conn):
        conn.settimeout(10)
        try:
            request = read_request(conn)
            if request is None:
                return
            line, headers, body = request
            self.seen.append((line, headers.get('proxy-authorization')))
            method, target, version = line.split(' ')
            if method == 'CONNECT':
                host, port = target.rsplit(':', 1)
                upstream = socket.create_connection((host, int(port)), timeout=10)
                conn.sendall(b'HTTP/1.1 200 Connection established\r\n\r\n')
            else:
                rest = target.split('://', 1)[1]
                hostport, path = rest.split('/', 1)
                host, port = hostport.rsplit(':', 1)
                upstream = socket.create_connection((host, int(port)), timeout=10)
                forwarded = ['%s /%s %s' % (method, path, version)] + [
                    '%s: %s' % item for item in headers.items() if item[0] != 'proxy-authorization']
                upstream.sendall(('\r\n'.join(forwarded) + '\r\n\r\n').encode('latin-1') + body)
            self._pipe(conn, upstream)
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _pipe(one, other):
        with other:
            while True:
                readable = select.select([one, other], [], [], 10)[0]
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (other if sock is one else one).sendall(data)


@pytest.fixture
def servers():
    made = []

    def make(factory, *args, **kwargs):
        made.append(factory(*args, **kwargs))
        return made[-1]

    yield make
    for thing in made:
        thing.close()


@pytest.fixture
def clean_env(monkeypatch):
    for name in PROXY_VARIABLES + ('SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.fixture(scope='module')
def test_ca(tmp_path_factory):
    """A CA and a certificate it signed for 127.0.0.1 only (openssl)."""
    where = tmp_path_factory.mktemp('ca')

    def openssl(*args):
        subprocess.run(['openssl', *args], cwd=where, check=True, capture_output=True)

    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
            '-subj', '/CN=p2pvps test CA', '-keyout', 'ca.key', '-out', 'ca.pem')
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1',
            '-keyout', 'server.key', '-out', 'server.csr')
    (where / 'ext.cnf').write_text('subjectAltName=IP:127.0.0.1\n')
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2',
            '-extfile', 'ext.cnf', '-out', 'server.pem')
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(where / 'server.pem', where / 'server.key')
    return {'ca': str(where / 'ca.pem'), 'server': context}


def client_for(url, **kwargs):
    kwargs.setdefault('timeout', 5)
    return MarketplaceClient(url, TOKEN, **kwargs)


def test_one_connection_serves_several_calls(servers, clean_env):
    server = servers(Server)
    client = client_for(server.url())
    for dummy in range(3):
        assert client.get_device('d1') == DEVICE
    assert server.connections == 1 and len(server.requests) == 3
    assert server.requests[0][1]['authorization'] == 'Bearer ' + TOKEN


def test_a_connection_the_server_closed_while_idle_is_not_used_for_a_create(servers, clean_env):
    """A create is never retried (the server may have done it): it must not be sent on a kept-alive
    connection the server has already closed."""
    server = servers(Server, close_when_idle=True)
    client = client_for(server.url(), retries=0)
    assert client.get_device('d1') == DEVICE
    # The server has closed it before the next call (a close racing the call itself cannot be told
    # from a drop: such a create fails, as with any HTTP client).
    assert server.closed_after_answer.acquire(timeout=10)
    assert client.create_rental('d1', 'alice', ssh_public_key='ssh-ed25519 AAAA x', hours=1) == RENTAL
    assert server.connections == 2 and [line.split()[0] for line, dummy in server.requests] == ['GET', 'POST']


def test_tls_verified_with_the_configured_ca(servers, clean_env, test_ca):
    server = servers(Server, tls=test_ca['server'])
    clean_env.setenv('SSL_CERT_FILE', test_ca['ca'])
    client = client_for(server.url())
    assert client.get_device('d1') == DEVICE and client.get_device('d1') == DEVICE
    assert server.connections == 1
    clean_env.delenv('SSL_CERT_FILE')
    clean_env.setenv('REQUESTS_CA_BUNDLE', test_ca['ca'])   # as requests read it
    assert client_for(server.url()).get_device('d1') == DEVICE


def test_an_untrusted_certificate_is_refused(servers, clean_env, test_ca):
    server = servers(Server, tls=test_ca['server'])
    with pytest.raises(MarketplaceUnreachable) as exc:
        client_for(server.url(), retries=0).get_device('d1')
    assert 'TLS error' in str(exc.value) and 'CERTIFICATE_VERIFY_FAILED' in str(exc.value)
    assert server.requests == []


def test_a_certificate_for_another_name_is_refused(servers, clean_env, test_ca):
    server = servers(Server, tls=test_ca['server'])
    clean_env.setenv('SSL_CERT_FILE', test_ca['ca'])
    with pytest.raises(MarketplaceUnreachable) as exc:
        client_for(server.url('localhost'), retries=0).get_device('d1')   # trusted CA, but not this name
    assert 'TLS error' in str(exc.value) and "match" in str(exc.value) and server.requests == []


def test_validate_certs_false_accepts_any_certificate(servers, clean_env, test_ca):
    server = servers(Server, tls=test_ca['server'])
    assert client_for(server.url(), validate_certs=False).get_device('d1') == DEVICE


def test_https_through_the_environment_proxy(servers, clean_env, test_ca):
    server = servers(Server, tls=test_ca['server'])
    proxy = servers(Proxy)
    clean_env.setenv('SSL_CERT_FILE', test_ca['ca'])
    clean_env.setenv('HTTPS_PROXY', proxy.url.replace('http://', 'http://op%40lan:s3cret@'))
    client = client_for(server.url())
    assert client.get_device('d1') == DEVICE and client.get_device('d1') == DEVICE
    credentials = 'Basic ' + base64.b64encode(b'op@lan:s3cret').decode()
    assert [(line.rsplit(' ', 1)[0], auth) for line, auth in proxy.seen] == [
        ('CONNECT 127.0.0.1:%d' % server.port, credentials)]
    assert server.connections == 1 and len(server.requests) == 2


def test_http_through_the_environment_proxy_and_no_proxy(servers, clean_env):
    server = servers(Server)
    proxy = servers(Proxy)
    clean_env.setenv('http_proxy', proxy.url)
    assert client_for(server.url()).get_device('d1') == DEVICE
    assert proxy.seen == [('GET http://127.0.0.1:%d/api/v1/devices/d1 HTTP/1.1' % server.port, None)]
    clean_env.setenv('no_proxy', '127.0.0.1')
    assert client_for(server.url()).get_device('d1') == DEVICE
    assert len(proxy.seen) == 1 and len(server.requests) == 2
