# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Signed wipe receipts: after the rental module wiped a lease, the device signs what it removed
with its receipt key (ed25519, OpenSSH signatures: ssh-keygen -Y sign, namespace
p2pvps-wipe-receipt), keeps the receipt in <state_dir>/receipts/ and reports it at every check-in
until the marketplace acknowledges it. No Ansible module and no third-party imports."""

from __future__ import annotations

import json
import os
import subprocess

from ansible_collections.p2pvps.fleet.plugins.module_utils import _lease, _ssh_key
from ansible_collections.p2pvps.fleet.plugins.module_utils._state import write_atomic, write_json_atomic

NAMESPACE = 'p2pvps-wipe-receipt'
KIND = 'p2pvps-wipe-receipt'
FORMAT = 1
KEY_FILE = 'receipt_ed25519'
#: The public key line, kept next to the key when it is made (read at every check-in).
LINE_SUFFIX = '.line'
RECEIPT_DIR = 'receipts'
# What one check-in carries at most; more wait for the next ones (the server takes as many).
MAX_SENT = 8
MAX_RECEIPT_LEN = 4096
MAX_SIGNATURE_LEN = 2048
_TIMEOUT = 30


class ReceiptError(Exception):
    """The receipt key could not be made or read, or a receipt could not be signed."""


def canonical(fields):
    """The signed bytes of a receipt: JSON with sorted keys, no spaces, ASCII only."""
    return json.dumps(fields, sort_keys=True, separators=(',', ':'), ensure_ascii=True, allow_nan=False)


def receipt_fields(lease_id, device_id, wiped, wiped_at, reason):
    """The receipt of one wipe. wiped: {containers, volumes, disk_image, bytes} (see the module docs)."""
    return {
        'kind': KIND,
        'format': FORMAT,
        'lease_id': lease_id,
        'device_id': device_id,
        'containers': sorted(wiped.get('containers') or []),
        'volumes': sorted(wiped.get('volumes') or []),
        'disk_image': wiped.get('disk_image'),
        'bytes': wiped.get('bytes'),
        'wiped_at': _lease.format_time(wiped_at),
        'reason': reason[:200],
    }


def _ssh_keygen(argv, data=None):
    try:
        proc = subprocess.run(['ssh-keygen'] + argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReceiptError('ssh-keygen could not run: %s' % exc)
    return proc


class Outbox(object):
    """The device's receipt key and its receipts waiting for the marketplace's acknowledgement."""

    def __init__(self, state_dir, device_id):
        self.key_path = os.path.join(state_dir, KEY_FILE)
        self.line_path = self.key_path + LINE_SUFFIX
        self.directory = os.path.join(state_dir, RECEIPT_DIR)
        self.device_id = device_id

    # ------------------------------------------------------------ the key

    def public_key(self, create):
        """The receipt public key line, made first when `create` (None: there is none yet).

        The line is kept in `<key>.line` when the key is made, and read from there on every check-in
        (no ssh-keygen run); it is made again from the private key only when it is missing or unusable.
        A `.pub` file is never trusted: it may be left from a key that is gone.
        """
        if not os.path.exists(self.key_path):
            if not create:
                return None
            os.makedirs(os.path.dirname(self.key_path), mode=0o700, exist_ok=True)
            for stale in (self.key_path + '.pub', self.line_path):   # left from a key that is gone
                if os.path.lexists(stale):
                    os.unlink(stale)
            proc = _ssh_keygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'p2pvps-receipts', '-f', self.key_path])
            if proc.returncode != 0:
                raise ReceiptError('the receipt key %s could not be made: %s'
                                   % (self.key_path, proc.stderr.decode('utf-8', 'replace').strip()[-300:]))
        else:
            line = self._stored_line()
            if line is not None:
                return line
        os.chmod(self.key_path, 0o600)
        proc = _ssh_keygen(['-y', '-f', self.key_path])
        if proc.returncode != 0:
            raise ReceiptError('the receipt key %s is unreadable: %s'
                               % (self.key_path, proc.stderr.decode('utf-8', 'replace').strip()[-300:]))
        try:
            line = _ssh_key.parse_public_key(proc.stdout.decode('ascii', 'replace'), ('ssh-ed25519',))
        except _ssh_key.PublicKeyError as exc:
            raise ReceiptError('the receipt key %s %s' % (self.key_path, exc))
        try:
            write_atomic(self.line_path, line + '\n')
        except OSError:
            pass   # read-only state directory (check mode on a device): made again next time
        return line

    def _stored_line(self):
        """The kept public key line, or None when it is missing or not an ed25519 key line."""
        try:
            with open(self.line_path, 'r', encoding='ascii', errors='replace') as handle:
                text = handle.read(4096)
        except OSError:
            return None
        try:
            return _ssh_key.parse_public_key(text, ('ssh-ed25519',))
        except _ssh_key.PublicKeyError:
            return None

    def sign(self, text):
        proc = _ssh_keygen(['-Y', 'sign', '-q', '-f', self.key_path, '-n', NAMESPACE], data=text.encode('ascii'))
        if proc.returncode != 0 or not proc.stdout:
            raise ReceiptError('the wipe receipt could not be signed: %s'
                               % proc.stderr.decode('utf-8', 'replace').strip()[-300:])
        return proc.stdout.decode('ascii')

    # ------------------------------------------------------------ receipts

    def _path(self, lease_id):
        return os.path.join(self.directory, _lease.parse_lease_id(lease_id) + '.json')

    def record(self, lease_id, wiped, wiped_at, reason):
        """Sign the receipt of a wipe and keep it (atomically, 0600) until it is acknowledged."""
        self.public_key(create=True)
        text = canonical(receipt_fields(lease_id, self.device_id, wiped, wiped_at, reason))
        signature = self.sign(text)
        write_json_atomic(self._path(lease_id), {'lease_id': lease_id, 'receipt': text, 'signature': signature})
        return text

    def pending(self):
        """([{lease_id, receipt, signature}] oldest first, [warnings]) of the receipts kept."""
        try:
            names = [name for name in os.listdir(self.directory) if name.endswith('.json')]
        except FileNotFoundError:
            return [], []
        found, warnings = [], []
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                with open(path, 'rb') as handle:
                    item = json.loads(handle.read(MAX_RECEIPT_LEN + MAX_SIGNATURE_LEN + 1024).decode('utf-8'))
                mtime = os.stat(path).st_mtime
                if not (isinstance(item, dict) and isinstance(item.get('receipt'), str)
                        and isinstance(item.get('signature'), str) and item.get('lease_id') == name[:-5]):
                    raise ValueError('not a kept receipt')
            except (OSError, ValueError, UnicodeError) as exc:
                warnings.append('the wipe receipt %s is unreadable and not reported: %s' % (path, exc))
                continue
            found.append((mtime, name, {key: item[key] for key in ('lease_id', 'receipt', 'signature')}))
        return [item for dummy, dummy2, item in sorted(found, key=lambda f: (f[0], f[1]))], warnings

    def report(self, create_key):
        """(fields for the check-in body, warnings): the receipt key and the oldest pending receipts."""
        warnings = []
        try:
            key = self.public_key(create=create_key)
        except (ReceiptError, OSError) as exc:
            return {}, ['wipe receipts are not reported: %s' % exc]
        if key is None:
            return {}, warnings
        pending, warnings = self.pending()
        body = {'receipt_public_key': key}
        if pending:
            body['receipts'] = [{'receipt': item['receipt'], 'signature': item['signature']}
                                for item in pending[:MAX_SENT]]
        return body, warnings

    def settle(self, answer):
        """Forget the receipts the check-in answer acknowledged or refused for good.

        Returns (acknowledged lease ids, [warnings]). An answer without the fields (a marketplace
        that does not take receipts) settles nothing: the receipts are reported again.
        """
        acknowledged = _id_list(answer.get('receipts_acknowledged'))
        refused = answer.get('receipts_refused')
        warnings = []
        done = list(acknowledged)
        if isinstance(refused, list):
            for item in refused[:64]:
                if isinstance(item, dict) and _id_list([item.get('lease_id')]):
                    done.append(item['lease_id'])
                    warnings.append('the marketplace refused the wipe receipt of lease %s (%s); it is dropped'
                                    % (item['lease_id'], _short(item.get('error'))))
        for lease_id in done:
            try:
                os.unlink(self._path(lease_id))
            except FileNotFoundError:
                pass
        return acknowledged, warnings


def _short(value):
    """A marketplace's error code for a warning: printable, short."""
    text = ''.join(ch for ch in str(value) if ch.isprintable())
    return text if len(text) <= 80 else text[:77] + '...'


def _id_list(value):
    """The valid lease ids of a list (anything else is ignored)."""
    if not isinstance(value, list):
        return []
    ids = []
    for item in value[:64]:
        try:
            ids.append(_lease.parse_lease_id(item))
        except _lease.LeaseError:
            continue
    return ids
