# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lease's host key (made on the device, fingerprint as ssh-keygen -lf prints it) and login message
(sanitised, printable ASCII only), and the host key kept in the state file."""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _lease, _renter_login, _state
from tests.unit.plugins.module_utils.lease_samples import KEY_A, raw_lease

PRINTABLE = set(chr(c) for c in range(0x20, 0x7f)) | {'\n'}


def lease(**changes):
    return _lease.parse_lease(raw_lease(**changes))


def ssh_keygen_fingerprint(public, tmp_path):
    path = tmp_path / 'key.pub'
    path.write_text(public + '\n')
    return subprocess.run(['ssh-keygen', '-lf', str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def test_a_host_key_is_made_and_nothing_of_it_stays_on_the_disk(tmp_path):
    work = tmp_path / 'state'
    key = _renter_login.generate_host_key(str(work))
    assert key.private.startswith(b'-----BEGIN OPENSSH PRIVATE KEY-----')
    assert key.public.startswith('ssh-ed25519 ') and len(key.public.split(' ')) == 2
    assert os.listdir(str(work)) == []                    # the temporary directory is gone
    assert 'PRIVATE' not in repr(key) and key.public in repr(key)
    assert key.fingerprint == ssh_keygen_fingerprint(key.public, tmp_path)
    assert _renter_login.host_key_fingerprint(key.public) == key.fingerprint
    assert _renter_login.generate_host_key(str(work)).public != key.public


def test_the_host_key_public_line_is_strict():
    assert _renter_login.parse_host_public_key(KEY_A + '\n') == ' '.join(KEY_A.split(' ')[:2])
    for bad in ('', 'ssh-rsa AAAA', 'command="x" ' + KEY_A, KEY_A.replace('ssh-ed25519', 'ssh-ed25518'), None):
        with pytest.raises(ValueError):
            _renter_login.parse_host_public_key(bad)
    assert _renter_login.host_key_fingerprint(None) is None


@pytest.mark.parametrize('value, expected', [
    ('plain', 'plain'),
    ('\x1b[2J\x1b]0;owned\x07evil', '[2J]0;ownedevil'),        # no ESC, no BEL: no escape sequence works
    ('line\nbreak\r\ttab', 'linebreaktab'),
    ('\u009b31m csi', '31m csi'),                               # the 8-bit CSI
    ('caf\u00e9 \u202e', 'caf '),
    (None, ''),
    ('x' * 500, 'x' * 200),
])
def test_sanitize(value, expected):
    assert _renter_login.sanitize(value) == expected


def test_the_message_names_limits_expiry_web_address_and_host_key():
    web = {'hostname': 'alice-x1.web.test', 'url': 'https://alice-x1.web.test/'}
    text = _renter_login.motd_text(lease(web=web), KEY_A, root_login=False)
    assert 'p2pvps rented VPS for alice' in text
    assert 'expires: 2026-11-25 14:00:00 UTC' in text
    assert '512 MB memory, 1.5 CPU, 256 processes, 4 GB disk' in text
    assert 'https://alice-x1.web.test/ (serve on port 8080 here' in text
    assert 'host key: ' + _renter_login.host_key_fingerprint(KEY_A) in text
    assert 'root:    not available' in text
    assert set(text) <= PRINTABLE
    plain = _renter_login.motd_text(lease())
    assert 'this lease has no public web address' in plain and 'host key' not in plain and 'root:' not in plain
    assert 'root:    ssh root@' in _renter_login.motd_text(lease(), root_login=True)


def test_the_message_of_an_extended_lease_has_the_new_expiry():
    before = _renter_login.motd_text(lease())
    after = _renter_login.motd_text(lease(expires_at='2026-11-26T02:30:00+01:00'))
    assert before != after and 'expires: 2026-11-26 01:30:00 UTC' in after


def test_hostile_strings_never_reach_the_message():
    """Even a lease that passed no validation (built directly) gives printable ASCII only."""
    hostile = _lease.Lease(id='x\x1b[31m', username='bob\x07', keys=(KEY_A,), image='p2pvps/renter:latest',
                           expires_at=lease().expires_at, limits=lease().limits,
                           web=_lease.Web(hostname='h', url='https://h/\x1b]8;;evil\x07\n'))
    text = _renter_login.motd_text(hostile)
    assert set(text) <= PRINTABLE and '\x1b' not in text and '\x07' not in text
    assert 'https://h/]8;;evil' in text


def test_write_and_read_the_message(tmp_path):
    state_dir = str(tmp_path / 'state')
    lease_id = lease().id
    assert _renter_login.read_motd(state_dir, lease_id) is None
    _renter_login.write_motd(state_dir, lease_id, 'one\n')
    _renter_login.write_motd(state_dir, lease_id, 'two\n')
    directory = _renter_login.login_dir(state_dir, lease_id)
    assert _renter_login.read_motd(state_dir, lease_id) == 'two\n'
    assert os.listdir(directory) == ['motd']
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(os.path.join(directory, 'motd')).st_mode) == 0o644
    _renter_login.remove_login_dir(state_dir, lease_id)
    assert not os.path.exists(directory)
    with pytest.raises(_lease.LeaseError):
        _renter_login.login_dir(state_dir, '../../etc')


def test_the_state_file_keeps_the_host_key_of_its_lease(tmp_path):
    path = str(tmp_path / 'lease.json')
    current = lease()
    public = ' '.join(KEY_A.split(' ')[:2])
    _state.write_state(path, current, None, public)
    assert _state.read_host_key(path) == (current.id, public)
    assert _state.read_state(path) == (current, None)
    _state.write_state(path, current)
    assert _state.read_host_key(path) is None                      # a state without one
    with open(path, 'w') as handle:
        json.dump(dict(_lease.state_content(current), host_key={'lease_id': current.id, 'public_key': 'x'}), handle)
    assert _state.read_host_key(path) is None and _state.read_state(path)[0] == current
    assert _state.read_host_key(str(tmp_path / 'missing.json')) is None


def test_the_login_directory_keeps_the_host_public_key(tmp_path):
    """The copy read back when the state file is lost; a damaged copy counts as none."""
    state_dir = str(tmp_path / 'state')
    lease_id = lease().id
    public = ' '.join(KEY_A.split(' ')[:2])
    assert _renter_login.read_host_public_key(state_dir, lease_id) is None
    _renter_login.write_host_public_key(state_dir, lease_id, KEY_A)        # the comment is dropped
    assert _renter_login.read_host_public_key(state_dir, lease_id) == public
    path = os.path.join(_renter_login.login_dir(state_dir, lease_id), _renter_login.HOST_PUBLIC_KEY_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with open(path, 'w') as handle:
        handle.write('ssh-rsa AAAA not-a-host-key\n')
    assert _renter_login.read_host_public_key(state_dir, lease_id) is None
