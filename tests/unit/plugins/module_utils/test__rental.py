# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Table-driven tests of the pure rental decisions (no Docker, no HTTP)."""
from __future__ import annotations

import copy
import datetime
import sys

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _clock, _lease, _ssh_key
from ansible_collections.p2pvps.fleet.plugins.module_utils import _rental as r
from tests.unit.plugins.module_utils.lease_samples import EARLIER, KEY_A, KEY_B, LATER, NOW, lease, make_key


def container(the_lease=None, **changes):
    the_lease = the_lease or lease()
    values = dict(
        id='c' * 64, name=the_lease.container_name, lease_id=the_lease.id, running=True,
        status='running', image=the_lease.image, username=the_lease.username, local_port=2222,
        local_ip='127.0.0.1', memory_bytes=the_lease.limits.memory_bytes,
        nano_cpus=the_lease.limits.nano_cpus, pids=the_lease.limits.pids,
        keys_hash=the_lease.keys_hash, expires_at=the_lease.expires_at, created='2026-11-25T10:00:00Z',
    )
    values.update(changes)
    return r.ObservedContainer(**values)


def volume(the_lease=None, disk_gb=4, disk_mounted=True):
    the_lease = the_lease or lease()
    return r.ObservedVolume(the_lease.id, the_lease.volume_name, disk_gb, disk_mounted if disk_gb else None)


@pytest.mark.parametrize('pure', [r, _lease, _ssh_key, _clock], ids=lambda module: module.__name__.rsplit('.', maxsplit=1)[-1])
def test_pure_imports(pure):
    source = open(pure.__file__).read()
    assert 'import requests' not in source and 'import docker' not in source
    assert 'docker' not in {m.split('.')[0] for m in sys.modules if m.startswith('ansible_collections')}


# ------------------------------------------------------------------ decisions

L1 = lease()
L1_KEYS = lease(ssh_authorized_keys=[KEY_A, KEY_B])
L1_KEY_B = lease(ssh_authorized_keys=[KEY_B])
L1_NEW_COMMENT = lease(ssh_authorized_keys=[KEY_A.rsplit(' ', 1)[0] + ' renter@new-laptop'])
L1_LIMITS = lease(limits_memory_mb=1024, limits_cpus=0.5, limits_pids=128)
L1_DISK_UP = lease(limits_disk_gb=8)
L1_DISK_DOWN = lease(limits_disk_gb=2)
L1_IMAGE = lease(image='p2pvps/renter:2')
L1_USER = lease(username='bob')
L1_RENEWED = lease(expires_at='2026-11-26T14:00:00Z')
L1_EXPIRED = lease(expires_at=EARLIER)
L1_WEB = lease(web={'hostname': 'alice-k3j9xq.web.test', 'url': 'https://alice-k3j9xq.web.test/'})
L2 = lease(id='9a9a9a9a-0000-4000-8000-000000000002', username='carol')
C1 = container(L1)
C1_STOPPED = container(L1, running=False, status='exited')
C1_NEVER_STARTED = container(L1, running=False, status='created')
C1_TWO_KEYS = container(L1, keys_hash=L1_KEYS.keys_hash)
C1_DUP = container(L1, id='d' * 64, name='p2pvps-renter-other', created='2026-11-25T11:00:00Z')
C2 = container(L2, id='e' * 64)
C2_EXPIRED_LABEL = container(L2, id='e' * 64, expires_at=NOW - datetime.timedelta(seconds=1))
C_NOLABEL = container(L1, id='f' * 64, lease_id=None, name='p2pvps-renter-junk', expires_at=None)
V1 = volume(L1)
V2 = volume(L2)
V1_UNMOUNTED = volume(L1, disk_mounted=False)
V2_UNMOUNTED = volume(L2, disk_mounted=False)

