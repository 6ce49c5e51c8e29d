# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device facts helper: parsers fed with real /proc samples, readers with fakes."""
from __future__ import annotations

from collections import namedtuple

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _facts as f

MEMINFO_PI4 = 'MemTotal:        3884332 kB\nMemFree:          123456 kB\nMemAvailable:    3000000 kB\n'

CPUINFO_X86 = '''processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz

processor\t: 1
vendor_id\t: GenuineIntel
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz
'''

CPUINFO_PI4_ARM64 = '''processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

processor\t: 1
CPU implementer\t: 0x41
CPU part\t: 0xd08

processor\t: 2
processor\t: 3

Revision\t: c03114
Serial\t\t: 100000000deadbeef
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
'''

CPUINFO_PI3_ARMV7 = '''processor\t: 0
model name\t: ARMv7 Processor rev 4 (v7l)
BogoMIPS\t: 38.40

Hardware\t: BCM2835
Revision\t: a02082
Model\t\t: Raspberry Pi 3 Model B Rev 1.2
'''

CPUINFO_OLD_ARM = '''Processor\t: ARMv6-compatible processor rev 7 (v6l)
processor\t: 0
Hardware\t: BCM2708
'''

CPUINFO_UNKNOWN_ARM = 'processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x802\n'

OS_RELEASE = '''PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
'''


def test_parse_meminfo():
    assert f.parse_meminfo(MEMINFO_PI4) == 3793
    assert f.parse_meminfo('') is None
    assert f.parse_meminfo('MemTotal: garbage') is None


@pytest.mark.parametrize('text, board, model, count', [
    (CPUINFO_X86, None, 'Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz', 2),
    (CPUINFO_PI4_ARM64, None, 'Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)', 4),
    (CPUINFO_PI3_ARMV7, None, 'ARMv7 Processor rev 4 (v7l) (Raspberry Pi 3 Model B Rev 1.2)', 1),
    (CPUINFO_OLD_ARM, 'Raspberry Pi Model B Rev 2', 'ARMv6-compatible processor rev 7 (v6l) (Raspberry Pi Model B Rev 2)', 1),
    (CPUINFO_UNKNOWN_ARM, None, 'ARM CPU part 0x802', 1),
    ('', 'Some Board', 'Some Board', None),
    ('', None, None, None),
])
def test_parse_cpuinfo(text, board, model, count):
    assert f.parse_cpuinfo(text, board) == (model, count)


@pytest.mark.parametrize('machine, bits, arch', [
    ('x86_64', 64, 'amd64'),
    ('aarch64', 64, 'arm64'),
    ('aarch64', 32, 'armv7'),     # 64-bit kernel, 32-bit Raspberry Pi OS
    ('armv7l', 32, 'armv7'),
    ('armv6l', 32, 'armv6'),
    ('i686', 32, '386'),
    ('x86_64', 32, '386'),
    ('riscv64', 64, 'riscv64'),
    ('MIPS', 32, 'mips'),
    ('', 64, 'unknown'),
])
def test_normalize_architecture(machine, bits, arch):
    assert f.normalize_architecture(machine, bits) == arch


def test_parse_os_release():
    assert f.parse_os_release(OS_RELEASE) == 'Debian GNU/Linux 12 (bookworm)'
    assert f.parse_os_release('NAME=Alpine\nVERSION="3.19"\n') == 'Alpine 3.19'
    assert f.parse_os_release('') is None


StatVfs = namedtuple('StatVfs', 'f_blocks f_frsize f_bsize f_bavail', defaults=(7_630_000,))


def test_disk_gb_of_existing_and_missing_paths():
    seen = []

    def statvfs(path):
        seen.append(path)
        return StatVfs(f_blocks=7_630_000, f_frsize=4096, f_bsize=4096)

    existing = {'/', '/var', '/var/lib'}
    size, probe = f.disk_gb_of('/var/lib/docker', statvfs=statvfs, exists=lambda p: p in existing)
    assert (size, probe, seen) == (29.1, '/var/lib', ['/var/lib'])
    size, probe = f.disk_gb_of('/var/lib/docker', statvfs=statvfs, exists=lambda p: True)
    assert probe == '/var/lib/docker'
    size, probe = f.disk_gb_of('/nothing/here', statvfs=statvfs, exists=lambda p: False)
    assert probe == '/'


