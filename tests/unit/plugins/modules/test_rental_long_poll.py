# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rental's long-poll pieces: the run's pace, its report and the lease etag kept in checkin.json
(the module with a real marketplace: tests/integration/test_rental_module.py)."""
from __future__ import annotations

import json
import os
import stat
import time

from ansible_collections.p2pvps.fleet.plugins.modules import rental
from ansible_collections.p2pvps.fleet.plugins.module_utils import _state


def test_a_run_that_converged_to_a_changed_lease_ends_at_once():
    result = {'long_poll': {'wait_s': 30, 'held_s': 2.0, 'lease_changed': None, 'paced_s': None}}
    start = time.monotonic()
    rental.finish_long_poll(result, rental.Pace(30), lease_changed=True)
    assert time.monotonic() - start < 1
    assert result['long_poll']['lease_changed'] is True and result['long_poll']['paced_s'] == 0


def test_any_other_run_lasts_wait_s():
    pace = rental.Pace(1.5)
    time.sleep(0.5)
    result = {}   # a run that failed before its check-in has no long_poll report yet
    start = time.monotonic()
    rental.finish_long_poll(result, pace, lease_changed=False)
    slept = time.monotonic() - start
    assert 0.8 < slept < 1.3
    assert result['long_poll']['lease_changed'] is False and 0.8 < result['long_poll']['paced_s'] < 1.3


def test_a_pace_that_has_passed_does_not_sleep():
    pace = rental.Pace(0)
    assert pace.hold() == 0


def test_options_are_checked():
    params = {'local_port': 2222, 'web_local_port': 2280, 'disk_reserve_mb': 0, 'memory_reserve_mb': 0,
              'bandwidth_mbit': 0, 'write_bps': 0, 'write_iops': 0, 'renter_bridge': 'p2pvps0',
              'allowed_images': [], 'wait_s': 0, 'grace_s': 86400, 'state': 'present',
              'marketplace_url': 'https://market.example.org', 'device_id': 'dev-1'}
    assert rental.option_problem(params) is None
    assert rental.option_problem(dict(params, wait_s=600)) is None
    for bad in (-1, 601):
        assert 'wait_s' in rental.option_problem(dict(params, wait_s=bad))[0]
    # The marketplace and the device are named before anything is done; decommissioning needs neither.
    for name, env in (('marketplace_url', 'P2PVPS_MARKETPLACE_URL'), ('device_id', 'P2PVPS_DEVICE_ID')):
        assert rental.option_problem(dict(params, **{name: None})) == (
            '%s is required (the option or the environment variable %s) with state=present' % (name, env), None)
        assert rental.option_problem(dict(params, state='absent', **{name: None})) is None


def test_the_lease_etag_file(tmp_path):
    path = str(tmp_path / 'state' / _state.CHECKIN_FILE)
    assert _state.read_lease_etag(path) == (None, None)
    _state.write_lease_etag(path, '74234e98afe7498fb5daf1f36ac2d78a')
    assert _state.read_lease_etag(path) == ('74234e98afe7498fb5daf1f36ac2d78a', None)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.startswith('.')]   # no temporary left


def test_a_bad_lease_etag_file_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / _state.CHECKIN_FILE
    for content in ('{not json', json.dumps(['x']), json.dumps({'lease_etag': 'a b'}), json.dumps({'lease_etag': 5})):
        path.write_text(content)
        etag, warning = _state.read_lease_etag(str(path))
        assert etag is None and 'lease etag' in warning
