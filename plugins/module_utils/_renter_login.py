# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""What the renter meets at login: the lease's SSH host key, made on the device (not in the container the
renter controls) so the marketplace can show its fingerprint, and the login message (the lease's limits,
expiry and web address), written by the module into a root-owned directory of the device that the renter
container mounts read-only, so that it follows a lease extension without a restart. No Docker here."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from dataclasses import dataclass

from ansible_collections.p2pvps.fleet.plugins.module_utils import _lease, _ssh_key

#: Under the state directory: one directory per lease, mounted read-only into its renter container.
LOGIN_DIR = 'login'
#: Where the renter container sees that directory; the image's /etc/motd points at MOTD_FILE in it.
CONTAINER_LOGIN_DIR = '/etc/p2pvps-lease'
MOTD_FILE = 'motd'
#: The lease's host public key, next to the message: the record of the key this module made, kept when the
#: state file is lost (the renter may read it: it is the public half, shown by the marketplace too).
HOST_PUBLIC_KEY_FILE = 'ssh_host_ed25519_key.pub'
#: The lease's host key in the renter container (the image's sshd HostKey; its init keeps a key it finds).
HOST_KEY_PATH = '/etc/ssh/ssh_host_ed25519_key'
MAX_FIELD = 200
_TIMEOUT = 30


class HostKeyError(Exception):
    """The lease's host key could not be made."""


@dataclass(frozen=True)
class HostKey:
    """A new ed25519 host key: `private` (bytes, OpenSSH format) is never logged nor kept on the host."""
    private: bytes
    public: str

    def __repr__(self):
        return 'HostKey(public=%r)' % self.public

    @property
    def fingerprint(self):
        return _ssh_key.fingerprint(self.public)


def sanitize(value, max_len=MAX_FIELD):
    """Printable ASCII only (space to ~), at most `max_len` characters: no escape sequence, control
    character or line break of a hostile marketplace string reaches the renter's terminal."""
    text = '' if value is None else str(value)
    return ''.join(ch for ch in text if ' ' <= ch <= '~')[:max_len]


def parse_host_public_key(raw):
    """The public line of a lease host key ('ssh-ed25519 BASE64', no comment); PublicKeyError otherwise."""
    key = _ssh_key.parse_public_key(raw, key_types=('ssh-ed25519',))
    return ' '.join(key.split(' ')[:2])


def host_key_fingerprint(public):
    """SHA256:... of a host public key line, as `ssh-keygen -lf` prints it (None for None)."""
    return None if public is None else _ssh_key.fingerprint(parse_host_public_key(public))


def generate_host_key(work_dir):
    """A new ed25519 host key made with ssh-keygen in a private temporary directory of `work_dir` (root's
    state directory), read into memory, and removed from the disk before this returns."""
    os.makedirs(work_dir, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.hostkey.', dir=work_dir)
    try:
        path = os.path.join(tmp, 'key')
        try:
            proc = subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', path],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HostKeyError('ssh-keygen could not run: %s' % exc)
        if proc.returncode != 0:
            raise HostKeyError('ssh-keygen failed (exit %d): %s' % (
                proc.returncode, sanitize(proc.stderr.decode('utf-8', 'replace'))))
        with open(path, 'rb') as handle:
            private = handle.read()
        with open(path + '.pub', 'r', encoding='ascii') as handle:
            public = parse_host_public_key(handle.read())
    except (OSError, UnicodeError, _ssh_key.PublicKeyError) as exc:
        raise HostKeyError('the new host key could not be read: %s' % exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return HostKey(private=private, public=public)


def login_dir(state_dir, lease_id):
    return os.path.join(state_dir, LOGIN_DIR, _lease.parse_lease_id(lease_id))


def _expiry(lease):
    return _lease.format_time(lease.expires_at).replace('T', ' ').replace('Z', ' UTC')


def motd_text(lease, host_public_key=None, web_port=8080, root_login=None):
    """The login message of `lease` (printable ASCII lines); the host key's fingerprint when known;
    root_login: whether the renter may log in as root (None: not said)."""
    limits = lease.limits
    lines = [
        '',
        '  p2pvps rented VPS for %s (lease %s)' % (sanitize(lease.username, 32), sanitize(lease.id, 64)),
        '  expires: %s' % _expiry(lease),
        '  limits:  %d MB memory, %g CPU, %d processes, %d GB disk' % (
            limits.memory_mb, limits.cpus, limits.pids, limits.disk_gb),
    ]
    if lease.web is not None:
        lines.append('  web:     %s (serve on port %d here, for example: python3 -m http.server %d)'
                     % (sanitize(lease.web.url), web_port, web_port))
    else:
        lines.append('  web:     this lease has no public web address')
    if host_public_key is not None:
        lines.append('  host key: %s' % host_key_fingerprint(host_public_key))
    if root_login is True:
        lines.append('  root:    ssh root@ with the same key (root here is nobody on the device)')
    elif root_login is False:
        lines.append('  root:    not available on this device (it does not remap user namespaces)')
    lines += [
        '  disk:    everything you write outside /tmp, /var/tmp and /run counts against your disk;',
        '           those three are in memory and count against your memory limit.',
        '',
    ]
    return '\n'.join(sanitize(line, 400) for line in lines) + '\n'


def read_motd(state_dir, lease_id):
    """The message written for the lease, or None."""
    return _read_login_file(state_dir, lease_id, MOTD_FILE)


def write_motd(state_dir, lease_id, text):
    _write_login_file(state_dir, lease_id, MOTD_FILE, text)


def read_host_public_key(state_dir, lease_id):
    """The host public key line this module made for the lease (from its login directory), or None."""
    raw = _read_login_file(state_dir, lease_id, HOST_PUBLIC_KEY_FILE)
    try:
        return None if raw is None else parse_host_public_key(raw)
    except _ssh_key.PublicKeyError:
        return None


def write_host_public_key(state_dir, lease_id, public):
    _write_login_file(state_dir, lease_id, HOST_PUBLIC_KEY_FILE, parse_host_public_key(public) + '\n')


def _read_login_file(state_dir, lease_id, name):
    try:
        with open(os.path.join(login_dir(state_dir, lease_id), name), 'r', encoding='ascii',
                  errors='replace') as handle:
            return handle.read(64 * 1024)
    except OSError:
        return None


def _write_login_file(state_dir, lease_id, name, text):
    """Write a file of the lease's login directory atomically (0644, in a root-owned 0755 directory: the
    container's root cannot write through the read-only mount, the renter can read it). The directory itself
    is kept: the container's mount holds it (a rename inside a mounted directory is seen at once)."""
    directory = login_dir(state_dir, lease_id)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    os.chmod(directory, 0o755)
    os.chmod(os.path.dirname(directory), 0o755)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % name, dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='ascii') as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), 0o644)
            os.fsync(handle.fileno())
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_login_dir(state_dir, lease_id):
    shutil.rmtree(login_dir(state_dir, lease_id), ignore_errors=True)
