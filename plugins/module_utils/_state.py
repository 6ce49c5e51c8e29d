# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The device's local lease state file (lease.json): read it safely, write it atomically."""

from __future__ import annotations

import json
import os
import tempfile

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.p2pvps.fleet.plugins.module_utils import _rental

STATE_FILE = 'lease.json'


def read_state(path):
    """(Lease or None, warning or None) from the state file."""
    try:
        with open(path, 'rb') as handle:
            raw = json.loads(handle.read(1024 * 1024).decode('utf-8'))
    except FileNotFoundError:
        return None, None
    except (ValueError, UnicodeError) as exc:
        return None, 'local lease state %s is unreadable and ignored: %s' % (path, to_native(exc))
    try:
        return _rental.parse_state(raw), None
    except _rental.LeaseError as exc:
        return None, 'local lease state %s is ignored: %s' % (path, to_native(exc))


def write_state(path, lease):
    """Atomic write: temporary file in the same directory, fsync, 0600, rename."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.lease.', dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump(_rental.state_content(lease), handle, indent=2, sort_keys=True)
            handle.write('\n')
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
