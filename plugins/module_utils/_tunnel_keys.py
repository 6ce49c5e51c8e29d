# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The tunnel server's device keys and the sessions they hold.

Entries (from a playbook or from the marketplace) are checked one by one: a bad one is skipped
with a short reason and never blocks the others. The authorized_keys file lets each key listen
on its own port only (and on its web port on the loopback). Sessions are the tunnel user's live
SSH connections, each told apart by the key sshd logged when it accepted it; a session whose key
is no longer authorised, or one beyond the per-key cap, is ended. No Ansible imports here.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess

from ansible_collections.p2pvps.fleet.plugins.module_utils import _proc, _ssh_key
from ansible_collections.p2pvps.fleet.plugins.module_utils._web_routes import check_port, shown

#: Key types the tunnel server authorises (the marketplace refuses others at registration).
KEY_TYPES = ('ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521')
#: A device's name, written as its key's comment.
NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9._@-]{0,63}')
HEADER = ('# Managed by p2pvps.fleet.tunnel_keys; rewritten when the device list changes. Do not edit.\n'
          '# Each device key may listen on its own port, and on its own web port on the loopback only.\n')
_LINE_RE = re.compile(r'^restrict,port-forwarding,permitlisten="([0-9]+)"(?:,permitlisten="localhost:([0-9]+)")? '
                      r'(\S+) (\S+) (\S+)$', re.MULTILINE)
#: What sshd logs when it lets a key in (the monitor process of that connection logs it).
_ACCEPTED_RE = re.compile(r'^Accepted publickey for (\S+) from \S+ port [0-9]+ ssh2: \S+ (SHA256:[A-Za-z0-9+/]+)')

_DIGITS_RE = re.compile(r'[0-9]{1,5}')

Entry = collections.namedtuple('Entry', 'name key port web_port')
#: A connection: its monitor's pid and start ticks, its key's fingerprint (None: unknown), and
#: ((pid, start ticks), ...) of the monitor's children of the user when it was found.
Session = collections.namedtuple('Session', 'pid started fingerprint children', defaults=((),))
Ranges = collections.namedtuple('Ranges', 'port_min port_max web_port_min web_port_max')


# ---------------------------------------------------------------- the device list

def check_entry(item, ranges):
    """(Entry, None) for a valid device entry, (None, reason) otherwise; unknown fields are ignored."""
    if not isinstance(item, dict):
        return None, 'not an object'
    name = item.get('name', item.get('device_id'))
    if name is not None and (not isinstance(name, str) or not NAME_RE.fullmatch(name)):
        return None, 'name is not 1-64 characters of A-Z, a-z, 0-9, ".", "_", "@" and "-"'
    try:
        key = _ssh_key.parse_public_key(item.get('key'), KEY_TYPES)
    except _ssh_key.PublicKeyError as exc:
        return None, 'key %s' % exc
    port, web_port = _as_port(item.get('port')), _as_port(item.get('web_port'))
    problem = check_port(port, ranges.port_min, ranges.port_max)
    if not problem and web_port is not None:
        problem = check_port(web_port, ranges.web_port_min, ranges.web_port_max)
        problem = problem and 'web ' + problem
    if problem:
        return None, problem
    return Entry(name or 'device-port-%d' % port, ' '.join(key.split(' ')[:2]), port, web_port), None


def _as_port(value):
    """A port given as a string of digits (Ansible templating makes strings) as an integer."""
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value):
        return int(value)
    return value


def parse_entries(items, ranges):
    """(entries sorted by port, skipped) from the device list.

    Each skipped entry is {index, name, reason}. Entries that share a port (SSH or web) or a key
    are all skipped: which one is right cannot be told, and a key on two lines would get the
    first line's ports for both devices.
    """
    valid, skipped = [], []
    for index, item in enumerate(items):
        entry, problem = check_entry(item, ranges)
        if problem:
            name = item.get('name', item.get('device_id')) if isinstance(item, dict) else None
            skipped.append({'index': index, 'name': shown(name), 'reason': problem})
        else:
            valid.append((index, entry))
    ports = collections.Counter()
    keys = collections.Counter(entry.key for dummy, entry in valid)
    for dummy, entry in valid:
        ports.update(port for port in (entry.port, entry.web_port) if port is not None)
    entries = []
    for index, entry in valid:
        shared = [port for port in (entry.port, entry.web_port) if port is not None and ports[port] > 1]
        if shared:
            reason = 'port %d used by %d entries' % (shared[0], ports[shared[0]])
        elif keys[entry.key] > 1:
            reason = 'key used by %d entries' % keys[entry.key]
        else:
            entries.append(entry)
            continue
        skipped.append({'index': index, 'name': entry.name, 'reason': reason})
    skipped.sort(key=lambda item: item['index'])
    return sorted(entries, key=lambda entry: entry.port), skipped


