# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`p2pvps.fleet.device_register` run through `ansible` against the real reference server.

A recording TCP forwarder sits between the module and the server, so the tests can tell
exactly which API calls a run made (an unchanged run must make no register call).
"""
from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import sys

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils._api import MarketplaceClient, MarketplaceRejected
from tests.fixtures.common import ansible_env, run_ansible
from tests.fixtures.devices import DEVICE_DOCKER_IMAGE
from tests.fixtures.proxies import RecordingForwarder


def fake_key(seed=1, comment='pi@test'):
    blob = struct.pack('>I', 11) + b'ssh-ed25519' + struct.pack('>I', 32) + bytes([seed]) * 32
    return 'ssh-ed25519 %s %s' % (base64.b64encode(blob).decode(), comment)


@pytest.fixture
def device(marketplace):
    """(device id, device token, recording forwarder to the server, operator client)."""
    device_id, token = marketplace.create_device('pi-register-%s' % os.urandom(3).hex())
    port = int(re.search(r':(\d+)', marketplace.url.split('//', 1)[1]).group(1))
    forwarder = RecordingForwarder(port)
    operator = MarketplaceClient(marketplace.url, marketplace.operator_token, timeout=10)
    yield device_id, token, forwarder, operator
    forwarder.close()
    operator.close()


def run_module(args, check_mode=False, diff=False, verbose=False):
    """Run the module once through `ansible`; its result dict plus `_output` (stdout + stderr)."""
    cmd = ['ansible', 'localhost', '-i', 'localhost,', '-c', 'local', '-m', 'p2pvps.fleet.device_register',
           '-a', json.dumps(args), '-e', 'ansible_python_interpreter=%s' % sys.executable]
    if check_mode:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    if verbose:
        cmd.append('-vvv')
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1')
    for name in ('P2PVPS_MARKETPLACE_URL', 'P2PVPS_DEVICE_ID', 'P2PVPS_DEVICE_TOKEN'):
        env.pop(name, None)
    proc = run_ansible(cmd, env=env, check=False, timeout=120)
    try:
        start = proc.stdout.index('{')
        data = json.loads(proc.stdout[start:])
        result = data['plays'][0]['tasks'][0]['hosts']['localhost']
    except (ValueError, KeyError, IndexError):
        raise AssertionError('unexpected ansible output (%d):\n%s\n%s' % (
            proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
    result['_output'] = proc.stdout + proc.stderr
    return result


def base_args(device_id, url, **extra):
    args = {'marketplace_url': url, 'device_id': device_id, 'tunnel_public_key': fake_key(),
            'timeout': 10}
    args.update(extra)
    return args


def test_register_then_idempotent(device):
    device_id, token, forwarder, operator = device
    args = base_args(device_id, forwarder.url, device_token=token)

    first = run_module(args)
    assert first.get('failed') is not True, first
    assert first['changed'] is True
    assert forwarder.calls() == [('GET', '/api/v1/devices/%s' % device_id),
                                 ('POST', '/api/v1/devices/%s/register' % device_id)]
    tunnel = first['tunnel']
    assert set(tunnel) == {'host', 'port', 'user', 'host_key', 'remote_port', 'web_remote_port'}
    assert isinstance(tunnel['remote_port'], int) and tunnel['remote_port'] > 0
    facts = first['facts']
    assert facts['memory_mb'] > 0 and facts['cpu_count'] >= 1 and facts['disk_gb'] > 0
    assert facts['architecture'] and facts['os'] and facts['cpu_model'] and facts['docker_version']
    assert first['device']['registered'] is True and first['device']['id'] == device_id
    assert token not in first['_output']

    stored = operator.get_device(device_id)
    assert stored['registered'] is True and stored['facts'] == facts
    assert stored['tunnel_public_key'] == fake_key()
    assert stored['tunnel']['remote_port'] == tunnel['remote_port']

    forwarder.reset()
    second = run_module(args)
    assert second.get('failed') is not True, second
    assert second['changed'] is False
    assert forwarder.calls() == [('GET', '/api/v1/devices/%s' % device_id)]     # no write
    # free space drifts (other tests write here too) and never re-registers on its own
    assert second['tunnel'] == tunnel and steady(second['facts']) == steady(facts)
    assert operator.get_device(device_id)['facts'] == facts

    # a changed fact (and key) re-registers, keeping the remote port
    forwarder.reset()
    third = run_module(dict(args, facts={'disk_gb': 16}, tunnel_public_key=fake_key(2, 'new')))
    assert third['changed'] is True, third
    assert ('POST', '/api/v1/devices/%s/register' % device_id) in forwarder.calls()
    assert third['tunnel']['remote_port'] == tunnel['remote_port']
    stored = operator.get_device(device_id)
    assert stored['facts']['disk_gb'] == 16 and stored['tunnel_public_key'] == fake_key(2, 'new')


def test_a_device_that_reports_it_cannot_enforce_memory_is_not_rented_out(device, marketplace):
    """The module sends what it is given as `enforcement` (a stand-in for a Pi whose memory cgroup is
    off, which cannot be made here); the real server refuses to rent the device out, then rents it
    once it registers again with the Engine's own verdict."""
    device_id, token, operator = device[0], device[1], device[3]
    weak = {'memory': False, 'pids': True, 'cgroup_version': '1',
            'problems': ['memory: Docker reports no memory limit support. Fix: add "cgroup_enable=memory '
                         'cgroup_memory=1" to /boot/firmware/cmdline.txt, then reboot.']}
    first = run_module(base_args(device_id, marketplace.url, device_token=token, facts={'enforcement': weak}))
    assert first['changed'] is True and first['facts']['enforcement'] == weak, first
    marketplace.checkin(device_id, token)
    view = operator.get_device(device_id)
    assert view['rentable'] is False and view['unenforced_limits'] == ['memory']
    refused = marketplace.request('POST', '/api/v1/rentals', json={
        'device_id': device_id, 'renter': 'alice', 'hours': 1, 'ssh_public_key': fake_key(9, 'alice@laptop')})
    assert refused.status_code == 409 and refused.json()['error'] == 'device_cannot_enforce_limits', refused.text

    bad = run_module(base_args(device_id, marketplace.url, device_token=token, facts={'enforcement': {'memory': 'no'}}))
    assert bad.get('failed') is True and 'enforcement.memory must be true or false' in bad['msg']

    # This machine's own Engine enforces memory and pids limits (the Pi test shows a Pi's).
    again = run_module(base_args(device_id, marketplace.url, device_token=token))
    assert again['changed'] is True and again['facts']['enforcement']['memory'] is True, again
    assert operator.get_device(device_id)['rentable'] is True
    assert marketplace.create_rental(device_id)['device_id'] == device_id


