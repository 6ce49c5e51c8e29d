# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sample leases and keys of the unit tests of the lease model and of the rental decisions."""
from __future__ import annotations

import base64
import datetime
import struct

from ansible_collections.p2pvps.fleet.plugins.module_utils import _lease

NOW = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.timezone.utc)
LATER = '2026-11-25T14:00:00Z'
EARLIER = '2026-11-25T11:59:59Z'


def make_key(key_type='ssh-ed25519', seed=b'a', comment='renter@laptop', size=32):
    blob = struct.pack('>I', len(key_type)) + key_type.encode() + struct.pack('>I', size) + seed * size
    line = '%s %s' % (key_type, base64.b64encode(blob).decode())
    return line + (' ' + comment if comment else '')


KEY_A = make_key(seed=b'a')
KEY_B = make_key(seed=b'b', comment='second')


def raw_lease(**changes):
    lease = {
        'id': '5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60',
        'username': 'alice',
        'ssh_authorized_keys': [KEY_A],
        'image': 'p2pvps/renter:latest',
        'expires_at': LATER,
        'limits': {'memory_mb': 512, 'cpus': 1.5, 'pids': 256, 'disk_gb': 4},
        'renter': 'unknown fields are ignored',
    }
    for name, value in changes.items():
        if name.startswith('limits_'):
            lease['limits'][name[len('limits_'):]] = value
        elif value is DELETE:
            del lease[name]
        else:
            lease[name] = value
    return lease


DELETE = object()


def lease(**changes):
    return _lease.parse_lease(raw_lease(**changes))
