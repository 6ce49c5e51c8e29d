# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""Real hardware facts of a device, as the marketplace's register call wants them.

Parsers are pure functions of text; the readers around them take paths and callables so
that unit tests can feed them anything. No Ansible and no third-party imports.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import struct
import subprocess

FACT_KEYS = ('memory_mb', 'disk_gb', 'disk_free_gb', 'cpu_model', 'cpu_count', 'architecture', 'os',
             'docker_version')
NO_DOCKER = 'none'
MAX_STRING = 200

_ARCHITECTURES = {
    'x86_64': 'amd64', 'amd64': 'amd64',
    'aarch64': 'arm64', 'arm64': 'arm64', 'armv8l': 'armv7', 'armv8b': 'arm64',
    'armv7l': 'armv7', 'armv7': 'armv7', 'armhf': 'armv7',
    'armv6l': 'armv6', 'armv6': 'armv6',
    'i386': '386', 'i486': '386', 'i586': '386', 'i686': '386',
    'riscv64': 'riscv64', 'ppc64le': 'ppc64le', 's390x': 's390x',
}
_VERSION_RE = re.compile(r'^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}$')


class FactsError(ValueError):
    pass


def _clean(text, limit=MAX_STRING):
    text = re.sub(r'\s+', ' ', text or '').strip()
    return text[:limit]


# ---------------------------------------------------------------- parsers (pure)

def parse_meminfo(text):
    """MemTotal of /proc/meminfo in MiB, or None."""
    match = re.search(r'^MemTotal:\s*(\d+)\s*kB', text or '', re.MULTILINE)
    if not match:
        return None
    return int(match.group(1)) // 1024 or None


def parse_cpuinfo(text, board=None):
    """(CPU model or None, number of processors or None) from /proc/cpuinfo.

    x86 and 32-bit ARM kernels have ``model name``; arm64 kernels have only ``CPU implementer``
    and ``CPU part`` (named here) and, on a Raspberry Pi, the board in ``Model``. The board
    (from there or the `board` argument, e.g. /proc/device-tree/model) is added in brackets.
    """
    fields = {}
    processors = 0
    for line in (text or '').splitlines():
        key, sep, value = line.partition(':')
        if not sep:
            continue
        key = key.strip().lower()
        value = value.strip()
        if key == 'processor' and value.isdigit():
            processors += 1
        fields.setdefault(key, value)
    model = fields.get('model name') or fields.get('cpu model') or fields.get('uarch')
    if not model and fields.get('processor') and not fields['processor'].isdigit():
        model = fields['processor']          # old ARM: "Processor : ARMv7 Processor rev 4 (v7l)"
    if not model and fields.get('cpu part'):
        model = arm_cpu_name(fields.get('cpu implementer'), fields['cpu part'])
    if not model and fields.get('hardware'):
        model = fields['hardware']
    if not model and fields.get('cpu') and not fields['cpu'].isdigit():
        model = fields['cpu']                 # POWER
    board = fields.get('model') if fields.get('model') and not fields['model'].isdigit() else board
    board = _clean(board) if board else None
    model = _clean(model) if model else None
    if model and board and board not in model:
        model = '%s (%s)' % (model, board)
    elif not model and board:
        model = board
    return (model[:MAX_STRING] if model else None), processors or None


_ARM_PARTS = {
    ('0x41', '0xb76'): 'ARM1176', ('0x41', '0xc07'): 'Cortex-A7', ('0x41', '0xd03'): 'Cortex-A53',
    ('0x41', '0xd04'): 'Cortex-A35', ('0x41', '0xd05'): 'Cortex-A55', ('0x41', '0xd07'): 'Cortex-A57',
    ('0x41', '0xd08'): 'Cortex-A72', ('0x41', '0xd0b'): 'Cortex-A76', ('0x41', '0xd0c'): 'Neoverse-N1',
    ('0x41', '0xd40'): 'Neoverse-V1', ('0x41', '0xd49'): 'Neoverse-N2',
}


def arm_cpu_name(implementer, part):
    name = _ARM_PARTS.get(((implementer or '').lower(), (part or '').lower()))
    return name or 'ARM CPU part %s' % part