# (id, desired, api_ok, containers, local_state, volumes, expected [(kind, lease_id, container_id)])
DECISIONS = [
    ('no lease, clean device', None, True, [], None, [], []),
    ('no lease removes container and volume', None, True, [C1], L1, [V1], [
        ('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)]),
    ('no lease removes orphan volume', None, True, [], None, [V1], [('remove_volume', L1.id, None)]),
    ('no lease removes unlabelled renter', None, True, [C_NOLABEL], None, [], [
        ('remove_container', None, C_NOLABEL.id)]),
    ('new lease', L1, True, [], None, [], [('create', L1.id, None), ('write_state', L1.id, None)]),
    ('new lease reuses existing volume', L1, True, [], None, [V1], [
        ('create', L1.id, None), ('write_state', L1.id, None)]),
    ('converged', L1, True, [C1], L1, [V1], []),
    ('converged, state file lost', L1, True, [C1], None, [V1], [('write_state', L1.id, None)]),
    ('renewed: only the state changes', L1_RENEWED, True, [C1], L1, [V1], [('write_state', L1.id, None)]),
    ('lease changed', L2, True, [C1], L1, [V1], [
        ('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None),
        ('create', L2.id, None), ('write_state', L2.id, None)]),
    ('key added: in place, sessions kept', L1_KEYS, True, [C1], L1, [V1], [
        ('update_keys', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('limits changed: in place', L1_LIMITS, True, [C1], L1, [V1], [
        ('update_limits', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('keys and limits changed', lease(ssh_authorized_keys=[KEY_B], limits_pids=64), True, [C1], L1, [V1], [
        ('update_limits', L1.id, C1.id), ('update_keys', L1.id, C1.id), ('end_sessions', L1.id, C1.id),
        ('write_state', L1.id, None)]),
    # a removed key: the lease's SSH sessions end too (the remembered lease tells what was removed)
    ('key removed: sessions end', L1, True, [C1_TWO_KEYS], L1_KEYS, [V1], [
        ('update_keys', L1.id, C1.id), ('end_sessions', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('key replaced: sessions end', L1_KEY_B, True, [C1], L1, [V1], [
        ('update_keys', L1.id, C1.id), ('end_sessions', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('only a comment changed: sessions kept', L1_NEW_COMMENT, True, [C1], L1, [V1], [
        ('update_keys', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('previous keys unknown (state file lost): sessions end', L1_KEYS, True, [C1], None, [V1], [
        ('update_keys', L1.id, C1.id), ('end_sessions', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('previous keys unknown (state of another lease): sessions end', L1_KEYS, True, [C1], L2, [V1], [
        ('update_keys', L1.id, C1.id), ('end_sessions', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('key removed, container stopped: no session to end', L1_KEY_B, True, [C1_STOPPED], L1, [V1], [
        ('update_keys', L1.id, C1.id), ('start', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('disk grows', L1_DISK_UP, True, [C1], L1, [V1], [
        ('resize_disk', L1.id, None), ('write_state', L1.id, None)]),
    ('disk shrinks: noted, not applied', L1_DISK_DOWN, True, [C1], L1, [V1], [('write_state', L1.id, None)]),
    ('disk unlimited volume: nothing to resize', L1_DISK_UP, True, [C1], L1, [volume(L1, None)], [
        ('write_state', L1.id, None)]),
    ('image changed: recreate keeping volume, system reset', L1_IMAGE, True, [C1], L1, [V1], [
        ('remove_container', L1.id, C1.id), ('reset_system', L1.id, None), ('create', L1.id, None),
        ('write_state', L1.id, None)]),
    ('web address added: recreate', L1_WEB, True, [C1], L1, [V1], [
        ('remove_container', L1.id, C1.id), ('create', L1.id, None), ('write_state', L1.id, None)]),
    ('web address kept: converged', L1_WEB, True, [container(L1_WEB, web_url=L1_WEB.web.url)], L1_WEB, [V1], []),
    ('username changed: recreate', L1_USER, True, [C1], L1, [V1], [
        ('remove_container', L1.id, C1.id), ('create', L1.id, None), ('write_state', L1.id, None)]),
    ('local port changed: recreate', L1, True, [container(L1, local_port=2200)], L1, [V1], [
        ('remove_container', L1.id, C1.id), ('create', L1.id, None)]),
    ('published on all addresses: recreate', L1, True, [container(L1, local_ip='0.0.0.0')], L1, [V1], [
        ('remove_container', L1.id, C1.id), ('create', L1.id, None)]),
    ('stopped: start', L1, True, [C1_STOPPED], L1, [V1], [('start', L1.id, C1.id)]),
    # dockerd killed while creating: a container that never started is created again; on a lease's first
    # creation its system directories may be half copied from the image, so they are copied again
    ('never started, lease ran before: recreate', L1, True, [C1_NEVER_STARTED], L1, [V1], [
        ('remove_container', L1.id, C1.id), ('create', L1.id, None)]),
    ('never started, first creation: recreate with the system reset', L1, True, [C1_NEVER_STARTED], L2, [V1], [
        ('remove_container', L1.id, C1.id), ('reset_system', L1.id, None), ('create', L1.id, None),
        ('write_state', L1.id, None)]),
    ('never started, nothing remembered: recreate with the system reset', L1, True, [C1_NEVER_STARTED], None, [V1], [
        ('remove_container', L1.id, C1.id), ('reset_system', L1.id, None), ('create', L1.id, None),
        ('write_state', L1.id, None)]),
    ('keys label missing (no file yet): update', L1, True, [container(L1, keys_hash=None)], L1, [V1], [
        ('update_keys', L1.id, C1.id)]),
    ('duplicates: keep running, remove stray', L1, True, [C1_STOPPED, C1_DUP], L1, [V1], [
        ('remove_container', L1.id, C1.id)]),
    ('duplicates: keep canonical name', L1, True, [C1, C1_DUP], L1, [V1], [
        ('remove_container', L1.id, C1_DUP.id)]),
    ('strays of other leases removed with volumes', L1, True, [C1, C2, C_NOLABEL], L1, [V1, V2], [
        ('remove_container', L2.id, C2.id), ('remove_container', None, C_NOLABEL.id),
        ('remove_volume', L2.id, None)]),
    # lease disks after a reboot
    ('disk not mounted: mount it', L1, True, [C1], L1, [V1_UNMOUNTED], [('mount_disk', L1.id, None)]),
    ('disk not mounted, container stopped: mount, then start', L1, True, [C1_STOPPED], L1, [V1_UNMOUNTED], [
        ('mount_disk', L1.id, None), ('start', L1.id, C1.id)]),
    ('image changed on an unmounted disk: mount before the system reset', L1_IMAGE, True, [C1], L1,
     [V1_UNMOUNTED], [
        ('remove_container', L1.id, C1.id), ('mount_disk', L1.id, None), ('reset_system', L1.id, None),
        ('create', L1.id, None), ('write_state', L1.id, None)]),
    ('disk grows while not mounted: mount, then resize', L1_DISK_UP, True, [C1], L1, [V1_UNMOUNTED], [
        ('mount_disk', L1.id, None), ('resize_disk', L1.id, None), ('write_state', L1.id, None)]),
    ('ended lease: its disk is removed, not mounted', None, True, [C1], L1, [V1_UNMOUNTED], [
        ('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)]),
    ('lease changed: only the new lease is mounted', L2, True, [C1], L1, [V1_UNMOUNTED, V2_UNMOUNTED], [
        ('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('mount_disk', L2.id, None),
        ('create', L2.id, None), ('write_state', L2.id, None)]),
    ('volume without a lease disk: nothing to mount', L1, True, [C1], L1, [volume(L1, None)], []),
    # API failed
    ('api down, live lease kept', None, False, [C1], L1, [V1], []),
    ('api down ignores desired', L2, False, [C1], L1, [V1], []),
    ('api down, stopped live lease restarted', None, False, [C1_STOPPED], L1, [V1], [('start', L1.id, C1.id)]),
    ('api down, container missing: recreated from state', None, False, [], L1, [V1], [('create', L1.id, None)]),
    ('api down, expired lease frozen: stopped, data kept', None, False, [container(L1_EXPIRED)], L1_EXPIRED,
     [V1], [('stop', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('api down, expired lease without container: volume kept, frozen', None, False, [], L1_EXPIRED, [V1], [
        ('write_state', L1.id, None)]),
    ('api down, expiry exactly now, nothing to keep: forgotten', None, False, [],
     lease(expires_at='2026-11-25T12:00:00Z'), [], [('write_state', None, None)]),
    ('api down, no state, live label kept', None, False, [C1], None, [V1], []),
    ('api down, no state, stopped label restarted', None, False, [C1_STOPPED], None, [V1], [
        ('start', L1.id, C1.id)]),
    ('api down, no state, expired label frozen', None, False, [C2_EXPIRED_LABEL], None, [V2], [
        ('stop', L2.id, C2.id)]),
    ('api down, unknown label without expiry kept', None, False, [C_NOLABEL], None, [], []),
    ('api down, orphan volume kept', None, False, [], None, [V2], []),
    ('api down, duplicates of live lease', None, False, [C1_STOPPED, C1_DUP], L1, [V1], [
        ('remove_container', L1.id, C1.id)]),
    ('api down, live lease after a reboot: mount, then start', None, False, [C1_STOPPED], L1, [V1_UNMOUNTED], [
        ('mount_disk', L1.id, None), ('start', L1.id, C1.id)]),
    ('api down, expired lease after a reboot: frozen with its disk', None, False, [container(L1_EXPIRED)],
     L1_EXPIRED, [V1_UNMOUNTED], [
        ('mount_disk', L1.id, None), ('stop', L1.id, C1.id), ('write_state', L1.id, None)]),
    ('api down, no state, live label after a reboot: mount, then start', None, False, [C1_STOPPED], None,
     [V1_UNMOUNTED], [('mount_disk', L1.id, None), ('start', L1.id, C1.id)]),
    ('answered lease already expired by the marketplace clock: never created', L1_EXPIRED, True, [], None, [], []),
    ('answered lease already expired by the marketplace clock: wiped', L1_EXPIRED, True, [container(L1_EXPIRED)],
     L1_EXPIRED, [V1], [('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)]),
]


@pytest.mark.parametrize('name, desired, api_ok, containers, state, volumes, expected', DECISIONS,
                         ids=[d[0] for d in DECISIONS])
def test_decide(name, desired, api_ok, containers, state, volumes, expected):
    plan = r.decide(desired, api_ok, containers, state, NOW, volumes, local_port=2222)
    got = [(a.kind, a.lease_id, a.container_id) for a in plan.actions]
    assert got == expected
    assert plan.changed is bool(expected)
    # Every action explains itself and is safe to print.
    for action in plan.actions:
        assert action.reason
        assert KEY_A.split(' ')[1] not in str(action.to_dict())


PUBLISH = r.Publish(ssh_port=2222, web_port=2280, spec='v2;ro')
C1_PUBLISHED = container(L1, web_port=2280, web_ip='127.0.0.1', spec='v2;ro')

# (id, observed container, expected recreate reason or None)
PUBLISH_CASES = [
    ('same settings', C1_PUBLISHED, None),
    ('web port missing', container(L1, spec='v2;ro'), 'web port changed'),
    ('web port on all addresses', container(L1, web_port=2280, web_ip='0.0.0.0', spec='v2;ro'), 'web port changed'),
    ('web port moved', container(L1, web_port=2281, web_ip='127.0.0.1', spec='v2;ro'), 'web port changed'),
    ('older sandbox settings', container(L1, web_port=2280, web_ip='127.0.0.1', spec='v1'), 'sandbox settings changed'),
    ('no settings label (older module)', container(L1, web_port=2280, web_ip='127.0.0.1'), 'sandbox settings changed'),
]


@pytest.mark.parametrize('name, observed, reason', PUBLISH_CASES, ids=[c[0] for c in PUBLISH_CASES])
def test_publish_settings_recreate(name, observed, reason):
    plan = r.decide(L1, True, [observed], L1, NOW, [V1], publish=PUBLISH)
    if reason is None:
        assert plan.actions == []
        return
    assert plan.kinds() == ['remove_container', 'create']
    assert reason in plan.actions[1].reason and 'home kept' in plan.actions[1].reason
    assert 'remove_volume' not in plan.kinds() and 'reset_system' not in plan.kinds()


def test_no_web_port_means_none_published():
    plan = r.decide(L1, True, [container(L1, web_port=2280, web_ip='127.0.0.1')], L1, NOW, [V1],
                    publish=r.Publish(ssh_port=2222, web_port=None))
    assert 'web port changed' in plan.actions[-1].reason
    assert r.decide(L1, True, [C1], L1, NOW, [V1], publish=r.Publish(ssh_port=2222)).actions == []


def test_fit_to_device_cuts_memory_and_cpus_with_a_note():
    big = lease(limits_memory_mb=65536, limits_cpus=64)
    fitted, notes = r.fit_to_device(big, r.Capacity(memory_mb=768, cpus=4))
    assert (fitted.limits.memory_mb, fitted.limits.cpus) == (768, 4.0)
    assert fitted.limits.disk_gb == big.limits.disk_gb and fitted.limits.pids == big.limits.pids
    assert len(notes) == 2 and '65536 MB' in notes[0] and '64 CPUs' in notes[1]
    small, notes = r.fit_to_device(L1, r.Capacity(memory_mb=768, cpus=4))
    assert small is L1 and notes == []
    assert r.fit_to_device(None, r.Capacity(1, 1)) == (None, [])
    # deterministic: fitting the fitted lease again changes nothing (no update every run)
    again, notes = r.fit_to_device(fitted, r.Capacity(memory_mb=768, cpus=4))
    assert again == fitted and notes == []


def test_api_error_never_wipes_live_leases():
    """Whatever is on the device, an API failure removes nothing but duplicates (expired leases are frozen)."""
    containers = [C1, C2, C1_DUP, C_NOLABEL]
    for state in (None, L1, L2):
        plan = r.decide(None, False, containers, state, NOW, [V1, V2])
        removed = {a.container_id for a in plan.actions if a.kind == 'remove_container'}
        assert removed <= {C1_DUP.id, C1.id}
        assert not [a for a in plan.actions if a.kind == 'remove_volume']


def test_plan_lease_after_and_warnings():
    assert r.decide(L1, True, [], None, NOW).lease_after == L1
    assert r.decide(None, True, [C1], L1, NOW).lease_after is None
    assert r.decide(None, False, [C1], L1, NOW).lease_after == L1
    plan = r.decide(None, False, [C1], L1, NOW)
    assert any('kept until' in warning for warning in plan.warnings)
    plan = r.decide(None, False, [C2], None, NOW, [V2])
    assert plan.warnings == ['marketplace unavailable: nothing wiped except leases frozen for their whole grace window']
    plan = r.decide(L1_DISK_DOWN, True, [C1], L1, NOW, [V1])
    assert len(plan.warnings) == 1 and 'shrinks' in plan.warnings[0]
    assert r.decide(L1, True, [C1], L1, NOW, [V1]).warnings == []
    assert r.decide(L1, True, [C1_STOPPED], L1, NOW).keep == C1_STOPPED
    plan = r.decide(L1_EXPIRED, True, [], None, NOW)
    assert plan.lease_after is None and 'expired at' in plan.warnings[0] and 'its own clock' in plan.warnings[0]


def test_diff_before_after():
    plan = r.decide(L2, True, [C1], L1, NOW, [V1])
    assert plan.diff_before['lease']['id'] == L1.id
    assert [c['name'] for c in plan.diff_before['containers']] == [C1.name]
    assert plan.diff_after['lease']['id'] == L2.id
    assert [c['name'] for c in plan.diff_after['containers']] == [L2.container_name]
    assert plan.diff_after['containers'][0]['state'] == 'running'
    assert plan.diff_after['lease']['ssh_key_fingerprints'] == [_ssh_key.fingerprint(KEY_A)]
    assert KEY_A.split(' ')[1] not in str(plan.diff_after) + str(plan.diff_before)

    same = r.decide(L1, True, [C1], L1, NOW, [V1])
    assert same.diff_before == same.diff_after

    started = r.decide(L1, True, [C1_STOPPED], L1, NOW, [V1])
    assert started.diff_before['containers'][0]['state'] == 'exited'
    assert started.diff_after['containers'][0]['state'] == 'running'

    keys = r.decide(L1_KEYS, True, [C1], L1, NOW, [V1])
    assert keys.diff_after['containers'][0]['keys_sha256'] == L1_KEYS.keys_hash
    assert keys.diff_before['containers'][0]['keys_sha256'] == L1.keys_hash

    wiped = r.decide(None, True, [C1], L1, NOW, [V1])
    assert wiped.diff_after == {'lease': None, 'containers': []}


def test_ending_sessions_says_why():
    def reason(desired, remembered):
        plan = r.decide(desired, True, [C1_TWO_KEYS], remembered, NOW, [V1])
        ended = [a for a in plan.actions if a.kind == 'end_sessions']
        return ended[0].reason if ended else None

    key_c = make_key(seed=b'c')
    assert reason(L1, L1_KEYS) == 'a key was removed'
    assert reason(lease(ssh_authorized_keys=[key_c]), L1_KEYS) == '2 keys were removed'
    assert reason(L1, None) == 'a key may have been removed (the previous keys are not known)'
    assert reason(lease(ssh_authorized_keys=[KEY_A, KEY_B, key_c]), L1_KEYS) is None


def test_ending_sessions_changes_nothing_in_the_diff():
    plan = r.decide(L1, True, [C1_TWO_KEYS], L1_KEYS, NOW, [V1])
    assert plan.kinds() == ['update_keys', 'end_sessions', 'write_state']
    fingerprint_a, fingerprint_b = _ssh_key.fingerprint(KEY_A), _ssh_key.fingerprint(KEY_B)
    assert plan.diff_before['lease']['ssh_key_fingerprints'] == [fingerprint_a, fingerprint_b]
    assert plan.diff_after['lease']['ssh_key_fingerprints'] == [fingerprint_a]
    assert plan.diff_after['containers'] == [dict(plan.diff_before['containers'][0], keys_sha256=L1.keys_hash)]


def test_decide_does_not_mutate_inputs():
    containers = [C1, C2]
    snapshot = copy.deepcopy(containers)
    r.decide(L1_KEYS, True, containers, L1, NOW, [V1, V2])
    assert containers == snapshot


def test_removals_come_first():
    plan = r.decide(L2, True, [C1], L1, NOW, [V1])
    kinds = plan.kinds()
    assert kinds.index('create') > kinds.index('remove_container')
    assert kinds.index('create') > kinds.index('remove_volume')


# ------------------------------------------------------------------ freeze, then wipe

HOUR = datetime.timedelta(hours=1)
GRACE = datetime.timedelta(hours=24)
C1_EXPIRED = container(L1_EXPIRED)
C1_EXPIRED_STOPPED = container(L1_EXPIRED, running=False, status='exited')
C2_EXPIRED_STOPPED = container(L2, id='e' * 64, running=False, status='exited', expires_at=NOW - HOUR)
C2_PAST_GRACE = container(L2, id='e' * 64, running=False, status='exited', expires_at=NOW - GRACE)
L1_EXTENDED_KEY_B = lease(expires_at='2026-11-26T14:00:00Z', ssh_authorized_keys=[KEY_B])

# (id, desired, api_ok, containers, state, frozen_at, volumes, grace,
#  expected [(kind, lease_id, container_id)], frozen_at after, lease id after)
FREEZES = [
    # the marketplace cannot be reached: the device's judgement alone freezes
    ('offline, expired: frozen now', None, False, [C1_EXPIRED], L1_EXPIRED, None, [V1], GRACE,
     [('stop', L1.id, C1.id), ('write_state', L1.id, None)], NOW, L1.id),
    ('offline, frozen an hour ago: nothing to do', None, False, [C1_EXPIRED_STOPPED], L1_EXPIRED, NOW - HOUR, [V1],
     GRACE, [], NOW - HOUR, L1.id),
    ('offline, frozen but running again: stopped again', None, False, [C1_EXPIRED], L1_EXPIRED, NOW - HOUR, [V1],
     GRACE, [('stop', L1.id, C1.id)], NOW - HOUR, L1.id),
    ('offline, frozen, after a power cycle: disk mounted, not started', None, False, [C1_EXPIRED_STOPPED],
     L1_EXPIRED, NOW - HOUR, [V1_UNMOUNTED], GRACE, [('mount_disk', L1.id, None)], NOW - HOUR, L1.id),
    ('offline, frozen, live again by a later clock estimate: only the marketplace resumes', None, False,
     [C1_STOPPED], L1, NOW - HOUR, [V1], GRACE, [], NOW - HOUR, L1.id),
    ('offline, frozen just under the grace window: kept', None, False, [C1_EXPIRED_STOPPED], L1_EXPIRED,
     NOW - GRACE + datetime.timedelta(seconds=1), [V1], GRACE, [], NOW - GRACE + datetime.timedelta(seconds=1),
     L1.id),
    ('offline, frozen for the whole grace window: wiped', None, False, [C1_EXPIRED_STOPPED], L1_EXPIRED,
     NOW - GRACE, [V1], GRACE,
     [('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)], None, None),
    ('offline, frozen past grace, only the volume left: wiped', None, False, [], L1_EXPIRED, NOW - 2 * GRACE, [V1],
     GRACE, [('remove_volume', L1.id, None), ('write_state', None, None)], None, None),
    ('offline, grace 0: wiped at once (no freeze)', None, False, [C1_EXPIRED], L1_EXPIRED, None, [V1],
     datetime.timedelta(0),
     [('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)], None, None),
    ('offline, shorter grace set by the operator', None, False, [C1_EXPIRED_STOPPED], L1_EXPIRED, NOW - 2 * HOUR,
     [V1], HOUR, [('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)],
     None, None),
    ('offline, duplicate of a frozen lease removed', None, False,
     [C1_EXPIRED_STOPPED, container(L1_EXPIRED, id='d' * 64, name='p2pvps-renter-other', running=False)],
     L1_EXPIRED, NOW - HOUR, [V1], GRACE, [('remove_container', L1.id, 'd' * 64)], NOW - HOUR, L1.id),
    ('offline, no state: label expired, stopped: frozen, not restarted', None, False, [C2_EXPIRED_STOPPED], None,
     None, [V2], GRACE, [], None, None),
    ('offline, no state: label expired a whole grace window ago: wiped', None, False, [C2_PAST_GRACE], None, None,
     [V2], GRACE, [('remove_container', L2.id, C2.id), ('remove_volume', L2.id, None)], None, None),
    ('frozen time without a lease is ignored', None, False, [], None, NOW - HOUR, [], GRACE, [], None, None),
    # the marketplace answers: it decides at once
    ('online, the same lease extended: the frozen container resumes', L1, True, [C1_EXPIRED_STOPPED], L1_EXPIRED,
     NOW - HOUR, [V1], GRACE, [('start', L1.id, C1.id), ('write_state', L1.id, None)], None, L1.id),
    ('online, extended, after a power cycle: mount, then resume', L1, True, [C1_EXPIRED_STOPPED], L1_EXPIRED,
     NOW - HOUR, [V1_UNMOUNTED], GRACE,
     [('mount_disk', L1.id, None), ('start', L1.id, C1.id), ('write_state', L1.id, None)], None, L1.id),
    ('online, extended with a key removed: keys written, resumed (no session to end)', L1_EXTENDED_KEY_B, True,
     [C1_EXPIRED_STOPPED], L1_EXPIRED, NOW - HOUR, [V1], GRACE,
     [('update_keys', L1.id, C1.id), ('start', L1.id, C1.id), ('write_state', L1.id, None)], None, L1.id),
    ('online, the marketplace answers no lease: wiped at once', None, True, [C1_EXPIRED_STOPPED], L1_EXPIRED,
     NOW - HOUR, [V1], GRACE,
     [('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)], None, None),
    ('online, the same lease, still expired by the marketplace clock: wiped at once', L1_EXPIRED, True,
     [C1_EXPIRED_STOPPED], L1_EXPIRED, NOW - HOUR, [V1], GRACE,
     [('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)], None, None),
    ('online, another lease: the frozen one wiped at once', L2, True, [C1_EXPIRED_STOPPED], L1_EXPIRED,
     NOW - HOUR, [V1], GRACE, [('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None),
                               ('create', L2.id, None), ('write_state', L2.id, None)], None, L2.id),
    ('online, the marketplace ends a live lease: wiped at once, never frozen', None, True, [C1], L1, None, [V1],
     GRACE, [('remove_container', L1.id, C1.id), ('remove_volume', L1.id, None), ('write_state', None, None)],
     None, None),
]


@pytest.mark.parametrize('name, desired, api_ok, containers, state, frozen_at, volumes, grace, expected, '
                         'frozen_after, lease_after', FREEZES, ids=[f[0] for f in FREEZES])
def test_freeze_then_wipe(name, desired, api_ok, containers, state, frozen_at, volumes, grace, expected,
                          frozen_after, lease_after):
    plan = r.decide(desired, api_ok, containers, state, NOW, volumes, frozen_at=frozen_at, grace=grace)
    assert [(a.kind, a.lease_id, a.container_id) for a in plan.actions] == expected
    assert plan.frozen_at == frozen_after
    assert (None if plan.lease_after is None else plan.lease_after.id) == lease_after
    assert not any(a.kind in ('start', 'create') and a.lease_id == L1.id for a in plan.actions) or api_ok
    for action in plan.actions:
        assert action.reason


def test_freezing_says_until_when_and_resuming_says_why():
    plan = r.decide(None, False, [C1_EXPIRED], L1_EXPIRED, NOW, [V1], frozen_at=None, grace=GRACE)
    assert 'frozen, data kept until 2026-11-26T12:00:00Z' in plan.actions[0].reason
    assert plan.actions[-1].reason == 'remember the lease as frozen'
    assert any('frozen since 2026-11-25T12:00:00Z; wiped at 2026-11-26T12:00:00Z' in w for w in plan.warnings)
    assert plan.keep == C1_EXPIRED and plan.diff_after['containers'][0]['state'] == 'exited'
    resumed = r.decide(L1, True, [C1_EXPIRED_STOPPED], L1_EXPIRED, NOW, [V1], frozen_at=NOW - HOUR)
    assert 'extended lease %s until %s' % (L1.id, LATER) in resumed.actions[0].reason
    assert resumed.keep == C1_EXPIRED_STOPPED and resumed.diff_after['containers'][0]['state'] == 'running'
    wiped = r.decide(None, False, [C1_EXPIRED_STOPPED], L1_EXPIRED, NOW, [V1], frozen_at=NOW - GRACE)
    assert 'stayed frozen from 2026-11-24T12:00:00Z' in wiped.actions[0].reason


def test_frozen_at_is_kept_to_the_second():
    """The state file keeps seconds: a fraction in the clock would rewrite it on every run."""
    plan = r.decide(None, False, [C1_EXPIRED], L1_EXPIRED, NOW.replace(microsecond=123456), [V1])
    assert plan.frozen_at == NOW
    assert r.DEFAULT_GRACE == GRACE
