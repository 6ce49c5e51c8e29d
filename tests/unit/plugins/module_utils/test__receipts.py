"""Wipe receipts on the device: canonical form, real ssh-keygen signatures, the pending outbox."""
import datetime
import json
import os
import stat
import subprocess

from ansible_collections.p2pvps.fleet.plugins.module_utils import _receipts

NOW = datetime.datetime(2026, 12, 2, 1, 2, 3, tzinfo=datetime.timezone.utc)
WIPED = {'containers': ['b' * 64, 'a' * 64], 'volumes': ['p2pvps-lease-l1-etc', 'p2pvps-lease-l1'],
         'disk_image': '/var/lib/p2pvps/disks/l1.img', 'bytes': 1073741824}


def verify(outbox, text, signature, tmp_path):
    """ssh-keygen -Y verify, as the docs tell a renter to (allowed_signers from the device's key)."""
    (tmp_path / 'allowed').write_text('dev1 namespaces="%s" %s\n' % (_receipts.NAMESPACE, outbox.public_key(False)))
    (tmp_path / 'sig').write_text(signature)
    proc = subprocess.run(['ssh-keygen', '-Y', 'verify', '-f', str(tmp_path / 'allowed'), '-I', 'dev1',
                           '-n', _receipts.NAMESPACE, '-s', str(tmp_path / 'sig')],
                          input=text.encode(), capture_output=True, check=False)
    return proc.returncode == 0


def test_canonical_form_is_sorted_compact_ascii():
    fields = _receipts.receipt_fields('l1', 'dev1', WIPED, NOW, 'lease expired \u2013 offline')
    text = _receipts.canonical(fields)
    assert text.startswith('{"bytes":1073741824,"containers":["aaaa')
    assert '": ' not in text and '", "' not in text and text.isascii() and '\\u2013' in text
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert json.loads(text)['wiped_at'] == '2026-12-02T01:02:03Z'
    assert json.loads(text)['volumes'] == ['p2pvps-lease-l1', 'p2pvps-lease-l1-etc']
    assert _receipts.canonical(json.loads(text)) == text


def test_a_receipt_verifies_and_a_tampered_one_is_refused(tmp_path):
    outbox = _receipts.Outbox(str(tmp_path / 'state'), 'dev1')
    text = outbox.record('l1', WIPED, NOW, 'no lease on the marketplace')
    key_mode = stat.S_IMODE(os.stat(outbox.key_path).st_mode)
    receipt_file = tmp_path / 'state' / 'receipts' / 'l1.json'
    assert key_mode == 0o600 and stat.S_IMODE(receipt_file.stat().st_mode) == 0o600
    kept = json.loads(receipt_file.read_text())
    assert kept['receipt'] == text and 'PRIVATE' not in receipt_file.read_text()
    assert verify(outbox, text, kept['signature'], tmp_path)
    assert not verify(outbox, text.replace('"bytes":1073741824', '"bytes":1'), kept['signature'], tmp_path)
    assert not verify(outbox, text.replace('"l1"', '"l2"'), kept['signature'], tmp_path)
    # another device's key does not verify it either
    other = _receipts.Outbox(str(tmp_path / 'other'), 'dev1')
    other.public_key(create=True)
    assert not verify(other, text, kept['signature'], tmp_path)


def test_receipts_wait_across_restarts_until_acknowledged(tmp_path):
    state = str(tmp_path / 'state')
    assert _receipts.Outbox(state, 'dev1').report(create_key=False) == ({}, [])   # check mode: no key made
    assert not os.path.exists(os.path.join(state, _receipts.KEY_FILE))
    first = _receipts.Outbox(state, 'dev1')
    for lease_id in ['l%d' % n for n in range(10)]:
        first.record(lease_id, WIPED, NOW, 'wiped')
    # a new process (the next timer run, after a reboot) finds them, oldest first, 8 per check-in
    again = _receipts.Outbox(state, 'dev1')
    report, warnings = again.report(create_key=False)
    assert not warnings and report['receipt_public_key'].startswith('ssh-ed25519 ')
    assert len(report['receipts']) == _receipts.MAX_SENT
    # an answer without the fields (an older marketplace) or with garbage settles nothing
    for answer in ({}, {'receipts_acknowledged': 'l1'}, {'receipts_acknowledged': ['../x', 5, None]}):
        assert again.settle(answer) == ([], [])
        assert len(again.pending()[0]) == 10
    acknowledged, warnings = again.settle({'receipts_acknowledged': ['l0', 'l1', 'nope'],
                                           'receipts_refused': [{'lease_id': 'l2', 'error': 'foreign_lease\n'}]})
    assert acknowledged == ['l0', 'l1', 'nope'] and len(warnings) == 1 and '\n' not in warnings[0]
    assert sorted(item['lease_id'] for item in again.pending()[0]) == ['l%d' % n for n in range(3, 10)]


def test_an_unreadable_receipt_is_skipped_with_a_warning(tmp_path):
    outbox = _receipts.Outbox(str(tmp_path), 'dev1')
    outbox.record('l1', WIPED, NOW, 'wiped')
    (tmp_path / 'receipts' / 'l2.json').write_text('{not json')
    pending, warnings = outbox.pending()
    assert [item['lease_id'] for item in pending] == ['l1'] and 'l2.json' in warnings[0]


def test_the_public_key_line_is_kept_and_read_without_ssh_keygen(tmp_path, monkeypatch):
    """Every check-in reports the key: it reads the line kept when the key was made (no ssh-keygen run);
    a stray .pub is never trusted, and a missing or broken line is made again from the private key."""
    state = tmp_path / 'state'
    outbox = _receipts.Outbox(str(state), 'dev1')
    made = outbox.public_key(create=True)
    kept = state / (_receipts.KEY_FILE + _receipts.LINE_SUFFIX)
    assert made.startswith('ssh-ed25519 ') and kept.read_text().strip() == made
    real_keygen = _receipts._ssh_keygen
    calls = []

    def counting(argv, data=None):
        calls.append(argv)
        return real_keygen(argv, data)

    monkeypatch.setattr(_receipts, '_ssh_keygen', counting)
    (state / (_receipts.KEY_FILE + '.pub')).write_text('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther stray\n')
    assert _receipts.Outbox(str(state), 'dev1').public_key(create=False) == made
    assert _receipts.Outbox(str(state), 'dev1').report(create_key=True)[0]['receipt_public_key'] == made
    assert calls == []
    for broken in (None, 'not a key\n'):
        if broken is None:
            kept.unlink()
        else:
            kept.write_text(broken)
        assert _receipts.Outbox(str(state), 'dev1').public_key(create=False) == made
        assert kept.read_text().strip() == made
    assert [argv[0] for argv in calls] == ['-y', '-y']
    # a new key (the old one gone) never reports the old line
    os.unlink(outbox.key_path)
    assert _receipts.Outbox(str(state), 'dev1').public_key(create=True) != made
