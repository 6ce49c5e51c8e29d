# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Which renter limits this device's Docker Engine can enforce, and what to do where it cannot.

The verdict is made from what the Engine itself reports (``GET /info``: MemoryLimit, SwapLimit,
CpuCfsQuota, PidsLimit, CgroupVersion, Driver, Warnings), /proc/swaps, /proc/cmdline,
/proc/self/mountinfo and the free space of Docker's data root. check() is pure; gather() reads
the host. No Ansible and no third-party imports.

The trap this catches: on older Raspberry Pi OS kernels the memory cgroup is off unless the
kernel command line says ``cgroup_enable=memory cgroup_memory=1``. Docker then starts every
container - a renter's with ``--memory`` too - and ignores the limit, with only a warning.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from ansible_collections.p2pvps.fleet.plugins.module_utils._facts import read_capped

LIMITS = ('memory', 'swap', 'cpu', 'pids', 'disk')
# Limits a device must enforce to be rented out (the role fails and the marketplace refuses
# rentals without them): without them one renter can take the whole device down.
REQUIRED = ('memory', 'pids')
# Below this much free space in Docker's data root, pulls and lease disks start to fail.
DEFAULT_MIN_FREE_GB = 2.0
MAX_PROBLEMS = 16
MAX_PROBLEM_LEN = 500
GIB = 1024 ** 3

PI_CMDLINE = '/boot/firmware/cmdline.txt (/boot/cmdline.txt before Raspberry Pi OS bookworm)'
# Drivers that copy or are deprecated; overlay2 (and the containerd snapshotter's overlayfs), btrfs
# and zfs share layers.
_SLOW_DRIVERS = {
    'vfs': 'every image layer is a full copy: the renter image takes several times its size on the card '
           'and each container start copies it again',
    'devicemapper': 'the devicemapper driver was removed in Docker 25',
    'aufs': 'the aufs driver was removed in Docker 24',
    'overlay': 'the legacy overlay driver was removed in Docker 24',
}


# ---------------------------------------------------------------- parsers (pure)

def parse_swaps(text):
    """Active swap areas of /proc/swaps: [{'name', 'type', 'size_kb', 'used_kb'}]."""
    areas = []
    for line in (text or '').splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        name = fields[0].replace('\\040', ' ')
        try:
            size, used = int(fields[2]), int(fields[3])
        except ValueError:
            continue
        areas.append({'name': name, 'type': fields[1], 'size_kb': size, 'used_kb': used})
    return areas


def parse_cmdline(text):
    """The kernel command line's words: {'cgroup_enable': ['memory'], 'quiet': [None], ...}."""
    words = {}
    for word in (text or '').split():
        key, sep, value = word.partition('=')
        words.setdefault(key, []).append(value if sep else None)
    return words


def mount_source(path, mountinfo):
    """The source (block device) of the mount that holds `path`, from /proc/self/mountinfo text, or None."""
    best, source = -1, None
    path = os.path.normpath(path or '/')
    for line in (mountinfo or '').splitlines():
        left, sep, right = line.partition(' - ')
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 5 or len(rest) < 2:
            continue
        point = fields[4].replace('\\040', ' ')
        inside = path == point or path.startswith(point.rstrip('/') + '/')
        if inside and len(point) >= best:
            best, source = len(point), rest[1]
    return source


def is_sd_card(device):
    """True for an SD card or eMMC (/dev/mmcblk0, /dev/mmcblk0p2, ...)."""
    return os.path.basename(device or '').startswith('mmcblk')


def on_raspberry_pi(cmdline_words, board):
    """A Raspberry Pi: its board name (/proc/device-tree/model) or its firmware's command line says so."""
    if board and 'raspberry pi' in board.lower():
        return True
    return any(key.startswith(('bcm2708', 'bcm2709', 'bcm2835', 'bcm2711', 'bcm2712')) for key in cmdline_words)


def _has(words, key, value):
    return value in (words.get(key) or [])


def _boolean(info, key):
    value = info.get(key)
    return value if isinstance(value, bool) else None


# ---------------------------------------------------------------- the verdict (pure)

def _problem(limit, problem, fix, blocking=False):
    return {'limit': limit, 'problem': problem, 'fix': fix, 'blocking': blocking}


