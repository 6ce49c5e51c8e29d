# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The marketplace's clock as the device estimates it while the marketplace cannot be asked."""
from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _clock, _lease, _state

UTC = datetime.timezone.utc
SERVER = datetime.datetime(2026, 12, 1, 20, 0, 0, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def anchor(device_ahead=datetime.timedelta(0), boot_id='boot-a', uptime=1000.0):
    return _clock.Anchor(SERVER, SERVER + device_ahead, boot_id, uptime)


@pytest.mark.parametrize('jump', [HOUR, -HOUR, DAY, -DAY], ids=['+1h', '-1h', '+1d', '-1d'])
def test_a_clock_jump_in_the_same_boot_changes_nothing(jump):
    """Ten minutes after the check-in by the boot clock is ten minutes, whatever the wall clock says."""
    boot = _clock.Boot('boot-a', 1600.0)
    local_now = SERVER + datetime.timedelta(minutes=10) + jump
    now, source = _clock.marketplace_now(anchor(), boot, local_now)
    assert now == SERVER + datetime.timedelta(minutes=10)
    assert source == _clock.SOURCE_ELAPSED


def test_after_a_reboot_the_device_clock_is_corrected_by_the_last_offset():
    device_ahead = datetime.timedelta(minutes=7)
    boot = _clock.Boot('boot-b', 30.0)
    local_now = SERVER + device_ahead + 2 * HOUR
    now, source = _clock.marketplace_now(anchor(device_ahead), boot, local_now)
    assert now == SERVER + 2 * HOUR and source == _clock.SOURCE_CORRECTED


def test_after_a_reboot_a_clock_set_back_never_goes_before_the_last_checkin():
    boot = _clock.Boot('boot-b', 30.0)
    now, _source = _clock.marketplace_now(anchor(), boot, SERVER - DAY)
    assert now == SERVER


def test_uptime_going_back_in_one_boot_id_is_treated_as_a_reboot():
    now, source = _clock.marketplace_now(anchor(), _clock.Boot('boot-a', 10.0), SERVER + HOUR)
    assert (now, source) == (SERVER + HOUR, _clock.SOURCE_CORRECTED)


def test_without_an_anchor_or_boot_clock_the_device_clock_is_all_there_is():
    assert _clock.marketplace_now(None, _clock.Boot('x', 1.0), SERVER) == (SERVER, _clock.SOURCE_LOCAL)
    assert _clock.marketplace_now(anchor(), None, SERVER + HOUR)[1] == _clock.SOURCE_CORRECTED


def test_the_anchor_is_rewritten_only_when_it_would_mislead():
    saved = anchor()
    in_step = _clock.Anchor(SERVER + HOUR, SERVER + HOUR, 'boot-a', 1000.0 + 3600)
    assert not _clock.anchor_is_stale(saved, in_step)
    drifted = _clock.Anchor(SERVER + HOUR, SERVER + HOUR, 'boot-a', 1000.0 + 3590)
    assert _clock.anchor_is_stale(saved, drifted)
    device_jumped = _clock.Anchor(SERVER + HOUR, SERVER + HOUR + DAY, 'boot-a', 1000.0 + 3600)
    assert _clock.anchor_is_stale(saved, device_jumped)
    assert _clock.anchor_is_stale(saved, _clock.Anchor(SERVER, SERVER, 'boot-b', 5.0))
    assert _clock.anchor_is_stale(None, saved)
    assert not _clock.anchor_is_stale(saved, None)


def test_read_boot(tmp_path):
    (tmp_path / 'boot_id').write_text('0e1f\n')
    (tmp_path / 'uptime').write_text('1234.56 789.00\n')
    assert _clock.read_boot(str(tmp_path / 'boot_id'), str(tmp_path / 'uptime')) == _clock.Boot('0e1f', 1234.56)
    assert _clock.read_boot(str(tmp_path / 'missing'), str(tmp_path / 'uptime')) is None


def test_the_anchor_file_round_trips_and_bad_ones_are_ignored(tmp_path):
    path = str(tmp_path / 'state' / _state.CLOCK_FILE)
    assert _state.read_anchor(path) == (None, None)
    _state.write_anchor(path, anchor(HOUR))
    assert _state.read_anchor(path) == (anchor(HOUR), None)
    assert oct((tmp_path / 'state' / _state.CLOCK_FILE).stat().st_mode & 0o777) == '0o600'
    for bad in ({'server_time': '2026-12-01T20:00:00', 'local_time': '2026-12-01T20:00:00Z', 'boot_id': 'a',
                 'uptime_s': 1}, {'server_time': _lease.format_time(SERVER), 'local_time': _lease.format_time(SERVER),
                                  'boot_id': 'a', 'uptime_s': True}, []):
        (tmp_path / 'state' / _state.CLOCK_FILE).write_text(json.dumps(bad))
        value, warning = _state.read_anchor(path)
        assert value is None and 'ignored' in warning
