# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device's text files, read and written atomically (the lease state and the clock anchor:
test__clock.py, tests/integration/test_faults.py)."""
from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _state


def test_write_atomic_and_read_text(tmp_path):
    path = str(tmp_path / 'routes.caddy')
    assert _state.read_text(path) is None
    _state.write_atomic(path, 'one\n')
    assert _state.read_text(path) == 'one\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    _state.write_atomic(path, 'two\n', mode=0o600)
    assert _state.read_text(path) == 'two\n' and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ['routes.caddy']


def test_write_atomic_leaves_nothing_behind_on_error(tmp_path):
    path = str(tmp_path / 'routes.caddy')
    _state.write_atomic(path, 'kept\n')
    with pytest.raises(TypeError):
        _state.write_atomic(path, b'not text')
    assert _state.read_text(path) == 'kept\n' and os.listdir(str(tmp_path)) == ['routes.caddy']