def normalize_architecture(machine, pointer_bits=64):
    """Docker-style architecture (amd64, arm64, armv7, ...) from platform.machine().

    A 64-bit ARM kernel running a 32-bit user land (Raspberry Pi OS 32-bit on a Pi 4) runs
    armv7 containers: `pointer_bits` is the Python interpreter's, i.e. the user land's.
    """
    machine = (machine or '').strip().lower()
    arch = _ARCHITECTURES.get(machine, machine or 'unknown')
    if arch == 'arm64' and pointer_bits == 32:
        arch = 'armv7'
    if arch == 'amd64' and pointer_bits == 32:
        arch = '386'
    return arch


def parse_os_release(text):
    """PRETTY_NAME (or NAME VERSION) of /etc/os-release, or None."""
    values = {}
    for line in (text or '').splitlines():
        key, sep, value = line.partition('=')
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]
        values[key.strip()] = value
    name = values.get('PRETTY_NAME') or ' '.join(v for v in (values.get('NAME'), values.get('VERSION')) if v)
    return _clean(name) or None


def existing_path(path, exists=os.path.exists):
    """`path`, or its nearest parent that exists (where it will live once it is made)."""
    probe = os.path.abspath(path or '/')
    while not exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


def disk_gb_of(path, statvfs=os.statvfs, exists=os.path.exists):
    """(size in GiB of the file system holding `path` with one decimal, the path measured).

    When `path` does not exist yet (Docker not installed), the nearest existing parent is
    measured: that is where Docker's data root will live.
    """
    probe = existing_path(path, exists)
    info = statvfs(probe)
    size = info.f_blocks * (info.f_frsize or info.f_bsize)
    return round(size / float(1024 ** 3), 1), probe


def free_bytes(path, statvfs=os.statvfs, exists=os.path.exists):
    """Free space, for unprivileged writers too, of the file system that holds (or will hold) `path`."""
    info = statvfs(existing_path(path, exists))
    return info.f_bavail * (info.f_frsize or info.f_bsize)


def lease_space_bytes(lease_dir, statvfs=os.statvfs, exists=os.path.exists, listdir=os.listdir,
                      size_of=os.path.getsize):
    """What a new lease disk can take in `lease_dir`: the free space plus the lease disks already there
    (a new lease replaces them)."""
    space = free_bytes(lease_dir, statvfs, exists)
    if exists(lease_dir):
        space += sum(size_of(os.path.join(lease_dir, name)) for name in listdir(lease_dir) if name.endswith('.img'))
    return space


