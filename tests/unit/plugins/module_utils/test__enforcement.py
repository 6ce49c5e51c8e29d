# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which renter limits a device enforces: the verdict from fake Engine answers and /proc samples."""
from __future__ import annotations

from collections import namedtuple

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _enforcement as e

GIB = 1024 ** 3

# GET /info of a healthy Pi 4 on Raspberry Pi OS bookworm (Docker 20.10, cgroup v2).
HEALTHY = {'ID': 'x', 'CgroupVersion': '2', 'CgroupDriver': 'systemd', 'MemoryLimit': True, 'SwapLimit': True,
           'CpuCfsQuota': True, 'CpuCfsPeriod': True, 'PidsLimit': True, 'Driver': 'overlay2',
           'DockerRootDir': '/var/lib/docker', 'Warnings': None}
# An older Raspberry Pi OS (buster) kernel: cgroup v1 and the memory cgroup off.
V1_NO_MEMORY = dict(HEALTHY, CgroupVersion='1', CgroupDriver='cgroupfs', MemoryLimit=False, SwapLimit=False,
                    Warnings=['WARNING: No memory limit support', 'WARNING: No swap limit support'])
PI_CMDLINE_BUSTER = ('coherent_pool=1M 8250.nr_uarts=0 snd_bcm2835.enable_compat_alsa=0 bcm2708_fb.fbwidth=656 '
                     'console=tty1 root=PARTUUID=6c586e13-02 rootfstype=ext4 fsck.repair=yes rootwait quiet')
PI_CMDLINE_FIXED = PI_CMDLINE_BUSTER + ' cgroup_enable=memory cgroup_memory=1'
SWAPS_NONE = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'
SWAPS_PARTITION = SWAPS_NONE + '/dev/mmcblk0p3                          partition\t1048572\t\t0\t\t-2\n'
SWAPS_DPHYS = SWAPS_NONE + '/var/swap                               file\t\t102396\t\t5120\t\t-2\n'
SWAPS_USB = SWAPS_NONE + '/dev/sda2                               partition\t1048572\t\t0\t\t-2\n'
MOUNTINFO_PI = ('22 1 179:2 / / rw,noatime shared:1 - ext4 /dev/mmcblk0p2 rw\n'
                '25 22 179:1 / /boot/firmware rw,relatime shared:2 - vfat /dev/mmcblk0p1 rw\n'
                '30 22 8:1 / /mnt/usb rw,relatime shared:3 - ext4 /dev/sda1 rw\n')
BOARD = 'Raspberry Pi 4 Model B Rev 1.4'


def blocking(verdict):
    return sorted(p['limit'] for p in verdict['problems'] if p['blocking'])


def limits_of(verdict):
    return {limit: verdict[limit] for limit in e.LIMITS}


def test_healthy_pi_enforces_everything_and_has_no_problems():
    verdict = e.check(HEALTHY, swaps=SWAPS_NONE, cmdline=PI_CMDLINE_FIXED, mountinfo=MOUNTINFO_PI,
                      free_bytes=20 * GIB, board=BOARD)
    assert limits_of(verdict) == dict.fromkeys(e.LIMITS, True)
    assert verdict['rentable'] is True and verdict['problems'] == [] and verdict['messages'] == []
    assert verdict['raspberry_pi'] is True and verdict['swap_on_sd_card'] is False
    assert verdict['data_root_free_gb'] == 20.0
    assert e.fact(verdict) == {'memory': True, 'swap': True, 'cpu': True, 'pids': True, 'disk': True,
                               'cgroup_version': '2', 'cgroup_driver': 'systemd', 'storage_driver': 'overlay2',
                               'swap_on_sd_card': False, 'problems': []}


