# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table-driven tests of the lease model: what a lease from the marketplace must be."""
from __future__ import annotations

import datetime

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _lease, _ssh_key
from tests.unit.plugins.module_utils.lease_samples import DELETE, KEY_A, KEY_B, lease, make_key, raw_lease


# ------------------------------------------------------------------ validation

VALID = [
    ('plain', {}),
    ('two keys', {'ssh_authorized_keys': [KEY_A, KEY_B]}),
    ('rsa key no comment', {'ssh_authorized_keys': [make_key('ssh-rsa', comment='')]}),
    ('ecdsa key', {'ssh_authorized_keys': [make_key('ecdsa-sha2-nistp256')]}),
    ('integer cpus', {'limits_cpus': 2}),
    ('min limits', {'limits_memory_mb': 64, 'limits_cpus': 0.1, 'limits_pids': 16, 'limits_disk_gb': 1}),
    ('max limits', {'limits_memory_mb': 65536, 'limits_cpus': 64, 'limits_pids': 65536, 'limits_disk_gb': 2048}),
    ('fractional seconds', {'expires_at': '2026-11-25T14:00:00.123456Z'}),
    ('+00:00 offset', {'expires_at': '2026-11-25T14:00:00+00:00'}),
    ('underscore user', {'username': '_bob-2'}),
    ('image with registry and digest', {'image': 'registry.example.org:5000/p2pvps/renter:1.0@sha256:' + 'a' * 64}),
    ('short lease id', {'id': 'L1'}),
]


@pytest.mark.parametrize('name, changes', VALID, ids=[v[0] for v in VALID])
def test_valid_leases(name, changes):
    parsed = lease(**changes)
    assert isinstance(parsed, _lease.Lease)
    assert _lease.parse_lease(parsed.to_dict()) == parsed


@pytest.mark.parametrize('raw, utc', [
    ('2026-11-25T14:00:00Z', '2026-11-25T14:00:00Z'),
    ('2026-11-25t14:00:00z', '2026-11-25T14:00:00Z'),
    ('2026-11-25T14:00:00+02:00', '2026-11-25T12:00:00Z'),
    ('2026-11-25T01:30:00+05:30', '2026-11-24T20:00:00Z'),
    ('2026-11-25T22:00:00-03:00', '2026-11-26T01:00:00Z'),
    ('2026-11-25T14:00:00.999-00:00', '2026-11-25T14:00:00Z'),
])
def test_times_with_any_offset_are_normalised_to_utc(raw, utc):
    parsed = _lease.parse_time(raw)
    assert parsed.utcoffset().total_seconds() == 0
    assert _lease.format_time(parsed) == utc
    assert lease(expires_at=raw).expires_at == parsed


def test_server_time_of_a_checkin_answer():
    assert _lease.parse_server_time({'lease': None}) is None
    assert _lease.format_time(_lease.parse_server_time(
        {'lease': None, 'server_time': '2026-12-01T21:00:00+01:00'})) == '2026-12-01T20:00:00Z'
    for bad in ('2026-12-01T20:00:00', 1764619200, 'yesterday'):
        with pytest.raises(_lease.LeaseError) as exc:
            _lease.parse_server_time({'lease': None, 'server_time': bad})
        assert 'server_time' in str(exc.value)


def test_null_lease_is_no_lease():
    assert _lease.parse_lease(None) is None
    assert _lease.parse_checkin({'lease': None, 'checkin_interval_s': 120}) is None


