# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The marketplace client's transport, its pure parts (real connections: tests/integration/test_api_client.py)."""
from __future__ import annotations

import base64
import http.client
import socket
import ssl

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _http

PROXY_VARIABLES = ('http_proxy', 'https_proxy', 'all_proxy', 'no_proxy')


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.mark.parametrize('error, kind', [
    (http.client.RemoteDisconnected('Remote end closed connection without response'), _http.DROPPED),
    (ConnectionResetError(104, 'Connection reset by peer'), _http.DROPPED),
    (BrokenPipeError(32, 'Broken pipe'), _http.DROPPED),
    (socket.timeout('timed out'), _http.TIMEOUT),
    (http.client.BadStatusLine('SSH-2.0-OpenSSH'), _http.PROTOCOL),
    (ssl.SSLError('record layer failure'), _http.PROTOCOL),
])
def test_errors_while_sending_are_sorted_for_the_retry_loop(error, kind):
    sorted_error = _http.Connection._sending_error(error)
    assert isinstance(sorted_error, _http.TransportError) and sorted_error.kind == kind


def test_an_interrupt_is_not_a_transport_error():
    interrupt = KeyboardInterrupt()
    assert _http.Connection._sending_error(interrupt) is interrupt


def test_no_proxy_without_the_variables(no_proxy_env):
    assert _http.proxy_for('https', 'market.example.org') is None
    assert _http.Connection('https://market.example.org').proxy is None


@pytest.mark.parametrize('name', ['https_proxy', 'HTTPS_PROXY', 'all_proxy'])
def test_the_environment_proxy_is_used_as_requests_did(no_proxy_env, name):
    no_proxy_env.setenv(name, 'http://proxy.lan:3128')
    assert _http.proxy_for('https', 'market.example.org') == 'http://proxy.lan:3128'
    proxy = _http.Connection('https://market.example.org').proxy
    assert (proxy.host, proxy.port, proxy.headers) == ('proxy.lan', 3128, {})


def test_no_proxy_names_hosts_that_go_direct(no_proxy_env):
    no_proxy_env.setenv('https_proxy', 'http://proxy.lan:3128')
    no_proxy_env.setenv('no_proxy', 'localhost,.example.org')
    assert _http.proxy_for('https', 'market.example.org') is None
    assert _http.proxy_for('https', 'market.example.net') == 'http://proxy.lan:3128'
    assert _http.proxy_for('http', 'market.example.net') is None   # http_proxy is not set


def test_proxy_credentials_become_a_basic_header():
    proxy = _http.Proxy('http://us%40er:p%3Ass@proxy.lan')
    assert (proxy.host, proxy.port) == ('proxy.lan', 8080)
    assert proxy.headers['Proxy-Authorization'] == 'Basic ' + base64.b64encode(b'us@er:p:ss').decode()
    assert _http.Proxy('proxy.lan:3128').port == 3128


def test_a_proxy_that_is_not_http_is_refused_clearly():
    with pytest.raises(_http.TransportError) as exc:
        _http.Proxy('socks5://proxy.lan:1080')
    assert exc.value.kind == _http.CONNECT and 'http:// proxy is needed' in exc.value.reason


def test_certificate_bundle_from_the_environment(monkeypatch):
    for name in ('SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'):
        monkeypatch.delenv(name, raising=False)
    assert _http.ca_bundle() is None
    monkeypatch.setenv('CURL_CA_BUNDLE', '/c')
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/r')
    assert _http.ca_bundle() == '/r'
    monkeypatch.setenv('SSL_CERT_FILE', '/s')
    assert _http.ca_bundle() == '/s'


def test_tls_contexts():
    unchecked = _http.tls_context(False)
    assert unchecked.verify_mode == ssl.CERT_NONE and unchecked.check_hostname is False
    checked = _http.tls_context(True)
    assert checked.verify_mode == ssl.CERT_REQUIRED and checked.check_hostname is True


def test_a_missing_certificate_bundle_is_an_error_when_the_client_is_made(monkeypatch, tmp_path):
    monkeypatch.setenv('SSL_CERT_FILE', str(tmp_path / 'missing.pem'))
    with pytest.raises(OSError):
        _http.Connection('https://market.example.org')
    _http.Connection('http://market.example.org')   # plain http reads no bundle
