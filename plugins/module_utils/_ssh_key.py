# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The one parser of OpenSSH public key lines: the renter's keys of a lease (_lease.py) and
the device's tunnel key (module device_register). No Ansible and no third-party imports."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

KEY_TYPES = (
    'ssh-ed25519',
    'ssh-rsa',
    'ecdsa-sha2-nistp256',
    'ecdsa-sha2-nistp384',
    'ecdsa-sha2-nistp521',
    'sk-ssh-ed25519@openssh.com',
    'sk-ecdsa-sha2-nistp256@openssh.com',
)
MAX_KEY_LEN = 4096
MAX_COMMENT_LEN = 256
ED25519_KEY_LEN = 32
# Key material after the type name, at the least: catches a truncated key, not a full parse.
MIN_KEY_DATA = 16
_COMMENT_RE = re.compile(r'^[\x21-\x7e]+(?: [\x21-\x7e]+)*$')


class PublicKeyError(ValueError):
    """Not an acceptable public key line. The message follows the key's name: "<the key> <message>"."""


def parse_public_key(raw, key_types=KEY_TYPES):
    """One plain OpenSSH public key line of one of `key_types`, as "type base64 [comment]".

    Surrounding white space is dropped and the spaces between fields are folded. Key options
    (command=..., from=...) are refused, and the message never repeats the key.
    """
    if not isinstance(raw, str):
        raise PublicKeyError('must be a string, got %s' % ('null' if raw is None else type(raw).__name__))
    if len(raw) > MAX_KEY_LEN:
        raise PublicKeyError('is too long (%d characters, at most %d)' % (len(raw), MAX_KEY_LEN))
    text = raw.strip()
    if not text:
        raise PublicKeyError('is empty')
    if not text.isprintable():
        raise PublicKeyError('must be a single line without control characters or line breaks')
    parts = text.split()
    key_type = parts[0]
    if key_type not in key_types:
        if any(part in KEY_TYPES for part in parts[1:]):
            raise PublicKeyError('has key options before its type (options such as command=... or from=... '
                                 'are not allowed)')
        raise PublicKeyError('does not start with an accepted key type: it must be an OpenSSH public key '
                             'of type %s' % ', '.join(key_types))
    if len(parts) < 2:
        raise PublicKeyError('has no key data')
    if not _holds_key_of_type(_decode(parts[1]), key_type):
        raise PublicKeyError('key data does not match its type: it is not an %s key' % key_type)
    comment = ' '.join(parts[2:])
    if len(comment) > MAX_COMMENT_LEN:
        raise PublicKeyError('comment is too long (%d characters, at most %d)' % (len(comment), MAX_COMMENT_LEN))
    if comment and not _COMMENT_RE.fullmatch(comment):
        raise PublicKeyError('comment must be printable ASCII words')
    return ' '.join(parts[:2] + ([comment] if comment else []))


def _decode(data):
    try:
        return base64.b64decode(data.encode('ascii'), validate=True)
    except (binascii.Error, UnicodeError, ValueError):
        raise PublicKeyError('key data is not valid base64')


def _ssh_string(value):
    return struct.pack('>I', len(value)) + value


def _holds_key_of_type(blob, key_type):
    """Whether the decoded key data names `key_type` and holds key material after it."""
    head = _ssh_string(key_type.encode('ascii'))
    if not blob.startswith(head):
        return False
    material = blob[len(head):]
    if key_type == 'ssh-ed25519':
        return len(material) == 4 + ED25519_KEY_LEN and material[:4] == struct.pack('>I', ED25519_KEY_LEN)
    return len(material) >= MIN_KEY_DATA


def fingerprint(key):
    """OpenSSH-style SHA256 fingerprint of a parsed key line."""
    blob = base64.b64decode(key.split(' ')[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode('ascii').rstrip('=')
    return 'SHA256:' + digest


def same_public_key(current, desired):
    """Same key material and comment (white space insensitive)."""
    if not isinstance(current, str):
        return False
    return ' '.join(current.split()) == ' '.join(desired.split())