def test_v1_pi_with_memory_cgroup_off_is_not_rentable_and_says_what_to_add():
    verdict = e.check(V1_NO_MEMORY, swaps=SWAPS_DPHYS, cmdline=PI_CMDLINE_BUSTER, mountinfo=MOUNTINFO_PI,
                      free_bytes=20 * GIB, board=BOARD)
    assert verdict['memory'] is False and verdict['rentable'] is False
    assert blocking(verdict) == ['memory']
    memory = [p for p in verdict['problems'] if p['limit'] == 'memory'][0]
    assert 'silently ignored' in memory['problem']
    assert 'cgroup_enable=memory cgroup_memory=1' in memory['fix'] and '/boot/firmware/cmdline.txt' in memory['fix']
    assert 'reboot' in memory['fix']
    # Swap: no limit, and dphys-swapfile's /var/swap lives on the card's root partition.
    assert verdict['swap'] is False and verdict['swap_on_sd_card'] is True
    swap = [p for p in verdict['problems'] if p['limit'] == 'swap'][0]
    assert 'SD card (/var/swap)' in swap['problem'] and 'stays there after the lease is wiped' in swap['problem']
    assert 'swapaccount=1' in swap['fix'] and 'dphys-swapfile' in swap['fix']
    assert any(p['limit'] == 'cgroup' and 'systemd.unified_cgroup_hierarchy=1' in p['fix']
               for p in verdict['problems'])
    assert verdict['docker_warnings'] == V1_NO_MEMORY['Warnings']
    fact = e.fact(verdict)
    assert fact['memory'] is False and fact['cgroup_version'] == '1'
    assert fact['problems'][0].startswith('memory: Docker reports no memory limit support')
    # The cgroup-version note is no limit problem: the marketplace is told only about limits.
    assert not any(text.startswith('cgroup:') for text in fact['problems'])


def test_v2_without_the_memory_controller_names_the_controllers_file():
    info = dict(HEALTHY, MemoryLimit=False, SwapLimit=False)
    verdict = e.check(info, swaps=SWAPS_NONE, cmdline='console=ttyS0 root=/dev/sda1', free_bytes=20 * GIB)
    assert verdict['memory'] is False and verdict['raspberry_pi'] is False
    memory = [p for p in verdict['problems'] if p['limit'] == 'memory'][0]
    assert '/sys/fs/cgroup/cgroup.controllers' in memory['fix']
    # Without swap a renter's memory has nowhere to spill; but without a memory limit nothing holds it.
    assert verdict['swap'] is False


def test_v2_without_swap_accounting_but_no_swap_is_enforced_in_effect():
    verdict = e.check(dict(HEALTHY, SwapLimit=False), swaps=SWAPS_NONE, free_bytes=20 * GIB)
    assert verdict['swap'] is True and verdict['problems'] == []


@pytest.mark.parametrize('swaps, on_card', [(SWAPS_PARTITION, True), (SWAPS_DPHYS, True), (SWAPS_USB, False)])
def test_swap_on_the_sd_card_is_found(swaps, on_card):
    verdict = e.check(dict(HEALTHY, SwapLimit=False), swaps=swaps, mountinfo=MOUNTINFO_PI, free_bytes=20 * GIB,
                      board=BOARD)
    assert verdict['swap_on_sd_card'] is on_card
    assert verdict['swap'] is False and verdict['rentable'] is True   # swap alone does not block
    swap = [p for p in verdict['problems'] if p['limit'] == 'swap'][0]
    assert ('a renter\'s memory is written to the card' in swap['problem']) is on_card
    assert not swap['blocking']


def test_swap_on_the_card_with_swap_limits_is_no_renter_problem():
    verdict = e.check(HEALTHY, swaps=SWAPS_PARTITION, mountinfo=MOUNTINFO_PI, free_bytes=20 * GIB)
    assert verdict['swap'] is True and verdict['swap_on_sd_card'] is True and verdict['problems'] == []


def test_vfs_driver_is_a_problem_that_does_not_block():
    verdict = e.check(dict(HEALTHY, Driver='vfs'), swaps=SWAPS_NONE, free_bytes=20 * GIB)
    assert verdict['rentable'] is True and blocking(verdict) == []
    storage = [p for p in verdict['problems'] if p['limit'] == 'storage'][0]
    assert 'full copy' in storage['problem'] and 'overlay2' in storage['fix']
    assert e.fact(verdict)['storage_driver'] == 'vfs' and e.fact(verdict)['problems'] == []


