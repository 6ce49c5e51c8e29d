# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure pieces of the marketplace client (no network; see tests/integration/test_api_client.py)."""
from __future__ import annotations

import email.utils
import json
import os
import subprocess
import sys
import ssl
import time

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _api as api
from ansible_collections.p2pvps.fleet.plugins.module_utils import _http

TOKEN = 'tok-Zq81_secret-value'


@pytest.mark.parametrize('url, shown', [
    ('https://market.example.org/api', 'https://market.example.org/api'),
    ('https://user:pw@market.example.org:8443/x?token=abc#frag', 'https://market.example.org:8443/x'),
    ('http://127.0.0.1:8080/api/v1/devices?cursor=zzz', 'http://127.0.0.1:8080/api/v1/devices'),
    ('http://[::1]:80/p', 'http://[::1]:80/p'),
])
def test_display_url(url, shown):
    assert api.display_url(url) == shown


@pytest.mark.parametrize('url, norm', [
    ('https://market.example.org/', 'https://market.example.org'),
    (' http://127.0.0.1:8080 ', 'http://127.0.0.1:8080'),
    ('https://example.org/prefix/', 'https://example.org/prefix'),
])
def test_normalize_base_url(url, norm):
    assert api.normalize_base_url(url) == norm


@pytest.mark.parametrize('url, words', [
    ('', 'empty'),
    (None, 'empty'),
    ('ftp://example.org', 'https://'),
    ('example.org', 'https://'),
    ('https://', 'no host'),
    ('https://u:p@example.org', 'credentials'),
    ('https://example.org/?x=1', 'query'),
    ('https://example.org:99999', 'not a valid URL'),
])
def test_normalize_base_url_rejects(url, words):
    with pytest.raises(ValueError) as exc:
        api.normalize_base_url(url)
    assert words in str(exc.value)
    assert 'p@' not in str(exc.value)


def test_truncate_and_scrub():
    assert api.truncate('a\nb\x00c') == 'a b c'
    long = api.truncate('x' * 1000, 50)
    assert len(long) == 50 and long.endswith('...')
    assert api.scrub('Bearer %s here %s' % (TOKEN, TOKEN), [TOKEN, None, '']) == 'Bearer ******** here ********'


@pytest.mark.parametrize('value, encoded', [
    ('abc-123', 'abc-123'),
    ('../x', '..%2Fx'),
    ('a b?c#d', 'a%20b%3Fc%23d'),
])
def test_path_segment(value, encoded):
    assert api.path_segment(value) == encoded


@pytest.mark.parametrize('value', ['', '.', '..', None, 5, 'x' * 201])
def test_path_segment_rejects(value):
    with pytest.raises(ValueError):
        api.path_segment(value)


def test_parse_json_strict():
    assert api.parse_json(b'{"a": [1, 2.5, null]}') == {'a': [1, 2.5, None]}
    for bad in (b'{"a": NaN}', b'[Infinity]', b'-Infinity', b'<html>', b'\xff\xfe', b''):
        with pytest.raises(ValueError):
            api.parse_json(bad)


@pytest.mark.parametrize('body, code, detail', [
    (b'{"error": "unauthorized", "detail": "bad token"}', 'unauthorized', 'bad token'),
    (b'{"error": "invalid", "detail": [{"loc": ["body"], "msg": "x"}]}', 'invalid', '[{"loc":["body"],"msg":"x"}]'),
    (b'{"detail": "Not Found"}', None, 'Not Found'),
    (b'<html>Bad Gateway</html>', None, '<html>Bad Gateway</html>'),
    (b'', None, None),
    (b'[1,2]', None, '[1,2]'),
    (b'{"error": "e", "detail": "' + b'y' * 5000 + b'"}', 'e', 'y' * (api.MAX_DETAIL - 3) + '...'),
    (b'{"error": "e\\nx", "detail": "line1\\nline2"}', 'e x', 'line1 line2'),
])
def test_error_fields(body, code, detail):
    assert api.error_fields(body) == (code, detail)


