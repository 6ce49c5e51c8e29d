# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The marketplace's clock, as a device without a real-time clock can know it.

Leases end by the marketplace's clock. While the marketplace answers, its `server_time` is the
time. While it does not, the device adds the time elapsed since the last good check-in, counted by
the kernel's boot clock (which NTP and fake-hwclock never move), to the marketplace's time at that
check-in. After a reboot the boot clock starts again: then the device's wall clock, corrected by
the offset seen at the last check-in, is used, never earlier than that check-in.
"""

from __future__ import annotations

import datetime

from dataclasses import dataclass

from ansible_collections.p2pvps.fleet.plugins.module_utils._lease import LeaseError, format_time, parse_time

BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id'
UPTIME_FILE = '/proc/uptime'
# How far the remembered anchor may drift from a new check-in before it is written again
# (the anchor is rewritten only when it would mislead, to spare the SD card a write per run).
TOLERANCE = datetime.timedelta(seconds=2)
SOURCE_MARKETPLACE = 'marketplace'
SOURCE_ELAPSED = 'time since the last check-in'
SOURCE_CORRECTED = 'device clock corrected by the last check-in'
SOURCE_LOCAL = 'device clock'


@dataclass(frozen=True)
class Boot:
    """Where the device is in its boot: which boot, and the seconds since it began."""
    boot_id: str
    uptime_s: float


@dataclass(frozen=True)
class Anchor:
    """The marketplace's time at a good check-in, and the device's clocks at that moment."""
    server_time: datetime.datetime
    local_time: datetime.datetime
    boot_id: str
    uptime_s: float

    def to_dict(self):
        return {'server_time': format_time(self.server_time), 'local_time': format_time(self.local_time),
                'boot_id': self.boot_id, 'uptime_s': round(self.uptime_s, 3)}

    @property
    def offset(self):
        """The marketplace's clock minus the device's."""
        return self.server_time - self.local_time


def parse_anchor(raw):
    """An Anchor from its saved form; LeaseError when it is not one."""
    if not isinstance(raw, dict):
        raise LeaseError('clock anchor must be an object')
    uptime = raw.get('uptime_s')
    boot_id = raw.get('boot_id')
    if isinstance(uptime, bool) or not isinstance(uptime, (int, float)) or not 0 <= uptime < 10 ** 10:
        raise LeaseError('clock anchor uptime_s must be a number of seconds')
    if not isinstance(boot_id, str) or not 0 < len(boot_id) <= 64:
        raise LeaseError('clock anchor boot_id must be a short string')
    return Anchor(parse_time(raw.get('server_time'), 'server_time'), parse_time(raw.get('local_time'), 'local_time'),
                  boot_id, float(uptime))


def read_boot(boot_id_file=BOOT_ID_FILE, uptime_file=UPTIME_FILE):
    """The current Boot, or None where the kernel does not tell (not Linux)."""
    try:
        with open(boot_id_file) as handle:
            boot_id = handle.read().strip()
        with open(uptime_file) as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return Boot(boot_id, uptime) if boot_id else None


def anchor_at(server_time, local_now, boot):
    return Anchor(server_time, local_now, boot.boot_id, boot.uptime_s) if boot is not None else None


def marketplace_now(anchor, boot, local_now):
    """(the best estimate of the marketplace's clock, how it was found) while it cannot be asked."""
    if anchor is None:
        return local_now, SOURCE_LOCAL
    if boot is not None and boot.boot_id == anchor.boot_id and boot.uptime_s >= anchor.uptime_s:
        return anchor.server_time + datetime.timedelta(seconds=boot.uptime_s - anchor.uptime_s), SOURCE_ELAPSED
    return max(local_now + anchor.offset, anchor.server_time), SOURCE_CORRECTED


def anchor_is_stale(saved, fresh):
    """Whether the saved anchor would misjudge the time the fresh one knows."""
    if fresh is None:
        return False
    if saved is None or saved.boot_id != fresh.boot_id:
        return True
    predicted, _source = marketplace_now(saved, Boot(fresh.boot_id, fresh.uptime_s), fresh.local_time)
    return abs(predicted - fresh.server_time) > TOLERANCE or abs(saved.offset - fresh.offset) > TOLERANCE
