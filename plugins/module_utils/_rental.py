# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE: this file is part of p2pvps.fleet's internals. It is not a public API
# of the collection and may change at any time, without deprecation. Do not use
# it from outside the collection.
#
# Pure decisions of the rental converge. This file imports neither `requests`
# nor `docker`: from (desired lease, API status, observed containers, local lease
# state, now) it computes the actions, the diff and the lease to remember. The
# Docker side (_docker.py) and the module (modules/rental.py) do the I/O.

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import math
import re
import struct

from dataclasses import dataclass, field

RENTER_PORT = '2222/tcp'
# The port a renter's web server listens on inside the container (an unprivileged user can
# bind it); published on 127.0.0.1 of the device only, where the tunnel forwards web traffic.
WEB_PORT = '8080/tcp'
LABEL_ROLE = 'p2pvps.role'
LABEL_LEASE = 'p2pvps.lease'
LABEL_KEYS = 'p2pvps.keys'
LABEL_USER = 'p2pvps.user'
LABEL_EXPIRES = 'p2pvps.expires_at'
LABEL_WEB_URL = 'p2pvps.web_url'
# The module's sandbox settings the container was created with (read-only root, tmpfs sizes,
# network, write budget...): a container made with other settings is recreated, volume kept.
LABEL_SPEC = 'p2pvps.spec'
ROLE_RENTER = 'renter'

LEASE_ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$')
USERNAME_RE = re.compile(r'^[a-z_][a-z0-9_-]{0,31}$')
# [registry-host[:port]/]path[/path...][:tag][@sha256:digest], lower-case path components.
_IMAGE_COMPONENT = r'[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*'
IMAGE_RE = re.compile(
    r'^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)'
    r'(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*(?::[0-9]{1,5})?/)?'
    + _IMAGE_COMPONENT + r'(?:/' + _IMAGE_COMPONENT + r'){0,4}'
    r'(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?'
    r'(?:@sha256:[a-f0-9]{64})?$'
)
MAX_IMAGE_LEN = 255
_LABEL = r'[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?'
HOSTNAME_RE = re.compile(r'^' + _LABEL + r'(?:\.' + _LABEL + r')+$')
MAX_HOSTNAME_LEN = 253
WEB_URL_RE = re.compile(r'^https?://(?P<host>[a-z0-9.-]{1,253})(?::[0-9]{1,5})?/$')
EXPIRES_RE = re.compile(
    r'^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]00:?00)$'
)

MAX_KEYS = 16
MAX_KEY_LEN = 4096
MAX_COMMENT_LEN = 256
KEY_TYPES = (
    'ssh-ed25519',
    'ssh-rsa',
    'ecdsa-sha2-nistp256',
    'ecdsa-sha2-nistp384',
    'ecdsa-sha2-nistp521',
    'sk-ssh-ed25519@openssh.com',
    'sk-ecdsa-sha2-nistp256@openssh.com',
)
_COMMENT_RE = re.compile(r'^[\x21-\x7e]+(?: [\x21-\x7e]+)*$')

# name: (type, minimum, maximum)
LIMIT_RANGES = {
    'memory_mb': (int, 64, 65536),
    'cpus': (float, 0.1, 64),
    'pids': (int, 16, 65536),
    'disk_gb': (int, 1, 2048),
}

# Names that exist in Debian base images or have a meaning on a device: a renter
# must never become one of them (the renter image would reuse the account).
RESERVED_USERNAMES = frozenset((
    'root', 'daemon', 'bin', 'sys', 'sync', 'games', 'man', 'lp', 'mail', 'news',
    'uucp', 'proxy', 'www-data', 'backup', 'list', 'irc', 'gnats', 'nobody', 'nogroup',
    '_apt', 'systemd-network', 'systemd-resolve', 'systemd-timesync', 'systemd-coredump',
    'messagebus', 'sshd', 'syslog', 'polkitd', 'avahi', 'ntp', 'statd', 'tss',
    'adm', 'tty', 'disk', 'kmem', 'dialout', 'fax', 'voice', 'cdrom', 'floppy', 'tape',
    'sudo', 'audio', 'dip', 'operator', 'src', 'shadow', 'utmp', 'video', 'sasl',
    'plugdev', 'staff', 'users', 'netdev', 'input', 'render', 'kvm', 'crontab',
    'docker', 'lxd', 'admin', 'administrator', 'halt', 'shutdown', 'ftp', 'postgres',
    'mysql', 'pi', 'ubuntu', 'debian', 'tunnel', 'p2pvps', 'renter', 'ansible', 'git',
))


