# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one OpenSSH public key parser: renters' keys (every known type) and the tunnel key (ed25519 only).

The renters' keys are also tested through whole leases in test__lease.py.
"""
from __future__ import annotations

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _ssh_key as k
from tests.unit.plugins.module_utils.lease_samples import make_key

ED25519_ONLY = ('ssh-ed25519',)
DATA = make_key(seed=b'k', comment='').split(' ')[1]


def test_parse_normalises_white_space():
    assert k.parse_public_key('  ssh-ed25519   %s  pi@kitchen \n' % DATA, ED25519_ONLY) == \
        'ssh-ed25519 %s pi@kitchen' % DATA
    assert k.parse_public_key('ssh-ed25519 %s' % DATA, ED25519_ONLY) == 'ssh-ed25519 %s' % DATA


@pytest.mark.parametrize('key_type', k.KEY_TYPES)
def test_every_known_type_is_accepted_by_default(key_type):
    key = make_key(key_type, comment='a b')
    assert k.parse_public_key(key) == key


def test_same_public_key():
    assert k.same_public_key('ssh-ed25519  %s pi@kitchen' % DATA, 'ssh-ed25519 %s pi@kitchen' % DATA)
    assert not k.same_public_key('ssh-ed25519 %s other' % DATA, 'ssh-ed25519 %s pi@kitchen' % DATA)
    assert not k.same_public_key(None, 'ssh-ed25519 %s' % DATA)


def test_fingerprint():
    assert k.fingerprint('ssh-ed25519 %s a comment' % DATA) == k.fingerprint('ssh-ed25519 %s' % DATA)
    assert k.fingerprint('ssh-ed25519 %s' % DATA).startswith('SHA256:')


@pytest.mark.parametrize('text, words', [
    ('', 'empty'),
    (None, 'must be a string'),
    ('ssh-rsa AAAAB3NzaC1yc2E', 'of type ssh-ed25519'),
    (make_key('ssh-rsa'), 'of type ssh-ed25519'),
    ('command="sh" ssh-ed25519 ' + DATA, 'options'),
    ('ssh-ed25519', 'no key data'),
    ('ssh-ed25519 !!!notbase64', 'not valid base64'),
    ('ssh-ed25519 ' + make_key(size=16, comment='').split(' ')[1], 'not an ssh-ed25519 key'),
    ('ssh-ed25519 ' + make_key('ssh-rsa', comment='').split(' ')[1], 'not an ssh-ed25519 key'),
    ('ssh-ed25519 %s a\nssh-ed25519 %s b' % (DATA, DATA), 'single line'),
    ('ssh-ed25519 %s bell\x07' % DATA, 'control characters'),
    ('ssh-ed25519 %s %s' % (DATA, 'c' * 2000), 'too long'),
    ('ssh-ed25519 %s %s' % (DATA, 'c' * 5000), 'too long'),
    ('ssh-ed25519 %s caf\u00e9' % DATA, 'printable ASCII'),
])
def test_tunnel_key_rejects(text, words):
    with pytest.raises(k.PublicKeyError) as exc:
        k.parse_public_key(text, ED25519_ONLY)
    assert words in str(exc.value)
    assert DATA not in str(exc.value)