def test_low_free_space_is_reported_with_the_data_root():
    verdict = e.check(dict(HEALTHY, DockerRootDir='/srv/docker'), swaps=SWAPS_NONE, free_bytes=GIB // 2)
    space = [p for p in verdict['problems'] if p['limit'] == 'space'][0]
    assert '0.5 GiB free' in space['problem'] and '/srv/docker' in space['problem']
    assert verdict['rentable'] is True and verdict['data_root_free_gb'] == 0.5
    assert e.check(HEALTHY, free_bytes=GIB // 2, min_free_gb=0.25)['problems'] == []


def test_pids_cpu_and_disk_problems():
    info = dict(HEALTHY, PidsLimit=False, CpuCfsQuota=False)
    verdict = e.check(info, swaps=SWAPS_NONE, free_bytes=20 * GIB, lease_disk_problem='mkfs.ext4 is not installed')
    assert limits_of(verdict) == {'memory': True, 'swap': True, 'cpu': False, 'pids': False, 'disk': False}
    assert blocking(verdict) == ['pids'] and verdict['rentable'] is False
    assert 'fork bomb' in ' '.join(verdict['messages'])
    assert 'mkfs.ext4 is not installed' in ' '.join(verdict['messages'])


def test_an_empty_or_odd_answer_enforces_nothing():
    verdict = e.check({'MemoryLimit': 'yes', 'PidsLimit': 1})
    assert limits_of(verdict) == {'memory': False, 'swap': False, 'cpu': False, 'pids': False, 'disk': True}
    assert verdict['rentable'] is False and verdict['cgroup_version'] is None
    assert 'cgroup_version' not in e.fact(verdict)


def test_parsers():
    assert e.parse_swaps(SWAPS_PARTITION) == [{'name': '/dev/mmcblk0p3', 'type': 'partition', 'size_kb': 1048572,
                                               'used_kb': 0}]
    assert e.parse_swaps('') == [] and e.parse_swaps(SWAPS_NONE) == []
    words = e.parse_cmdline(PI_CMDLINE_FIXED)
    assert words['cgroup_enable'] == ['memory'] and words['quiet'] == [None]
    assert e.mount_source('/var/swap', MOUNTINFO_PI) == '/dev/mmcblk0p2'
    assert e.mount_source('/mnt/usb/swapfile', MOUNTINFO_PI) == '/dev/sda1'
    assert e.mount_source('/mnt/usbx', MOUNTINFO_PI) == '/dev/mmcblk0p2'
    assert e.is_sd_card('/dev/mmcblk0p3') and not e.is_sd_card('/dev/sda1') and not e.is_sd_card(None)
    assert e.on_raspberry_pi(e.parse_cmdline(PI_CMDLINE_BUSTER), None)
    assert not e.on_raspberry_pi({}, 'QEMU Virtual Machine')


def test_validate_fact():
    fact = e.validate_fact({'memory': False, 'pids': True, 'cgroup_version': 1, 'problems': ['x' * 600]})
    assert fact == {'memory': False, 'pids': True, 'cgroup_version': '1', 'problems': ['x' * 500]}
    for bad in ('no', {'memory': 'no'}, {'other': True}, {'problems': 'x'}):
        with pytest.raises(ValueError):
            e.validate_fact(bad)


Stat = namedtuple('Stat', 'f_bavail f_frsize f_bsize')


def test_gather_reads_the_host_files():
    files = {'/proc/swaps': SWAPS_PARTITION, '/proc/cmdline': PI_CMDLINE_BUSTER, '/proc/self/mountinfo': MOUNTINFO_PI,
             '/proc/device-tree/model': BOARD + '\x00'}
    seen = []

    def statvfs(path):
        seen.append(path)
        return Stat(GIB // 4096, 4096, 4096)

    verdict = e.gather(V1_NO_MEMORY, read=lambda path, limit=0: files.get(path, ''), statvfs=statvfs)
    assert seen == ['/var/lib/docker'] and verdict['data_root_free_gb'] == 1.0
    assert verdict['raspberry_pi'] and verdict['swap_on_sd_card'] and not verdict['rentable']

    def broken(path):
        raise OSError(2, 'gone')

    assert e.gather(HEALTHY, read=lambda path, limit=0: '', statvfs=broken)['data_root_free_gb'] is None


def test_info_from_cli_asks_the_given_engine(tmp_path, monkeypatch):
    fake = tmp_path / 'docker'
    fake.write_text('#!/bin/sh\necho "{\\"ID\\": \\"x\\", \\"Host\\": \\"$DOCKER_HOST\\"}"\n')
    fake.chmod(0o755)
    monkeypatch.setenv('PATH', str(tmp_path))
    assert e.info_from_cli('unix:///run/other.sock') == {'ID': 'x', 'Host': 'unix:///run/other.sock'}
    fake.write_text('#!/bin/sh\necho \'{"ID": null, "ServerErrors": ["Cannot connect"]}\'\n')
    assert e.info_from_cli() is None
    fake.write_text('#!/bin/sh\nexit 1\n')
    assert e.info_from_cli() is None
    monkeypatch.setenv('PATH', str(tmp_path / 'none'))
    assert e.info_from_cli() is None