INVALID = [
    # (id, changes, words expected in the message)
    ('lease is a list', None, 'must be an object'),
    ('missing id', {'id': DELETE}, 'missing field(s): id'),
    ('missing limits', {'limits': DELETE}, 'limits'),
    ('id int', {'id': 42}, 'id must be a string'),
    ('id traversal', {'id': '../x'}, 'not a valid lease id'),
    ('id too long', {'id': 'a' * 65}, 'too long'),
    ('root', {'username': 'root'}, 'reserved'),
    ('sshd', {'username': 'sshd'}, 'reserved'),
    ('nobody', {'username': 'nobody'}, 'reserved'),
    ('user traversal', {'username': '../x'}, 'not a valid login name'),
    ('user upper', {'username': 'Alice'}, 'not a valid login name'),
    ('user leading dash', {'username': '-x'}, 'not a valid login name'),
    ('user too long', {'username': 'a' * 33}, 'too long'),
    ('user empty', {'username': ''}, 'not a valid login name'),
    ('user null', {'username': None}, 'must be a string, got null'),
    ('user newline', {'username': 'bob\n'}, 'not a valid login name'),
    ('keys string', {'ssh_authorized_keys': KEY_A}, 'must be a list'),
    ('keys empty', {'ssh_authorized_keys': []}, 'empty'),
    ('too many keys', {'ssh_authorized_keys': [make_key(seed=bytes([i])) for i in range(17)]}, 'at most 16'),
    ('key with options', {'ssh_authorized_keys': ['command="/bin/sh" ' + KEY_A]}, 'options'),
    ('key with from=', {'ssh_authorized_keys': ['from="10.0.0.1",no-pty ' + KEY_A]}, 'options'),
    ('key with newline', {'ssh_authorized_keys': [KEY_A + '\n' + KEY_B]}, 'line breaks'),
    ('key not a string', {'ssh_authorized_keys': [42]}, 'must be a string'),
    ('key bad base64', {'ssh_authorized_keys': ['ssh-ed25519 !!!notbase64']}, 'base64'),
    ('key type mismatch', {'ssh_authorized_keys': ['ssh-rsa ' + KEY_A.split(' ')[1]]}, 'does not match'),
    ('key huge', {'ssh_authorized_keys': ['ssh-ed25519 ' + 'A' * 5000]}, 'too long'),
    ('unknown key type', {'ssh_authorized_keys': ['ssh-dss AAAAB3NzaC1kc3MAAACBAP']}, 'key type'),
    ('image uppercase', {'image': 'P2PVPS/Renter'}, 'not a valid image'),
    ('image option', {'image': '--privileged'}, 'not a valid image'),
    ('image spaces', {'image': 'a b'}, 'not a valid image'),
    ('image huge', {'image': 'a' * 300}, 'too long'),
    ('image int', {'image': 7}, 'must be a string'),
    ('expires naive', {'expires_at': '2026-11-25T14:00:00'}, 'RFC 3339 time with an offset'),
    ('expires offset without colon', {'expires_at': '2026-11-25T14:00:00+0200'}, 'RFC 3339 time with an offset'),
    ('expires offset out of range', {'expires_at': '2026-11-25T14:00:00+24:00'}, 'not a valid time'),
    ('expires number', {'expires_at': 1764072000}, 'must be a string'),
    ('expires bad date', {'expires_at': '2026-02-30T14:00:00Z'}, 'not a valid time'),
    ('limits list', {'limits': [1, 2]}, 'limits must be an object'),
    ('memory missing', {'limits': {'cpus': 1, 'pids': 100, 'disk_gb': 1}}, 'limits.memory_mb is missing'),
    ('memory bool', {'limits_memory_mb': True}, 'must be a number, got a boolean'),
    ('memory float', {'limits_memory_mb': 512.0}, 'must be an integer'),
    ('memory string', {'limits_memory_mb': '512'}, 'must be a number'),
    ('memory low', {'limits_memory_mb': 63}, 'out of range'),
    ('memory high', {'limits_memory_mb': 65537}, 'out of range'),
    ('cpus nan', {'limits_cpus': float('nan')}, 'finite'),
    ('cpus inf', {'limits_cpus': float('inf')}, 'finite'),
    ('cpus bool', {'limits_cpus': False}, 'boolean'),
    ('cpus low', {'limits_cpus': 0.05}, 'out of range'),
    ('cpus high', {'limits_cpus': 65}, 'out of range'),
    ('pids low', {'limits_pids': 15}, 'out of range'),
    ('pids null', {'limits_pids': None}, 'got null'),
    ('disk zero', {'limits_disk_gb': 0}, 'out of range'),
    ('disk huge', {'limits_disk_gb': 10 ** 30}, 'out of range'),
]


@pytest.mark.parametrize('name, changes, words', INVALID, ids=[v[0] for v in INVALID])
def test_invalid_leases(name, changes, words):
    raw = [1, 2] if changes is None else raw_lease(**changes)
    with pytest.raises(_lease.LeaseError) as exc:
        _lease.parse_lease(raw)
    message = str(exc.value)
    assert words in message
    assert len(message) < 300, 'messages never repeat huge values'


@pytest.mark.parametrize('answer, words', [
    ([], 'JSON object'),
    ('lease', 'JSON object'),
    ({}, 'no "lease" field'),
    ({'lease': 'x'}, 'must be an object or null'),
])
def test_invalid_checkin_answers(answer, words):
    with pytest.raises(_lease.LeaseError, match=words.replace('(', r'\(')):
        _lease.parse_checkin(answer)


def test_key_is_normalised_and_fingerprinted():
    parsed = lease(ssh_authorized_keys=['  ' + KEY_A + '  ', KEY_A])
    assert parsed.keys == (KEY_A,)
    assert _ssh_key.fingerprint(KEY_A).startswith('SHA256:')
    assert KEY_A.split(' ')[1] not in str(parsed.summary())