def check(info, swaps='', cmdline='', mountinfo='', free_bytes=None, board=None, lease_disk_problem=None,
          min_free_gb=DEFAULT_MIN_FREE_GB, required=REQUIRED):
    """The verdict on this device, from the Engine's /info answer and the host's files' text.

    Returns a dict: one boolean per limit in LIMITS (True: a renter's limit is enforced), the
    Engine's cgroup version and driver and storage driver, `swap_on_sd_card`, `data_root_free_gb`,
    `problems` (each {'limit', 'problem', 'fix', 'blocking'}), `messages` (the problems as
    sentences) and `rentable` (every limit in `required` enforced).
    """
    info = info if isinstance(info, dict) else {}
    words = parse_cmdline(cmdline)
    pi = on_raspberry_pi(words, board)
    cmdline_file = PI_CMDLINE if pi else 'the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, ' \
                                         'then update-grub)'
    version = str(info.get('CgroupVersion') or '') or None
    problems = []
    verdict = {'cgroup_version': version, 'cgroup_driver': info.get('CgroupDriver') or None,
               'storage_driver': info.get('Driver') or None, 'raspberry_pi': pi}

    # memory
    memory = _boolean(info, 'MemoryLimit')
    verdict['memory'] = memory is True
    if memory is not True:
        if _has(words, 'cgroup_disable', 'memory') or version == '1' or pi:
            fix = ('add "cgroup_enable=memory cgroup_memory=1" to the one line of %s (and remove any '
                   '"cgroup_disable=memory"), then reboot' % cmdline_file)
        else:
            fix = ('enable the memory controller: cgroup v2 must list "memory" in /sys/fs/cgroup/cgroup.controllers '
                   '(kernel built with CONFIG_MEMCG; no "cgroup_disable=memory" on %s), then reboot' % cmdline_file)
        problems.append(_problem('memory', 'Docker reports no memory limit support (memory cgroup disabled): '
                                 'a renter\'s memory limit would be silently ignored and one renter could '
                                 'take all the memory of the device', fix, 'memory' in required))

    # swap
    areas = parse_swaps(swaps)
    on_card = []
    for area in areas:
        device = area['name'] if area['type'] == 'partition' else mount_source(area['name'], mountinfo)
        if is_sd_card(device):
            on_card.append(area['name'])
    verdict['swap_on_sd_card'] = bool(on_card)
    swap_limit = _boolean(info, 'SwapLimit')
    # No swap at all: nothing for a renter's memory to spill to.
    verdict['swap'] = swap_limit is True or (memory is True and not areas)
    if not verdict['swap']:
        where = (' on the SD card (%s): a renter\'s memory is written to the card, stays there after the '
                 'lease is wiped, wears the card out and slows the whole device' % ', '.join(on_card)
                 if on_card else (' (%s)' % ', '.join(a['name'] for a in areas) if areas else ''))
        if version == '1':
            fix = ('add "swapaccount=1" to %s and reboot, or turn swap off (Raspberry Pi OS: '
                   '"sudo dphys-swapfile swapoff && sudo systemctl disable dphys-swapfile")' % cmdline_file)
        else:
            fix = ('turn swap off (Raspberry Pi OS: "sudo dphys-swapfile swapoff && sudo systemctl disable '
                   'dphys-swapfile"; else remove it from /etc/fstab), or use a kernel with swap accounting '
                   '(CONFIG_MEMCG_SWAP)')
        problems.append(_problem('swap', 'Docker reports no swap limit support: a renter can use swap beyond '
                                 'the memory limit' + where, fix, 'swap' in required))

    # cpu
    verdict['cpu'] = _boolean(info, 'CpuCfsQuota') is True
    if not verdict['cpu']:
        problems.append(_problem('cpu', 'Docker reports no CPU quota support: a renter\'s CPU limit is not '
                                 'enforced (one renter can keep every core busy)',
                                 'use a kernel with CONFIG_CFS_BANDWIDTH and, on cgroup v2, the "cpu" controller '
                                 'in /sys/fs/cgroup/cgroup.controllers', 'cpu' in required))

    # pids
    verdict['pids'] = _boolean(info, 'PidsLimit') is True
    if not verdict['pids']:
        problems.append(_problem('pids', 'Docker reports no pids limit support: a renter\'s fork bomb can '
                                 'exhaust the device\'s processes',
                                 'use a kernel with CONFIG_CGROUP_PIDS and, on cgroup v2, the "pids" controller '
                                 'in /sys/fs/cgroup/cgroup.controllers', 'pids' in required))

    # disk: lease disks (loop-mounted file systems) limit what a renter writes
    verdict['disk'] = lease_disk_problem is None
    if lease_disk_problem is not None:
        problems.append(_problem('disk', 'a lease cannot get a size-limited disk: %s' % lease_disk_problem,
                                 'run the modules as root on a host with loop devices and e2fsprogs',
                                 'disk' in required))

    # conditions that do not stop a limit, but hurt renters or the card
    if version == '1':
        problems.append(_problem('cgroup', 'cgroup v1: Docker 25+ deprecates it and memory and swap '
                                 'accounting depend on kernel command line switches there',
                                 'boot with cgroup v2 (add "systemd.unified_cgroup_hierarchy=1" to %s, '
                                 'Raspberry Pi OS bookworm does by default) and reboot' % cmdline_file))
    driver = verdict['storage_driver']
    if driver in _SLOW_DRIVERS:
        problems.append(_problem('storage', 'storage driver %s: %s' % (driver, _SLOW_DRIVERS[driver]),
                                 'use overlay2 (role variable docker_storage_driver: overlay2, or empty to let '
                                 'Docker choose) on an ext4 or xfs data root'))
    verdict['data_root_free_gb'] = None if free_bytes is None else round(free_bytes / float(GIB), 1)
    if free_bytes is not None and free_bytes < min_free_gb * GIB:
        problems.append(_problem('space', 'only %.1f GiB free in Docker\'s data root %s: image pulls and '
                                 'lease disks will fail' % (free_bytes / float(GIB), info.get('DockerRootDir')
                                                            or '/var/lib/docker'),
                                 'free space (docker system prune on images the device no longer needs) or '
                                 'move the data root to a larger disk (docker_data_root)'))

    for item in problems:
        item['message'] = message(item)
    verdict['problems'] = problems
    verdict['messages'] = [item['message'] for item in problems]
    verdict['rentable'] = all(verdict[limit] for limit in required)
    verdict['docker_warnings'] = [w for w in (info.get('Warnings') or []) if isinstance(w, str)][:MAX_PROBLEMS]
    return verdict


