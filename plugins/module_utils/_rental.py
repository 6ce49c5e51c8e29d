# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Pure decisions of the rental converge. This file imports neither `requests`
nor `docker`: from (desired lease, API status, observed containers and volumes,
local lease state, now) it computes the actions, the diff, the warnings and the
lease to remember. The lease itself is modelled and validated in _lease.py; the
Docker side (_docker.py) and the module (modules/rental.py) do the I/O."""

from __future__ import annotations

import dataclasses
import datetime

from dataclasses import dataclass, field

from ansible_collections.p2pvps.fleet.plugins.module_utils._lease import Lease, Limits, format_time

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
# How long a lease the device ended by its own judgement (marketplace unreachable) stays frozen -
# stopped, its container and data kept - before it is wiped (the module's grace_s).
DEFAULT_GRACE = datetime.timedelta(hours=24)


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
    disk_mounted: bool | None = None   # whether its lease disk is mounted; None: it has none


@dataclass(frozen=True)
class Action:
    # kind: remove_container, remove_volume, mount_disk, reset_system, create, start, stop,
    # update_keys, end_sessions, update_limits, resize_disk or write_state
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
    warnings: list = field(default_factory=list)
    # When the lease after this run was frozen (None: it is not): to remember with the lease.
    frozen_at: datetime.datetime | None = None

    @property
    def changed(self):
        return bool(self.actions)

    def kinds(self):
        return [a.kind for a in self.actions]


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
    if container.status == 'created':
        # dockerd may have died while creating it; it never ran, so a new one loses nothing.
        reasons.append('never started')
    return reasons


def _creation_interrupted(lease, container, remembered):
    """Whether the first creation of `lease` on this device stopped half way (`container` never started).

    Docker copies the image's system directories into the lease's new volumes while it creates the
    container; dockerd killed meanwhile leaves them half copied, and it never copies into a volume
    that is not empty. A lease the device remembers ran before: its system directories are whole
    and hold the renter's changes.
    """
    return container.status == 'created' and (remembered is None or remembered.id != lease.id)


def _limits_differ(lease, container):
    return (container.memory_bytes != lease.limits.memory_bytes
            or container.nano_cpus != lease.limits.nano_cpus
            or container.pids != lease.limits.pids)


def _keep_one(lease, containers, actions):
    """The container that serves `lease`, its duplicates removed (None: it has none).

    Kept: a running one first, then the one with the lease's container name, then the newest.
    """
    mine = [c for c in containers if c.lease_id == lease.id]
    if not mine:
        return None
    keep = max(mine, key=lambda c: (c.running, c.name == lease.container_name, c.created, c.id))
    actions.extend(_remove(c, 'duplicate container of the lease') for c in mine if c is not keep)
    return keep


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


def _removed_keys(remembered, lease):
    """Why the lease's SSH sessions must end as its keys change to lease.keys ('' when no key was removed).

    remembered: the lease the device kept (its state file). Keys are compared by fingerprint, so a
    new comment removes nothing; without a remembered copy of this lease a removal is assumed.
    """
    if remembered is None or remembered.id != lease.id:
        return 'a key may have been removed (the previous keys are not known)'
    kept = set(lease.key_fingerprints)
    removed = [fp for fp in remembered.key_fingerprints if fp not in kept]
    if not removed:
        return ''
    return 'a key was removed' if len(removed) == 1 else '%d keys were removed' % len(removed)


def _update_keys(lease, keep, remembered, actions):
    """Write the new keys in place; when one was removed, end the lease's SSH sessions too.

    Nothing the device can trust tells which key opened a session (the renter is root in the
    container), so every session ends; holders of the remaining keys log in again.
    """
    actions.append(Action('update_keys', lease.id, keep.id, keep.name, 'keys changed'))
    removal = _removed_keys(remembered, lease)
    if removal and keep.running:
        actions.append(Action('end_sessions', lease.id, keep.id, keep.name, removal))


def _converge_lease(lease, containers, volumes, publish, actions, warnings, reason_new, remembered,
                    reason_start=None):
    """Actions that make `lease` served by exactly one correct, running container."""
    keep = _keep_one(lease, containers, actions)
    if keep is None:
        actions.append(Action('create', lease.id, None, lease.container_name, reason_new))
    else:
        mismatch = _container_matches(lease, keep, publish)
        if mismatch:
            reason = 'recreate (home kept): ' + ', '.join(mismatch)
            actions.append(_remove(keep, reason))
            if 'image changed' in mismatch or _creation_interrupted(lease, keep, remembered):
                # The system directories were copied from the old image (or half copied); the
                # image's are copied in again when the container is created (the home is kept).
                actions.append(Action('reset_system', lease.id, None, lease.container_name, reason))
            actions.append(Action('create', lease.id, None, lease.container_name, reason))
            keep = None
        else:
            if _limits_differ(lease, keep):
                actions.append(Action('update_limits', lease.id, keep.id, keep.name, 'limits changed'))
            if keep.keys_hash != lease.keys_hash:
                _update_keys(lease, keep, remembered, actions)
            if not keep.running:
                actions.append(Action('start', lease.id, keep.id, keep.name,
                                      reason_start or 'container is %s' % (keep.status or 'stopped')))
    volume = volumes.get(lease.id)
    if volume is not None and volume.disk_gb is not None and volume.disk_gb != lease.limits.disk_gb:
        if lease.limits.disk_gb > volume.disk_gb:
            actions.append(Action('resize_disk', lease.id, None, lease.container_name,
                                  'disk grows from %d to %d GB' % (volume.disk_gb, lease.limits.disk_gb)))
        else:
            warnings.append('disk_gb of lease %s shrinks from %d to %d GB: not applied (the renter data '
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
           publish=None, frozen_at=None, grace=DEFAULT_GRACE):
    """Compute the converge plan.

    desired: Lease or None, the marketplace's answer; only used when api_ok.
    api_ok: False when the check-in failed or its answer was rejected; then a lease whose expires_at
      has passed by `now` is frozen (stopped, container and volumes kept), and wiped only once it
      has been frozen for `grace`; the marketplace's answer decides at once when it comes back
      (the same lease, extended: the frozen container is started again; none or another: wiped).
    observed_containers: ObservedContainer list, every container labelled p2pvps.role=renter.
    local_state: Lease or None from the state file; its keys tell whether new keys remove one (and end
      the lease's SSH sessions).
    now: aware datetime (UTC), the marketplace's clock: its server_time when it answered, else the
      device's best estimate of it (_clock.py). A lease it answers that has expired by then is no lease.
    observed_volumes: ObservedVolume list, lease volumes present on the engine, each with
      whether its lease disk is mounted.
    publish: Publish (ports and sandbox settings); by default only local_port is compared.
    frozen_at: when the remembered lease was frozen (the state file), None when it is not.
    grace: timedelta, how long a frozen lease is kept before it is wiped (zero: wiped at once).
    """
    publish = publish or Publish(ssh_port=local_port)
    containers = list(observed_containers)
    volumes = {v.lease_id: v for v in observed_volumes}
    actions = []
    warnings = []
    keep = None
    frozen_after = None
    if local_state is None:
        frozen_at = None
    before = {
        'lease': None if local_state is None else local_state.summary(),
        'containers': sorted((c.summary() for c in containers), key=lambda s: (s['name'], s['lease_id'] or '')),
    }

    if api_ok and desired is not None and desired.expired(now):
        warnings.append('the marketplace answered lease %s, which expired at %s by its own clock (%s): '
                        'it is treated as no lease' % (desired.id, format_time(desired.expires_at), format_time(now)))
        desired = None
    if api_ok:
        lease_after = desired
        if desired is not None:
            for lease_id in _lease_ids(containers, volumes):
                if lease_id != desired.id:
                    _wipe(lease_id, containers, volumes, actions, 'lease %s is not the current lease' % lease_id)
            reason = 'new lease'
            if local_state is not None and local_state.id != desired.id:
                reason = 'lease changed from %s' % local_state.id
            reason_start = None
            if frozen_at is not None and local_state.id == desired.id:
                reason_start = ('the marketplace extended lease %s until %s: the frozen container resumes with '
                                'its data' % (desired.id, format_time(desired.expires_at)))
            keep = _converge_lease(desired, containers, volumes, publish, actions, warnings, reason, local_state,
                                   reason_start)
        else:
            for lease_id in _lease_ids(containers, volumes):
                _wipe(lease_id, containers, volumes, actions, 'no lease on the marketplace')
    else:
        lease_after, keep, frozen_after = _decide_offline(containers, volumes, local_state, frozen_at, now, grace,
                                                          actions, warnings)
    actions.extend(_mounts(volumes, actions))

    if _state_differs(local_state, lease_after) or frozen_at != frozen_after:
        actions.append(Action('write_state', None if lease_after is None else lease_after.id, None, None,
                              _state_reason(lease_after, frozen_after)))

    # Removals first (a new container may need the old one's port and name), then the lease
    # disks' mounts (what follows writes to them), then the rest.
    order = {'remove_container': 0, 'remove_volume': 1, 'mount_disk': 2, 'reset_system': 3}
    actions.sort(key=lambda a: order.get(a.kind, 4))
    after = _predict_after(before, actions, lease_after, publish)
    return Plan(actions=actions, diff_before=before, diff_after=after, lease_after=lease_after,
                keep=keep, warnings=warnings, frozen_at=frozen_after)


def _state_reason(lease_after, frozen_after):
    if lease_after is None:
        return 'forget the lease'
    return 'remember the lease' if frozen_after is None else 'remember the lease as frozen'


def _mounts(volumes, actions):
    """Mount the lease disks that are not mounted (a loop mount does not survive a reboot), except
    those of volumes being removed."""
    removed = set(a.lease_id for a in actions if a.kind == 'remove_volume')
    return [Action('mount_disk', volume.lease_id, None, None, 'the lease file system was not mounted (reboot?)')
            for lease_id, volume in sorted(volumes.items())
            if volume.disk_mounted is False and lease_id not in removed]


def _state_differs(local_state, lease_after):
    if local_state is None or lease_after is None:
        return local_state is not lease_after
    return local_state.to_dict() != lease_after.to_dict()


def _decide_offline(containers, volumes, local_state, frozen_at, now, grace, actions, warnings):
    """The API failed: keep what is live; freeze what has expired by `now` (the device's own judgement);
    wipe only what has stayed frozen for `grace`. (lease_after, keep, frozen_after)."""
    lease_after = local_state
    keep = None
    frozen_after = None
    if local_state is not None and frozen_at is None and local_state.expired(now):
        frozen_at = now.replace(microsecond=0)   # the lease ends now by the device's judgement alone: frozen, not wiped
    if local_state is not None and frozen_at is not None:
        # Once frozen, only the marketplace resumes it (an earlier clock estimate after a reboot does not).
        wipe_at = frozen_at + grace
        if now >= wipe_at:
            _wipe(local_state.id, containers, volumes, actions,
                  'lease expired at %s and stayed frozen from %s until its grace window ended (marketplace '
                  'unavailable)' % (format_time(local_state.expires_at), format_time(frozen_at)))
            lease_after = None
        elif not any(c.lease_id == local_state.id for c in containers) and local_state.id not in volumes:
            lease_after = None   # nothing left to keep
        else:
            reason = ('lease expired at %s by the device\'s estimate of the marketplace clock (marketplace '
                      'unavailable): frozen, data kept until %s'
                      % (format_time(local_state.expires_at), format_time(wipe_at)))
            keep = _freeze(local_state, containers, actions, reason)
            frozen_after = frozen_at
            warnings.append('marketplace unavailable: lease %s expired at %s, frozen since %s; wiped at %s unless '
                            'the marketplace extends it' % (local_state.id, format_time(local_state.expires_at),
                                                            format_time(frozen_at), format_time(wipe_at)))
    elif local_state is not None:
        keep = _converge_offline(local_state, containers, actions, warnings)
    # Containers of other leases: only their own label says when they expired; frozen from then.
    for container in containers:
        if local_state is not None and container.lease_id == local_state.id:
            continue
        if container.expires_at is not None and container.expires_at + grace <= now:
            actions.append(_remove(container, 'lease expired at %s and its grace window ended (label; marketplace '
                                              'unavailable)' % format_time(container.expires_at)))
            if container.lease_id in volumes and not any(
                    a.kind == 'remove_volume' and a.lease_id == container.lease_id for a in actions):
                actions.append(Action('remove_volume', container.lease_id, None, None,
                                      'lease expired and its grace window ended (label; marketplace unavailable)'))
        elif container.expires_at is not None and container.expires_at <= now:
            if container.running:
                actions.append(Action('stop', container.lease_id, container.id, container.name,
                                      'lease expired at %s (label; marketplace unavailable): frozen, data kept until '
                                      '%s' % (format_time(container.expires_at),
                                              format_time(container.expires_at + grace))))
        elif not container.running and (local_state is None or container.lease_id != local_state.id):
            if not any(a.container_id == container.id for a in actions):
                actions.append(Action('start', container.lease_id, container.id, container.name,
                                      'live lease (label) kept while the marketplace is unavailable'))
    if local_state is None or lease_after is None:
        warnings.append('marketplace unavailable: nothing wiped except leases frozen for their whole grace window')
    return lease_after, keep, frozen_after


def _freeze(lease, containers, actions, reason):
    """Stop the lease's container and keep it (and the volumes) as they are; nothing starts it again
    but the marketplace answering the lease extended."""
    keep = _keep_one(lease, containers, actions)
    if keep is not None and keep.running:
        actions.append(Action('stop', lease.id, keep.id, keep.name, reason))
    return keep


def _converge_offline(lease, containers, actions, warnings):
    """A live lease from the state file while the API is down: keep it running, change nothing else."""
    keep = _keep_one(lease, containers, actions)
    if keep is None:
        actions.append(Action('create', lease.id, None, lease.container_name,
                              'container missing; lease from local state (marketplace unavailable)'))
        return None
    if not keep.running:
        actions.append(Action('start', lease.id, keep.id, keep.name,
                              'container is %s; lease from local state' % (keep.status or 'stopped')))
    warnings.append('marketplace unavailable: lease %s kept until %s (local time)'
                    % (lease.id, format_time(lease.expires_at)))
    return keep


def _predict_after(before, actions, lease_after, publish):
    removed = set(a.container_name for a in actions if a.kind == 'remove_container')
    # a name can be removed and created again (recreate): created ones are re-added below
    containers = [dict(c) for c in before['containers'] if c['name'] not in removed]
    for action in actions:
        if action.kind in ('start', 'stop'):
            for c in containers:
                if c['name'] == action.container_name:
                    c['state'] = 'running' if action.kind == 'start' else 'exited'
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
