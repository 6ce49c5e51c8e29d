# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker SDK layer's parts that need no Docker Engine."""
from __future__ import annotations

import io
import json
import socketserver
import tarfile
import threading
import urllib.parse

from http.server import BaseHTTPRequestHandler

import pytest

from ansible_collections.p2pvps.fleet.plugins.module_utils import _docker


class FakeSocketAnswers(BaseHTTPRequestHandler):
    """JSON answers on a Unix socket, as a Docker Engine gives them."""

    def send_json(self, status, answer, headers=()):
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        for name, value in headers:
            self.send_header(name, value)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return 'docker.sock'

    def log_message(self, *args):
        pass


def serve_on_socket(path, handler):
    """Serves `handler` on the Unix socket `path` until the generator is closed; yields its URL."""
    server = socketserver.ThreadingUnixStreamServer(path, handler)
    server.daemon_threads = True   # a kept-alive connection does not hold the shutdown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'unix://' + path
    server.shutdown()
    server.server_close()


class FakeEngine(FakeSocketAnswers):
    """GET /version and GET /info of a Docker Engine (asked unversioned, as docker version does)."""
    answer = {'Version': '26.1.4', 'ApiVersion': '1.45'}
    info = {'CgroupVersion': '2', 'MemoryLimit': True, 'PidsLimit': True, 'Driver': 'overlay2'}
    paths = []

    def do_GET(self):
        FakeEngine.paths.append(self.path)
        known = {'/version': self.answer, '/info': self.info}
        if self.path in known:
            self.send_json(200, known[self.path])
        else:
            self.send_json(404, {})


@pytest.fixture
def fake_engine(tmp_path):
    yield from serve_on_socket(str(tmp_path / 'docker.sock'), FakeEngine)


def test_engine_version_through_the_sdk(fake_engine):
    FakeEngine.paths = []
    assert _docker.engine_version(fake_engine) == '26.1.4'
    assert FakeEngine.paths == ['/version']   # one call: no API version negotiation first


def test_engine_version_without_an_engine(tmp_path):
    assert _docker.engine_version('unix://' + str(tmp_path / 'absent.sock'), timeout=1) is None


def test_engine_info_on_a_unix_socket_needs_no_sdk(fake_engine, monkeypatch):
    FakeEngine.paths = []
    monkeypatch.setattr(_docker, 'load_sdk', lambda: pytest.fail('the SDK was loaded'))
    assert _docker.engine_info(fake_engine) == FakeEngine.info
    assert FakeEngine.paths == ['/info']


def test_engine_info_without_an_answer(tmp_path, monkeypatch):
    assert _docker.engine_info('unix://' + str(tmp_path / 'absent.sock'), timeout=1) is None
    monkeypatch.setattr(_docker, 'load_sdk', lambda: None)
    assert _docker.engine_info('tcp://127.0.0.1:1', timeout=1) is None      # another host, no SDK


def test_engine_version_without_the_sdk(fake_engine, monkeypatch):
    monkeypatch.setattr(_docker, 'HAS_DOCKER', False)
    assert _docker.engine_version(fake_engine) is None


class FakeReads(FakeSocketAnswers):
    """The reads of a no-op converge, as a Docker Engine 20.10 answers them (unversioned paths)."""
    protocol_version = 'HTTP/1.1'   # keep-alive, as dockerd
    paths = []
    connections = set()

    def do_DELETE(self):
        self.do_GET()

    def do_GET(self):
        FakeReads.paths.append(self.command + ' ' + self.path if self.command != 'GET' else self.path)
        FakeReads.connections.add(id(self.connection))
        answers = {
            '/containers/json': [{'Id': 'c1'}],
            '/containers/c1/json': {'Id': 'c1', 'State': {'Running': True}},
            '/volumes': {'Volumes': [{'Name': 'v1', 'Labels': {'a': 'b'}}]},
        }
        path = self.path.split('?')[0]
        status, answer = (200, answers[path]) if path in answers else (404, {'message': 'No such thing: x'})
        self.send_json(status, answer, headers=[('Api-Version', '1.41')])


@pytest.fixture
def fake_reads(tmp_path):
    FakeReads.paths, FakeReads.connections = [], set()
    yield from serve_on_socket(str(tmp_path / 'reads.sock'), FakeReads)


def test_the_reader_asks_unversioned_paths_on_one_connection(fake_reads):
    reader = _docker.EngineReader.for_host(fake_reads, timeout=5)
    assert reader.containers(all=True, filters={'label': 'p2pvps.role=renter'}) == [{'Id': 'c1'}]
    assert reader.inspect_container('c1')['State'] == {'Running': True}
    assert reader.volumes(filters={'label': ['x=1', 'y=2']})['Volumes'][0]['Name'] == 'v1'
    with pytest.raises(_docker.NotFound, match='404 Client Error .*No such thing'):
        reader.inspect_volume('a/b')
    reader.close()
    assert [urllib.parse.unquote_plus(p) for p in FakeReads.paths] == [
        '/containers/json?all=1&filters={"label": ["p2pvps.role=renter"]}',
        '/containers/c1/json',
        '/volumes?filters={"label": ["x=1", "y=2"]}',
        '/volumes/a/b',
    ]
    assert '/volumes/a%2Fb' in FakeReads.paths   # names are quoted, never a path of their own
    assert len(FakeReads.connections) == 1 and reader.api_version == '1.41'


def test_renter_docker_reads_without_the_sdk(fake_reads, monkeypatch):
    """A unix-socket Engine is read with the reader: no SDK needed (none importable here)."""
    monkeypatch.setattr(_docker, 'HAS_DOCKER', False)
    docker = _docker.RenterDocker(fake_reads, '/nonexistent')
    assert docker.read is docker.reader
    assert docker.lease_volumes() == [] and docker.volume_labels == {'v1': {'a': 'b'}}
    assert docker.disk_status('00000000-0000-4000-8000-000000000000', fresh=False) == (None, 'no lease volume')
    with pytest.raises(_docker.SdkMissing, match='docker') as failed:
        docker.stop('c1')   # a change needs the SDK
    assert isinstance(failed.value, _docker.DockerException)
    assert FakeReads.paths[0].startswith('/volumes?')
    docker.remove_container('gone')   # removals need no SDK: 404 is "already removed"
    assert FakeReads.paths[-1] == 'DELETE /containers/gone?force=1&v=0'
    docker.reader.close()


def test_a_missing_engine_is_a_docker_error_naming_the_call(tmp_path):
    reader = _docker.EngineReader(str(tmp_path / 'docker.sock'), timeout=5)
    with pytest.raises(_docker.DockerException, match=r'^GET /containers/json: .*No such file or directory'):
        reader.containers(all=True)


def test_other_engines_are_read_through_the_sdk():
    assert _docker.EngineReader.for_host('tcp://127.0.0.1:2376') is None
    assert _docker.EngineReader.for_host('ssh://pi@kitchen') is None
    assert _docker.RenterDocker('tcp://127.0.0.1:2376', '/nonexistent').reader is None


def test_root_owned_tar_keeps_each_files_content_and_mode_owned_by_root():
    archive = _docker.root_owned_tar([('key', b'secret', 0o600), ('key.pub', b'public\n', 0o644)])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ['key', 'key.pub']
        assert (members['key'].mode, members['key.pub'].mode) == (0o600, 0o644)
        assert all(m.uid == 0 and m.gid == 0 and m.uname == 'root' for m in members.values())
        assert tar.extractfile('key').read() == b'secret'
        assert tar.extractfile('key.pub').read() == b'public\n'
