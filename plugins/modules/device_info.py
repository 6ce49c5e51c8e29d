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
    renter container, and whether the reverse tunnel unit is up.
  - Changes nothing. Only reads from the marketplace (C(GET /api/v1/devices/{id}) with the
    device token; no check-in, so it does not count as a heartbeat).
  - Each part that cannot be read (marketplace down, Docker not installed, no systemd) is
    reported in RV(problems) instead of failing the task.
author:
  - p2pvps.fleet developers (@p2pvps)
extends_documentation_fragment:
  - p2pvps.fleet._marketplace
  - p2pvps.fleet._marketplace.attributes
  - p2pvps.fleet._marketplace.actiongroup
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  state_dir:
    description: Directory of the local lease state (as for M(p2pvps.fleet.rental)).
    type: path
    default: /var/lib/p2pvps
  tunnel_service:
    description: The reverse tunnel's systemd unit (role p2pvps.fleet.tunnel_agent).
    type: str
    default: p2pvps-tunnel.service
  docker_host:
    description: The Docker Engine to ask for renter containers.
    type: str
    default: unix:///var/run/docker.sock
requirements:
  - requests
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
  sample: "online, lease 5f2d6c1e until 2026-11-26T12:00:00Z, container running, tunnel up"
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

from ansible_collections.p2pvps.fleet.plugins.module_utils import _rental
from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    MARKETPLACE_COMMON_ARGS,
    MarketplaceError,
    client_from_module,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._docker import DockerException, RenterDocker, sdk_problem
from ansible_collections.p2pvps.fleet.plugins.module_utils._state import STATE_FILE, read_state


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


def local_lease_view(state_dir, problems):
    lease, warning = read_state(os.path.join(state_dir, STATE_FILE))
    if warning:
        problems.append(warning)
    if lease is None:
        return None
    return {'id': lease.id, 'username': lease.username, 'expires_at': _rental.format_time(lease.expires_at)}


def container_view(docker_host, problems):
    problem = sdk_problem()
    if problem:
        problems.append('docker: %s' % problem[0])
        return None
    try:
        containers = RenterDocker(docker_host, None).renter_containers()
    except (DockerException, OSError) as exc:
        problems.append('docker: %s' % to_native(exc))
        return None
    if not containers:
        return None
    if len(containers) > 1:
        problems.append('docker: %d renter containers (expected at most one)' % len(containers))
    first = containers[0]
    return {'id': first.id, 'name': first.name, 'lease_id': first.lease_id,
            'status': 'running' if first.running else first.status}


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


def summary(market, local, container, tunnel):
    parts = ['marketplace unknown' if market is None else market.get('status') or '?']
    lease = (market or {}).get('lease') or local
    if lease:
        parts.append('lease %s until %s' % (lease.get('id'), lease.get('expires_at')))
    else:
        parts.append('no lease')
    parts.append('container %s' % (container['status'] if container else 'none'))
    parts.append({True: 'tunnel up', False: 'tunnel down', None: 'tunnel unknown'}[tunnel])
    return ', '.join(parts)


def main():
    argument_spec = dict(MARKETPLACE_COMMON_ARGS)
    argument_spec.update(
        state_dir=dict(type='path', default='/var/lib/p2pvps'),
        tunnel_service=dict(type='str', default='p2pvps-tunnel.service'),
        docker_host=dict(type='str', default='unix:///var/run/docker.sock'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    problems = []
    market = marketplace_view(module, problems)
    local = local_lease_view(module.params['state_dir'], problems)
    container = container_view(module.params['docker_host'], problems)
    tunnel = tunnel_view(module, module.params['tunnel_service'], problems)
    module.exit_json(changed=False, marketplace=market, local_lease=local, renter_container=container,
                     tunnel_active=tunnel, problems=problems,
                     summary=summary(market, local, container, tunnel))


if __name__ == '__main__':
    main()
