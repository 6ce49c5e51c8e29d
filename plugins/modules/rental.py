#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: rental
short_description: Converge a device's renter container to its marketplace lease
version_added: 0.1.0
description:
  - Checks in once with the P2P VPS marketplace (the heartbeat, also in check mode, as the
    check-in is the read), validates the lease it answers, and converges the renter
    container on the local Docker Engine to it.
  - No lease means no renter container and no lease volume. A lease means exactly one
    container labelled with the lease id, from the lease's image (a local image; nothing
    is pulled or built), running sshd for the renter's user with their keys (no passwords),
    published on C(127.0.0.1:local_port) only, with the lease's memory, CPU and process
    limits, C(no-new-privileges), all capabilities dropped except what sshd needs, no host
    network and no Docker socket, and a restart policy so it survives reboots.
  - A new lease id removes the old container and its volume and creates the new one.
    New keys are written into the running container without recreating it; new memory,
    CPU and process limits are applied in place; a new image, user name or local port
    recreates the container and keeps the renter's volume.
  - The renter's home is a per-lease volume. Where the module runs as root and the host has
    loop devices and C(mkfs.ext4), the volume is an ext4 file system of the lease's
    C(disk_gb) in a sparse image file under O(state_dir), so the disk limit is enforced;
    otherwise the volume has no size limit, and RV(disk_limit_enforced) says so with
    the reason.
  - Durable and fail-safe. The last lease is kept in C(lease.json) in O(state_dir) (written
    atomically, mode 0600) and in container labels. When the marketplace is unreachable,
    times out or answers anything that does not validate, nothing is wiped except a lease
    whose C(expires_at) has passed on local time; a live lease keeps running (it is started
    or even recreated from the local state if needed) and the error is reported in
    RV(api_error) and as a warning, failing only with O(fail_on_api_error=true).
  - When the marketplace answers, its answer is authoritative (a device without a real-time
    clock may have a wrong clock); local time decides only while the marketplace is down.
author:
  - p2pvps.fleet developers (@p2pvps)
extends_documentation_fragment:
  - p2pvps.fleet._marketplace
  - p2pvps.fleet._marketplace.attributes
  - p2pvps.fleet._marketplace.actiongroup
attributes:
  check_mode:
    support: full
    details:
      - The check-in with the marketplace happens in check mode too; it is the read that
        tells which lease the device should run.
  diff_mode:
    support: full
    details:
      - The diff shows the remembered lease (keys by fingerprint) and the renter containers
        before and after.
  idempotent:
    support: full
    details:
      - Holds while the marketplace's answer stays the same (a renewed lease changes the state file).
options:
  state:
    description:
      - V(present) converges the renter container to the marketplace's lease.
      - V(absent) removes every renter container and lease volume of this device and forgets the
        lease (for decommissioning). It still checks in once, to learn whether the marketplace
        holds a live lease; a live lease (the marketplace's or, while the marketplace cannot be
        reached, the remembered one before its C(expires_at)) is not cut unless O(force=true),
        and the task fails instead.
    type: str
    choices: [present, absent]
    default: present
  force:
    description:
      - With O(state=absent), remove a live lease too. The renter loses their container and data.
    type: bool
    default: false
  local_port:
    description:
      - Port on C(127.0.0.1) of the device where the renter's sshd is published; the tunnel
        forwards the marketplace's remote port to it.
    type: int
    default: 2222
  state_dir:
    description:
      - Directory of the local lease state (C(lease.json)) and of the per-lease disk images.
    type: path
    default: /var/lib/p2pvps
  fail_on_api_error:
    description:
      - Fail the task when the check-in fails or its answer is rejected.
      - Either way nothing live is wiped on an API error, and the error is in RV(api_error).
    type: bool
    default: false
  require_disk_limit:
    description:
      - Fail instead of creating a lease volume without a size limit when this host cannot
        enforce the lease's C(disk_gb).
    type: bool
    default: false
  docker_host:
    description: The Docker Engine to use.
    type: str
    default: unix:///var/run/docker.sock
requirements:
  - Docker SDK for Python (C(docker)) 5.0 or newer; 7.1 or newer when C(requests) is 2.32 or newer
  - requests
  - Root for the enforced per-lease disk (loop devices, C(mkfs.ext4), C(mount))