def test_state_round_trip():
    the_lease = lease()
    assert _lease.parse_state(_lease.state_content(the_lease)) == the_lease
    assert _lease.parse_state(_lease.state_content(None)) is None
    with pytest.raises(_lease.LeaseError):
        _lease.parse_state({'lease': None})


def test_names():
    the_lease = lease()
    assert the_lease.container_name == 'p2pvps-renter-5f2d6c1e8d4b'
    assert the_lease.volume_name == 'p2pvps-lease-5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60'
    assert the_lease.authorized_keys == KEY_A + '\n'


WEB_OK = {'hostname': 'alice-k3j9xq.web.test', 'url': 'https://alice-k3j9xq.web.test/'}
PLAIN = lease()
WITH_WEB = lease(web=WEB_OK)
WEB_INVALID = [
    ('not an object', 'https://x.test/', 'must be an object'),
    ('no hostname', {'url': 'https://x.test/'}, 'web.hostname must be a string'),
    ('upper case', dict(WEB_OK, hostname='Alice.web.test', url='https://Alice.web.test/'), 'lower-case DNS name'),
    ('single label', {'hostname': 'localhost', 'url': 'https://localhost/'}, 'lower-case DNS name'),
    ('label too long', {'hostname': 'a' * 64 + '.test', 'url': 'https://' + 'a' * 64 + '.test/'}, 'DNS name'),
    ('underscore', {'hostname': 'a_b.web.test', 'url': 'https://a_b.web.test/'}, 'DNS name'),
    ('url elsewhere', dict(WEB_OK, url='https://evil.example/'), 'web.url'),
    ('url with path', dict(WEB_OK, url='https://alice-k3j9xq.web.test/x'), 'web.url'),
    ('javascript url', dict(WEB_OK, url='javascript:alert(1)'), 'web.url'),
    ('url with credentials', dict(WEB_OK, url='https://u:p@alice-k3j9xq.web.test/'), 'web.url'),
    ('url not a string', dict(WEB_OK, url=7), 'must be a string'),
]


@pytest.mark.parametrize('name, web, words', WEB_INVALID, ids=[w[0] for w in WEB_INVALID])
def test_invalid_web_block_rejects_the_lease(name, web, words):
    with pytest.raises(_lease.LeaseError) as err:
        lease(web=web)
    assert words in str(err.value)


def test_web_block_round_trips():
    assert lease(web=None).web is None and lease().web is None
    with_port = lease(web={'hostname': 'a.web.test', 'url': 'http://a.web.test:8443/'})
    assert with_port.web.url == 'http://a.web.test:8443/'
    assert _lease.parse_lease(WITH_WEB.to_dict()) == WITH_WEB
    assert _lease.parse_state(_lease.state_content(WITH_WEB)) == WITH_WEB
    assert WITH_WEB.summary()['web'] == WEB_OK
    # a state file written before leases had a web block
    old = _lease.state_content(PLAIN)
    del old['lease']['web']
    assert _lease.parse_state(old) == PLAIN


def test_lease_etag():
    assert _lease.parse_lease_etag({'lease': None}) is None
    assert _lease.parse_lease_etag({'lease': None, 'lease_etag': None}) is None
    assert _lease.parse_lease_etag({'lease': None, 'lease_etag': '74234e98afe7498fb5daf1f36ac2d78a'}) \
        == '74234e98afe7498fb5daf1f36ac2d78a'
    for bad in ('', 'a b', 'x' * 65, 42, ['x'], 'caf\u00e9', 'line\nbreak'):
        with pytest.raises(_lease.LeaseError) as exc:
            _lease.parse_lease_etag({'lease': None, 'lease_etag': bad})
        assert 'lease_etag' in str(exc.value)


def test_state_remembers_a_frozen_lease():
    frozen = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)
    the_lease = _lease.parse_lease(raw_lease())
    content = _lease.state_content(the_lease, frozen)
    assert content['frozen_at'] == '2026-11-25T12:00:00Z'
    assert _lease.parse_local_state(content) == (the_lease, frozen)
    assert _lease.parse_state(content) == the_lease
    assert _lease.parse_local_state(_lease.state_content(the_lease)) == (the_lease, None)
    assert 'frozen_at' not in _lease.state_content(None, frozen)
    assert _lease.parse_local_state(dict(_lease.state_content(None), frozen_at='2026-11-25T12:00:00Z')) == (None, None)
    with pytest.raises(_lease.LeaseError, match='frozen_at'):
        _lease.parse_local_state(dict(content, frozen_at='2026-11-25 12:00'))