def steady(facts):
    return {name: value for name, value in facts.items() if name != 'disk_free_gb'}


def steady_diff(diff):
    return {'before': diff['before'], 'after': dict(diff['after'], facts=steady(diff['after']['facts']))}


def test_check_mode_and_diff(device):
    device_id, token, forwarder, operator = device
    args = base_args(device_id, forwarder.url, device_token=token,
                     facts={'memory_mb': 1024, 'cpu_model': 'Cortex-A53'}, docker_version='none')

    check = run_module(args, check_mode=True, diff=True)
    assert check.get('failed') is not True, check
    assert check['changed'] is True and check['tunnel'] is None
    assert forwarder.calls() == [('GET', '/api/v1/devices/%s' % device_id)]
    assert operator.get_device(device_id)['registered'] is False
    diff = check['diff']
    assert diff['before'] == {'registered': False, 'facts': None, 'tunnel_public_key': None}
    assert diff['after']['registered'] is True and diff['after']['tunnel_public_key'] == fake_key()
    assert diff['after']['facts']['memory_mb'] == 1024 and diff['after']['facts']['docker_version'] == 'none'
    assert token not in check['_output']

    real = run_module(args, diff=True)
    assert real['changed'] is True, real
    # the host's free disk may change between the runs (other tests use it): a drifting fact
    assert steady_diff(real['diff']) == steady_diff(diff), real
    assert 'disk_free_gb' in real['diff']['after']['facts']
    assert token not in real['_output']

    forwarder.reset()
    again = run_module(args, check_mode=True, diff=True)
    assert again['changed'] is False and not again.get('diff'), again
    assert forwarder.calls() == [('GET', '/api/v1/devices/%s' % device_id)]

    changed = run_module(dict(args, facts={'memory_mb': 2048, 'cpu_model': 'Cortex-A53'}), check_mode=True, diff=True)
    assert changed['changed'] is True
    assert changed['diff']['before']['facts']['memory_mb'] == 1024
    assert changed['diff']['after']['facts']['memory_mb'] == 2048
    assert operator.get_device(device_id)['facts']['memory_mb'] == 1024