def disk_free_gb_of(lease_dir, statvfs=os.statvfs, exists=os.path.exists, listdir=os.listdir,
                    size_of=os.path.getsize):
    """lease_space_bytes() in whole GiB, rounded down (the fact disk_free_gb)."""
    return int(lease_space_bytes(lease_dir, statvfs, exists, listdir, size_of) // (1024 ** 3))


def parse_docker_version(text):
    """A Docker version string (from `docker version --format` or the API), or None."""
    text = (text or '').strip()
    if text.startswith('{'):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        text = data.get('Version') if isinstance(data, dict) else None
        if not isinstance(text, str):
            return None
        text = text.strip()
    text = text.splitlines()[0].strip() if text else ''
    return text if _VERSION_RE.match(text) else None


# ---------------------------------------------------------------- Docker probes (I/O, bounded)

def docker_version_from_cli(docker='docker', timeout=10):
    """The daemon's version from ``docker version --format {{.Server.Version}}``, or None."""
    binary = shutil.which(docker) if os.path.basename(docker) == docker else docker
    if not binary or not os.access(binary, os.X_OK):
        return None
    try:
        proc = subprocess.run([binary, 'version', '--format', '{{.Server.Version}}'], capture_output=True,
                              text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return parse_docker_version(proc.stdout)


def docker_version(probes=(docker_version_from_cli,)):
    """The Docker Engine's version from the first of `probes` that tells it, or NO_DOCKER ("none").

    A probe returns the version or None. The Docker SDK's probe is _docker.engine_version: this
    file imports no third-party library, so the modules put it before the CLI's.
    """
    for probe in probes:
        version = probe()
        if version:
            return version
    return NO_DOCKER


# ---------------------------------------------------------------- the facts

def read_capped(path, limit=1024 * 1024):
    """The first `limit` bytes of a file as text ('' when it cannot be read): /proc and /sys files."""
    try:
        with open(path, 'rb') as handle:
            return handle.read(limit).decode('utf-8', 'replace')
    except OSError:
        return ''


def gather(docker_data_root='/var/lib/docker', skip=(), read=read_capped, statvfs=os.statvfs, exists=os.path.exists,
           machine=None, pointer_bits=None, cpu_count=None, docker_probe=docker_version,
           lease_dir='/var/lib/p2pvps/disks', listdir=os.listdir):
    """The facts of this host (keys in FACT_KEYS minus `skip`) and notes on how they were found.

    docker_probe: returns the Docker Engine's version, or None or NO_DOCKER when there is none.
    """
    facts = {}
    notes = {}
    if 'memory_mb' not in skip:
        facts['memory_mb'] = parse_meminfo(read('/proc/meminfo'))
        if facts['memory_mb'] is None:
            try:
                pages = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
                facts['memory_mb'] = pages // (1024 * 1024) or None
            except (ValueError, OSError, AttributeError):
                pass
    if 'disk_gb' not in skip:
        try:
            facts['disk_gb'], notes['disk_path'] = disk_gb_of(docker_data_root, statvfs=statvfs, exists=exists)
        except OSError as exc:
            raise FactsError('cannot measure the disk of %s: %s' % (docker_data_root, exc.strerror or exc))
    if 'disk_free_gb' not in skip:
        try:
            facts['disk_free_gb'] = disk_free_gb_of(lease_dir, statvfs=statvfs, exists=exists, listdir=listdir)
        except OSError as exc:
            raise FactsError('cannot measure the free space of %s: %s' % (lease_dir, exc.strerror or exc))
    if 'cpu_model' not in skip or 'cpu_count' not in skip:
        board = _clean(read('/proc/device-tree/model', 4096).replace('\x00', '')) or None
        model, processors = parse_cpuinfo(read('/proc/cpuinfo'), board)
        if not model:
            model = _clean(platform.processor())
        if 'cpu_model' not in skip:
            facts['cpu_model'] = model or 'unknown'
        if 'cpu_count' not in skip:
            facts['cpu_count'] = cpu_count if cpu_count is not None else (os.cpu_count() or processors)
    if 'architecture' not in skip:
        bits = pointer_bits if pointer_bits is not None else struct.calcsize('P') * 8
        facts['architecture'] = normalize_architecture(machine if machine is not None else platform.machine(), bits)
    if 'os' not in skip:
        facts['os'] = (parse_os_release(read('/etc/os-release')) or parse_os_release(read('/usr/lib/os-release'))
                       or _clean('%s %s' % (platform.system(), platform.release())) or 'unknown')
    if 'docker_version' not in skip:
        facts['docker_version'] = docker_probe() or NO_DOCKER
    return facts, notes


def validate_facts(facts):
    """The facts as the register call sends them; FactsError naming the first bad one."""
    if not isinstance(facts, dict):
        raise FactsError('facts must be a dictionary')
    unknown = sorted(set(facts) - set(FACT_KEYS))
    if unknown:
        raise FactsError('unknown facts %s; known: %s' % (', '.join(unknown), ', '.join(FACT_KEYS)))
    clean = {}
    for key in FACT_KEYS:
        if key not in facts:
            raise FactsError('the fact %s could not be determined; set it with the facts option' % key)
        value = facts[key]
        if key in ('memory_mb', 'cpu_count'):
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise FactsError('the fact %s must be a positive integer, got %r' % (key, value))
        elif key in ('disk_gb', 'disk_free_gb'):
            value = _disk_number(key, value)
        else:
            if not isinstance(value, str) or not _clean(value):
                raise FactsError('the fact %s must be a non-empty string' % key)
            value = _clean(value)
        clean[key] = value
    return clean


def _disk_number(key, value):
    """disk_gb (positive) or disk_free_gb (zero or more) as a number; FactsError otherwise."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            pass
    low_ok = (lambda v: v > 0) if key == 'disk_gb' else (lambda v: v >= 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low_ok(value):
        raise FactsError('the fact %s must be a %s number, got %r'
                         % (key, 'positive' if key == 'disk_gb' else 'non-negative', value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value


# Facts that drift on their own; each check-in reports them afresh (module rental, `observed`),
# so they never make a registration change by themselves.
DRIFTING_FACTS = ('disk_free_gb',)


def facts_equal(current, desired):
    """True when the device's recorded facts hold `desired` (numbers compared by value; drifting facts
    only need to be there)."""
    if not isinstance(current, dict):
        return False
    for key, value in desired.items():
        if key not in current:
            return False
        if key in DRIFTING_FACTS:
            continue
        have = current[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(have, bool) or not isinstance(have, (int, float)) or abs(have - value) > 1e-9:
                return False
        elif have != value:
            return False
    return True