class LeaseError(ValueError):
    """The marketplace's lease (or the local copy of it) is not acceptable."""


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    cpus: float
    pids: int
    disk_gb: int

    @property
    def memory_bytes(self):
        return self.memory_mb * 1024 * 1024

    @property
    def nano_cpus(self):
        return int(round(self.cpus * 1e9))

    def to_dict(self):
        return {'memory_mb': self.memory_mb, 'cpus': self.cpus, 'pids': self.pids,
                'disk_gb': self.disk_gb}


@dataclass(frozen=True)
class Web:
    """The lease's public web address (the marketplace routes it to the device's web port)."""
    hostname: str
    url: str

    def to_dict(self):
        return {'hostname': self.hostname, 'url': self.url}


@dataclass(frozen=True)
class Lease:
    id: str
    username: str
    keys: tuple
    image: str
    expires_at: datetime.datetime
    limits: Limits
    web: Web | None = None

    @property
    def container_name(self):
        return container_name(self.id)

    @property
    def volume_name(self):
        return volume_name(self.id)

    @property
    def keys_hash(self):
        return keys_hash(self.keys)

    @property
    def authorized_keys(self):
        """Content of /etc/ssh/authorized_keys/<user> (what the renter image writes too)."""
        return '\n'.join(self.keys) + '\n'

    def expired(self, now):
        return self.expires_at <= now

    def to_dict(self):
        """Exactly the API's representation; parse_lease(to_dict()) gives the same lease."""
        return {
            'id': self.id,
            'username': self.username,
            'ssh_authorized_keys': list(self.keys),
            'image': self.image,
            'expires_at': format_time(self.expires_at),
            'limits': self.limits.to_dict(),
            'web': None if self.web is None else self.web.to_dict(),
        }

    def summary(self):
        """Safe to print and diff: keys only by fingerprint."""
        return {
            'id': self.id,
            'username': self.username,
            'ssh_key_fingerprints': [key_fingerprint(k) for k in self.keys],
            'image': self.image,
            'expires_at': format_time(self.expires_at),
            'limits': self.limits.to_dict(),
            'web': None if self.web is None else self.web.to_dict(),
        }


@dataclass(frozen=True)
class ObservedContainer:
    """A renter container as seen on the Docker Engine (normalised by _docker.py)."""
    id: str
    name: str
    lease_id: str | None
    running: bool
    status: str = 'running'
    image: str | None = None
    username: str | None = None
    local_port: int | None = None
    local_ip: str | None = None
    web_port: int | None = None
    web_ip: str | None = None
    web_url: str | None = None
    spec: str | None = None
    memory_bytes: int | None = None
    nano_cpus: int | None = None
    pids: int | None = None
    keys_hash: str | None = None
    expires_at: datetime.datetime | None = None
    created: str = ''
    started_at: str = ''
    pid: int | None = None

    def summary(self):
        return {
            'name': self.name,
            'lease_id': self.lease_id,
            'state': 'running' if self.running else (self.status or 'stopped'),
            'image': self.image,
            'username': self.username,
            'local_port': self.local_port,
            'web_port': self.web_port,
            'limits': {
                'memory_mb': None if self.memory_bytes is None else self.memory_bytes // (1024 * 1024),
                'cpus': None if self.nano_cpus is None else self.nano_cpus / 1e9,
                'pids': self.pids,
            },
            'keys_sha256': self.keys_hash,
        }


@dataclass(frozen=True)
class ObservedVolume:
    lease_id: str
    name: str
    disk_gb: int | None = None   # None: no size limit on this volume


@dataclass(frozen=True)
class Action:
    # kind: remove_container, remove_volume, reset_system, create, start, update_keys,
    # update_limits, resize_disk or write_state
    kind: str
    lease_id: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    reason: str = ''

    def to_dict(self):
        return {'action': self.kind, 'lease_id': self.lease_id, 'container': self.container_name,
                'reason': self.reason}


@dataclass
class Plan:
    actions: list
    diff_before: dict
    diff_after: dict
    lease_after: Lease | None
    keep: ObservedContainer | None = None
    notes: list = field(default_factory=list)

    @property
    def changed(self):
        return bool(self.actions)

    def kinds(self):
        return [a.kind for a in self.actions]


# ---------------------------------------------------------------- helpers

def container_name(lease_id):
    return 'p2pvps-renter-' + lease_id.replace('-', '')[:12].lower()


def volume_name(lease_id):
    return 'p2pvps-lease-' + lease_id


def keys_hash(keys):
    return hashlib.sha256(('\n'.join(keys) + '\n').encode('utf-8')).hexdigest()


def key_fingerprint(key):
    """OpenSSH-style SHA256 fingerprint of a validated key line."""
    blob = base64.b64decode(key.split(' ')[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode('ascii').rstrip('=')
    return 'SHA256:' + digest


def format_time(value):
    return value.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _describe(value):
    """A short, safe description of a rejected value (never the whole of it)."""
    if isinstance(value, str):
        if len(value) > 40:
            return 'a string of %d characters' % len(value)
        return repr(value)
    if isinstance(value, bool):
        return 'a boolean'
    if value is None:
        return 'null'
    if isinstance(value, (int, float)):
        return repr(value)
    return 'a value of type %s' % type(value).__name__


def _require_str(raw, name, max_len):
    if not isinstance(raw, str):
        raise LeaseError('lease %s must be a string, got %s' % (name, _describe(raw)))
    if len(raw) > max_len:
        raise LeaseError('lease %s is too long (%d characters, at most %d)' % (name, len(raw), max_len))
    return raw


# ---------------------------------------------------------------- validation

def parse_lease_id(raw):
    _require_str(raw, 'id', 64)
    if not LEASE_ID_RE.fullmatch(raw):
        raise LeaseError('lease id %s is not a valid lease id (letters, digits, "_", "-"; 1-64)'
                         % _describe(raw))
    return raw


def parse_username(raw):
    _require_str(raw, 'username', 32)
    if not USERNAME_RE.fullmatch(raw):
        raise LeaseError('lease username %s is not a valid login name (^[a-z_][a-z0-9_-]{0,31}$)'
                         % _describe(raw))
    if raw in RESERVED_USERNAMES:
        raise LeaseError('lease username %r is a reserved system name' % raw)
    return raw


def parse_image(raw):
    _require_str(raw, 'image', MAX_IMAGE_LEN)
    if not IMAGE_RE.fullmatch(raw):
        raise LeaseError('lease image %s is not a valid image reference' % _describe(raw))
    return raw


def parse_time(raw, name='expires_at'):
    _require_str(raw, name, 40)
    match = EXPIRES_RE.fullmatch(raw)
    if not match:
        raise LeaseError('lease %s %s is not an ISO 8601 UTC time (YYYY-MM-DDTHH:MM:SSZ)'
                         % (name, _describe(raw)))
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    # Fractions of a second are dropped: leases are kept to the second, and the state
    # file and the diff stay stable.
    try:
        return datetime.datetime(year, month, day, hour, minute, second,
                                 tzinfo=datetime.timezone.utc)
    except ValueError as exc:
        raise LeaseError('lease %s %s is not a valid time: %s' % (name, _describe(raw), exc))


def parse_ssh_key(raw, index=0):
    where = 'lease ssh_authorized_keys[%d]' % index
    if not isinstance(raw, str):
        raise LeaseError('%s must be a string, got %s' % (where, _describe(raw)))
    if len(raw) > MAX_KEY_LEN:
        raise LeaseError('%s is too long (%d characters, at most %d)' % (where, len(raw), MAX_KEY_LEN))
    if any(c in raw for c in '\r\n\x00') or not raw.isprintable():
        raise LeaseError('%s contains control characters or line breaks' % where)
    parts = raw.strip().split(' ')
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise LeaseError('%s is not a plain OpenSSH public key line starting with a key type '
                         '(key options such as command=... or from=... are not allowed)' % where)
    key_type, b64 = parts[0], parts[1]
    comment = ' '.join(parts[2:])
    try:
        blob = base64.b64decode(b64.encode('ascii'), validate=True)
        (length,) = struct.unpack('>I', blob[:4])
        inner_type = blob[4:4 + length].decode('ascii')
    except (binascii.Error, struct.error, UnicodeError, ValueError):
        raise LeaseError('%s has an invalid base64 key body' % where)
    if inner_type != key_type or len(blob) < 4 + length + 16:
        raise LeaseError('%s key body does not match its type %s' % (where, key_type))
    if comment and (len(comment) > MAX_COMMENT_LEN or not _COMMENT_RE.fullmatch(comment)):
        raise LeaseError('%s has an invalid comment' % where)
    return ' '.join(parts[:2] + ([comment] if comment else []))


def parse_keys(raw):
    if not isinstance(raw, list):
        raise LeaseError('lease ssh_authorized_keys must be a list, got %s' % _describe(raw))
    if not raw:
        raise LeaseError('lease ssh_authorized_keys is empty: the renter could never log in')
    if len(raw) > MAX_KEYS:
        raise LeaseError('lease ssh_authorized_keys has %d keys, at most %d' % (len(raw), MAX_KEYS))
    keys = []
    for index, item in enumerate(raw):
        key = parse_ssh_key(item, index)
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def _parse_number(raw, name, kind, low, high):
    where = 'lease limits.%s' % name
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise LeaseError('%s must be a number, got %s' % (where, _describe(raw)))
    if kind is int and not isinstance(raw, int):
        raise LeaseError('%s must be an integer, got %s' % (where, _describe(raw)))
    if isinstance(raw, float) and not math.isfinite(raw):
        raise LeaseError('%s must be a finite number, got %s' % (where, _describe(raw)))
    if not low <= raw <= high:
        raise LeaseError('%s = %s is out of range (%s..%s)' % (where, raw, low, high))
    return kind(raw)


def parse_limits(raw):
    if not isinstance(raw, dict):
        raise LeaseError('lease limits must be an object, got %s' % _describe(raw))
    values = {}
    for name, (kind, low, high) in LIMIT_RANGES.items():
        if name not in raw:
            raise LeaseError('lease limits.%s is missing' % name)
        values[name] = _parse_number(raw[name], name, kind, low, high)
    return Limits(**values)


def parse_web(raw):
    """The lease's optional web block {hostname, url} (None when absent or null)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise LeaseError('lease web must be an object or null, got %s' % _describe(raw))
    hostname = _require_str(raw.get('hostname'), 'web.hostname', MAX_HOSTNAME_LEN)
    if not HOSTNAME_RE.fullmatch(hostname):
        raise LeaseError('lease web.hostname %s is not a lower-case DNS name' % _describe(hostname))
    url = _require_str(raw.get('url'), 'web.url', MAX_HOSTNAME_LEN + 16)
    match = WEB_URL_RE.fullmatch(url)
    if match is None or match.group('host') != hostname:
        raise LeaseError('lease web.url %s is not http(s)://<web.hostname>[:port]/' % _describe(url))
    return Web(hostname=hostname, url=url)


LEASE_FIELDS = ('id', 'username', 'ssh_authorized_keys', 'image', 'expires_at', 'limits')


def parse_lease(raw):
    """Validate a lease object from the marketplace (or the state file); unknown fields ignored.

    Returns a Lease, or None for `null` (no lease). Raises LeaseError with a message that
    names the field and never repeats a long value in full.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise LeaseError('lease must be an object or null, got %s' % _describe(raw))
    missing = [name for name in LEASE_FIELDS if name not in raw]
    if missing:
        raise LeaseError('lease is missing field(s): %s' % ', '.join(missing))
    return Lease(
        id=parse_lease_id(raw['id']),
        username=parse_username(raw['username']),
        keys=parse_keys(raw['ssh_authorized_keys']),
        image=parse_image(raw['image']),
        expires_at=parse_time(raw['expires_at']),
        limits=parse_limits(raw['limits']),
        web=parse_web(raw.get('web')),
    )


def parse_checkin(answer):
    """The lease of a check-in answer: the answer must be an object with a `lease` key."""
    if not isinstance(answer, dict):
        raise LeaseError('check-in answer must be a JSON object, got %s' % _describe(answer))
    if 'lease' not in answer:
        raise LeaseError('check-in answer has no "lease" field')
    return parse_lease(answer['lease'])


STATE_VERSION = 1


def parse_state(raw):
    """The local state file's content -> Lease or None. Raises LeaseError when unusable."""
    if not isinstance(raw, dict) or raw.get('version') != STATE_VERSION or 'lease' not in raw:
        raise LeaseError('local lease state has an unknown format')
    return parse_lease(raw['lease'])


def state_content(lease):
    """What the state file holds for `lease` (None: no lease)."""
    return {'version': STATE_VERSION, 'lease': None if lease is None else lease.to_dict()}


# ---------------------------------------------------------------- the device's own limits

@dataclass(frozen=True)
class Capacity:
    """What this device can give a lease: its memory minus a reserve, its CPUs."""
    memory_mb: int
    cpus: int


def fit_to_device(lease, capacity):
    """(lease, notes): memory and CPUs cut down to what the device has.

    Docker refuses more CPUs than the device has (the container would never start), and a
    memory limit above the device's memory is no limit at all; both are cut, with a note.
    The disk is never cut: a disk that does not fit is refused where it is created.
    """
    if lease is None:
        return None, []
    limits = lease.limits
    notes = []
    memory_mb, cpus = limits.memory_mb, limits.cpus
    if memory_mb > capacity.memory_mb:
        notes.append('lease %s asks for %d MB of memory, this device can give %d MB: cut to %d MB'
                     % (lease.id, memory_mb, capacity.memory_mb, capacity.memory_mb))
        memory_mb = capacity.memory_mb
    if cpus > capacity.cpus:
        notes.append('lease %s asks for %g CPUs, this device has %d: cut to %d'
                     % (lease.id, cpus, capacity.cpus, capacity.cpus))
        cpus = float(capacity.cpus)
    if not notes:
        return lease, notes
    fitted = Limits(memory_mb=memory_mb, cpus=cpus, pids=limits.pids, disk_gb=limits.disk_gb)
    return dataclasses.replace(lease, limits=fitted), notes


# ---------------------------------------------------------------- decisions

@dataclass(frozen=True)
class Publish:
    """How the module publishes and builds a renter container (its options, not the lease's).

    ssh_port / web_port: ports on 127.0.0.1 of the device (web_port None: no web port).
    spec: the module's sandbox settings as one string; None only where a caller does not
    compare them (a container made with other settings is recreated, its volumes kept).
    """
    ssh_port: int = 2222
    web_port: int | None = None
    spec: str | None = None


def _container_matches(lease, container, publish):
    """Reasons why `container` cannot serve `lease` by an in-place change (empty: it can)."""
    reasons = []
    if container.image != lease.image:
        reasons.append('image changed')
    if container.username != lease.username:
        reasons.append('username changed')
    if container.local_port != publish.ssh_port or container.local_ip != '127.0.0.1':
        reasons.append('local port changed')
    if container.web_port != publish.web_port or (
            publish.web_port is not None and container.web_ip != '127.0.0.1'):
        reasons.append('web port changed')
    if container.web_url != (None if lease.web is None else lease.web.url):
        reasons.append('web address changed')
    if publish.spec is not None and container.spec != publish.spec:
        reasons.append('sandbox settings changed')
    return reasons


def _limits_differ(lease, container):
    return (container.memory_bytes != lease.limits.memory_bytes
            or container.nano_cpus != lease.limits.nano_cpus
            or container.pids != lease.limits.pids)


def _pick(containers, lease_id):
    """The container to keep for a lease: running first, then the canonical name, then newest."""
    name = container_name(lease_id)
    ordered = sorted(containers, key=lambda c: (c.running, c.name == name, c.created, c.id), reverse=True)
    return ordered[0]


def _remove(container, reason):
    return Action('remove_container', container.lease_id, container.id, container.name, reason)


def _expected_summary(lease, publish):
    return {
        'name': lease.container_name,
        'lease_id': lease.id,
        'state': 'running',
        'image': lease.image,
        'username': lease.username,
        'local_port': publish.ssh_port,
        'web_port': publish.web_port,
        'limits': {'memory_mb': lease.limits.memory_mb, 'cpus': lease.limits.cpus,
                   'pids': lease.limits.pids},
        'keys_sha256': lease.keys_hash,
    }


def _converge_lease(lease, containers, volumes, publish, actions, notes, reason_new):
    """Actions that make `lease` served by exactly one correct, running container."""
    mine = [c for c in containers if c.lease_id == lease.id]
    keep = _pick(mine, lease.id) if mine else None
    for stray in mine:
        if stray is not keep:
            actions.append(_remove(stray, 'duplicate container of the lease'))
    if keep is None:
        actions.append(Action('create', lease.id, None, lease.container_name, reason_new))
    else:
        mismatch = _container_matches(lease, keep, publish)
        if mismatch:
            reason = 'recreate (home kept): ' + ', '.join(mismatch)
            actions.append(_remove(keep, reason))
            if 'image changed' in mismatch:
                # The system directories were copied from the old image; the new image's
                # are copied in again when the container is created (the home is kept).
                actions.append(Action('reset_system', lease.id, None, lease.container_name, reason))
            actions.append(Action('create', lease.id, None, lease.container_name, reason))
            keep = None
        else:
            if _limits_differ(lease, keep):
                actions.append(Action('update_limits', lease.id, keep.id, keep.name, 'limits changed'))
            if keep.keys_hash != lease.keys_hash:
                actions.append(Action('update_keys', lease.id, keep.id, keep.name, 'keys changed'))
            if not keep.running:
                actions.append(Action('start', lease.id, keep.id, keep.name,
                                      'container is %s' % (keep.status or 'stopped')))
    volume = volumes.get(lease.id)
    if volume is not None and volume.disk_gb is not None and volume.disk_gb != lease.limits.disk_gb:
        if lease.limits.disk_gb > volume.disk_gb:
            actions.append(Action('resize_disk', lease.id, None, lease.container_name,
                                  'disk grows from %d to %d GB' % (volume.disk_gb, lease.limits.disk_gb)))
        else:
            notes.append('disk_gb of lease %s shrinks from %d to %d GB: not applied (the renter data '
                         'is kept; a file system is never shrunk in place)'
                         % (lease.id, volume.disk_gb, lease.limits.disk_gb))
    return keep


def _wipe(lease_id, containers, volumes, actions, reason):
    for container in containers:
        if container.lease_id == lease_id:
            actions.append(_remove(container, reason))
    if lease_id in volumes:
        actions.append(Action('remove_volume', lease_id, None, None, reason))


def _lease_ids(containers, volumes):
    ids = []
    for lease_id in [c.lease_id for c in containers] + sorted(volumes):
        if lease_id not in ids:
            ids.append(lease_id)
    return ids


def decide(desired, api_ok, observed_containers, local_state, now, observed_volumes=(), local_port=2222,
           publish=None):
    """Compute the converge plan.

    desired: Lease or None, the marketplace's answer; only used when api_ok.
    api_ok: False when the check-in failed or its answer was rejected; then nothing is
      wiped except leases whose expires_at has passed on local time.
    observed_containers: ObservedContainer list, every container labelled p2pvps.role=renter.
    local_state: Lease or None from the state file.
    now: aware datetime (UTC).
    observed_volumes: ObservedVolume list, lease volumes present on the engine.
    publish: Publish (ports and sandbox settings); by default only local_port is compared.
    """
    publish = publish or Publish(ssh_port=local_port)
    containers = list(observed_containers)
    volumes = {v.lease_id: v for v in observed_volumes}
    actions = []
    notes = []
    keep = None
    before = {
        'lease': None if local_state is None else local_state.summary(),
        'containers': sorted((c.summary() for c in containers), key=lambda s: (s['name'], s['lease_id'] or '')),
    }

    if api_ok:
        lease_after = desired
        if desired is not None:
            for lease_id in _lease_ids(containers, volumes):
                if lease_id != desired.id:
                    _wipe(lease_id, containers, volumes, actions, 'lease %s is not the current lease' % lease_id)
            reason = 'new lease'
            if local_state is not None and local_state.id != desired.id:
                reason = 'lease changed from %s' % local_state.id
            keep = _converge_lease(desired, containers, volumes, publish, actions, notes, reason)
        else:
            for lease_id in _lease_ids(containers, volumes):
                _wipe(lease_id, containers, volumes, actions, 'no lease on the marketplace')
    else:
        lease_after, keep = _decide_offline(containers, volumes, local_state, now, actions, notes)

    if _state_differs(local_state, lease_after):
        actions.append(Action('write_state', None if lease_after is None else lease_after.id, None, None,
                              'remember the lease' if lease_after is not None else 'forget the lease'))

    # Removals first (a new container may need the old one's port and name), then the rest.
    order = {'remove_container': 0, 'remove_volume': 1, 'reset_system': 2}
    actions.sort(key=lambda a: order.get(a.kind, 3))
    after = _predict_after(before, actions, lease_after, publish)
    return Plan(actions=actions, diff_before=before, diff_after=after, lease_after=lease_after,
                keep=keep, notes=notes)


def _state_differs(local_state, lease_after):
    if local_state is None or lease_after is None:
        return local_state is not lease_after
    return local_state.to_dict() != lease_after.to_dict()


def _decide_offline(containers, volumes, local_state, now, actions, notes):
    """The API failed: keep what is live, wipe only what expired on local time."""
    lease_after = local_state
    keep = None
    if local_state is not None and local_state.expired(now):
        _wipe(local_state.id, containers, volumes, actions,
              'lease expired at %s (local time; marketplace unavailable)' % format_time(local_state.expires_at))
        lease_after = None
    elif local_state is not None:
        keep = _converge_offline(local_state, containers, actions, notes)
    # Containers of other leases: only their own label says when they expire.
    for container in containers:
        if local_state is not None and container.lease_id == local_state.id:
            continue
        if container.expires_at is not None and container.expires_at <= now:
            actions.append(_remove(container, 'lease expired at %s (label; marketplace unavailable)'
                                   % format_time(container.expires_at)))
            if container.lease_id in volumes and not any(
                    a.kind == 'remove_volume' and a.lease_id == container.lease_id for a in actions):
                actions.append(Action('remove_volume', container.lease_id, None, None,
                                      'lease expired (label; marketplace unavailable)'))
        elif not container.running and (local_state is None or container.lease_id != local_state.id):
            if not any(a.container_id == container.id for a in actions):
                actions.append(Action('start', container.lease_id, container.id, container.name,
                                      'live lease (label) kept while the marketplace is unavailable'))
    if local_state is None or lease_after is None:
        notes.append('marketplace unavailable: nothing wiped except expired leases')
    return lease_after, keep


def _converge_offline(lease, containers, actions, notes):
    """A live lease from the state file while the API is down: keep it running, change nothing else."""
    mine = [c for c in containers if c.lease_id == lease.id]
    if not mine:
        actions.append(Action('create', lease.id, None, lease.container_name,
                              'container missing; lease from local state (marketplace unavailable)'))
        return None
    keep = _pick(mine, lease.id)
    for stray in mine:
        if stray is not keep:
            actions.append(_remove(stray, 'duplicate container of the lease'))
    if not keep.running:
        actions.append(Action('start', lease.id, keep.id, keep.name,
                              'container is %s; lease from local state' % (keep.status or 'stopped')))
    notes.append('marketplace unavailable: lease %s kept until %s (local time)'
                 % (lease.id, format_time(lease.expires_at)))
    return keep


def _predict_after(before, actions, lease_after, publish):
    removed = set(a.container_name for a in actions if a.kind == 'remove_container')
    # a name can be removed and created again (recreate): created ones are re-added below
    containers = [dict(c) for c in before['containers'] if c['name'] not in removed]
    for action in actions:
        if action.kind in ('start',):
            for c in containers:
                if c['name'] == action.container_name:
                    c['state'] = 'running'
    desired = lease_after if lease_after is not None else None
    for action in actions:
        if action.kind in ('create', 'update_keys', 'update_limits') and desired is not None \
                and action.lease_id == desired.id:
            expected = _expected_summary(desired, publish)
            containers = [c for c in containers if c['name'] != expected['name']]
            containers.append(expected)
    containers.sort(key=lambda s: (s['name'], s['lease_id'] or ''))
    return {
        'lease': None if lease_after is None else lease_after.summary(),
        'containers': containers,
    }
