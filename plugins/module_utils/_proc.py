# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The process table, read from /proc: who is whose parent, as which user, running what.

A process can exit at any moment while it is read: such a process is left out (or None), never
an error. Every function takes the /proc root so the tests can give a fake one. No Ansible
imports here.
"""

from __future__ import annotations

import collections
import os

PROC = '/proc'

#: One process of the table: its parent's pid, its real uid, its name (comm, as status shows it).
Process = collections.namedtuple('Process', 'parent uid name')


def processes(proc=PROC):
    """{pid: Process} of every process, in one scan of the status files (no need for CONFIG_PROC_CHILDREN)."""
    table = {}
    for entry in os.listdir(proc):
        if entry.isdigit():
            process = _status(os.path.join(proc, entry, 'status'))
            if process is not None:
                table[int(entry)] = process
    return table


def _status(path):
    """Process of a status file, or None when the process is gone (or the file lacks a field)."""
    fields = {}
    try:
        with open(path, 'r', encoding='utf-8', errors='replace') as handle:
            for line in handle:
                key, sep, value = line.partition(':')
                if sep and key in ('Name', 'PPid', 'Uid'):
                    fields[key] = value
        # "Name:\t<comm>\n": the name as is (the kernel escapes its whitespace), only the tab and newline taken off
        name = fields['Name'].rstrip('\n')
        return Process(int(fields['PPid'].split()[0]), int(fields['Uid'].split()[0]),
                       name[1:] if name.startswith('\t') else name)
    except (OSError, KeyError, ValueError, IndexError):
        return None


def start_ticks(pid, proc=PROC):
    """Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat).

    Raises OSError (the process is gone), ValueError or IndexError.
    """
    with open(os.path.join(proc, str(pid), 'stat'), 'r', encoding='utf-8', errors='replace') as handle:
        return int(handle.read().rsplit(')', 1)[1].split()[19])


def boot_time(proc=PROC):
    """When the system booted, in seconds since the epoch (btime of /proc/stat)."""
    with open(os.path.join(proc, 'stat'), 'r', encoding='ascii') as handle:
        for line in handle:
            if line.startswith('btime '):
                return int(line.split()[1])
    raise OSError('no btime in %s' % os.path.join(proc, 'stat'))


def program(pid, proc=PROC):
    """(path, (device, inode)) of the program process `pid` runs; None when it has exited (or is a zombie)."""
    path = os.path.join(proc, str(pid), 'exe')
    try:
        info = os.stat(path)
        return os.readlink(path), (info.st_dev, info.st_ino)
    except (FileNotFoundError, ProcessLookupError):
        return None
