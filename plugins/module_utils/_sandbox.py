# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The device side of the renter sandbox that is not Docker: what the device can give a
lease (memory, CPUs, free disk), whether the host's isolation rules are in place, the
per-lease bandwidth cap (tc on both ends of the container's veth pair), and ending a renter
container's SSH sessions from the host."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

from ansible_collections.p2pvps.fleet.plugins.module_utils import _facts, _proc, _rental

MIB = 1024 ** 2
DEFAULT_ISOLATION_SCRIPT = '/usr/local/sbin/p2pvps-docker-isolation'
_IFLINK_RE = re.compile(r'^\d+:\s+eth0@if(\d+):')


class SandboxError(Exception):
    """A host-side sandbox step (isolation check, shaping) failed."""


def _run(argv, timeout=30):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError('%s could not run: %s' % (argv[0], exc))
    if proc.returncode != 0:
        raise SandboxError('%s failed (%d): %s' % (' '.join(argv[:3]), proc.returncode,
                                                   proc.stderr.decode('utf-8', 'replace').strip()[-400:]))
    return proc.stdout.decode('utf-8', 'replace')


# ---------------------------------------------------------------- capacity

def memory_total_mb(meminfo='/proc/meminfo'):
    with open(meminfo) as handle:
        for line in handle:
            if line.startswith('MemTotal:'):
                return int(line.split()[1]) // 1024
    raise SandboxError('MemTotal is missing from %s' % meminfo)


def capacity(memory_reserve_mb):
    """What a lease may use here: the device's memory minus the reserve (at least 64 MB), its CPUs."""
    memory = max(64, memory_total_mb() - memory_reserve_mb)
    return _rental.Capacity(memory_mb=memory, cpus=os.cpu_count() or 1)


def disk_refusal(lease, lease_dir, reserve_mb, space=_facts.lease_space_bytes):
    """None when the lease's disk fits what a lease disk can take in `lease_dir`, else why it does not."""
    needed = lease.limits.disk_gb * 1024
    available = space(lease_dir) // MIB
    if needed + reserve_mb <= available:
        return None
    return ('lease %s needs a %d GB disk; this device has %.1f GB free for lease disks in %s and keeps %.1f GB '
            'for Docker, the journal and the agent'
            % (lease.id, lease.limits.disk_gb, available / 1024.0, lease_dir, reserve_mb / 1024.0))


# ---------------------------------------------------------------- isolation rules

def isolation_problem(script):
    """None when the host's isolation rules for renters are in place, else what is missing.

    The docker role's script writes the rules, so it is also the one that checks them.
    """
    if not os.path.exists(script):
        return ('the isolation rules script %s is missing: apply the p2pvps.fleet.docker role with '
                'docker_lan_isolation enabled' % script)
    try:
        _run([script, 'check'])
    except SandboxError as exc:
        return 'the isolation rules for renter containers are not in place: %s' % exc
    return None


# ---------------------------------------------------------------- bandwidth

def _host_veth(pid):
    """Name of the host end of the veth pair whose other end is eth0 of process `pid`'s netns."""
    line = _run(['nsenter', '-t', str(pid), '-n', 'ip', '-o', 'link', 'show', 'eth0'])
    match = _IFLINK_RE.match(line)
    if match is None:
        raise SandboxError('the container has no veth eth0 (%s)' % line.strip()[:120])
    index = match.group(1)
    for name in os.listdir('/sys/class/net'):
        try:
            with open('/sys/class/net/%s/ifindex' % name) as handle:
                if handle.read().strip() == index:
                    return name
        except OSError:
            continue
    raise SandboxError('no host interface has index %s' % index)


def _tbf(rate_kbit):
    # Burst: 10 ms at the rate, at least 32 KiB so a single TSO segment always fits.
    burst = max(32 * 1024, rate_kbit * 1000 // 8 // 100)
    return ['tbf', 'rate', '%dkbit' % rate_kbit, 'burst', str(burst), 'latency', '100ms']


def shape(pid, rate_kbit):
    """Cap both directions of the container of `pid` at `rate_kbit`.

    Download (to the renter) is shaped on the host end of the veth, upload on the container's
    eth0 from outside its namespace: the renter has no CAP_NET_ADMIN and cannot lift either.
    Returns the host interface name.
    """
    veth = _host_veth(pid)
    _run(['tc', 'qdisc', 'replace', 'dev', veth, 'root'] + _tbf(rate_kbit))
    _run(['nsenter', '-t', str(pid), '-n', 'tc', 'qdisc', 'replace', 'dev', 'eth0', 'root'] + _tbf(rate_kbit))
    return veth


def shaped_rates_kbit(pid):
    """(download, upload) rates in kbit/s of the tbf qdiscs on the container's veth pair (None: none)."""
    veth = _host_veth(pid)
    down = _tbf_rate(_run(['tc', '-j', 'qdisc', 'show', 'dev', veth, 'root']))
    up = _tbf_rate(_run(['nsenter', '-t', str(pid), '-n', 'tc', '-j', 'qdisc', 'show', 'dev', 'eth0', 'root']))
    return down, up


def _tbf_rate(tc_json):
    try:
        qdiscs = json.loads(tc_json or '[]')
    except ValueError:
        return None
    for qdisc in qdiscs:
        if qdisc.get('kind') == 'tbf':
            rate = (qdisc.get('options') or {}).get('rate')
            if isinstance(rate, int):
                return rate * 8 // 1000
    return None


# The module is the only one that shapes renter containers: what it shaped, and when that
# container had started, is kept here, so a no-op run needs no tc call. A restart (new veth
# pair, no qdisc) changes the container's start time, and the next run shapes it again.
SHAPING_FILE = 'shaping.json'


def read_shaping(state_dir):
    try:
        with open(os.path.join(state_dir, SHAPING_FILE)) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_shaping(state_dir, record):
    path = os.path.join(state_dir, SHAPING_FILE)
    tmp = path + '.tmp'
    with open(tmp, 'w') as handle:
        json.dump(record, handle, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# ---------------------------------------------------------------- SSH sessions

# Rounds of stopping newly found session processes before the kill (a process forked between
# two scans is found by the next one); a session tree stops growing once all of it is stopped.
_STOP_ROUNDS = 20


def end_ssh_sessions(listener_pid, container_id, proc='/proc', send=os.kill):
    """Kill every SSH session of a renter container from the host; returns how many there were.

    listener_pid: the container's PID 1 on the host (State.Pid), its sshd listener. Every SSH
    connection is a child of it running sshd (the same program, or sshd-session of newer OpenSSH);
    a session is that child and all its descendants, found through PPid in /proc/<pid>/status.
    Other children of PID 1 (the renter's daemons, reparented to it) are not sessions and are left
    alone. Nothing runs inside the container: the renter is root there and could replace any program.

    The sessions are stopped (SIGSTOP) until a scan finds no new process in them, so none can fork
    away, then killed (SIGKILL). Processes that exit meanwhile are skipped.
    """
    _require_listener(listener_pid, container_id, proc)
    sessions, stopped = set(), set()
    for dummy in range(_STOP_ROUNDS):
        roots, members = _session_trees(listener_pid, proc)
        sessions |= roots
        fresh = members - stopped
        if not fresh:
            break
        stopped |= set(pid for pid in fresh if _signal(send, pid, signal.SIGSTOP))
    roots, members = _session_trees(listener_pid, proc)
    # Also those stopped whose parent exited before it was stopped (now children of PID 1).
    for pid in (members | stopped) - {listener_pid}:
        _signal(send, pid, signal.SIGKILL)
    return len(sessions | roots)


def _require_listener(pid, container_id, proc):
    """Refuse a PID that is not the container's (exited, reused) or whose program is not sshd."""
    try:
        with open(os.path.join(proc, str(pid), 'cgroup')) as handle:
            in_container = container_id in handle.read()
        program = os.readlink(os.path.join(proc, str(pid), 'exe'))
    except (FileNotFoundError, ProcessLookupError):
        in_container, program = False, None
    if not in_container:
        raise SandboxError('process %d is not the main process of container %s (any more)' % (pid, container_id[:12]))
    if not _is_sshd_name(program):
        raise SandboxError('the main process of container %s runs %s, not sshd: its SSH sessions cannot be told '
                           'apart from its other processes' % (container_id[:12], program))


def _is_sshd_name(program):
    # "/usr/sbin/sshd", "/usr/lib/openssh/sshd-session", "/usr/sbin/sshd (deleted)" after an upgrade
    return os.path.basename(program).startswith('sshd')


def _session_trees(listener_pid, proc):
    """(the listener's sshd children, them and all their descendants), as pid sets."""
    children = {}
    for pid, process in _proc.processes(proc).items():
        children.setdefault(process.parent, []).append(pid)
    listener = _proc.program(listener_pid, proc)
    if listener is None:
        return set(), set()
    roots = set(pid for pid in children.get(listener_pid, ()) if _runs_sshd(_proc.program(pid, proc), listener))
    members, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in members:
            members.add(pid)
            todo.extend(children.get(pid, ()))
    return roots, members


def _runs_sshd(program, listener):
    """Whether a child of the listener is an SSH connection: the listener's own program, or one named sshd*."""
    if program is None:
        return False
    name, file_id = program
    return file_id == listener[1] or _is_sshd_name(name)


def _signal(send, pid, signum):
    """Send `signum` to `pid`; False when the process is already gone."""
    try:
        send(pid, signum)
    except ProcessLookupError:
        return False
    return True
