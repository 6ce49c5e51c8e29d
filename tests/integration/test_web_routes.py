"""The `web_routes` module (through `ansible`) against the real reference server with web hosting on.

Loopback only: the module writes a routes file in the test's directory and "reloads" with a
command that records each call, so no Caddy is needed here (molecule/web_gateway runs the
real one).
"""
from __future__ import annotations

import json
import sys

import pytest

from tests.fixtures.common import ansible_env, run_ansible

DOMAIN = 'web.test'


def run_web_routes(args, check_mode=False, diff=False, env=None):
    """Run the module once through `ansible`; returns its result dict (plus `_stdout`)."""
    cmd = ['ansible', 'localhost', '-i', 'localhost,', '-c', 'local', '-m', 'p2pvps.fleet.web_routes',
           '-a', json.dumps(args), '-e', 'ansible_python_interpreter=%s' % sys.executable]
    if check_mode:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    proc = run_ansible(cmd, env=ansible_env(ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
                                            **(env or {})), check=False, timeout=120)
    try:
        result = json.loads(proc.stdout)['plays'][0]['tasks'][0]['hosts']['localhost']
    except (ValueError, KeyError, IndexError):
        raise AssertionError('unexpected ansible output (%d):\n%s\n%s' % (
            proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
    result['_stdout'] = proc.stdout + proc.stderr
    return result


class Gateway:
    """A routes file, a token file and a recording reload command in a test directory."""

    def __init__(self, tmp_path, marketplace, token=None):
        self.routes_file = tmp_path / 'p2pvps-routes.caddy'
        self.reloads_file = tmp_path / 'reloads'
        self.token_file = tmp_path / 'gateway_token'
        self.token_file.write_text((token or marketplace.gateway_token) + '\n')
        self.token_file.chmod(0o600)
        self.marketplace = marketplace

    def args(self, **extra):
        args = {'marketplace_url': self.marketplace.url, 'gateway_token_file': str(self.token_file),
                'web_domain': DOMAIN, 'routes_file': str(self.routes_file), 'timeout': 5,
                'reload_command': ['sh', '-c', 'echo reload >> "$0"', str(self.reloads_file)]}
        args.update(extra)
        return args

    def run(self, check_mode=False, diff=False, **extra):
        return run_web_routes(self.args(**extra), check_mode=check_mode, diff=diff)

    @property
    def reloads(self):
        return len(self.reloads_file.read_text().splitlines()) if self.reloads_file.exists() else 0

    @property
    def text(self):
        return self.routes_file.read_text() if self.routes_file.exists() else None

    def hostnames_in_file(self):
        return sorted(line.split()[0][len('http://'):-1] for line in (self.text or '').splitlines()
                      if line.startswith('http://'))


def lease_with_site(marketplace, renter):
    """(rental, web port of its device) for a new online device rented by `renter`."""
    device_id, token = marketplace.online_device()
    web_port = marketplace.register_device(device_id, token)['tunnel']['web_remote_port']
    rental = marketplace.create_rental(device_id, renter=renter)
    assert rental['web']['hostname'].endswith('.' + DOMAIN), rental['web']
    return rental, web_port


@pytest.fixture
def web_marketplace(marketplace_factory):
    return marketplace_factory(web_domain=DOMAIN)


def test_routes_written_check_mode_idempotent_and_ended_rental_removed(web_marketplace, tmp_path):
    gateway = Gateway(tmp_path, web_marketplace)
    alice, alice_port = lease_with_site(web_marketplace, 'alice')
    bob, bob_port = lease_with_site(web_marketplace, 'bob')
    expected = {alice['web']['hostname']: alice_port, bob['web']['hostname']: bob_port}

    check = gateway.run(check_mode=True, diff=True)
    assert check['changed'] is True and not check.get('failed'), check
    assert 'would change' in check['msg']
    assert gateway.text is None and gateway.reloads == 0
    assert check['diff']['before'] == {} and check['diff']['after'] == expected

    first = gateway.run(page_size=1)
    assert first['changed'] is True and first['reloaded'] is True and first['api_error'] is None, first
    assert {r['hostname']: r['port'] for r in first['routes']} == expected
    assert {r['lease_id'] for r in first['routes']} == {alice['id'], bob['id']}
    assert first['skipped_count'] == 0 and first['skipped_entries'] == []
    assert gateway.hostnames_in_file() == sorted(expected) and gateway.reloads == 1
    assert '\timport p2pvps_route %d\n' % alice_port in gateway.text
    assert oct(gateway.routes_file.stat().st_mode & 0o777) == '0o644'

    second = gateway.run()
    assert second['changed'] is False and second['reloaded'] is False, second
    assert gateway.reloads == 1

    web_marketplace.end_rental(alice['id'])
    check_end = gateway.run(check_mode=True, diff=True)
    assert check_end['changed'] is True and check_end['diff']['before'] == expected
    assert check_end['diff']['after'] == {bob['web']['hostname']: bob_port}
    assert gateway.hostnames_in_file() == sorted(expected) and gateway.reloads == 1

    ended = gateway.run()
    assert ended['changed'] is True and ended['reloaded'] is True
    assert gateway.hostnames_in_file() == [bob['web']['hostname']] and gateway.reloads == 2

    for result in (check, first, second, check_end, ended):
        assert web_marketplace.gateway_token not in result['_stdout']
        assert web_marketplace.operator_token not in result['_stdout']


def test_no_routes_is_a_valid_answer_that_removes_every_route(web_marketplace, tmp_path):
    gateway = Gateway(tmp_path, web_marketplace)
    rental, dummy = lease_with_site(web_marketplace, 'carol')
    assert gateway.run()['changed'] is True and len(gateway.hostnames_in_file()) == 1
    web_marketplace.end_rental(rental['id'])
    emptied = gateway.run()
    assert emptied['changed'] is True and emptied['routes'] == []
    assert gateway.hostnames_in_file() == [] and gateway.text.startswith('# Managed by p2pvps.fleet.web_routes')


def test_marketplace_down_keeps_the_routes_file(web_marketplace, tmp_path):
    gateway = Gateway(tmp_path, web_marketplace)
    lease_with_site(web_marketplace, 'dave')
    assert gateway.run()['changed'] is True
    before = gateway.text
    web_marketplace.stop()

    down = gateway.run(timeout=3)
    assert not down.get('failed') and down['changed'] is False, down
    assert 'cannot connect' in down['api_error'] and down['routes'] is None
    assert any('kept as it is' in warning for warning in down.get('warnings', []))
    assert gateway.text == before and gateway.reloads == 1

    strict = gateway.run(timeout=3, fail_on_api_error=True)
    assert strict.get('failed') is True and 'cannot connect' in strict['msg']
    assert gateway.text == before and gateway.reloads == 1


def test_device_token_is_refused_and_the_routes_file_kept(web_marketplace, tmp_path):
    gateway = Gateway(tmp_path, web_marketplace)
    lease_with_site(web_marketplace, 'erin')
    assert gateway.run()['changed'] is True
    before = gateway.text
    device_id, device_token = web_marketplace.online_device()
    refused = run_web_routes(gateway.args(gateway_token_file=None, gateway_token=device_token))
    assert not refused.get('failed') and refused['changed'] is False, refused
    assert 'HTTP 403' in refused['api_error'] and refused['routes'] is None
    assert gateway.text == before and gateway.reloads == 1
    assert device_token not in refused['_stdout']


def test_token_from_the_environment(web_marketplace, tmp_path):
    gateway = Gateway(tmp_path, web_marketplace)
    lease_with_site(web_marketplace, 'frank')
    args = gateway.args(gateway_token_file=None)
    result = run_web_routes(args, env={'P2PVPS_GATEWAY_TOKEN': web_marketplace.gateway_token})
    assert result['changed'] is True and result['api_error'] is None, result
    assert web_marketplace.gateway_token not in result['_stdout']


def test_failed_reload_puts_the_previous_file_back(web_marketplace, tmp_path):
    gateway = Gateway(tmp_path, web_marketplace)
    lease_with_site(web_marketplace, 'grace')
    assert gateway.run()['changed'] is True
    before = gateway.text
    lease_with_site(web_marketplace, 'heidi')

    failed = gateway.run(reload_command=['sh', '-c', 'echo "caddy: invalid config" >&2; exit 3'])
    assert failed.get('failed') is True, failed
    assert 'reload of the web gateway failed' in failed['msg'] and 'rc 3' in failed['msg']
    assert 'caddy: invalid config' in failed['msg'] and 'put back' in failed['msg']
    assert gateway.text == before

    fixed = gateway.run()
    assert fixed['changed'] is True and len(gateway.hostnames_in_file()) == 2


def test_first_run_with_a_failing_reload_leaves_no_file(web_marketplace, tmp_path):
    gateway = Gateway(tmp_path, web_marketplace)
    lease_with_site(web_marketplace, 'ivan')
    failed = gateway.run(reload_command=['false'])
    assert failed.get('failed') is True and gateway.text is None


def test_bad_options_fail_before_any_call(web_marketplace, tmp_path):
    gateway = Gateway(tmp_path, web_marketplace)
    for extra, words in (({'web_domain': 'Web.Test'}, 'lower-case DNS name'),
                         ({'web_port_min': 31000, 'web_port_max': 30000}, 'web_port_min'),
                         ({'page_size': 0}, 'page_size'),
                         ({'route_snippet': 'a b'}, 'route_snippet')):
        result = gateway.run(**extra)
        assert result.get('failed') is True and words in result['msg'], (extra, result['msg'])
    assert gateway.text is None
