#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: device_register
short_description: Register a device with the P2P VPS marketplace, with its real facts and tunnel key
version_added: 0.1.0
description:
  - Registers this device with the marketplace, or refreshes its registration, with facts read
    from the device itself (memory, size of the disk that holds Docker's data root, CPU model and
    count, architecture, operating system, Docker Engine version) and the public key of its
    reverse SSH tunnel, and returns the tunnel assignment the marketplace made (tunnel server,
    user, pinned host key and the device's remote port).
  - Idempotent. The module reads the device first (with the device token) and calls the
    register endpoint only when the device is not registered yet or its facts or key differ.
    The marketplace keeps the remote port of a device across registrations.
  - Facts are read from C(/proc), C(/etc/os-release), C(statvfs) and the Docker Engine at
    O(docker_host) through the Docker SDK (or C(docker version) where the SDK is missing or gets
    no answer), without gathering Ansible facts. Any of them can be set with O(facts). Without a
    Docker Engine the Docker version is reported as V(none).
  - With a Docker Engine, the fact V(enforcement) tells the marketplace which renter limits this device
    can enforce (the verdict of P(p2pvps.fleet.limits_info#module) - memory, swap, cpu, pids, disk,
    cgroup version and driver, storage driver, swap on the SD card, and the problems with their fixes).
    The reference marketplace refuses rentals on a device that cannot enforce memory or pids limits.
    The module warns when that is so.
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
    details:
      - The device is read from the marketplace in check mode too; nothing is written.
  diff_mode:
    support: full
    details:
      - The diff shows the registration (registered or not, facts, tunnel public key) before
        and after. It never holds the device token.
  idempotent:
    support: full
    details:
      - A second run with the same facts and key makes no register call and reports no change.
        Facts that drift (for example a resized disk or an upgraded Docker Engine) update the
        registration.
options:
  state:
    description:
      - V(present) registers or refreshes the device.
      - V(absent) deregisters it (decommissioning) - the marketplace deletes the device, ends its
        lease and frees its tunnel port; the device token stops working. A device the marketplace
        does not know (HTTP 404) is left as it is. Facts and keys are not needed then.
    type: str
    choices: [present, absent]
    default: present
  tunnel_public_key:
    description:
      - OpenSSH public key (C(ssh-ed25519 AAAA... [comment])) of the device's reverse tunnel. The
        tunnel server authorizes it for this device's remote port only.
      - With O(state=present), exactly one of O(tunnel_public_key) and O(tunnel_public_key_file) is required.
    type: str
  tunnel_public_key_file:
    description:
      - Path of the tunnel public key file on the device, for example
        C(/etc/p2pvps/tunnel_ed25519.pub).
    type: path
  facts:
    description:
      - Facts to report instead of the ones read from the device, by name; the others are
        still read. Known names are V(memory_mb) (integer, MiB), V(disk_gb) (number, GiB),
        V(disk_free_gb) (number, GiB a lease disk can take in C(<state_dir>/disks), counting the
        lease disks already there, rounded down), V(cpu_model), V(cpu_count) (integer),
        V(architecture) (for example V(arm64), V(armv7), V(amd64)), V(os), V(docker_version) and
        V(enforcement) (a dictionary as RV(p2pvps.fleet.limits_info#module:fact); without a
        Docker Engine it is not reported).
      - The marketplace refuses rentals whose limits exceed V(memory_mb) (minus its reserve),
        V(cpu_count) or V(disk_free_gb) (minus its reserve).
    type: dict
    default: {}
  docker_data_root:
    description:
      - Docker's data root; V(disk_gb) is the size of the file system that holds it. When it
        does not exist yet (Docker not installed), its nearest existing parent is measured.
    type: path
    default: /var/lib/docker
  docker_version:
    description:
      - Docker Engine version to report instead of asking the engine. Same as setting
        C(docker_version) in O(facts).
    type: str
requirements:
  - Docker SDK for Python (C(docker)) to ask the Docker Engine for its version; without it C(docker version) is run
seealso:
  - module: p2pvps.fleet.rental
"""

EXAMPLES = r"""
- name: Register the device with its real facts and its tunnel key
  p2pvps.fleet.device_register:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
    tunnel_public_key_file: /etc/p2pvps/tunnel_ed25519.pub
  register: registration

- name: Show the tunnel assignment
  ansible.builtin.debug:
    msg: >-
      ssh -N -R {{ registration.tunnel.remote_port }}:127.0.0.1:2222
      {{ registration.tunnel.user }}@{{ registration.tunnel.host }} -p {{ registration.tunnel.port }}

- name: Register with a key from a variable and a fixed Docker version (Docker not installed yet)
  p2pvps.fleet.device_register:
    marketplace_url: "{{ p2pvps_marketplace_url }}"
    device_id: "{{ p2pvps_device_id }}"
    device_token: "{{ p2pvps_device_token }}"
    tunnel_public_key: "{{ tunnel_agent_public_key }}"
    docker_version: "20.10.24"

- name: Report a smaller disk than the card has (part of it is kept for the owner)
  p2pvps.fleet.device_register:
    device_token_file: /etc/p2pvps/device_token
    tunnel_public_key_file: /etc/p2pvps/tunnel_ed25519.pub
    facts:
      disk_gb: 16
  environment:
    P2PVPS_MARKETPLACE_URL: https://market.example.org
    P2PVPS_DEVICE_ID: "{{ p2pvps_device_id }}"

- name: Decommission - deregister the device (ends its lease at the marketplace, frees its port)
  p2pvps.fleet.device_register:
    marketplace_url: https://market.example.org
    device_id: "{{ p2pvps_device_id }}"
    device_token_file: /etc/p2pvps/device_token
    state: absent
"""

RETURN = r"""
device:
  description:
    - The device as the marketplace has it after this run (in check mode, as it is now).
  returned: success and O(state=present)
  type: dict
  sample:
    id: 0c6c2b59-7d0e-4b57-9f6b-0f1c0d8f5a11
    name: pi-kitchen
    status: online
    registered: true
    rentable: true
    facts:
      memory_mb: 3797
      disk_gb: 29.1
      cpu_model: Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)
      cpu_count: 4
      architecture: arm64
      os: Debian GNU/Linux 12 (bookworm)
      docker_version: 20.10.24+dfsg1
    tunnel_public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8n... pi-kitchen
    tunnel:
      host: tunnel.example.org
      port: 22
      user: tunnel
      host_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF2...
      remote_port: 20017
    lease: null
tunnel:
  description:
    - The device's tunnel assignment. V(null) in check mode for a device that was never registered.
  returned: success and O(state=present)
  type: dict
  contains:
    host:
      description: Tunnel server host name.
      type: str
      sample: tunnel.example.org
    port:
      description: SSH port of the tunnel server.
      type: int
      sample: 22
    user:
      description: User on the tunnel server.
      type: str
      sample: tunnel
    host_key:
      description: The tunnel server's SSH host key, to pin in C(known_hosts).
      type: str
      sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF2...
    remote_port:
      description: Port on the tunnel server that the device forwards to its renter's sshd; unique per device.
      type: int
      sample: 20017
    web_remote_port:
      description:
        - Port on the tunnel server's loopback that the device forwards to its renter's web port; unique per
          device. The marketplace's web gateway routes each lease's hostname to it.
        - V(null) when the marketplace does not offer web hosting.
      type: int
      sample: 30017
facts:
  description: The facts sent to the marketplace (or that would be sent, or that are registered already).
  returned: success and O(state=present)
  type: dict
  sample:
    memory_mb: 3797
    disk_gb: 29.1
    disk_free_gb: 21
    cpu_model: Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)
    cpu_count: 4
    architecture: arm64
    os: Debian GNU/Linux 12 (bookworm)
    docker_version: 20.10.24+dfsg1
    enforcement: {memory: true, swap: true, cpu: true, pids: true, disk: true, cgroup_version: "2",
                  cgroup_driver: systemd, storage_driver: overlay2, swap_on_sd_card: false, problems: []}
tunnel_public_key:
  description: The tunnel public key registered (normalized to C(type base64 [comment])).
  returned: success and O(state=present)
  type: str
  sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8n... pi-kitchen
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.p2pvps.fleet.plugins.module_utils import _enforcement, _facts, _ssh_key
from ansible_collections.p2pvps.fleet.plugins.module_utils._api import (
    MARKETPLACE_COMMON_ARGS,
    MarketplaceError,
    MarketplaceRejected,
    client_from_module,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._docker import (
    DOCKER_HOST_ARGS,
    LeaseDisk,
    engine_info,
    engine_version,
)
from ansible_collections.p2pvps.fleet.plugins.module_utils._state import STATE_DIR_ARGS

# The tunnel agent (role tunnel_agent) makes an ed25519 key; this module registers no other type.
TUNNEL_KEY_TYPES = ('ssh-ed25519',)

TUNNEL_KEYS = ('host', 'port', 'user', 'host_key', 'remote_port', 'web_remote_port')


def tunnel_of(value):
    if not isinstance(value, dict):
        return None
    return {key: value.get(key) for key in TUNNEL_KEYS}


def registration_view(device):
    """What the diff shows of a device's registration."""
    device = device if isinstance(device, dict) else {}
    return {
        'registered': device.get('registered') is True,
        'facts': device.get('facts') if isinstance(device.get('facts'), dict) else None,
        'tunnel_public_key': device.get('tunnel_public_key'),
    }


class DeviceRegistration(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, **kwargs)

    def public_key(self):
        text = self.params['tunnel_public_key']
        path = self.params['tunnel_public_key_file']
        if path:
            try:
                with open(path, 'rb') as handle:
                    text = handle.read(4096).decode('utf-8', 'replace')
            except OSError as exc:
                self.fail('cannot read the tunnel public key file %s: %s' % (path, exc.strerror))
        try:
            return _ssh_key.parse_public_key(text, TUNNEL_KEY_TYPES)
        except _ssh_key.PublicKeyError as exc:
            self.fail('the tunnel public key %s%s' % (to_native(exc), ' (in %s)' % path if path else ''))

    def docker_probe(self):
        return _facts.docker_version((lambda: engine_version(self.params['docker_host']),
                                      _facts.docker_version_from_cli))

    def facts(self):
        override = dict(self.params['facts'] or {})
        if self.params['docker_version'] is not None:
            override['docker_version'] = self.params['docker_version']
        known = _facts.FACT_KEYS + ('enforcement',)
        unknown = sorted(set(override) - set(known))
        if unknown:
            self.fail('unknown facts in the facts option: %s (known: %s)' % (', '.join(unknown), ', '.join(known)))
        enforcement = override.pop('enforcement', None)
        try:
            gathered, notes = _facts.gather(self.params['docker_data_root'], skip=set(override),
                                            docker_probe=self.docker_probe,
                                            lease_dir=os.path.join(self.params['state_dir'], 'disks'))
            gathered.update(override)
            facts = _facts.validate_facts(gathered)
        except _facts.FactsError as exc:
            self.fail(to_native(exc))
        if enforcement is not None:
            try:
                facts['enforcement'] = _enforcement.validate_fact(enforcement)
            except ValueError as exc:
                self.fail(to_native(exc))
        else:
            found = self.enforcement()
            if found is not None:
                facts['enforcement'] = found
        return facts, notes

    def enforcement(self):
        """What the Docker Engine can enforce (module limits_info's fact), or None without an engine."""
        info = engine_info(self.params['docker_host']) or _enforcement.info_from_cli(self.params['docker_host'])
        if info is None:
            return None
        verdict = _enforcement.gather(info, lease_disk_problem=LeaseDisk.unsupported_reason())
        for problem in verdict['problems']:
            if problem['blocking']:
                self.module.warn('the marketplace will not rent out this device: %s' % _enforcement.message(problem))
        return _enforcement.fact(verdict)

    def deregister(self):
        client = client_from_module(self.module)
        result = {'changed': False, 'device': None, 'tunnel': None, 'facts': None, 'tunnel_public_key': None}
        try:
            device = client.get_device()
        except MarketplaceRejected as exc:
            if exc.status == 404:
                self.module.exit_json(**result)
            self.fail('reading device %s failed: %s' % (client.device_id, to_native(exc)), **result)
        except MarketplaceError as exc:
            self.fail('reading device %s failed: %s' % (client.device_id, to_native(exc)), **result)
        result['changed'] = True
        if self.module._diff:
            result['diff'] = {'before': registration_view(device), 'after': {}}
        if not self.module.check_mode:
            try:
                client.delete()
            except MarketplaceError as exc:
                self.fail('deregistering device %s failed: %s' % (client.device_id, to_native(exc)), **result)
        self.module.exit_json(**result)

    def run(self):
        if self.params['state'] == 'absent':
            self.deregister()
        key = self.public_key()
        facts, notes = self.facts()
        client = client_from_module(self.module)
        result = {'changed': False, 'facts': facts, 'tunnel_public_key': key}
        try:
            device = client.get_device()
        except MarketplaceRejected as exc:
            hint = ''
            if exc.status == 404:
                hint = ' (the device id is not known to the marketplace: was the device deleted?)'
            self.fail('reading device %s failed: %s%s' % (client.device_id, to_native(exc), hint), **result)
        except MarketplaceError as exc:
            self.fail('reading device %s failed: %s' % (client.device_id, to_native(exc)), **result)

        before = registration_view(device)
        unchanged = (before['registered'] and tunnel_of(device.get('tunnel')) is not None
                     and _facts.facts_equal(before['facts'], facts)
                     and _ssh_key.same_public_key(before['tunnel_public_key'], key))
        if notes.get('disk_path') and notes['disk_path'] != os.path.abspath(self.params['docker_data_root']) \
                and 'disk_gb' not in (self.params['facts'] or {}):
            self.module.warn('%s does not exist yet; disk_gb is the size of %s'
                             % (self.params['docker_data_root'], notes['disk_path']))
        if unchanged:
            result.update(device=device, tunnel=tunnel_of(device.get('tunnel')))
            self.module.exit_json(**result)

        result['changed'] = True
        if self.module._diff:
            result['diff'] = {'before': before,
                              'after': {'registered': True, 'facts': facts, 'tunnel_public_key': key}}
        if self.module.check_mode:
            result.update(device=device, tunnel=tunnel_of(device.get('tunnel')))
            self.module.exit_json(**result)
        try:
            answer = client.register(facts, key)
        except MarketplaceError as exc:
            self.fail('registering device %s failed: %s' % (client.device_id, to_native(exc)), **result)
        result.update(device=answer['device'], tunnel=tunnel_of(answer['tunnel']))
        self.module.exit_json(**result)


def main():
    argument_spec = dict(MARKETPLACE_COMMON_ARGS, **DOCKER_HOST_ARGS, **STATE_DIR_ARGS)
    argument_spec.update(
        state=dict(type='str', default='present', choices=['present', 'absent']),
        tunnel_public_key=dict(type='str'),
        tunnel_public_key_file=dict(type='path'),
        facts=dict(type='dict', default={}),
        docker_data_root=dict(type='path', default='/var/lib/docker'),
        docker_version=dict(type='str'),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        mutually_exclusive=[('tunnel_public_key', 'tunnel_public_key_file')],
        required_if=[('state', 'present', ('tunnel_public_key', 'tunnel_public_key_file'), True)],
    )
    DeviceRegistration(module).run()


if __name__ == '__main__':
    main()
