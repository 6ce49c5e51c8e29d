# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ending a renter container's SSH sessions from the host, on a fake /proc (no root, no Docker).

The real thing, with a renter container's sshd, is in
tests/integration/test_rental_module.py::test_a_removed_key_loses_its_ssh_sessions_in_one_converge."""
from __future__ import annotations

import signal

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _sandbox

CONTAINER = 'c0ffee' * 10 + 'abcd'
LISTENER = 4000


class FakeProc:
    """A /proc of fake processes: status (PPid, Uid), exe (a symlink to a program) and cgroup files."""

    def __init__(self, root):
        self.root = root / 'proc'
        self.bin = root / 'bin'
        self.root.mkdir()
        self.bin.mkdir()
        self.signals = []
        self.on_stop = {}   # pid -> function run when it is stopped (a fork "between two scans")

    def program(self, name):
        path = self.bin / name
        path.touch()
        return path

    def add(self, pid, parent, program, cgroup='0::/system.slice/docker-%s.scope\n' % CONTAINER):
        directory = self.root / str(pid)
        directory.mkdir()
        (directory / 'status').write_text('Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t%d\nPPid:\t%d\n'
                                          'Uid:\t0\t0\t0\t0\n' % (pid, parent))
        (directory / 'cgroup').write_text(cgroup)
        if program is not None:   # a zombie has no exe link
            (directory / 'exe').symlink_to(program)

    def remove(self, pid):
        directory = self.root / str(pid)
        for name in ('status', 'cgroup', 'exe'):
            if (directory / name).is_symlink() or (directory / name).exists():
                (directory / name).unlink()
        directory.rmdir()

    def send(self, pid, signum):
        if not (self.root / str(pid)).exists():
            raise ProcessLookupError(pid)
        self.signals.append((pid, signum))
        if signum == signal.SIGSTOP and pid in self.on_stop:
            self.on_stop.pop(pid)()

    def killed(self):
        return sorted(pid for pid, signum in self.signals if signum == signal.SIGKILL)

    def end_sessions(self, listener=LISTENER, container=CONTAINER):
        return _sandbox.end_ssh_sessions(listener, container, proc=str(self.root), send=self.send)


@pytest.fixture
def proc(tmp_path):
    fake = FakeProc(tmp_path)
    sshd = fake.program('sshd')
    fake.add(1, 0, fake.program('systemd'), cgroup='0::/init.scope\n')
    fake.add(LISTENER, 3990, sshd)
    fake.add(900, 1, sshd, cgroup='0::/system.slice/ssh.service\n')   # the device's own sshd
    fake.add(901, 900, sshd, cgroup='0::/system.slice/ssh.service\n')  # and an owner's session on it
    return fake


def test_every_session_and_its_descendants_are_killed_and_nothing_else(proc):
    sshd = proc.bin / 'sshd'
    proc.add(4100, LISTENER, sshd)                             # sshd: alice [priv]
    proc.add(4101, 4100, sshd)                                 # sshd: alice@notty
    proc.add(4102, 4101, proc.program('bash'))
    proc.add(4103, 4102, proc.program('sleep'))
    proc.add(4200, LISTENER, proc.program('sshd-session'))     # newer OpenSSH: a session program
    proc.add(4201, 4200, proc.program('bash'))
    proc.add(4300, LISTENER, proc.program('python3'))          # the renter's web server, detached
    proc.add(4301, 4300, proc.bin / 'python3')
    proc.add(4400, LISTENER, proc.bin / 'bash')                # a nohup'd script reparented to PID 1
    proc.add(4401, 4400, sshd)                                 # even one that runs an sshd of its own

    assert proc.end_sessions() == 2
    assert proc.killed() == [4100, 4101, 4102, 4103, 4200, 4201]
    stopped = sorted(pid for pid, signum in proc.signals if signum == signal.SIGSTOP)
    assert stopped == proc.killed(), 'each session process is stopped before any is killed'
    first_kill = [signum for dummy, signum in proc.signals].index(signal.SIGKILL)
    assert all(signum == signal.SIGSTOP for dummy, signum in proc.signals[:first_kill])


def test_no_session_kills_nothing(proc):
    proc.add(4300, LISTENER, proc.program('python3'))
    assert proc.end_sessions() == 0
    assert proc.signals == []


def test_a_process_forked_while_stopping_is_killed_too(proc):
    sshd = proc.bin / 'sshd'
    proc.add(4100, LISTENER, sshd)
    proc.add(4101, 4100, proc.program('bash'))
    proc.on_stop[4101] = lambda: proc.add(4102, 4101, proc.program('sleep'))   # forked just before its stop
    assert proc.end_sessions() == 1
    assert proc.killed() == [4100, 4101, 4102]
    assert (4102, signal.SIGSTOP) in proc.signals


def test_a_child_whose_parent_exited_before_the_stop_is_killed_too(proc):
    """`bash -c 'sleep 600 &'` of a session exits while the session is being stopped: its child
    is reparented to PID 1 but was found in the session, so it is killed with it."""
    sshd = proc.bin / 'sshd'
    proc.add(4100, LISTENER, sshd)
    proc.add(4101, 4100, proc.program('bash'))
    proc.add(4102, 4101, proc.program('sleep'))

    def bash_exits():
        proc.remove(4101)
        proc.remove(4102)
        proc.add(4102, LISTENER, proc.bin / 'sleep')
    proc.on_stop[4100] = bash_exits
    proc.end_sessions()
    assert 4102 in proc.killed()


def test_processes_that_vanish_are_skipped(proc):
    sshd = proc.bin / 'sshd'
    proc.add(4100, LISTENER, sshd)
    proc.add(4101, 4100, proc.program('bash'))
    proc.add(4200, LISTENER, sshd)
    proc.on_stop[4100] = lambda: proc.remove(4200)   # the other session ended by itself meanwhile
    proc.add(4300, LISTENER, None)                     # a zombie connection (exited, not yet reaped)
    assert proc.end_sessions() == 2   # 4200 was seen before it ended
    assert set(proc.killed()) == {4100, 4101}


def test_a_pid_that_is_not_the_containers_sshd_is_refused(proc):
    with pytest.raises(_sandbox.SandboxError, match='not the main process of container c0ffeec0ffee'):
        proc.end_sessions(listener=900)                  # the device's own sshd: another cgroup
    with pytest.raises(_sandbox.SandboxError, match='not the main process'):
        proc.end_sessions(listener=4999)                 # exited
    proc.add(5000, 3990, proc.program('tini'))
    proc.add(5001, 5000, proc.bin / 'sshd')
    with pytest.raises(_sandbox.SandboxError, match='runs .*tini, not sshd'):
        proc.end_sessions(listener=5000)
    assert proc.signals == []


def test_an_upgraded_sshd_is_still_the_listener(proc):
    """The renter upgraded openssh-server: PID 1 runs a deleted file, new connections the new one."""
    proc.add(5000, 3990, proc.program('sshd (deleted)'))
    proc.add(5100, 5000, proc.bin / 'sshd')
    assert proc.end_sessions(listener=5000) == 1
    assert proc.killed() == [5100]