def test_check_object_and_describe():
    assert api.check_object({'a': 1, 'b': 2}, ('a',), 'thing') is None
    assert api.check_object([], ('a',), 'thing') == 'expected a JSON object (thing), got a list'
    assert api.check_object({'a': 1}, ('a', 'b', 'c'), 'thing') == 'thing has no "b", "c"'
    assert [api.describe_json(v) for v in (None, True, 1, 'x', {}, 1.5)] == [
        'null', 'a boolean', 'a number', 'a string', 'an object', 'a number']


def test_retry_statuses():
    assert api.retry_statuses(True) == (502, 503, 504)
    assert api.retry_statuses(False) == (503,)


def make_client(retries=3, backoff=0.5, max_retry_after=10.0):
    return api.MarketplaceClient('http://127.0.0.1:9', TOKEN, retries=retries, backoff=backoff,
                                 max_retry_after=max_retry_after)


def _connect_error():
    """What the transport raises when nothing listens."""
    return _http.TransportError(_http.CONNECT, '[Errno 111] Connection refused (ConnectionRefusedError)')


@pytest.mark.parametrize('header, expected', [
    ('9999', 10.0),
    ('3', 3.0),
    ('0', None),
    ('soon', None),
    ('Wed, 21 Oct 2015 07:28:00 GMT', None),
    ('Wed, 21 Oct 99999999 07:28:00 GMT', None),
    ('', None),
    (None, None),
])
def test_retry_after_is_capped(header, expected):
    assert api.retry_after_seconds(header, 10.0) == expected
    # no usable Retry-After: the backoff, which is none before the first retry (as urllib3's)
    assert make_client()._wait_after_answer(503, {'Retry-After': header}, 1, True) == (expected or 0)


def test_retry_after_as_a_date():
    header = email.utils.formatdate(time.time() + 4, usegmt=True)
    assert 2 < api.retry_after_seconds(header, 10.0) <= 4
    assert api.retry_after_seconds(header, 1.5) == 1.5


def test_backoff_grows_and_is_capped():
    assert [api.backoff_seconds(0.5, retry) for retry in (1, 2, 3, 4)] == [0.0, 1.0, 2.0, 4.0]
    assert api.backoff_seconds(100, 4) == api.MAX_BACKOFF
    client = make_client(retries=10, backoff=100)
    assert client._wait_after_error(_connect_error(), 5, False) == api.MAX_BACKOFF
    assert client._wait_after_answer(502, {}, 5, True) == api.MAX_BACKOFF


def test_only_connection_errors_and_busy_statuses_are_retried():
    client = make_client()
    assert api.is_connect_error(_connect_error())
    for sent in (_http.TransportError(_http.TIMEOUT, 'timed out'), _http.TransportError(_http.TLS, 'bad certificate'),
                 _http.TransportError(_http.PROTOCOL, 'BadStatusLine')):
        assert not api.is_connect_error(sent) and not api.is_dropped_before_answer(sent)
        assert client._wait_after_error(sent, 1, True) is None and client._wait_after_error(sent, 1, False) is None


def test_a_connection_dropped_before_the_answer_is_retried_only_when_idempotent():
    dropped = _http.TransportError(_http.DROPPED, 'Remote end closed connection without response')
    assert api.is_dropped_before_answer(dropped) and not api.is_connect_error(dropped)
    client = make_client()
    assert client._wait_after_error(dropped, 1, True) == 0.0
    assert client._wait_after_error(dropped, 1, False) is None
    for status in (200, 301, 404, 500):
        assert client._wait_after_answer(status, {}, 1, True) is None
    assert client._wait_after_answer(502, {}, 1, False) is None       # may come after the work was done
    assert client._wait_after_answer(503, {'Retry-After': '2'}, 1, False) == 2.0


def test_retry_gives_up_when_the_wait_does_not_fit():
    client = make_client()
    deadline = time.monotonic() + 3
    wait = client._wait_after_answer(503, {'Retry-After': '5', 'Content-Length': '2'}, 1, False)
    assert wait == 5.0 and not client._retry_fits(wait, 1, deadline)
    # a wait that fits is fine
    short = client._wait_after_answer(503, {'Retry-After': '1', 'Content-Length': '2'}, 1, False)
    assert short == 1.0 and client._retry_fits(short, 1, deadline)


