#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: device_info
short_description: Status of a rentable device - marketplace view, local lease, renter container, tunnel
version_added: 0.1.0
description:
  - Reads, on the device, what an operator wants to see per device - whether the marketplace
    sees it online, which lease it holds and until when, the lease the device remembers, its
    renter container, whether the reverse tunnel unit is up, and what the renter sandbox of
    this device enforces (RV(sandbox)), so that weak devices can be found.
  - Changes nothing. Only reads from the marketplace (C(GET /api/v1/devices/{id}) with the
    device token; no check-in, so it does not count as a heartbeat).
  - Each part that cannot be read (marketplace down, Docker not installed, no systemd) is
    reported in RV(problems) instead of failing the task.
author:
  - p2pvps.fleet developers (@p2pvps)
extends_documentation_fragment:
  - p2pvps.fleet._marketplace
  - p2pvps.fleet._marketplace.connection
  - p2pvps.fleet._marketplace.attributes
  - p2pvps.fleet._marketplace.actiongroup
  - p2pvps.fleet._device
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  tunnel_service:
    description: The reverse tunnel's systemd unit (role p2pvps.fleet.tunnel_agent).
    type: str
    default: p2pvps-tunnel.service
  isolation_script:
    description: The script of the C(p2pvps.fleet.docker) role whose C(check) verifies the isolation rules.
    type: path
    default: /usr/local/sbin/p2pvps-docker-isolation
requirements:
  - Docker SDK for Python (C(docker)), for RV(renter_container); without it that part is reported in RV(problems)
seealso:
  - module: p2pvps.fleet.rental
  - module: p2pvps.fleet.device_register
"""

EXAMPLES = r"""
- name: Read the device's status
  p2pvps.fleet.device_info:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
  register: status

- name: Show it in one line
  ansible.builtin.debug:
    msg: "{{ status.summary }}"
"""

RETURN = r"""
summary:
  description: One line for humans.
  returned: always
  type: str
  sample: "online, lease 5f2d6c1e until 2026-11-26T12:00:00Z, container running, tunnel up, sandbox complete"
marketplace:
  description: What the marketplace says of the device (V(null) when it could not be read).
  returned: always
  type: dict
  contains:
    status:
      description: V(new), V(online) or V(offline).
      type: str
    last_checkin:
      description: Time of the last check-in (UTC, ISO 8601).
      type: str
    lease:
      description: The current lease (C(id), C(renter), C(username), C(expires_at)) or V(null).
      type: dict
    tunnel_remote_port:
      description: The port of the device's tunnel on the tunnel server.
      type: int
local_lease:
  description: The lease the device remembers (C(id), C(username), C(expires_at)), V(null) without one.
  returned: always
  type: dict
renter_container:
  description: The renter container (C(id), C(name), C(lease_id), C(status)), V(null) without one.
  returned: always
  type: dict
sandbox:
  description:
    - What this device's renter sandbox enforces, read from the renter container when there is one
      (otherwise what a new lease would get), the Docker Engine and the host's rules.
    - V(null) when Docker could not be asked.
  returned: always
  type: dict
  contains:
    disk:
      description: V(whole) (read-only root, every writable path on the lease's limited disk or in capped
        tmpfs), V(home) (only the home limited), V(none).
      type: str
    ipv6:
      description: V(off) when the renter container has no IPv6; V(null) without a container.
      type: str
    inter_container:
      description: V(off) when the renter network forbids traffic between its containers; V(null) before it exists.
      type: str
    user_namespace:
      description: V(on) when Docker remaps user namespaces (root in the container is nobody on the device).
      type: str
    bandwidth_mbit:
      description: The renter container's bandwidth cap as found on its network link (V(null) none or no container).
      type: int
    write_budget_bps:
      description: Write budget of the renter container on its lease disk (V(null) none or no container).
      type: int
    isolation_rules:
      description: V(in place), or what is missing.
      type: str
    weak:
      description: The defences this device does not have (empty on a device that has them all).
      type: list
      elements: str
  sample: {disk: whole, ipv6: "off", inter_container: "off", user_namespace: "on", bandwidth_mbit: 20,
           write_budget_bps: 10485760, isolation_rules: in place, weak: []}
tunnel_active:
  description: Whether the tunnel unit is active (V(null) when systemd could not be asked).
  returned: always
  type: bool
problems:
  description: Parts that could not be read, and why.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.p2pvps.fleet.plugins.module_utils import _lease, _sandbox
