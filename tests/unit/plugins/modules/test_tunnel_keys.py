# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tunnel_keys' file of remembered sessions (the module against a real sshd:
tests/integration/test_tunnel_keys.py)."""
from __future__ import annotations

import json

from ansible_collections.p2pvps.fleet.plugins.modules import tunnel_keys


class Module:
    def __init__(self):
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def test_remembered_sessions_are_read_back(tmp_path):
    path = tmp_path / 'sessions.json'
    module = Module()
    assert tunnel_keys.read_known(module, str(path)) == {}   # none yet: no warning
    path.write_text(json.dumps({'10:20': 'SHA256:a', '11:21': 5, '12:22': None}))
    assert tunnel_keys.read_known(module, str(path)) == {'10:20': 'SHA256:a'}
    path.write_text(json.dumps(['10:20']))
    assert tunnel_keys.read_known(module, str(path)) == {}
    assert module.warnings == []


def test_a_corrupt_file_is_ignored_with_a_warning(tmp_path):
    path = tmp_path / 'sessions.json'
    path.write_text('{"10:20": "SHA256:a", "11')
    module = Module()
    assert tunnel_keys.read_known(module, str(path)) == {}
    assert len(module.warnings) == 1 and 'unreadable and ignored' in module.warnings[0]
    path.unlink()
    path.mkdir()   # not a file at all
    assert tunnel_keys.read_known(module, str(path)) == {}
    assert len(module.warnings) == 2