def test_disk_gb_of_real_tmp(tmp_path):
    size, probe = f.disk_gb_of(str(tmp_path / 'missing' / 'docker'))
    assert size > 0 and probe == str(tmp_path)


@pytest.mark.parametrize('text, version', [
    ('20.10.24+dfsg1\n', '20.10.24+dfsg1'),
    ('27.3.1', '27.3.1'),
    ('{"Version": "24.0.5", "ApiVersion": "1.43"}', '24.0.5'),
    ('{"Version": 5}', None),
    ('{broken', None),
    ('', None),
    ('Cannot connect to the Docker daemon at unix:///var/run/docker.sock', None),
    ('<no value>', None),
])
def test_parse_docker_version(text, version):
    assert f.parse_docker_version(text) == version


def test_docker_version_probe_order():
    calls = []

    def probe(result):
        def run():
            calls.append(result)
            return result
        return run

    assert f.docker_version(probes=(probe(None), probe('25.0.1'), probe('x'))) == '25.0.1'
    assert calls == [None, '25.0.1']
    assert f.docker_version(probes=(probe(None), probe(None))) == f.NO_DOCKER == 'none'


def test_docker_version_from_cli_without_docker(tmp_path):
    assert f.docker_version_from_cli(str(tmp_path / 'docker')) is None
    fake = tmp_path / 'docker'
    fake.write_text('#!/bin/sh\necho "26.1.4"\n')
    fake.chmod(0o755)
    assert f.docker_version_from_cli(str(fake)) == '26.1.4'
    fake.write_text('#!/bin/sh\necho "Cannot connect to the Docker daemon" >&2\nexit 1\n')
    assert f.docker_version_from_cli(str(fake)) is None


def fake_reader(files):
    return lambda path, limit=None: files.get(path, '')


def test_gather_with_fakes():
    files = {'/proc/meminfo': MEMINFO_PI4, '/proc/cpuinfo': CPUINFO_PI4_ARM64, '/etc/os-release': OS_RELEASE}
    facts, notes = f.gather('/var/lib/docker', read=fake_reader(files),
                            statvfs=lambda p: StatVfs(7_630_000, 4096, 4096), exists=lambda p: p != '/var/lib/docker',
                            machine='aarch64', pointer_bits=64, cpu_count=4, docker_probe=lambda: None,
                            listdir=lambda p: [])
    assert facts == {'memory_mb': 3793, 'disk_gb': 29.1, 'disk_free_gb': 29,
                     'cpu_model': 'Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)',
                     'cpu_count': 4, 'architecture': 'arm64', 'os': 'Debian GNU/Linux 12 (bookworm)',
                     'docker_version': 'none'}
    assert notes == {'disk_path': '/var/lib'}
    assert f.validate_facts(facts) == facts


def test_gather_skips_overridden_facts():
    def explode(*args, **kwargs):
        raise AssertionError('should not be called')

    facts, notes = f.gather('/x', skip=set(f.FACT_KEYS), read=explode, statvfs=explode, docker_probe=explode)
    assert facts == {} and notes == {}


def test_gather_disk_error_is_clear():
    def statvfs(path):
        raise OSError(13, 'Permission denied')

    with pytest.raises(f.FactsError) as exc:
        f.gather('/var/lib/docker', skip={'docker_version'}, statvfs=statvfs, exists=lambda p: True)
    assert 'Permission denied' in str(exc.value)


def test_disk_free_counts_the_lease_disks_already_there(tmp_path):
    def statvfs(path):
        return StatVfs(1, 4096, 4096, f_bavail=2 * 1024 ** 3 // 4096)   # 2 GiB free
    sizes = {str(tmp_path / 'a.img'): 3 * 1024 ** 3, str(tmp_path / 'a.dev'): 0}
    found = f.disk_free_gb_of(str(tmp_path), statvfs=statvfs, listdir=lambda p: ['a.img', 'a.dev', 'a'],
                              size_of=lambda p: sizes.get(p, 10 ** 12))
    assert found == 5
    # before the first lease the directory does not exist: its parent's free space
    assert f.disk_free_gb_of(str(tmp_path / 'missing' / 'disks'), statvfs=statvfs) == 2


def test_gather_real_host():
    facts, dummy = f.gather('/var/lib/docker', docker_probe=lambda: None)
    clean = f.validate_facts(facts)
    assert clean['memory_mb'] > 0 and clean['cpu_count'] >= 1 and clean['disk_gb'] > 0
    assert clean['architecture'] in ('amd64', 'arm64', 'armv7', 'armv6', '386') or clean['architecture']


GOOD = {'memory_mb': 3793, 'disk_gb': 29.1, 'disk_free_gb': 20, 'cpu_model': 'Cortex-A72', 'cpu_count': 4,
        'architecture': 'arm64', 'os': 'Debian GNU/Linux 12 (bookworm)', 'docker_version': '20.10.24'}


@pytest.mark.parametrize('change, words', [
    ({'memory_mb': 0}, 'memory_mb must be a positive integer'),
    ({'memory_mb': True}, 'memory_mb must be a positive integer'),
    ({'memory_mb': 1.5}, 'memory_mb must be a positive integer'),
    ({'cpu_count': -1}, 'cpu_count must be a positive integer'),
    ({'disk_gb': float('nan')}, 'disk_gb must be a positive number'),
    ({'disk_gb': float('inf')}, 'disk_gb must be a positive number'),
    ({'disk_gb': 'lots'}, 'disk_gb must be a positive number'),
    ({'disk_gb': False}, 'disk_gb must be a positive number'),
    ({'disk_free_gb': -1}, 'disk_free_gb must be a non-negative number'),
    ({'disk_free_gb': float('nan')}, 'disk_free_gb must be a non-negative number'),
    ({'os': ''}, 'os must be a non-empty string'),
    ({'cpu_model': 5}, 'cpu_model must be a non-empty string'),
    ({'color': 'red'}, 'unknown facts color'),
])
def test_validate_facts_rejects(change, words):
    facts = dict(GOOD, **change)
    with pytest.raises(f.FactsError) as exc:
        f.validate_facts(facts)
    assert words in str(exc.value)


def test_validate_facts_missing_and_coercion():
    facts = dict(GOOD)
    del facts['os']
    with pytest.raises(f.FactsError) as exc:
        f.validate_facts(facts)
    assert 'os could not be determined' in str(exc.value)
    # values from YAML/templates arrive as strings
    clean = f.validate_facts(dict(GOOD, memory_mb='2048', disk_gb='16.0', cpu_model='  A  \n B '))
    assert clean['memory_mb'] == 2048 and clean['disk_gb'] == 16 and clean['cpu_model'] == 'A B'
    assert f.validate_facts(dict(GOOD, cpu_model='x' * 500))['cpu_model'] == 'x' * f.MAX_STRING


def test_facts_equal():
    assert f.facts_equal(dict(GOOD), GOOD)
    assert f.facts_equal(dict(GOOD, disk_gb=29.1000000000001, extra='kept'), GOOD)
    assert f.facts_equal(dict(GOOD, memory_mb=3793.0), GOOD)
    # free space drifts; check-ins report it, so a new value alone is no change of registration
    assert f.facts_equal(dict(GOOD, disk_free_gb=7), GOOD)
    assert not f.facts_equal({k: v for k, v in GOOD.items() if k != 'disk_free_gb'}, GOOD)
    assert not f.facts_equal(dict(GOOD, memory_mb=3794), GOOD)
    assert not f.facts_equal(dict(GOOD, memory_mb=True), dict(GOOD, memory_mb=1))
    assert not f.facts_equal({k: v for k, v in GOOD.items() if k != 'os'}, GOOD)
    assert not f.facts_equal(None, GOOD)


def test_no_third_party_imports():
    source = open(f.__file__).read()
    for banned in ('import requests', 'import docker', 'from ansible', 'import ansible'):
        assert banned not in source
