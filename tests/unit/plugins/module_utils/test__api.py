# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure pieces of the marketplace client (no network; see tests/integration/test_api_client.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _api as api

TOKEN = 'tok-Zq81_secret-value'


class FakeResponse:
    def __init__(self, status=503, headers=None):
        self.status = status
        self.headers = headers or {}

    def get_redirect_location(self):
        return False

    def getheader(self, name, default=None):     # urllib3 1.26
        return self.headers.get(name, default)


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


def make_retry(deadline, retries=3, backoff=0.5, max_retry_after=10.0):
    retry = api._DeadlineRetry(total=retries, connect=retries, read=False, status=retries, other=0,
                               redirect=0, raise_on_status=False, status_forcelist=(502, 503, 504),
                               allowed_methods=None, backoff_factor=backoff)
    retry.deadline = deadline
    retry.max_retry_after = max_retry_after
    return retry


@pytest.mark.parametrize('header, expected', [
    ('9999', 10.0),
    ('3', 3.0),
    ('0', None),
    ('soon', None),
    ('Wed, 21 Oct 2015 07:28:00 GMT', None),
])
def test_retry_after_is_capped(header, expected):
    retry = make_retry(time.monotonic() + 60)
    value = retry.get_retry_after(FakeResponse(headers={'Retry-After': header}))
    assert (value or None) == expected
    assert retry.wait_time(FakeResponse(headers={'Retry-After': header})) == (expected or 0)


def test_retry_keeps_settings_and_caps_backoff():
    retry = make_retry(time.monotonic() + 1000, retries=10, backoff=100)
    for dummy in range(4):
        retry = retry.increment('GET', '/x', error=_connect_error())
    assert retry.deadline is not None and retry.max_retry_after == 10.0
    assert retry.get_backoff_time() == api.MAX_BACKOFF


def _connect_error():
    from urllib3.exceptions import NewConnectionError
    return NewConnectionError(None, 'refused')


def test_retry_gives_up_when_the_wait_does_not_fit():
    retry = make_retry(time.monotonic() + 3)
    response = FakeResponse(headers={'Retry-After': '5', 'Content-Length': '2'})
    with pytest.raises(api.MaxRetryError):
        retry.increment('POST', '/x', response=response)
    # a wait that fits is fine
    short = FakeResponse(headers={'Retry-After': '1', 'Content-Length': '2'})
    assert make_retry(time.monotonic() + 3).increment('POST', '/x', response=short).status == 2


@pytest.mark.parametrize('headers', [{}, {'Content-Length': str(api.MAX_BODY + 1)}, {'Content-Length': 'x'}])
def test_retry_does_not_drain_unbounded_bodies(headers):
    with pytest.raises(api.MaxRetryError):
        make_retry(time.monotonic() + 60).increment('GET', '/x', response=FakeResponse(headers=headers))


def test_retry_gives_up_on_errors_after_the_deadline():
    with pytest.raises(api.MaxRetryError):
        make_retry(time.monotonic() - 1).increment('GET', '/x', error=_connect_error())


def test_retry_sleep_never_passes_the_deadline():
    retry = make_retry(time.monotonic() + 0.2, max_retry_after=10)
    start = time.monotonic()
    retry.sleep(FakeResponse(headers={'Retry-After': '10'}))
    assert time.monotonic() - start < 1


def test_deadline_timeout():
    deadline = time.monotonic() + 2
    timeout = api._DeadlineTimeout(deadline, connect=30, read=30)
    clone = timeout.clone()
    assert isinstance(clone, api._DeadlineTimeout) and clone.deadline == deadline
    assert 0 < clone.connect_timeout <= 2 and 0 < clone.read_timeout <= 2
    assert api._DeadlineTimeout(time.monotonic() + 100, connect=5, read=7).read_timeout == 7
    assert api._DeadlineTimeout(time.monotonic() - 5, connect=5, read=7).connect_timeout == 0.01


def test_client_never_shows_the_token():
    client = api.MarketplaceClient('https://market.example.org/', TOKEN)
    assert TOKEN not in repr(client)
    assert TOKEN not in repr(client._session.auth)
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
    assert device.client._session.verify is False


def test_client_from_module_token_file_wins(tmp_path):
    path = tmp_path / 'token'
    path.write_text('\n  %s  \n' % TOKEN)
    os.chmod(path, 0o600)
    module = FakeModule(device_token='env-token-ignored', device_token_file=str(path))
    device = api.client_from_module(module)
    assert device.client._session.auth._token == TOKEN
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


def test_missing_requests_is_reported_with_missing_required_lib(tmp_path):
    """Without requests the file still imports, and modules fail with missing_required_lib."""
    script = r'''
import sys
sys.modules['requests'] = None
from ansible_collections.p2pvps.fleet.plugins.module_utils import _api
assert _api.HAS_REQUESTS is False
assert 'requests' in _api.REQUESTS_IMPORT_ERROR
class M:
    params = {}
    def fail_json(self, msg, **kw):
        print('FAILED', msg, 'exception' in kw)
        raise SystemExit(0)
_api.client_from_module(M())
'''
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'FAILED' in proc.stdout and 'Failed to import the required Python library (requests)' in proc.stdout
    assert 'True' in proc.stdout


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
    assert client._session.auth._token == TOKEN


def test_gateway_client_from_module_token_file_wins(tmp_path):
    path = tmp_path / 'gateway_token'
    path.write_text('%s\n' % TOKEN)
    os.chmod(path, 0o644)
    module = FakeGatewayModule(gateway_token='ignored', gateway_token_file=str(path))
    client = api.gateway_client_from_module(module)
    assert client._session.auth._token == TOKEN and TOKEN in module.no_log_values
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
