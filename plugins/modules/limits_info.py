#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: limits_info
short_description: Which renter limits this device's Docker Engine can enforce, and how to fix the rest
version_added: 0.1.0
description:
  - Asks the device's Docker Engine what it enforces (C(GET /info) - C(MemoryLimit), C(SwapLimit),
    C(CpuCfsQuota), C(PidsLimit), C(CgroupVersion), C(Driver)) and reads C(/proc/swaps),
    C(/proc/cmdline), C(/proc/device-tree/model) and the free space of Docker's data root.
  - Reports, per renter limit (memory, swap, cpu, pids, disk), whether it is enforced, and each
    problem with its fix - for example a Raspberry Pi whose kernel command line lacks
    C(cgroup_enable=memory cgroup_memory=1), where Docker silently ignores every memory limit;
    swap on the SD card that a renter's memory can spill to; cgroup v1; the C(vfs) storage driver;
    little free space.
  - Changes nothing. The role P(p2pvps.fleet.docker#role) runs it after Docker is up and fails when
    memory or pids limits cannot be enforced; P(p2pvps.fleet.device_register#module) reports the same
    verdict to the marketplace (fact C(enforcement)), which refuses rentals on such a device.
author:
  - p2pvps.fleet developers (@p2pvps)
extends_documentation_fragment:
  - p2pvps.fleet._marketplace.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  docker_host:
    description: The device's Docker Engine.
    type: str
    default: unix:///var/run/docker.sock
  min_free_gb:
    description: Less free space than this (GiB) in Docker's data root is reported as a problem.
    type: float
    default: 2.0
requirements:
  - Docker SDK for Python (C(docker)), or the C(docker) command line
seealso:
  - module: p2pvps.fleet.device_register
  - module: p2pvps.fleet.device_info
"""

EXAMPLES = r"""
- name: Check what this device can enforce
  p2pvps.fleet.limits_info:
  register: limits

- name: Refuse to go on with a device that ignores memory limits
  ansible.builtin.assert:
    that: limits.limits.rentable
    fail_msg: "{{ limits.limits.messages | join(' ') }}"
"""

RETURN = r"""
limits:
  description: The verdict.
  returned: always
  type: dict
  contains:
    memory:
      description: Whether a renter's memory limit is enforced.
      type: bool
    swap:
      description: Whether a renter is kept out of swap (Docker enforces swap limits, or there is no swap).
      type: bool
    cpu:
      description: Whether a renter's CPU limit is enforced (CFS quota).
      type: bool
    pids:
      description: Whether a renter's process limit is enforced.
      type: bool
    disk:
      description: Whether a lease can get a size-limited disk (root, loop devices, e2fsprogs).
      type: bool
    rentable:
      description: Whether the limits a device must enforce to be rented (memory and pids) are enforced.
      type: bool
    cgroup_version:
      description: The Engine's cgroup version (V(1) or V(2)).
      type: str
    cgroup_driver:
      description: The Engine's cgroup driver (V(systemd), V(cgroupfs)).
      type: str
    storage_driver:
      description: The Engine's storage driver (V(overlay2), V(vfs), ...).
      type: str
    swap_on_sd_card:
      description: Whether an active swap area is on an SD card or eMMC (C(/dev/mmcblk*)).
      type: bool
    raspberry_pi:
      description: Whether the device is a Raspberry Pi (board name or kernel command line).
      type: bool
    data_root_free_gb:
      description: Free space in Docker's data root, GiB.
      type: float
    problems:
      description: Each problem - C(limit) (V(memory), V(swap), V(cpu), V(pids), V(disk), V(cgroup),
        V(storage) or V(space)), C(problem), C(fix), C(blocking) (true for memory and pids) and C(message)
        (all of it as one sentence).
      type: list
      elements: dict
    messages:
      description: The problems as sentences, with their fixes.
      type: list
      elements: str
    docker_warnings:
      description: The Engine's own warnings (C(docker info)).
      type: list
      elements: str
  sample:
    memory: false
    swap: false
    cpu: true
    pids: true
    disk: true
    rentable: false
    cgroup_version: "1"
    cgroup_driver: cgroupfs
    storage_driver: overlay2
    swap_on_sd_card: true
    raspberry_pi: true
    data_root_free_gb: 21.3
    messages:
      - >-
        memory: Docker reports no memory limit support (memory cgroup disabled): a renter's memory limit
        would be silently ignored and one renter could take all the memory of the device. Fix: add
        "cgroup_enable=memory cgroup_memory=1" to the one line of /boot/firmware/cmdline.txt ..., then reboot.
fact:
  description: What P(p2pvps.fleet.device_register#module) reports to the marketplace as the fact C(enforcement).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.p2pvps.fleet.plugins.module_utils import _enforcement
from ansible_collections.p2pvps.fleet.plugins.module_utils._docker import DOCKER_HOST_ARGS, LeaseDisk, engine_info


def engine_answer(docker_host):
    """The Engine's /info, through the SDK or else the CLI; None when no engine answers."""
    return engine_info(docker_host) or _enforcement.info_from_cli(docker_host)


def main():
    argument_spec = dict(DOCKER_HOST_ARGS)
    argument_spec.update(min_free_gb=dict(type='float', default=_enforcement.DEFAULT_MIN_FREE_GB))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    info = engine_answer(module.params['docker_host'])
    if info is None:
        module.fail_json(msg='the Docker Engine at %s does not answer (GET /info), so what it enforces is unknown'
                         % module.params['docker_host'])
    verdict = _enforcement.gather(info, lease_disk_problem=LeaseDisk.unsupported_reason(),
                                  min_free_gb=module.params['min_free_gb'])
    module.exit_json(changed=False, limits=verdict, fact=_enforcement.fact(verdict))


if __name__ == '__main__':
    main()
