# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device key entries, the authorized_keys file and which sessions end (pure; the module against a
real sshd: tests/integration/test_tunnel_keys.py)."""
from __future__ import annotations

import base64
import os
import signal
import struct
import subprocess
import time

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _proc, _ssh_key
from ansible_collections.p2pvps.fleet.plugins.module_utils import _tunnel_keys as tk

RANGES = tk.Ranges(20000, 20999, 30000, 30999)


def ed25519(seed=None):
    blob = struct.pack('>I', 11) + b'ssh-ed25519' + struct.pack('>I', 32) + (seed or os.urandom(32))
    return 'ssh-ed25519 ' + base64.b64encode(blob).decode('ascii')


def rsa():
    blob = struct.pack('>I', 7) + b'ssh-rsa' + os.urandom(64)
    return 'ssh-rsa ' + base64.b64encode(blob).decode('ascii')


def parse(items):
    return tk.parse_entries(items, RANGES)


def test_good_entries_are_sorted_by_port_and_named():
    a, b = ed25519(), ed25519()
    entries, skipped = parse([{'key': a + ' tunnel@a', 'port': 20002, 'web_port': 30002, 'name': 'pi-a'},
                              {'key': b, 'port': '20001', 'device_id': '9b2f-c1e'}])
    assert skipped == []
    assert entries == [tk.Entry('9b2f-c1e', b, 20001, None), tk.Entry('pi-a', a, 20002, 30002)]


def test_an_entry_without_a_name_is_named_after_its_port():
    entries, dummy = parse([{'key': ed25519(), 'port': 20005}])
    assert entries[0].name == 'device-port-20005'


@pytest.mark.parametrize('item, reason', [
    ('not a dict', 'not an object'),
    ({'key': None, 'port': 20001}, 'key must be a string'),
    ({'key': 'RSA', 'port': 20001}, 'key does not start with an accepted key type'),
    ({'key': 'command="/bin/sh" ' + ed25519(seed=b'1' * 32), 'port': 20001}, 'key options'),
    ({'key': ed25519(seed=b'2' * 32) + ' x\nssh-ed25519 AAAA evil', 'port': 20001}, 'single line'),
    ({'key': ed25519(seed=b'3' * 32), 'port': 22}, 'port 22 is outside 20000-20999'),
    ({'key': ed25519(seed=b'4' * 32), 'port': '20003,permitopen="*:*"'}, 'port is not an integer'),
    ({'key': ed25519(seed=b'5' * 32), 'port': True}, 'port is not an integer'),
    ({'key': ed25519(seed=b'6' * 32), 'port': '２００３'}, 'port is not an integer'),
    ({'key': ed25519(seed=b'7' * 32), 'port': 20001, 'web_port': 22}, 'web port 22 is outside 30000-30999'),
    ({'key': ed25519(seed=b'8' * 32), 'port': 20001, 'web_port': '30003",permitopen="*:*'},
     'web port is not an integer'),
    ({'key': ed25519(seed=b'9' * 32), 'port': 20001, 'name': 'pi a'}, 'name is not'),
    ({'key': ed25519(seed=b'a' * 32), 'port': 20001, 'name': '-' + 'x' * 64}, 'name is not'),
])
def test_a_bad_entry_is_skipped_and_the_others_kept(item, reason):
    good = {'key': ed25519(), 'port': 20010, 'name': 'good'}
    entries, skipped = parse([good, item])
    assert [entry.name for entry in entries] == ['good']
    assert len(skipped) == 1 and skipped[0]['index'] == 1
    assert reason in skipped[0]['reason']


def test_an_rsa_key_is_skipped():
    entries, skipped = parse([{'key': rsa(), 'port': 20001, 'name': 'old'}])
    assert entries == [] and 'accepted key type' in skipped[0]['reason'] and skipped[0]['name'] == 'old'


@pytest.mark.parametrize('second', [
    {'port': 20001},                        # same SSH port
    {'port': 20002, 'web_port': 30001},     # same web port
    {'port': 30001},                        # its SSH port is the other's web port
])
def test_entries_sharing_a_port_are_all_skipped(second):
    items = [{'key': ed25519(), 'port': 20001, 'web_port': 30001, 'name': 'a'}, dict(second, key=ed25519(), name='b'),
             {'key': ed25519(), 'port': 20009, 'name': 'c'}]
    ranges = tk.Ranges(20000, 30999, 30000, 30999)
    entries, skipped = tk.parse_entries(items, ranges)
    assert [entry.name for entry in entries] == ['c']
    assert [item['index'] for item in skipped] == [0, 1] and all('used by 2' in item['reason'] for item in skipped)


def test_entries_sharing_a_key_are_all_skipped():
    key = ed25519()
    entries, skipped = parse([{'key': key + ' one', 'port': 20001}, {'key': key + ' two', 'port': 20002}])
    assert entries == [] and all(item['reason'] == 'key used by 2 entries' for item in skipped)


def test_render_restricts_each_key_to_its_ports_and_reads_back_for_the_diff():
    a, b = ed25519(), ed25519()
    entries, dummy = parse([{'key': a + ' comment-dropped', 'port': 20001, 'web_port': 30001, 'name': 'pi-a'},
                            {'key': b, 'port': 20002}])
    text = tk.render(entries)
    lines = [line for line in text.splitlines() if not line.startswith('#')]
    assert lines == ['restrict,port-forwarding,permitlisten="20001",permitlisten="localhost:30001" %s pi-a' % a,
                     'restrict,port-forwarding,permitlisten="20002" %s device-port-20002' % b]
    assert tk.summary_of_file(text) == tk.summary_of(entries) == {
        'pi-a': 'port 20001 web 30001 ' + _ssh_key.fingerprint(a),
        'device-port-20002': 'port 20002 ' + _ssh_key.fingerprint(b)}
    assert tk.summary_of_file(None) == {}


# ---------------------------------------------------------------- which sessions end

def session(pid, started, fingerprint):
    return tk.Session(pid, started, fingerprint)


def test_sessions_of_keys_no_longer_authorised_or_unknown_end():
    kept, gone = session(10, 100, 'SHA256:kept'), session(11, 50, 'SHA256:gone')
    unknown = session(12, 60, None)
    ending = tk.sessions_to_end([kept, gone, unknown], {'SHA256:kept'}, 2)
    assert ending == [(gone, 'its key is no longer authorised'), (unknown, 'no record of the key that opened it')]


def test_beyond_the_cap_the_newest_sessions_of_a_key_end():
    sessions = [session(20, 300, 'SHA256:k'), session(21, 100, 'SHA256:k'), session(22, 200, 'SHA256:k'),
                session(23, 50, 'SHA256:other')]
    ending = tk.sessions_to_end(sessions, {'SHA256:k', 'SHA256:other'}, 2)
    assert ending == [(sessions[0], 'more than 2 sessions with one key')]
    assert tk.sessions_to_end(sessions, {'SHA256:k', 'SHA256:other'}, 0) == []


def test_the_accepted_line_names_the_key():
    line = 'Accepted publickey for tunnel from 172.18.0.3 port 41234 ssh2: ED25519 SHA256:abc+/9'
    match = tk._ACCEPTED_RE.match(line)   # pylint: disable=protected-access
    assert match.groups() == ('tunnel', 'SHA256:abc+/9')


# ---------------------------------------------------------------- the sessions' processes

def fake_status(root, pid, name, parent, uid):
    (root / str(pid)).mkdir()
    (root / str(pid) / 'status').write_text('Name:\t%s\nPid:\t%d\nPPid:\t%d\nUid:\t%d\t%d\t%d\t%d\n'
                                            % (name, pid, parent, uid, uid, uid, uid))


def test_session_pids_are_the_users_sshd_children_of_a_root_sshd(tmp_path):
    fake_status(tmp_path, 1, 'systemd', 0, 0)
    fake_status(tmp_path, 100, 'sshd', 1, 0)              # the listener
    fake_status(tmp_path, 200, 'sshd', 100, 0)            # a connection's monitor
    fake_status(tmp_path, 201, 'sshd', 200, 1001)         # its child as the tunnel user
    fake_status(tmp_path, 300, 'sshd-session', 100, 0)    # newer OpenSSH
    fake_status(tmp_path, 301, 'sshd-session', 300, 1001)
    fake_status(tmp_path, 400, 'sshd', 100, 0)            # another user's connection
    fake_status(tmp_path, 401, 'sshd', 400, 1002)
    fake_status(tmp_path, 500, 'bash', 1, 0)              # not sshd: a parent ...
    fake_status(tmp_path, 501, 'sshd', 500, 1001)
    fake_status(tmp_path, 600, 'sshd', 1, 1001)           # ... or a parent that is not root
    fake_status(tmp_path, 601, 'sshd', 600, 1001)
    fake_status(tmp_path, 700, 'sleep', 200, 1001)        # not sshd: a child
    assert tk.session_pids(1001, str(tmp_path)) == {200: [201], 300: [301]}


@pytest.fixture
def sleepers():
    """Real processes to end (this user may signal its own)."""
    processes = [subprocess.Popen(['sleep', '60']) for dummy in range(3)]
    yield processes
    for process in processes:
        process.kill()
        process.wait()


def test_end_session_kills_the_processes_it_was_found_with(sleepers):
    monitor, child, other = sleepers
    session = tk.Session(monitor.pid, _proc.start_ticks(monitor.pid), 'SHA256:x',
                         ((child.pid, _proc.start_ticks(child.pid)),))
    tk.end_session(session)
    assert monitor.wait(10) == -signal.SIGKILL and child.wait(10) == -signal.SIGKILL
    assert other.poll() is None
    tk.end_session(session)   # already gone: nothing to do


def test_end_session_spares_a_reused_pid(sleepers):
    monitor, child, dummy = sleepers
    session = tk.Session(monitor.pid, _proc.start_ticks(monitor.pid) - 1, None,
                         ((child.pid, _proc.start_ticks(child.pid) - 1),))
    tk.end_session(session)
    time.sleep(0.2)
    assert monitor.poll() is None and child.poll() is None