def test_token_from_file_and_never_printed(device, tmp_path):
    device_id, token, forwarder, operator = device
    token_file = tmp_path / 'device_token'
    token_file.write_text(token + '\n')
    token_file.chmod(0o600)
    key_file = tmp_path / 'tunnel.pub'
    key_file.write_text(fake_key(3, 'from-file') + '\n')
    args = base_args(device_id, forwarder.url, device_token_file=str(token_file),
                     tunnel_public_key_file=str(key_file))
    del args['tunnel_public_key']

    first = run_module(args, diff=True, verbose=True)
    assert first.get('failed') is not True, first
    assert first['changed'] is True and first['tunnel_public_key'] == fake_key(3, 'from-file')
    assert not first.get('warnings')
    second = run_module(args, verbose=True)
    assert second['changed'] is False
    for result in (first, second):
        assert token not in result['_output']
        assert token not in json.dumps({k: v for k, v in result.items() if k != '_output'})

    token_file.chmod(0o644)
    loose = run_module(args)
    assert loose['changed'] is False
    assert any('every user' in w for w in loose.get('warnings', [])), loose


def test_env_fallbacks(device):
    device_id, token, forwarder, operator = device
    cmd = ['ansible', 'localhost', '-i', 'localhost,', '-c', 'local', '-m', 'p2pvps.fleet.device_register',
           '-a', json.dumps({'tunnel_public_key': fake_key()}), '-e', 'ansible_python_interpreter=%s' % sys.executable]
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
                      P2PVPS_MARKETPLACE_URL=forwarder.url, P2PVPS_DEVICE_ID=device_id, P2PVPS_DEVICE_TOKEN=token)
    proc = run_ansible(cmd, env=env, check=False, timeout=120)
    result = json.loads(proc.stdout)['plays'][0]['tasks'][0]['hosts']['localhost']
    assert result.get('failed') is not True and result['changed'] is True, result
    assert token not in proc.stdout + proc.stderr