from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    MARKETPLACE_COMMON_ARGS,
    MarketplaceError,
    client_from_module,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._docker import (
    DOCKER_HOST_ARGS,
    DockerException,
    LeaseDisk,
    RenterDocker,
    sdk_problem,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._state import STATE_DIR_ARGS, STATE_FILE, read_state


def marketplace_view(module, problems):
    client = client_from_module(module, retries=1)
    try:
        device = client.get_device()
    except MarketplaceError as exc:
        problems.append('marketplace: %s' % to_native(exc))
        return None
    lease = device.get('lease') if isinstance(device.get('lease'), dict) else None
    tunnel = device.get('tunnel') if isinstance(device.get('tunnel'), dict) else {}
    return {
        'status': device.get('status'),
        'last_checkin': device.get('last_checkin'),
        'lease': lease,
        'tunnel_remote_port': tunnel.get('remote_port'),
    }


def local_lease(state_dir, problems):
    lease, warning = read_state(os.path.join(state_dir, STATE_FILE))
    if warning:
        problems.append(warning)
    return lease


def local_lease_view(lease):
    if lease is None:
        return None
    return {'id': lease.id, 'username': lease.username, 'expires_at': _lease.format_time(lease.expires_at)}


def renter_docker(params, problems):
    problem = sdk_problem()
    if problem:
        problems.append('docker: %s' % problem[0])
        return None
    return RenterDocker(params['docker_host'], os.path.join(params['state_dir'], 'disks'))


def renter_container(docker, lease, problems):
    """The renter container (ObservedContainer) or None; keys are not read (the status needs none)."""
    recorded = {} if lease is None else {lease.id: lease.keys_hash}
    containers = docker.renter_containers(recorded)
    if len(containers) > 1:
        problems.append('docker: %d renter containers (expected at most one)' % len(containers))
    return containers[0] if containers else None


def container_view(container):
    if container is None:
        return None
    return {'id': container.id, 'name': container.name, 'lease_id': container.lease_id,
            'status': 'running' if container.running else container.status}


def sandbox_view(docker, container, isolation_script):
    """What the sandbox enforces here, and the defences this device lacks (`weak`)."""
    report = {'disk': 'whole' if LeaseDisk.unsupported_reason() is None else 'none', 'ipv6': None,
              'bandwidth_mbit': None, 'write_budget_bps': None}
    if container is not None:
        found = docker.container_sandbox(container.id)
        report.update((key, found[key]) for key in ('disk', 'ipv6', 'write_budget_bps'))
        if container.running and container.pid:
            report['bandwidth_mbit'] = _observed_mbit(container.pid)
    report['user_namespace'] = 'off' if docker.engine_owner() is None else 'on'
    report['inter_container'] = docker.renter_network_icc()
    report['isolation_rules'] = _sandbox.isolation_problem(isolation_script) or 'in place'
    weak = []
    for key, good in (('disk', 'whole'), ('ipv6', 'off'), ('user_namespace', 'on'), ('inter_container', 'off'),
                      ('isolation_rules', 'in place')):
        if report[key] is not None and report[key] != good:
            weak.append('%s: %s' % (key, report[key]))
    if container is not None and container.running:
        weak.extend('%s: none' % key for key in ('bandwidth_mbit', 'write_budget_bps') if report[key] is None)
    report['weak'] = weak
    return report


def _observed_mbit(pid):
    try:
        rates = [rate for rate in _sandbox.shaped_rates_kbit(pid) if rate is not None]
    except _sandbox.SandboxError:
        return None
    return min(rates) // 1000 if rates else None


def tunnel_view(module, service, problems):
    """True/False: the tunnel unit is active or not; None when systemd cannot be asked."""
    systemctl = module.get_bin_path('systemctl')
    if not systemctl:
        problems.append('tunnel: systemctl not found')
        return None
    rc, out, err = module.run_command([systemctl, 'show', '--property=LoadState,ActiveState', '--', service])
    if rc != 0:
        problems.append('tunnel: systemctl show %s failed: %s' % (service, (err or out).strip()[:200]))
        return None
    unit = dict(line.split('=', 1) for line in out.splitlines() if '=' in line)
    if unit.get('LoadState') == 'not-found':
        problems.append('tunnel: %s is not installed' % service)
    return unit.get('ActiveState') in ('active', 'reloading')


def summary(market, local, container, tunnel, sandbox):
    parts = ['marketplace unknown' if market is None else market.get('status') or '?']
    lease = (market or {}).get('lease') or local
    if lease:
        parts.append('lease %s until %s' % (lease.get('id'), lease.get('expires_at')))
    else:
        parts.append('no lease')
    parts.append('container %s' % (container['status'] if container else 'none'))
    parts.append({True: 'tunnel up', False: 'tunnel down', None: 'tunnel unknown'}[tunnel])
    if sandbox is None:
        parts.append('sandbox unknown')
    else:
        parts.append('sandbox weak (%s)' % '; '.join(sandbox['weak']) if sandbox['weak'] else 'sandbox complete')
    return ', '.join(parts)


def main():
    argument_spec = dict(MARKETPLACE_COMMON_ARGS, **DOCKER_HOST_ARGS, **STATE_DIR_ARGS)
    argument_spec.update(
        tunnel_service=dict(type='str', default='p2pvps-tunnel.service'),
        isolation_script=dict(type='path', default=_sandbox.DEFAULT_ISOLATION_SCRIPT),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    problems = []
    market = marketplace_view(module, problems)
    lease = local_lease(module.params['state_dir'], problems)
    container, sandbox = docker_views(module.params, lease, problems)
    local = local_lease_view(lease)
    tunnel = tunnel_view(module, module.params['tunnel_service'], problems)
    module.exit_json(changed=False, marketplace=market, local_lease=local, renter_container=container,
                     tunnel_active=tunnel, sandbox=sandbox, problems=problems,
                     summary=summary(market, local, container, tunnel, sandbox))


def docker_views(params, lease, problems):
    """(renter container view, sandbox view); (None, None) when Docker cannot be asked."""
    docker = renter_docker(params, problems)
    if docker is None:
        return None, None
    try:
        container = renter_container(docker, lease, problems)
        return container_view(container), sandbox_view(docker, container, params['isolation_script'])
    except (DockerException, OSError) as exc:
        problems.append('docker: %s' % to_native(exc))
        return None, None


if __name__ == '__main__':
    main()
