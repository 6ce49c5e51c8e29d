# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""device_info's pure parts: the one-line summary and the local lease state it reads."""
from __future__ import annotations

import json

import pytest

from ansible_collections.p2pvps.fleet.plugins.modules import device_info
from ansible_collections.p2pvps.fleet.plugins.module_utils import _state

LEASE = {'id': 'l-1', 'renter': 'alice', 'username': 'alice', 'expires_at': '2099-01-01T00:00:00Z'}


SANDBOX_OK = {'weak': []}
SANDBOX_WEAK = {'weak': ['disk: none', 'user_namespace: off']}


def test_summary_of_a_rented_device():
    market = {'status': 'online', 'lease': LEASE}
    container = {'status': 'running'}
    assert device_info.summary(market, None, container, True, SANDBOX_OK) == \
        'online, lease l-1 until 2099-01-01T00:00:00Z, container running, tunnel up, sandbox complete'


def test_summary_without_marketplace_uses_the_local_lease():
    local = {'id': 'l-2', 'expires_at': '2099-01-02T00:00:00Z'}
    assert device_info.summary(None, local, None, None, None) == \
        'marketplace unknown, lease l-2 until 2099-01-02T00:00:00Z, container none, tunnel unknown, sandbox unknown'


def test_summary_of_a_free_device_with_a_weak_sandbox():
    assert device_info.summary({'status': 'offline', 'lease': None}, None, None, False, SANDBOX_WEAK) == \
        'offline, no lease, container none, tunnel down, sandbox weak (disk: none; user_namespace: off)'


def test_local_lease_reports_unreadable_state(tmp_path):
    (tmp_path / _state.STATE_FILE).write_text('{not json')
    problems = []
    assert device_info.local_lease(str(tmp_path), problems) is None
    assert problems and 'unreadable' in problems[0]


def test_local_lease_reads_no_lease(tmp_path):
    (tmp_path / _state.STATE_FILE).write_text(json.dumps({'version': 1, 'lease': None}))
    problems = []
    assert device_info.local_lease(str(tmp_path), problems) is None
    assert device_info.local_lease_view(None) is None
    assert problems == []


class FakeRenterDocker:
    """The few RenterDocker calls sandbox_view makes, answering fixed values."""

    def __init__(self, found, owner, icc):
        self.found, self.owner, self.icc = found, owner, icc

    def container_sandbox(self, container_id):
        return self.found

    def engine_owner(self):
        return self.owner

    def renter_network_icc(self):
        return self.icc


def test_sandbox_view_lists_the_weak_points(monkeypatch):
    monkeypatch.setattr(device_info._sandbox, 'isolation_problem', lambda script: 'missing: P2PVPS-FWD')
    monkeypatch.setattr(device_info, '_observed_mbit', lambda pid: None)
    container = type('C', (), {'id': 'c1', 'running': True, 'pid': 42})()
    found = {'disk': 'home', 'ipv6': 'on', 'write_budget_bps': None}
    report = device_info.sandbox_view(FakeRenterDocker(found, None, 'on'), container, '/x')
    assert report['weak'] == ['disk: home', 'ipv6: on', 'user_namespace: off', 'inter_container: on',
                              'isolation_rules: missing: P2PVPS-FWD', 'bandwidth_mbit: none', 'write_budget_bps: none']


def test_sandbox_view_of_a_complete_device(monkeypatch):
    monkeypatch.setattr(device_info._sandbox, 'isolation_problem', lambda script: None)
    monkeypatch.setattr(device_info, '_observed_mbit', lambda pid: 20)
    container = type('C', (), {'id': 'c1', 'running': True, 'pid': 42})()
    found = {'disk': 'whole', 'ipv6': 'off', 'write_budget_bps': 10485760}
    report = device_info.sandbox_view(FakeRenterDocker(found, (1000000, 1000000), 'off'), container, '/x')
    assert report['weak'] == [] and report['isolation_rules'] == 'in place' and report['bandwidth_mbit'] == 20
    # no renter container yet: what a lease would get; nothing to say about its links
    empty = device_info.sandbox_view(FakeRenterDocker(None, (1, 1), None), None, '/x')
    assert empty['ipv6'] is None and empty['inter_container'] is None and 'bandwidth_mbit: none' not in empty['weak']


def test_state_round_trip(tmp_path):
    path = str(tmp_path / 'state' / _state.STATE_FILE)
    _state.write_state(path, None)
    assert (tmp_path / 'state' / _state.STATE_FILE).stat().st_mode & 0o777 == 0o600
    lease, warning = _state.read_state(path)
    assert lease is None and warning is None


class FakeSystemd:
    """Stands in for AnsibleModule: systemctl is there and answers `answer`."""

    def __init__(self, answer):
        self.answer = answer
        self.commands = []

    def get_bin_path(self, name):
        return '/usr/bin/' + name

    def run_command(self, argv):
        self.commands.append(argv)
        return self.answer


@pytest.mark.parametrize('answer, expected, problem', [
    ((0, 'LoadState=loaded\nActiveState=active\n', ''), True, None),
    ((0, 'ActiveState=activating\nLoadState=loaded\n', ''), False, None),
    ((0, 'LoadState=not-found\nActiveState=inactive\n', ''), False, 'p2pvps-tunnel.service is not installed'),
    ((1, '', 'System has not been booted with systemd'), None, 'booted with systemd'),
])
def test_tunnel_view(answer, expected, problem):
    problems = []
    fake = FakeSystemd(answer)
    assert device_info.tunnel_view(fake, 'p2pvps-tunnel.service', problems) is expected
    assert fake.commands[0][1:] == ['show', '--property=LoadState,ActiveState', '--', 'p2pvps-tunnel.service']
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems
