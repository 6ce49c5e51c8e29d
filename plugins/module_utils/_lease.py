# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The lease model: a lease as the marketplace sends it (and the state file keeps it),
validated field by field. No third-party imports. What to do about a lease is decided
in _rental.py."""

from __future__ import annotations

import datetime
import hashlib
import math
import re

from dataclasses import dataclass

from ansible_collections.p2pvps.fleet.plugins.module_utils import _ssh_key

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
# RFC 3339: a time with its offset from UTC (Z or +HH:MM); a time without one is refused.
TIME_RE = re.compile(
    r'^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$'
)

MAX_KEYS = 16

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
    def key_fingerprints(self):
        return [_ssh_key.fingerprint(k) for k in self.keys]

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
            'ssh_key_fingerprints': self.key_fingerprints,
            'image': self.image,
            'expires_at': format_time(self.expires_at),
            'limits': self.limits.to_dict(),
            'web': None if self.web is None else self.web.to_dict(),
        }


# ---------------------------------------------------------------- helpers

def container_name(lease_id):
    return 'p2pvps-renter-' + lease_id.replace('-', '')[:12].lower()


def volume_name(lease_id):
    return 'p2pvps-lease-' + lease_id


def keys_hash(keys):
    return hashlib.sha256(('\n'.join(keys) + '\n').encode('utf-8')).hexdigest()


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

def _require_match(raw, name, max_len, pattern, what):
    _require_str(raw, name, max_len)
    if not pattern.fullmatch(raw):
        raise LeaseError('lease %s %s is not a valid %s' % (name, _describe(raw), what))
    return raw


def parse_lease_id(raw):
    return _require_match(raw, 'id', 64, LEASE_ID_RE, 'lease id (letters, digits, "_", "-"; 1-64)')


def parse_username(raw):
    _require_match(raw, 'username', 32, USERNAME_RE, 'login name (^[a-z_][a-z0-9_-]{0,31}$)')
    if raw in RESERVED_USERNAMES:
        raise LeaseError('lease username %r is a reserved system name' % raw)
    return raw


def parse_image(raw):
    _require_str(raw, 'image', MAX_IMAGE_LEN)
    if not IMAGE_RE.fullmatch(raw):
        raise LeaseError('lease image %s is not a valid image reference' % _describe(raw))
    return raw


def parse_time(raw, name='expires_at'):
    """An aware UTC datetime from an RFC 3339 time with any offset (fractions of a second dropped)."""
    _require_str(raw, name, 40)
    match = TIME_RE.fullmatch(raw)
    if not match:
        raise LeaseError('lease %s %s is not an RFC 3339 time with an offset (YYYY-MM-DDTHH:MM:SSZ or '
                         '...+HH:MM)' % (name, _describe(raw)))
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    zulu, sign, offset_hours, offset_minutes = match.groups()[6:]
    try:
        if zulu:
            zone = datetime.timezone.utc
        else:
            offset = datetime.timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
            zone = datetime.timezone(-offset if sign == '-' else offset)
        # Fractions are dropped: leases are kept to the second, and the state file and the diff stay stable.
        value = datetime.datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError as exc:
        raise LeaseError('lease %s %s is not a valid time: %s' % (name, _describe(raw), exc))
    return value.astimezone(datetime.timezone.utc)


def parse_ssh_key(raw, index=0):
    try:
        return _ssh_key.parse_public_key(raw)
    except _ssh_key.PublicKeyError as exc:
        raise LeaseError('lease ssh_authorized_keys[%d] %s' % (index, exc))


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


def parse_server_time(answer):
    """The marketplace's clock from a check-in answer (`server_time`), or None when it sends none."""
    raw = answer.get('server_time') if isinstance(answer, dict) else None
    if raw is None:
        return None
    try:
        return parse_time(raw, 'server_time')
    except LeaseError as exc:
        raise LeaseError('check-in answer: %s' % exc)


LEASE_ETAG_RE = re.compile(r'^[\x21-\x7e]{1,64}$')


def parse_lease_etag(answer):
    """The `lease_etag` of a check-in answer (what a long-poll sends back), or None when it has none."""
    etag = answer.get('lease_etag')
    if etag is None:
        return None
    if not isinstance(etag, str) or not LEASE_ETAG_RE.match(etag):
        raise LeaseError('lease_etag must be 1 to 64 printable ASCII characters without spaces')
    return etag


STATE_VERSION = 1


def parse_state(raw):
    """The local state file's content -> Lease or None. Raises LeaseError when unusable."""
    return parse_local_state(raw)[0]


def parse_local_state(raw):
    """The local state file's content -> (Lease or None, when it was frozen or None).

    frozen_at: set while the lease is frozen - it ended by the device's own judgement while the
    marketplace could not be reached, and its stopped container and data wait for the marketplace.
    """
    if not isinstance(raw, dict) or raw.get('version') != STATE_VERSION or 'lease' not in raw:
        raise LeaseError('local lease state has an unknown format')
    lease = parse_lease(raw['lease'])
    frozen = raw.get('frozen_at')
    return lease, (None if frozen is None or lease is None else parse_time(frozen, 'frozen_at'))


def state_content(lease, frozen_at=None, host_public_key=None):
    """What the state file holds for `lease` (None: no lease), frozen since `frozen_at` (None: not frozen),
    with the public line of the host key the module made for its container (None: not known)."""
    content = {'version': STATE_VERSION, 'lease': None if lease is None else lease.to_dict()}
    if lease is not None and frozen_at is not None:
        content['frozen_at'] = format_time(frozen_at)
    if lease is not None and host_public_key is not None:
        content['host_key'] = {'lease_id': lease.id, 'public_key': host_public_key}
    return content


def parse_state_host_key(raw):
    """(lease id, host public key line) from the state file's content, or None when it has none (a state
    written by a version before host keys) or an unusable one."""
    if not isinstance(raw, dict) or not isinstance(raw.get('host_key'), dict):
        return None
    lease_id, key = raw['host_key'].get('lease_id'), raw['host_key'].get('public_key')
    try:
        parsed = _ssh_key.parse_public_key(key, key_types=('ssh-ed25519',))
        return parse_lease_id(lease_id), ' '.join(parsed.split(' ')[:2])
    except (LeaseError, _ssh_key.PublicKeyError):
        return None