@pytest.mark.parametrize('change, words', [
    ({'device_token': 'wrong-token-abcdef123456'}, '401'),
    ({'tunnel_public_key': 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ'}, 'ssh-ed25519'),
    ({'facts': {'memory_mb': 0}}, 'memory_mb must be a positive integer'),
    ({'facts': {'colour': 'red'}}, 'unknown facts'),
    ({'device_token': None, 'device_token_file': '/nonexistent/token'}, 'cannot read the device token file'),
    ({'marketplace_url': 'https://user:pw@example.org'}, 'credentials'),
])
def test_failures_are_clear_and_secret_free(device, change, words):
    device_id, token, forwarder, operator = device
    args = base_args(device_id, forwarder.url, device_token=token)
    args.update(change)
    args = {k: v for k, v in args.items() if v is not None}
    result = run_module(args)
    assert result.get('failed') is True, result
    assert words in result['msg'], result['msg']
    assert token not in result['_output'] and 'wrong-token-abcdef123456' not in result['_output']
    assert ('POST', '/api/v1/devices/%s/register' % device_id) not in forwarder.calls()
    assert operator.get_device(device_id)['registered'] is False


def test_unknown_device_and_unreachable_marketplace(device):
    device_id, token, forwarder, operator = device
    result = run_module(base_args('00000000-0000-4000-8000-000000000000', forwarder.url, device_token=token))
    assert result.get('failed') is True, result
    assert any(code in result['msg'] for code in ('401', '403', '404')), result['msg']
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        dead = 'http://127.0.0.1:%d' % sock.getsockname()[1]
    result = run_module(base_args(device_id, dead, device_token=token, timeout=3))
    assert result.get('failed') is True and 'cannot connect' in result['msg'], result['msg']
    assert token not in result['_output']


def test_state_absent_deregisters(device):
    device_id, token, forwarder, operator = device
    assert run_module(base_args(device_id, forwarder.url, device_token=token))['changed'] is True
    port = operator.get_device(device_id)['tunnel']['remote_port']
    absent = {'marketplace_url': forwarder.url, 'device_id': device_id, 'device_token': token, 'state': 'absent'}

    forwarder.reset()
    dry = run_module(absent, check_mode=True, diff=True)
    assert dry['changed'] is True and dry['diff']['after'] == {}, dry
    assert forwarder.calls() == [('GET', '/api/v1/devices/%s' % device_id)]   # no delete in check mode

    forwarder.reset()
    gone = run_module(absent)
    assert gone.get('failed') is not True and gone['changed'] is True, gone
    assert forwarder.calls() == [('GET', '/api/v1/devices/%s' % device_id),
                                 ('DELETE', '/api/v1/devices/%s' % device_id)]
    assert token not in gone['_output']
    with pytest.raises(MarketplaceRejected) as missing:
        operator.get_device(device_id)
    assert missing.value.status == 404
    assert port > 0


def test_state_absent_of_a_device_already_gone(device, marketplace):
    """404 (an operator-token run for a deleted id): nothing to do, not a failure."""
    dummy_id, dummy_token, forwarder, operator = device
    unknown = operator.create_device('pi-gone-%s' % os.urandom(3).hex())
    operator.delete_device(unknown['id'])
    result = run_module({'marketplace_url': forwarder.url, 'device_id': unknown['id'],
                         'device_token': marketplace.operator_token, 'state': 'absent'})
    assert result.get('failed') is not True and result['changed'] is False, result


def test_state_absent_with_a_revoked_token_fails_clearly(device):
    dummy_id, token, forwarder, operator = device
    unknown = operator.create_device('pi-short-lived-%s' % os.urandom(3).hex())
    operator.delete_device(unknown['id'])
    result = run_module({'marketplace_url': forwarder.url, 'device_id': unknown['id'],
                         'device_token': unknown['device_token'], 'state': 'absent'})
    # the deleted device's token no longer authenticates: a clear failure, not a silent success
    assert result.get('failed') is True and 'reading device' in result['msg'], result
    assert unknown['device_token'] not in result['_output'] and token not in result['_output']


@pytest.mark.docker
def test_a_simulated_pi_reports_what_its_docker_engine_enforces(pi_fleet_factory, marketplace_factory, tmp_path):
    """Issue 15, Raspberry Pi specifics: on a simulated Pi with its own Docker Engine, the docker role's
    check (limits_info) tells what that Engine answers, device_register sends it to the real server,
    and the server rents the device out. (A Pi whose memory cgroup is off cannot be made here: that
    case is in tests/unit/plugins/module_utils/test__enforcement.py and tests/server/test_limits.py.)"""
    fleet = pi_fleet_factory(count=1, image=DEVICE_DOCKER_IMAGE)
    pi = fleet.devices[0]
    marketplace = marketplace_factory(bind_host=fleet.gateway())
    device_id, token = marketplace.create_device('pi-limits')
    engine = json.loads(pi.exec('docker', 'info', '--format', '{{json .}}').stdout)
    playbook = tmp_path / 'limits.yml'
    playbook.write_text(json.dumps([{
        'name': 'Check limits and register', 'hosts': 'pis', 'become': True, 'gather_facts': False,
        'tasks': [
            {'name': 'The docker role\'s check', 'ansible.builtin.include_role': {
                'name': 'p2pvps.fleet.docker', 'tasks_from': 'limits.yml'}},
            {'name': 'Register', 'p2pvps.fleet.device_register': {
                'marketplace_url': marketplace.url, 'device_id': device_id, 'device_token': token,
                'tunnel_public_key': fake_key(7)}, 'register': 'registration'},
            {'name': 'Keep the results', 'ansible.builtin.copy': {
                'content': '{{ {"limits": _docker_limits.limits, "facts": registration.facts} | to_json }}',
                'dest': '/root/limits.json', 'mode': '0600'}},
        ]}]))
    run = run_ansible(['ansible-playbook', '-i', str(fleet.inventory_path), str(playbook)], check=False,
                      timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert token not in run.stdout + run.stderr
    found = json.loads(pi.exec('cat', '/root/limits.json').stdout)
    limits, reported = found['limits'], found['facts']['enforcement']
    print('\nMEASURED the Pi\'s Engine: cgroup v%s (%s), %s; verdict %s; problems: %s' % (
        engine['CgroupVersion'], engine['CgroupDriver'], engine['Driver'],
        {name: limits[name] for name in ('memory', 'swap', 'cpu', 'pids', 'disk')}, limits['messages']))
    # The verdict is the Engine's own answer.
    assert limits['memory'] is engine['MemoryLimit'] is True
    assert limits['pids'] is engine['PidsLimit'] is True
    assert limits['cpu'] is engine['CpuCfsQuota']
    assert limits['cgroup_version'] == engine['CgroupVersion']
    assert limits['storage_driver'] == engine['Driver'] == 'vfs'          # nested Docker in a container
    assert any(p['limit'] == 'storage' and 'overlay2' in p['fix'] for p in limits['problems'])
    assert limits['rentable'] is True
    # The marketplace holds what the device sent, and rents the device out.
    view = marketplace.request('GET', '/api/v1/devices/%s' % device_id).json()
    assert view['facts']['enforcement'] == reported
    assert reported['memory'] is True and reported['pids'] is True and reported['storage_driver'] == 'vfs'
    assert 'memory' not in view['unenforced_limits'] and 'pids' not in view['unenforced_limits']
    marketplace.checkin(device_id, token)
    assert marketplace.create_rental(device_id)['device_id'] == device_id