notes:
  - Renter containers carry the labels C(p2pvps.role=renter), C(p2pvps.lease), C(p2pvps.user),
    C(p2pvps.keys) and C(p2pvps.expires_at); containers and volumes without them are never touched.
  - After a reboot a lease with an enforced disk cannot start until the module has mounted its
    file system again; the next run (for example the rental_agent timer) does that and starts
    the same container.
  - Shrinking C(disk_gb) of a running lease is not applied (the renter's data is kept). Growing
    is applied online where the kernel lets the module resize a mounted ext4 file system
    (C(CAP_SYS_RESOURCE)); otherwise the container is stopped for the resize and started again
    (same container).
  - The module is the only writer of the renter's C(authorized_keys) (root-owned, outside the
    renter's reach). It trusts the keys recorded in C(lease.json) for the container of that lease
    and reads the file from the container only when there is no such record (first run, lost
    O(state_dir), a container of another lease); a key file changed by hand inside a container
    is therefore not noticed while the state file says otherwise.
seealso:
  - module: p2pvps.fleet.device_register
"""

EXAMPLES = r"""
- name: Converge the renter container to the marketplace's lease
  p2pvps.fleet.rental:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
  register: rental

- name: Show what happened
  ansible.builtin.debug:
    msg: "lease {{ rental.lease_id }} in {{ rental.container_id }}: {{ rental.actions | map(attribute='action') }}"

- name: Be strict in CI - fail when the marketplace cannot be reached
  p2pvps.fleet.rental:
    marketplace_url: http://127.0.0.1:8080
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
    fail_on_api_error: true
    require_disk_limit: true
    local_port: 2222

- name: Decommission - remove the renter container and volumes (fails while a lease is live)
  p2pvps.fleet.rental:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
    state: absent
"""

RETURN = r"""
msg:
  description: One line for the operator - the lease after this run, the actions taken (or that
    would be taken in check mode) and the API error if there was one.
  returned: success
  type: str
  sample: lease 5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60, actions create, write_state
lease_id:
  description: Id of the lease the device runs after this run, or V(null) without a lease.
  returned: always
  type: str
  sample: 5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60
container_id:
  description: Id of the renter container after this run (V(null) without a lease, or in check
    mode when the container would be created).
  returned: always
  type: str
  sample: 3b1f0c9e5d7a...
lease:
  description: The lease after this run; keys only by fingerprint.
  returned: always
  type: dict
  sample:
    id: 5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60
    username: alice
    ssh_key_fingerprints: ["SHA256:2f3c..."]
    image: p2pvps/renter:latest
    expires_at: "2026-11-25T14:00:00Z"
    limits: {memory_mb: 512, cpus: 1.0, pids: 256, disk_gb: 4}
actions:
  description: What was done (or, in check mode, would be done), in order.
  returned: always
  type: list
  elements: dict
  contains:
    action:
      description: >-
        One of V(mount_disk), V(remove_container), V(remove_volume), V(create), V(start),
        V(update_keys), V(update_limits), V(resize_disk), V(write_state).
      type: str
    lease_id:
      description: The lease concerned.
      type: str
    container:
      description: Name of the container concerned.
      type: str
    reason:
      description: Why.
      type: str
  sample:
    - {action: create, lease_id: 5f2d6c1e-8d4b-4f1a-9a57-1b2c3d4e5f60,
       container: p2pvps-renter-5f2d6c1e8d4b, reason: new lease}
api_error:
  description: Why the check-in failed or its answer was rejected; V(null) when it worked.
  returned: always
  type: str
  sample: "marketplace unreachable: connection refused"
disk_limit_enforced:
  description:
    - Whether the lease's C(disk_gb) is enforced on its volume; V(null) without a lease.
    - In check mode, for a volume still to be created, whether it would be.
  returned: always
  type: bool
  sample: true
disk_limit_reason:
  description: How the disk limit is enforced, or why it is not.
  returned: always
  type: str
  sample: the lease volume is a 4 GiB ext4 file system in a loop-mounted image
checkin_interval_s:
  description: Check-in interval the marketplace asked for (V(null) on API error).
  returned: always
  type: int
  sample: 120
diff:
  description: Before and after (the remembered lease and the renter containers).
  returned: when diff mode is on
  type: dict
"""

import contextlib
import datetime
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.p2pvps.fleet.plugins.module_utils import _rental
from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    MARKETPLACE_COMMON_ARGS,
    MarketplaceError,
    client_from_module,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._docker import (
    DockerException,
    LeaseDisk,
    RentalDockerError,
    RenterDocker,
    sdk_problem,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._state import (
    STATE_FILE,
    StateLock,
    StateLockTimeout,
    read_state,
    write_state,
)


class RentalManager:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.state_path = os.path.join(self.params['state_dir'], STATE_FILE)
        self.docker = RenterDocker(self.params['docker_host'], os.path.join(self.params['state_dir'], 'disks'))
        self.result = {'changed': False, 'lease_id': None, 'container_id': None, 'lease': None,
                       'actions': [], 'api_error': None, 'disk_limit_enforced': None,
                       'disk_limit_reason': None, 'checkin_interval_s': None}

    def checkin(self, containers, local_state):
        """(api_ok, desired lease) from one check-in; errors end up in result['api_error']."""
        mine = [c for c in containers if local_state is not None and c.lease_id == local_state.id]
        observed = {
            'lease_id': None if local_state is None else local_state.id,
            'container': ('running' if mine[0].running else mine[0].status) if mine else 'absent',
            'renter_containers': len(containers),
        }
        try:
            answer = client_from_module(self.module).checkin(observed)
        except MarketplaceError as exc:
            self.result['api_error'] = 'check-in failed: %s' % to_native(exc)
            return False, None
        try:
            desired = _rental.parse_checkin(answer)
        except _rental.LeaseError as exc:
            self.result['api_error'] = 'check-in answer rejected: %s' % to_native(exc)
            return False, None
        interval = answer.get('checkin_interval_s')
        if isinstance(interval, int) and not isinstance(interval, bool):
            self.result['checkin_interval_s'] = interval
        return True, desired

    def run(self):
        local_state, warning = read_state(self.state_path)
        if warning:
            self.module.warn(warning)
        volumes = self.docker.lease_volumes()
        mounted = [] if self.module.check_mode else self.docker.mount_lease_disks(volumes)
        recorded_keys = {} if local_state is None else {local_state.id: local_state.keys_hash}
        containers = self.docker.renter_containers(recorded_keys)
        api_ok, desired = self.checkin(containers, local_state)
        now = datetime.datetime.now(datetime.timezone.utc)
        if self.params['state'] == 'absent':
            self.refuse_live_lease(desired if api_ok else local_state, now)
            desired, api_ok = None, True
        plan = _rental.decide(desired, api_ok, containers, local_state, now, volumes,
                              local_port=self.params['local_port'])
        self.check_images(plan)

        if self.result['api_error']:
            self.module.warn('%s; nothing live was wiped.' % self.result['api_error'])
        for note in plan.notes:
            if self.result['api_error'] or 'shrinks' in note:
                self.module.warn(note)

        self.result['actions'] = [
            {'action': 'mount_disk', 'lease_id': lease_id, 'container': None,
             'reason': 'the lease file system was not mounted (reboot?)'} for lease_id in mounted
        ] + [a.to_dict() for a in plan.actions]
        self.result['changed'] = plan.changed or bool(mounted)
        if self.module._diff:
            self.result['diff'] = {'before': plan.diff_before, 'after': plan.diff_after}
        container_id = plan.keep.id if plan.keep is not None else None
        if not self.module.check_mode:
            container_id = self.apply(plan, container_id)

        lease = plan.lease_after
        self.result['lease_id'] = None if lease is None else lease.id
        self.result['lease'] = None if lease is None else lease.summary()
        self.result['container_id'] = None if lease is None else container_id
        if lease is not None:
            self.result['disk_limit_enforced'], self.result['disk_limit_reason'] = self.disk_status(lease)

        if self.result['api_error'] and self.params['fail_on_api_error']:
            self.module.fail_json(msg=self.result['api_error'], **self.result)
        self.module.exit_json(msg=summary(self.result), **self.result)

    def refuse_live_lease(self, lease, now):
        """Fail unless forced when `lease` (the marketplace's, or the local one while it is down) is live."""
        if lease is not None and not lease.expired(now) and not self.params['force']:
            self.module.fail_json(
                msg='lease %s is live until %s: end the rental first, or set force=true to cut it; '
                    'nothing was changed' % (lease.id, _rental.format_time(lease.expires_at)),
                **self.result)

    def check_images(self, plan):
        lease = plan.lease_after
        for action in plan.actions:
            if action.kind == 'create' and not self.docker.image_present(lease.image):
                self.module.fail_json(
                    msg='image %s of lease %s is not present on this device (renter images are not pulled '
                        'or built by this module); nothing was changed' % (lease.image, lease.id),
                    **self.result)

    def disk_status(self, lease):
        enforced, reason = self.docker.disk_status(lease.id)
        if enforced is None:   # no volume yet (check mode): would it be enforced?
            unsupported = LeaseDisk.unsupported_reason()
            enforced = unsupported is None
            reason = 'the lease volume would be a loop-mounted ext4 file system' if enforced else unsupported
        return enforced, reason

    def apply(self, plan, container_id):
        lease = plan.lease_after
        done = []
        if plan.actions:
            os.makedirs(self.params['state_dir'], mode=0o700, exist_ok=True)
        try:
            for action in plan.actions:
                container_id = self.apply_one(action, lease, container_id)
                done.append(action.kind)
        except (DockerException, RentalDockerError, OSError) as exc:
            self.module.fail_json(msg='%s of lease %s failed after %s: %s' % (
                action.kind, action.lease_id, done or 'no change', to_native(exc)), **self.result)
        return container_id

    def apply_one(self, action, lease, container_id):
        kind = action.kind
        if kind == 'remove_container':
            self.docker.remove_container(action.container_id)
            if action.container_id == container_id:
                container_id = None
        elif kind == 'remove_volume':
            self.docker.remove_volume(action.lease_id)
        elif kind == 'create':
            self.docker.ensure_volume(lease, self.params['require_disk_limit'])
            container_id = self.docker.create(lease, self.params['local_port'])
        elif kind == 'start':
            self.docker.start(action.container_id, action.lease_id)
        elif kind == 'update_keys':
            self.docker.update_keys(action.container_id, lease)
        elif kind == 'update_limits':
            self.docker.update_limits(action.container_id, lease)
        elif kind == 'resize_disk':
            self.docker.resize_disk(lease, container_id)
        elif kind == 'write_state':
            write_state(self.state_path, lease)
        return container_id


def state_lock(module):
    """The lock that serialises converges on this device; none is needed (or can be made without
    writing) in check mode on a device that has no state directory yet."""
    if module.check_mode and not os.path.isdir(module.params['state_dir']):
        return contextlib.nullcontext()
    return StateLock(module.params['state_dir'])


def summary(result):
    actions = ', '.join(action['action'] for action in result['actions']) or 'none'
    line = 'lease %s, actions %s' % (result['lease_id'] or 'none', actions)
    if result['api_error']:
        line += ' - API error: %s' % result['api_error']
    return line


def main():
    argument_spec = dict(MARKETPLACE_COMMON_ARGS)
    argument_spec.update(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        force=dict(type='bool', default=False),
        local_port=dict(type='int', default=2222),
        state_dir=dict(type='path', default='/var/lib/p2pvps'),
        fail_on_api_error=dict(type='bool', default=False),
        require_disk_limit=dict(type='bool', default=False),
        docker_host=dict(type='str', default='unix:///var/run/docker.sock'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not 1 <= module.params['local_port'] <= 65535:
        module.fail_json(msg='local_port must be between 1 and 65535')
    problem = sdk_problem()
    if problem:
        module.fail_json(msg=problem[0], exception=problem[1])
    try:
        with state_lock(module):
            RentalManager(module).run()
    except StateLockTimeout as exc:
        module.fail_json(msg='rental converge not run: %s' % to_native(exc))
    except DockerException as exc:
        module.fail_json(msg='Docker Engine error at %s: %s' % (module.params['docker_host'], to_native(exc)))
    except (RentalDockerError, OSError) as exc:
        module.fail_json(msg='rental converge failed: %s' % to_native(exc))


if __name__ == '__main__':
    main()