def test_retry_gives_up_when_the_retries_are_used_up():
    client = make_client(retries=2)
    far = time.monotonic() + 60
    assert client._retry_fits(0.0, 2, far) and not client._retry_fits(0.0, 3, far)
    assert not make_client(retries=0)._retry_fits(0.0, 1, far)
    assert not client._retry_fits(None, 1, far)


def test_retry_gives_up_on_errors_after_the_deadline():
    client = make_client()
    wait = client._wait_after_error(_connect_error(), 1, False)
    assert wait == 0.0 and client._retry_fits(wait, 1, time.monotonic() + 60)
    assert not client._retry_fits(wait, 1, time.monotonic() - 1)


def test_retry_wait_never_passes_the_deadline():
    client = make_client(max_retry_after=10)
    wait = client._wait_after_answer(503, {'Retry-After': '10'}, 1, True)
    assert wait == 10.0 and not client._retry_fits(wait, 1, time.monotonic() + 0.2)


def test_time_left():
    assert 0 < api.time_left(time.monotonic() + 2) <= 2
    assert api.time_left(time.monotonic() - 5) == 0.01


def test_finish_before():
    assert api.finish_before(time.monotonic() + 5, lambda a, b: a + b, 1, 2) == 3
    with pytest.raises(KeyError):
        api.finish_before(time.monotonic() + 5, {}.__getitem__, 'missing')
    start = time.monotonic()
    with pytest.raises(api._DeadlinePassed):
        api.finish_before(time.monotonic() + 0.3, time.sleep, 5)
    assert 0.25 < time.monotonic() - start < 1
    with pytest.raises(api._DeadlinePassed):
        api.finish_before(time.monotonic() - 1, time.sleep, 5)


def test_client_never_shows_the_token():
    client = api.MarketplaceClient('https://market.example.org/', TOKEN)
    assert TOKEN not in repr(client)
    assert TOKEN not in repr(vars(client._connection)) and TOKEN not in repr(client._headers)
    assert client.base_url == 'https://market.example.org'
    assert TOKEN not in repr(api.DeviceClient(client, 'dev-1'))
    client.close()


@pytest.mark.parametrize('token', ['', 'has space', 'line\nbreak', 'tök', None, 'x' * 5000, 'Bearer\r\nX-Evil: 1'])
def test_client_rejects_bad_tokens_without_quoting_them(token):
    with pytest.raises(api.MarketplaceError) as exc:
        api.MarketplaceClient('https://market.example.org', token)
    if token:
        assert token not in str(exc.value)


@pytest.mark.parametrize('kwargs, words', [
    ({'timeout': 0}, 'timeout'),
    ({'timeout': 'x'}, 'timeout'),
    ({'timeout': float('nan')}, 'timeout'),
    ({'retries': -1}, 'retries'),
    ({'retries': True}, 'retries'),
])
def test_client_rejects_bad_settings(kwargs, words):
    with pytest.raises(api.MarketplaceError) as exc:
        api.MarketplaceClient('https://market.example.org', TOKEN, **kwargs)
    assert words in str(exc.value)


def test_client_rejects_urls_with_credentials():
    with pytest.raises(api.MarketplaceError) as exc:
        api.MarketplaceClient('https://admin:hunter2@market.example.org', TOKEN)
    assert 'hunter2' not in str(exc.value)


def test_bad_ids_never_reach_the_network():
    client = api.MarketplaceClient('http://127.0.0.1:9', TOKEN)
    for call in (lambda: client.get_device('..'), lambda: client.checkin('', {}),
                 lambda: client.end_rental('.'), lambda: client.list_devices(limit=0),
                 lambda: client.list_devices(limit=501)):
        with pytest.raises(api.MarketplaceError) as exc:
            call()
        assert not isinstance(exc.value, api.MarketplaceUnreachable)


def test_error_classes():
    exc = api.MarketplaceRejected('m', method='GET', url='u', status=404, error='not_found', detail='d')
    assert isinstance(exc, api.MarketplaceError) and str(exc) == 'm'
    assert (exc.status, exc.error, exc.detail, exc.method, exc.url) == (404, 'not_found', 'd', 'GET', 'u')
    for cls in (api.MarketplaceUnreachable, api.MarketplaceMalformed):
        assert issubclass(cls, api.MarketplaceError)


