# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process table reader, on this machine's /proc and on a fake one (for what a real one
cannot be made to show: odd names, a process that vanished mid-scan)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _proc


def status(name, parent, uid, euid=None):
    return ('Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t7\nPPid:\t%d\nUid:\t%d\t%d\t%d\t%d\n'
            % (name, parent, uid, uid if euid is None else euid, uid, uid))


@pytest.fixture
def child():
    """A real process that runs until the test ends."""
    process = subprocess.Popen(['sleep', '60'])
    yield process
    process.kill()
    process.wait()


def test_the_table_of_this_machine_holds_this_process_and_its_child(child):
    table = _proc.processes()
    me = table[os.getpid()]
    assert me.parent == os.getppid() and me.uid == os.getuid()
    with open('/proc/self/comm') as handle:
        assert me.name == handle.read().rstrip('\n')
    assert table[child.pid] == _proc.Process(os.getpid(), os.getuid(), 'sleep')


def test_the_fake_table_reads_parent_real_uid_and_name_as_is(tmp_path):
    for pid, text in ((10, status('sshd', 1, 0)),
                      (11, status('sshd', 10, 1001, euid=0)),      # the real uid counts, not the effective one
                      (12, status(' sshd: x', 10, 1001)),           # a name is never trimmed
                      (13, 'Name:\tgone\nPid:\t13\n'),              # no PPid/Uid: not a full status
                      (14, None)):                                  # exited between the listing and the read
        (tmp_path / str(pid)).mkdir()
        if text is not None:
            (tmp_path / str(pid) / 'status').write_text(text)
    (tmp_path / 'self').mkdir()
    (tmp_path / 'stat').write_text('cpu 1 2 3\n')
    assert _proc.processes(str(tmp_path)) == {10: (1, 0, 'sshd'), 11: (10, 1001, 'sshd'), 12: (10, 1001, ' sshd: x')}


def test_start_ticks_of_a_real_process(child):
    mine, its = _proc.start_ticks(os.getpid()), _proc.start_ticks(child.pid)
    assert 0 < mine <= its
    child.kill()
    child.wait()
    with pytest.raises(OSError):
        _proc.start_ticks(child.pid)


def test_start_ticks_after_a_name_with_parentheses(tmp_path):
    (tmp_path / '5').mkdir()
    fields = ['S'] + [str(n) for n in range(4, 22)] + ['4242'] + ['0'] * 30   # field 22 is 4242
    (tmp_path / '5' / 'stat').write_text('5 (a) b (c) %s\n' % ' '.join(fields))
    assert _proc.start_ticks(5, str(tmp_path)) == 4242


def test_boot_time():
    assert 0 < _proc.boot_time() <= time.time()


def test_boot_time_missing(tmp_path):
    (tmp_path / 'stat').write_text('cpu 1 2 3\n')
    with pytest.raises(OSError, match='no btime'):
        _proc.boot_time(str(tmp_path))


def test_program_is_the_path_and_file_of_the_executable(child):
    path, file_id = _proc.program(os.getpid())
    info = os.stat(os.path.realpath(sys.executable))
    assert path == os.path.realpath(sys.executable) and file_id == (info.st_dev, info.st_ino)
    assert os.path.basename(_proc.program(child.pid)[0]) == 'sleep'
    child.kill()
    child.wait()
    assert _proc.program(child.pid) is None
