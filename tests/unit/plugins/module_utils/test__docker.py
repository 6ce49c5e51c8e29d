# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker SDK layer's parts that need no Docker Engine."""
from __future__ import annotations

import json
import socketserver
import threading

from http.server import BaseHTTPRequestHandler

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _docker


class FakeEngine(BaseHTTPRequestHandler):
    """GET /version of a Docker Engine (the SDK asks it unversioned, as docker version does)."""
    answer = {'Version': '26.1.4', 'ApiVersion': '1.45'}
    paths = []

    def do_GET(self):
        FakeEngine.paths.append(self.path)
        body = json.dumps(self.answer).encode() if self.path == '/version' else b'{}'
        self.send_response(200 if self.path == '/version' else 404)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return 'docker.sock'

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_engine(tmp_path):
    path = str(tmp_path / 'docker.sock')
    server = socketserver.ThreadingUnixStreamServer(path, FakeEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'unix://' + path
    server.shutdown()
    server.server_close()


def test_engine_version_through_the_sdk(fake_engine):
    FakeEngine.paths = []
    assert _docker.engine_version(fake_engine) == '26.1.4'
    assert FakeEngine.paths == ['/version']   # one call: no API version negotiation first


def test_engine_version_without_an_engine(tmp_path):
    assert _docker.engine_version('unix://' + str(tmp_path / 'absent.sock'), timeout=1) is None


def test_engine_version_without_the_sdk(fake_engine, monkeypatch):
    monkeypatch.setattr(_docker, 'HAS_DOCKER', False)
    assert _docker.engine_version(fake_engine) is None