def test_common_args():
    spec = api.MARKETPLACE_COMMON_ARGS
    assert spec['device_token']['no_log'] is True
    assert spec['marketplace_url']['fallback'][1] == ['P2PVPS_MARKETPLACE_URL']
    assert spec['device_id']['fallback'][1] == ['P2PVPS_DEVICE_ID']
    assert spec['device_token']['fallback'][1] == ['P2PVPS_DEVICE_TOKEN']
    assert spec['validate_certs']['default'] is True and spec['timeout']['default'] == 30
    assert spec['device_token_file']['type'] == 'path'


# ---------------------------------------------------------------- client_from_module

class Failed(Exception):
    pass


class FakeModule:
    def __init__(self, **params):
        self.params = dict(marketplace_url='https://market.example.org', device_id='dev-1', device_token=None,
                           device_token_file=None, validate_certs=True, timeout=30)
        self.params.update(params)
        self.no_log_values = set()
        self.warnings = []

    def fail_json(self, msg, **kwargs):
        raise Failed(msg)

    def warn(self, text):
        self.warnings.append(text)


def test_client_from_module_with_token():
    device = api.client_from_module(FakeModule(device_token=TOKEN, timeout=7, validate_certs=False))
    assert isinstance(device, api.DeviceClient) and device.device_id == 'dev-1'
    assert device.client.timeout == 7 and device.client.validate_certs is False
    context = device.client._connection._context
    assert context.verify_mode == ssl.CERT_NONE and context.check_hostname is False


def test_client_from_module_token_file_wins(tmp_path):
    path = tmp_path / 'token'
    path.write_text('\n  %s  \n' % TOKEN)
    os.chmod(path, 0o600)
    module = FakeModule(device_token='env-token-ignored', device_token_file=str(path))
    device = api.client_from_module(module)
    assert device.client._token == TOKEN
    assert TOKEN in module.no_log_values
    assert module.warnings == []
    os.chmod(path, 0o644)
    api.client_from_module(module)
    assert 'every user' in module.warnings[0] and TOKEN not in module.warnings[0]


@pytest.mark.parametrize('content, words', [
    (None, 'No such file'),
    ('', 'empty'),
    ('   \n', 'empty'),
    (b'\xff\xfe\x00', 'not text'),
    ('x' * 9000, 'too big'),
    ('bad token\n', 'cannot be sent'),
])
def test_client_from_module_token_file_problems(tmp_path, content, words):
    path = tmp_path / 'token'
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(Failed) as exc:
        api.client_from_module(FakeModule(device_token_file=str(path)))
    assert words in str(exc.value)
    if content and isinstance(content, str) and content.strip():
        assert content.strip() not in str(exc.value)


def test_client_from_module_token_file_is_a_directory(tmp_path):
    with pytest.raises(Failed) as exc:
        api.client_from_module(FakeModule(device_token_file=str(tmp_path)))
    assert 'not a regular file' in str(exc.value)


@pytest.mark.parametrize('params, words', [
    ({'device_token': TOKEN, 'marketplace_url': None}, 'P2PVPS_MARKETPLACE_URL'),
    ({'device_token': TOKEN, 'device_id': ''}, 'P2PVPS_DEVICE_ID'),
    ({}, 'device token is required'),
    ({'device_token': TOKEN, 'marketplace_url': 'https://u:%s@h' % TOKEN}, 'credentials'),
    ({'device_token': TOKEN, 'timeout': 0}, 'timeout'),
])
def test_client_from_module_fails_clearly(params, words):
    with pytest.raises(Failed) as exc:
        api.client_from_module(FakeModule(**params))
    assert words in str(exc.value)
    assert TOKEN not in str(exc.value)