def render(entries):
    """The authorized_keys file of the tunnel user."""
    lines = [HEADER]
    for entry in sorted(entries, key=lambda item: item.port):
        options = 'restrict,port-forwarding,permitlisten="%d"' % entry.port
        if entry.web_port is not None:
            options += ',permitlisten="localhost:%d"' % entry.web_port
        lines.append('%s %s %s\n' % (options, entry.key, entry.name))
    return ''.join(lines)


def summary_of(entries):
    """{name: "port[ web web_port] fingerprint"} of entries, for the diff (no key material)."""
    return dict((entry.name, _described(entry.port, entry.web_port, entry.key)) for entry in entries)


def summary_of_file(text):
    """summary_of() for an authorized_keys file written by render()."""
    found = {}
    for port, web_port, key_type, body, name in _LINE_RE.findall(text or ''):
        found[name] = _described(int(port), int(web_port) if web_port else None, key_type + ' ' + body)
    return found


def _described(port, web_port, key):
    web = '' if web_port is None else ' web %d' % web_port
    return 'port %d%s %s' % (port, web, _ssh_key.fingerprint(key))


def fingerprints(entries):
    return set(_ssh_key.fingerprint(entry.key) for entry in entries)


# ---------------------------------------------------------------- live sessions

def sessions_to_end(sessions, allowed, max_per_key):
    """[(session, reason)] to end: keys no longer authorised, keys sshd's log does not tell, and
    beyond `max_per_key` sessions of one key (0: no cap) the newest ones."""
    ending = []
    by_key = collections.defaultdict(list)
    for session in sessions:
        if session.fingerprint is None:
            ending.append((session, 'no record of the key that opened it'))
        elif session.fingerprint not in allowed:
            ending.append((session, 'its key is no longer authorised'))
        else:
            by_key[session.fingerprint].append(session)
    if max_per_key:
        for same_key in by_key.values():
            for session in sorted(same_key, key=lambda item: (item.started, item.pid))[max_per_key:]:
                ending.append((session, 'more than %d sessions with one key' % max_per_key))
    return sorted(ending, key=lambda item: item[0].pid)


def session_pids(uid, proc=_proc.PROC):
    """{monitor pid: [its children of the user]} of the user's live SSH connections.

    After authentication each connection is a root monitor process whose unprivileged child
    runs as the user; the monitor is the process sshd's log names for that connection.
    """
    table = _proc.processes(proc)
    found = collections.defaultdict(list)
    for pid, process in sorted(table.items()):
        if process.uid != uid or process.name[:4] != 'sshd':
            continue
        parent = table.get(process.parent)
        if parent is not None and parent.uid == 0 and parent.name[:4] == 'sshd':
            found[process.parent].append(pid)
    return dict(found)


def accepted_key(pid, user, since_epoch, journalctl='journalctl'):
    """The fingerprint sshd logged when process `pid` (started at `since_epoch`) let `user` in, or None."""
    command = [journalctl, '--no-pager', '--output=json', '--output-fields=MESSAGE', '--since=@%d' % since_epoch,
               '_PID=%d' % pid]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, check=False)
    if proc.returncode != 0:
        raise OSError('%s failed (rc %d): %s' % (journalctl, proc.returncode,
                                                 proc.stderr.decode('utf-8', 'replace').strip()[:200]))
    for line in proc.stdout.decode('utf-8', 'replace').splitlines():
        try:
            message = json.loads(line).get('MESSAGE')
        except ValueError:
            continue
        match = _ACCEPTED_RE.match(message) if isinstance(message, str) else None
        if match and match.group(1) == user:
            return match.group(2)
    return None


def live_sessions(uid, user, known, journalctl='journalctl'):
    """[Session] of the user's connections, and {"pid:start": fingerprint} to remember.

    `known` is what an earlier run remembered: only connections it does not know are looked up
    in the journal (one journalctl call each).
    """
    ticks = os.sysconf('SC_CLK_TCK')
    booted = None
    sessions, remember = [], {}
    for pid, children in sorted(session_pids(uid).items()):
        try:
            started = _proc.start_ticks(pid)
        except (OSError, ValueError, IndexError):
            continue
        handle = '%d:%d' % (pid, started)
        if handle in known:
            fingerprint = known[handle]
        else:
            booted = _proc.boot_time() if booted is None else booted
            fingerprint = accepted_key(pid, user, booted + started // ticks - 1, journalctl)
        if fingerprint is not None:
            remember[handle] = fingerprint
        sessions.append(Session(pid, started, fingerprint, _started(children)))
    return sessions, remember


def _started(pids):
    """((pid, start ticks), ...) of the processes still there."""
    found = []
    for pid in pids:
        try:
            found.append((pid, _proc.start_ticks(pid)))
        except (OSError, ValueError, IndexError):
            continue
    return tuple(found)


def end_session(session):
    """SIGKILL the connection's processes found by live_sessions (the user's child first, then the
    monitor), each only if it is still the process found (its pid was not reused meanwhile)."""
    for pid, started in session.children + ((session.pid, session.started),):
        try:
            if _proc.start_ticks(pid) != started:
                continue   # the pid was reused meanwhile
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, FileNotFoundError):
            pass
