# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rental's phase record (P2PVPS_RENTAL_PHASES=1; with a real Engine: test_rental_module.py's no-op test)."""
from __future__ import annotations

from ansible_collections.p2pvps.fleet.plugins.modules import rental
from ansible_collections.p2pvps.fleet.plugins.module_utils import _docker


def test_phases_are_recorded_only_when_asked(monkeypatch):
    monkeypatch.setattr(_docker, 'CALL_LOG', None)
    off = rental.Phases(False)
    off.mark('anything')
    assert off.items == [] and _docker.CALL_LOG is None
    on = rental.Phases(True)
    _docker.CALL_LOG.append(('GET /volumes', 0.0015))
    on.mark('docker: lease volumes')
    on.mark('decide')
    start, volumes, decide = on.report()['items']
    assert start['phase'].startswith('start') and start['cpu_ms'] > 0
    assert volumes['docker_calls'] == [{'call': 'GET /volumes', 'wall_ms': 1.5}] and decide['docker_calls'] == []
    assert all(item['wall_ms'] >= 0 and item['cpu_ms'] >= 0 for item in (volumes, decide))
    assert rental._process_age_s() > 0