def test_the_client_does_not_import_requests(tmp_path):
    """The device agent imports the client at every run: requests is neither needed nor loaded."""
    script = r'''
import sys
sys.modules['requests'] = None
sys.modules['urllib3'] = None
from ansible_collections.p2pvps.fleet.plugins.module_utils import _api
client = _api.MarketplaceClient('https://market.example.org', 'tok')
assert 'urllib.request' not in sys.modules, 'urllib.request is loaded only when a proxy is configured'
print('OK')
'''
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith('_proxy')}
    env['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0 and 'OK' in proc.stdout, proc.stderr


# ---------------------------------------------------------------- gateway_client_from_module

class FakeGatewayModule(FakeModule):
    def __init__(self, **params):
        super().__init__()
        self.params = dict(marketplace_url='https://market.example.org', gateway_token=None,
                           gateway_token_file=None, validate_certs=True, timeout=30)
        self.params.update(params)


def test_gateway_args():
    spec = api.MARKETPLACE_GATEWAY_ARGS
    assert spec['gateway_token']['no_log'] is True
    assert spec['gateway_token']['fallback'][1] == ['P2PVPS_GATEWAY_TOKEN']
    assert spec['marketplace_url']['fallback'][1] == ['P2PVPS_MARKETPLACE_URL']
    assert spec['gateway_token_file']['type'] == 'path'
    assert 'device_id' not in spec and 'device_token' not in spec


def test_gateway_client_from_module_with_token():
    client = api.gateway_client_from_module(FakeGatewayModule(gateway_token=TOKEN, timeout=9))
    assert isinstance(client, api.MarketplaceClient) and client.timeout == 9
    assert client._token == TOKEN


def test_gateway_client_from_module_token_file_wins(tmp_path):
    path = tmp_path / 'gateway_token'
    path.write_text('%s\n' % TOKEN)
    os.chmod(path, 0o644)
    module = FakeGatewayModule(gateway_token='ignored', gateway_token_file=str(path))
    client = api.gateway_client_from_module(module)
    assert client._token == TOKEN and TOKEN in module.no_log_values
    assert 'gateway token file' in module.warnings[0] and TOKEN not in module.warnings[0]


@pytest.mark.parametrize('params, words', [
    ({}, 'gateway token is required'),
    ({'gateway_token': TOKEN, 'marketplace_url': None}, 'P2PVPS_MARKETPLACE_URL'),
    ({'gateway_token_file': '/nonexistent/gateway_token'}, 'cannot read the gateway token file'),
    ({'gateway_token': 'two words'}, 'cannot be sent'),
])
def test_gateway_client_from_module_fails_clearly(params, words):
    with pytest.raises(Failed) as exc:
        api.gateway_client_from_module(FakeGatewayModule(**params))
    assert words in str(exc.value) and TOKEN not in str(exc.value)


def test_read_token_file_names_the_token(tmp_path):
    with pytest.raises(ValueError) as exc:
        api.read_token_file(str(tmp_path / 'none'))
    assert 'cannot read the device token file' in str(exc.value)
    (tmp_path / 'empty').write_text('')
    with pytest.raises(ValueError) as exc:
        api.read_token_file(str(tmp_path / 'empty'), 'gateway token')
    assert 'the gateway token file' in str(exc.value) and 'empty' in str(exc.value)


def test_route_page_size_is_checked_before_any_call():
    client = api.MarketplaceClient('http://127.0.0.1:9', TOKEN)
    for limit in (0, 1001, True, '10'):
        with pytest.raises(api.MarketplaceError) as exc:
            client.list_routes(limit=limit)
        assert '1 to 1000' in str(exc.value)


class _Recorder:
    """Stands in for the client's exchange: records what one call would send."""

    def __init__(self, body=b'{"lease": null}'):
        self.calls = []
        self.body = body

    def __call__(self, method, url, params, data, deadline, idempotent):
        self.calls.append({'params': params, 'body': json.loads(data), 'left': deadline - time.monotonic()})
        return 200, {}, self.body, 1


def test_long_poll_checkin_sends_wait_and_etag_and_extends_the_deadline(monkeypatch):
    client = make_client()
    recorder = _Recorder()
    monkeypatch.setattr(client, '_exchange', recorder)
    client.checkin('d1', {'container': 'absent'}, lease_etag='0f3c', wait_s=90)
    call = recorder.calls[0]
    assert call['params'] == {'wait': '90'}
    assert call['body'] == {'observed': {'container': 'absent'}, 'lease_etag': '0f3c'}
    assert 90 + client.timeout - 1 < call['left'] <= 90 + client.timeout


@pytest.mark.parametrize('etag, wait_s', [(None, 90), ('0f3c', 0), (None, 0)])
def test_checkin_without_etag_or_wait_is_a_plain_checkin(monkeypatch, etag, wait_s):
    client = make_client()
    recorder = _Recorder()
    monkeypatch.setattr(client, '_exchange', recorder)
    client.checkin('d1', {}, lease_etag=etag, wait_s=wait_s)
    call = recorder.calls[0]
    assert call['params'] is None and call['body'] == {'observed': {}}
    assert client.timeout - 1 < call['left'] <= client.timeout


def test_a_long_poll_connects_within_the_plain_timeout(monkeypatch):
    client = make_client()
    seen = {}

    class Answer:
        status = 200
        headers = {}
        will_close = False
        chunks = [b'{"lease": null}', b'']

        def read(self, size):
            return self.chunks.pop(0)

        def isclosed(self):
            return not self.chunks

    def request(method, target, body, headers, connect_timeout, read_timeout):
        seen.update(target=target, timeout=(connect_timeout, read_timeout))
        return Answer()

    monkeypatch.setattr(client._connection, 'request', request)
    client.checkin('d1', {}, lease_etag='0f3c', wait_s=100)
    assert seen['target'] == '/api/v1/devices/d1/checkin?wait=100'
    connect, read = seen['timeout']
    assert connect <= client.timeout and 100 + client.timeout - 1 < read <= 100 + client.timeout


class Exited(Exception):
    pass


class FakeGatewayListModule(FakeGatewayModule):
    def __init__(self, **params):
        super().__init__(web_port_min=30000, web_port_max=30999, page_size=500, fail_on_api_error=False)
        self.params.update(params)
        self.check_mode = False
        self.failed_with = None

    def fail_json(self, msg, **kwargs):
        self.failed_with = dict(kwargs, msg=msg)
        raise Failed(msg)

    def exit_json(self, **kwargs):
        self.exited_with = kwargs
        raise Exited()


@pytest.mark.parametrize('params, words', [
    ({'web_port_min': 31000, 'web_port_max': 30000}, 'web_port_min and web_port_max'),
    ({'web_port_min': 0}, 'web_port_min and web_port_max'),
    ({'web_port_max': 65536}, 'web_port_min and web_port_max'),
    ({'page_size': 0}, 'page_size must be from 1 to 1000'),
    ({'page_size': 1001}, 'page_size must be from 1 to 1000'),
])
def test_check_gateway_params_refuses(params, words):
    with pytest.raises(Failed, match=words):
        api.check_gateway_params(FakeGatewayListModule(**params))


def test_check_gateway_params_accepts_the_edges():
    api.check_gateway_params(FakeGatewayListModule(web_port_min=1, web_port_max=65535, page_size=1000))
    assert {'web_port_min', 'web_port_max', 'page_size', 'fail_on_api_error'} <= set(api.MARKETPLACE_GATEWAY_ARGS)


def test_exit_on_api_error_warns_and_keeps_by_default():
    module = FakeGatewayListModule()
    with pytest.raises(Exited):
        api.exit_on_api_error(module, 'marketplace unreachable', {'changed': False, 'api_error': None},
                              ('routes not read', 'the file was kept'), lambda result, check: 'summary %s' % check)
    assert module.exited_with == {'changed': False, 'api_error': 'marketplace unreachable', 'msg': 'summary False'}
    assert module.warnings == ['routes not read (marketplace unreachable); the file was kept']


def test_exit_on_api_error_fails_when_asked():
    module = FakeGatewayListModule(fail_on_api_error=True)
    with pytest.raises(Failed, match='marketplace unreachable'):
        api.exit_on_api_error(module, 'marketplace unreachable', {'changed': False, 'api_error': None},
                              ('routes not read', 'the file was kept'), lambda result, check: '')
    assert module.failed_with['api_error'] == 'marketplace unreachable' and not module.warnings
