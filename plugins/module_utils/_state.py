# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The device's local files: the lease state (lease.json), the clock anchor (clock.json) and the lease etag
of the last check-in answer converged to (checkin.json), read safely and written atomically; text files
(authorized_keys, the web routes) read and written atomically; the lock that
lets one converge run at a time."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time

from ansible.module_utils.common.text.converters import to_native

from ansible_collections.p2pvps.fleet.plugins.module_utils import _clock, _lease

STATE_FILE = 'lease.json'
CLOCK_FILE = 'clock.json'
CHECKIN_FILE = 'checkin.json'

#: The state directory option of the modules that use one (doc fragment p2pvps.fleet._device).
STATE_DIR_ARGS = dict(
    state_dir=dict(type='path', default='/var/lib/p2pvps'),
)


def read_parsed(path, what, parse, max_bytes=1024 * 1024):
    """(parse(the file's JSON) or None, warning or None); a missing file is no warning.

    Only the first `max_bytes` are read: a longer file is unreadable. `parse` raises
    _lease.LeaseError for content it does not accept.
    """
    try:
        with open(path, 'rb') as handle:
            raw = json.loads(handle.read(max_bytes).decode('utf-8'))
    except FileNotFoundError:
        return None, None
    except (ValueError, UnicodeError) as exc:
        return None, '%s %s is unreadable and ignored: %s' % (what, path, to_native(exc))
    try:
        return parse(raw), None
    except _lease.LeaseError as exc:
        return None, '%s %s is ignored: %s' % (what, path, to_native(exc))


def read_state(path):
    """(Lease or None, warning or None) from the state file."""
    return read_parsed(path, 'local lease state', _lease.parse_state)


def read_local_state(path):
    """((Lease or None, frozen_at or None), warning or None) from the state file."""
    state, warning = read_parsed(path, 'local lease state', _lease.parse_local_state)
    return state or (None, None), warning


def read_anchor(path):
    """(clock Anchor or None, warning or None) from the clock file."""
    return read_parsed(path, 'clock anchor', _clock.parse_anchor)


def read_lease_etag(path):
    """(lease etag or None, warning or None) from the check-in file."""
    return read_parsed(path, 'lease etag', _parse_checkin_file)


def _parse_checkin_file(raw):
    if not isinstance(raw, dict):
        raise _lease.LeaseError('unknown format')
    return _lease.parse_lease_etag(raw)


def read_host_key(path):
    """(lease id, host public key line) remembered in the state file, or None."""
    host_key, dummy = read_parsed(path, 'local lease state', _parse_host_key)
    return host_key


def _parse_host_key(raw):
    return _lease.parse_state_host_key(raw)


def write_state(path, lease, frozen_at=None, host_public_key=None):
    write_json_atomic(path, _lease.state_content(lease, frozen_at, host_public_key))


def write_anchor(path, anchor):
    write_json_atomic(path, anchor.to_dict())


def write_lease_etag(path, etag):
    write_json_atomic(path, {'lease_etag': etag})


def write_json_atomic(path, content):
    """Atomic write: temporary file in the same directory, fsync, 0600, rename. The JSON is streamed into
    the temporary file (not built in memory first, as write_atomic's text is): a large state file is
    never held twice, and test_faults' SIGKILL rounds rely on the write taking place in the file."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump(content, handle, indent=2, sort_keys=True)
            handle.write('\n')
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_text(path):
    """The file's text, or None when it does not exist."""
    try:
        with open(path, 'r', encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomic(path, text, mode=0o644):
    """Replace `path` with `text` atomically (temporary file in the same directory, fsync, rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateLockTimeout(Exception):
    pass


class StateLock(object):
    """An exclusive lock on the state directory: one converge at a time on a device.

    The rental_agent timer and a push-mode converge from the operator can start together;
    without it both would see no container and both would create one.
    """

    def __init__(self, state_dir, timeout=120):
        self.path = os.path.join(state_dir, '.lock')
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise StateLockTimeout('another converge has held %s for more than %d s' % (self.path, self.timeout))
                time.sleep(0.2)

    def __exit__(self, *exc_info):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