def message(problem):
    return '%s: %s. Fix: %s.' % (problem['limit'], problem['problem'], problem['fix'])


# Keys the marketplace is told (facts.enforcement); free space drifts and is reported as disk_free_gb.
FACT_FIELDS = LIMITS + ('cgroup_version', 'cgroup_driver', 'storage_driver', 'swap_on_sd_card')


def fact(verdict):
    """The part of a verdict that device_register reports (stable from run to run)."""
    reported = {key: verdict.get(key) for key in FACT_FIELDS if verdict.get(key) is not None}
    reported['problems'] = [p['message'][:MAX_PROBLEM_LEN] for p in verdict.get('problems', [])
                            if p['limit'] in LIMITS][:MAX_PROBLEMS]
    return reported


def validate_fact(value):
    """An `enforcement` fact given by the operator (facts option): ValueError naming what is wrong."""
    if not isinstance(value, dict):
        raise ValueError('the fact enforcement must be a dictionary')
    unknown = sorted(set(value) - set(FACT_FIELDS) - {'problems'})
    if unknown:
        raise ValueError('unknown keys in the fact enforcement: %s' % ', '.join(unknown))
    clean = {}
    for key in FACT_FIELDS:
        item = value.get(key)
        if key in LIMITS or key == 'swap_on_sd_card':
            if item is not None and not isinstance(item, bool):
                raise ValueError('enforcement.%s must be true or false' % key)
        elif item is not None:
            item = str(item)[:32]
        if item is not None:
            clean[key] = item
    problems = value.get('problems') or []
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        raise ValueError('enforcement.problems must be a list of strings')
    clean['problems'] = [p[:MAX_PROBLEM_LEN] for p in problems][:MAX_PROBLEMS]
    return clean


# ---------------------------------------------------------------- reading the host (I/O)

def info_from_cli(docker_host=None, docker='docker', timeout=15):
    """``docker info --format '{{json .}}'`` (of the Engine at `docker_host`) as a dict, or None (no CLI, or
    no engine answers)."""
    binary = shutil.which(docker)
    if not binary:
        return None
    env = dict(os.environ, DOCKER_HOST=docker_host) if docker_host else None
    try:
        proc = subprocess.run([binary, 'info', '--format', '{{json .}}'], capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    try:
        info = json.loads(proc.stdout)
    except ValueError:
        return None
    # Without a reachable daemon the CLI prints its client part with ServerErrors.
    return info if isinstance(info, dict) and info.get('ID') is not None and not info.get('ServerErrors') else None


def gather(info, read=read_capped, statvfs=os.statvfs, lease_disk_problem=None, min_free_gb=DEFAULT_MIN_FREE_GB):
    """check() of this host, given the Engine's /info answer."""
    root = (info or {}).get('DockerRootDir') or '/var/lib/docker'
    try:
        stat = statvfs(root)
        free = stat.f_bavail * (stat.f_frsize or stat.f_bsize)
    except OSError:
        free = None
    board = read('/proc/device-tree/model', 4096).replace('\x00', '').strip() or None
    return check(info, swaps=read('/proc/swaps'), cmdline=read('/proc/cmdline'),
                 mountinfo=read('/proc/self/mountinfo'), free_bytes=free, board=board,
                 lease_disk_problem=lease_disk_problem, min_free_gb=min_free_gb)
