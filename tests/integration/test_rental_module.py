"""The `rental` module against the host's real Docker Engine and the reference server.

Docker-heavy: run as `flock /tmp/p2pvps-docker.lock .venv/bin/python -m pytest
tests/integration/test_rental_module.py`. Every test uses its own lease ids, state
directory and local port, and removes what it created.
"""
from __future__ import annotations

import base64
import calendar
import glob
import json
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.fixtures.common import ansible_env, free_port, image_available, require, run_ansible
from tests.fixtures.proxies import RecordingForwarder
from tests.fixtures.server import assert_receipt_verifies

# Every test that runs renter containers on the host's Docker Engine lives in this file, so
# that they never run side by side (pytest -n 2 --dist loadfile): the rental module removes
# renter containers that are not its lease.
pytestmark = [pytest.mark.docker]

RENTER_IMAGE = 'p2pvps/renter:latest'
# A new lease: container created, lease remembered, bandwidth cap put on its veth pair.
CREATED = ['create', 'write_state', 'limit_bandwidth']
SSH_OPTS = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
            '-o', 'ConnectTimeout=3', '-o', 'LogLevel=ERROR']


# ------------------------------------------------------------------ helpers

def docker(*args, check=True):
    proc = subprocess.run(['docker', *args], capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError('docker %s: %s' % (' '.join(args), proc.stderr))
    return proc.stdout.strip()


def inspect(name_or_id):
    return json.loads(docker('inspect', name_or_id))[0]


def renter_containers(lease_id):
    return docker('ps', '-aq', '--no-trunc', '--filter', 'label=p2pvps.lease=%s' % lease_id).split()


def volume_exists(lease_id):
    return subprocess.run(['docker', 'volume', 'inspect', 'p2pvps-lease-%s' % lease_id],
                          capture_output=True, check=False).returncode == 0


def cleanup_lease(lease_id, state_dir=None):
    for cid in renter_containers(lease_id):
        docker('rm', '-f', cid, check=False)
    disks = os.path.join(str(state_dir), 'disks', lease_id) if state_dir else None
    if disks and os.path.ismount(disks):
        subprocess.run(['umount', disks], check=False)
    # the home volume and the system-directory volumes (etc, usr, var, ...) of the lease
    names = docker('volume', 'ls', '-q', '--filter', 'label=p2pvps.lease=%s' % lease_id).split()
    for name in set(names) | {'p2pvps-lease-%s' % lease_id}:
        docker('volume', 'rm', '-f', name, check=False)


def host_keys(container_id):
    """{host key file: its public key} of a renter container."""
    names = docker('exec', container_id, 'sh', '-c', 'cd /etc/ssh && ls ssh_host_*_key').split()
    return {name: docker('exec', container_id, 'cat', '/etc/ssh/%s.pub' % name) for name in names}


def shaped_kbit(container_id):
    """(download, upload) tbf rates in kbit/s on the container's veth pair, None where unshaped."""
    from ansible_collections.p2pvps.fleet.plugins.module_utils import _sandbox
    return _sandbox.shaped_rates_kbit(inspect(container_id)['State']['Pid'])


def make_keypair(path):
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'renter@test', '-f', str(path)],
                   check=True)
    return str(path), (path.parent / (path.name + '.pub')).read_text().strip()


def ssh(port, user, key, command='id -un', password_only=False):
    opts = list(SSH_OPTS)
    if password_only:
        opts += ['-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password,keyboard-interactive',
                 '-o', 'NumberOfPasswordPrompts=1', '-o', 'BatchMode=yes']
    else:
        opts += ['-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', key]
    return subprocess.run(['ssh', *opts, '-p', str(port), '%s@127.0.0.1' % user, command],
                          capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)


def wait_login(port, user, key, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        proc = ssh(port, user, key)
        if proc.returncode == 0:
            return proc
        if time.monotonic() > deadline:
            raise AssertionError('renter login failed: %s' % proc.stderr[-500:])
        time.sleep(0.2)


def open_session(port, user, key, command):
    """A long-lived SSH session (the ssh client as a subprocess)."""
    return subprocess.Popen(['ssh', *SSH_OPTS, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', key,
                             '-p', str(port), '%s@127.0.0.1' % user, command],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def container_processes(container_id):
    """[(host pid, parent pid, command line)] of the container's processes, as the host sees them."""
    lines = docker('top', container_id, '-eo', 'pid,ppid,args').splitlines()[1:]
    return [(int(pid), int(ppid), args) for pid, ppid, args in (line.split(None, 2) for line in lines)]


def wait_until(what, probe, timeout=20):
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError('%s did not happen within %d s' % (what, timeout))
        time.sleep(0.2)


def shifted_clock(shift):
    """Environment that moves the clocks of ansible and the module by `shift` ('+1d', '-1h': libfaketime),
    as a wrong RTC-less clock would; the kernel's boot time in /proc/uptime does not move. (Its
    monotonic clocks are shifted too: with DONT_FAKE_MONOTONIC Python 3.11's sleep fails with EINVAL.)"""
    libraries = glob.glob('/usr/lib/*/faketime/libfaketime.so.1')
    require(bool(libraries), 'libfaketime (Debian package libfaketime, installed by scripts/bootstrap.sh)')
    return {'LD_PRELOAD': libraries[0], 'FAKETIME': shift}


def run_rental(args, check_mode=False, diff=False, clock=None, collections=None):
    """Run the module once through `ansible` (its wall clock shifted by `clock`; `collections`: another
    ANSIBLE_COLLECTIONS_PATH, e.g. an older version of the collection); returns its result dict."""
    cmd = ['ansible', 'localhost', '-i', 'localhost,', '-c', 'local', '-m', 'p2pvps.fleet.rental',
           '-a', json.dumps(args), '-e', 'ansible_python_interpreter=%s' % sys.executable]
    if check_mode:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
                      **(shifted_clock(clock) if clock else {}))
    if collections:
        env['ANSIBLE_COLLECTIONS_PATH'] = '%s:%s' % (collections, env['ANSIBLE_COLLECTIONS_PATH'])
    proc = run_ansible(cmd, env=env, check=False, timeout=300)
    try:
        data = json.loads(proc.stdout)
        result = data['plays'][0]['tasks'][0]['hosts']['localhost']
    except (ValueError, KeyError, IndexError):
        raise AssertionError('unexpected ansible output (%d):\n%s\n%s' % (
            proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:]))
    result['_stdout'] = proc.stdout
    return result


def kinds(result):
    return [a['action'] for a in result['actions']]


def fake_key(seed):
    blob = struct.pack('>I', 11) + b'ssh-ed25519' + struct.pack('>I', 32) + bytes([seed]) * 32
    return 'ssh-ed25519 ' + base64.b64encode(blob).decode()


# ------------------------------------------------------------------ fake marketplace

class FakeMarketplace:
    """A tiny HTTP server on loopback that answers check-ins with whatever body it is given."""

    def __init__(self):
        self.status = 200
        self.body = b'{"lease": null, "checkin_interval_s": 120}'
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                length = int(self.headers.get('Content-Length') or 0)
                fake.requests.append((self.path, self.headers.get('Authorization'), self.rfile.read(length)))
                self.send_response(fake.status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, body, status=200):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_market():
    market = FakeMarketplace()
    yield market
    market.close()


@pytest.fixture
def renter_image(docker_engine):
    require(image_available(RENTER_IMAGE), 'the local image %s (tests/images/build.sh)' % RENTER_IMAGE)


def fake_lease(lease_id, keys, **changes):
    lease = {
        'id': lease_id, 'username': 'renter%s' % lease_id[:4].lower().replace('-', ''),
        'ssh_authorized_keys': keys, 'image': RENTER_IMAGE, 'expires_at': '2099-01-01T00:00:00Z',
        'limits': {'memory_mb': 256, 'cpus': 0.5, 'pids': 128, 'disk_gb': 1},
    }
    lease.update(changes)
    return lease


MALFORMED = [
    ('not json', b'<html>oops</html>', 'malformed'),
    ('list', [], 'JSON object'),
    ('no lease field', {'checkin_interval_s': 120}, 'no "lease" field'),
    ('lease is a string', {'lease': 'yes'}, 'must be an object or null'),
    ('missing fields', {'lease': {'id': 'x1'}}, 'missing field'),
    ('root user', {'lease': fake_lease('bad-root', [fake_key(1)], username='root')}, 'reserved'),
    ('traversal user', {'lease': fake_lease('bad-trav', [fake_key(1)], username='../x')}, 'not a valid login name'),
    ('traversal id', {'lease': fake_lease('../x', [fake_key(1)])}, 'not a valid lease id'),
    ('key with options', {'lease': fake_lease('bad-opts', ['command="/bin/sh" ' + fake_key(1)])}, 'options'),
    ('huge string', {'lease': fake_lease('bad-huge', [fake_key(1)], image='a' * 100000)}, 'too long'),
    ('bool memory', {'lease': fake_lease('bad-bool', [fake_key(1)],
                                         limits={'memory_mb': True, 'cpus': 1, 'pids': 100, 'disk_gb': 1})},
     'boolean'),
    ('string cpus', {'lease': fake_lease('bad-cpus', [fake_key(1)],
                                         limits={'memory_mb': 256, 'cpus': '1', 'pids': 100, 'disk_gb': 1})},
     'must be a number'),
    ('http 500', {'error': 'internal', 'detail': 'boom'}, ''),
]


def test_fake_marketplace_malformed_answers(renter_image, fake_market, tmp_path):
    """Bad answers are rejected clearly; a live lease is neither removed nor is anything created."""
    lease_id = 'fake-' + uuid.uuid4().hex[:12]
    key_path, pub = make_keypair(tmp_path / 'key')
    port = free_port()
    args = {'marketplace_url': fake_market.url, 'device_id': 'dev-1', 'device_token': 'secret-token-xyz',
            'state_dir': str(tmp_path / 'state'), 'local_port': port, 'web_local_port': free_port(),
            'require_isolation': False}
    try:
        fake_market.answer({'lease': fake_lease(lease_id, [pub]), 'checkin_interval_s': 60})
        t_created = time.monotonic()
        first = run_rental(args)
        assert first.get('failed') is not True, first
        assert kinds(first) == CREATED
        assert first['checkin_interval_s'] == 60
        container_id = first['container_id']
        wait_login(port, fake_lease(lease_id, [])['username'], key_path)
        print('\nMEASURED (fake marketplace) lease -> converge -> renter login: %.2f s' % (time.monotonic() - t_created))
        assert fake_market.requests[-1][1] == 'Bearer secret-token-xyz'
        before = sorted(docker('ps', '-aq', '--no-trunc', '--filter', 'label=p2pvps.role').split())

        for name, body, words in MALFORMED:
            status = 500 if name == 'http 500' else 200
            fake_market.answer(body, status=status)
            strict = run_rental(dict(args, fail_on_api_error=True))
            assert strict.get('failed') is True, (name, strict)
            assert words.lower() in strict['msg'].lower(), (name, strict['msg'])
            assert len(strict['msg']) < 600, name
            assert 'secret-token-xyz' not in strict['_stdout']
            lenient = run_rental(args)
            assert lenient.get('failed') is not True, (name, lenient)
            assert lenient['changed'] is False and lenient['actions'] == [], name
            assert lenient['api_error'] and lenient['lease_id'] == lease_id, name
            assert lenient['container_id'] == container_id
            assert any('nothing live was wiped' in w for w in lenient.get('warnings', [])), name
            assert sorted(docker('ps', '-aq', '--no-trunc', '--filter', 'label=p2pvps.role').split()) == before, name
            for bad in ('bad-root', 'bad-trav', 'bad-opts', 'bad-huge', 'bad-bool', 'bad-cpus', 'x1'):
                assert not renter_containers(bad)

        fake_market.answer({'lease': None, 'checkin_interval_s': 60})
        t_end = time.monotonic()
        gone = run_rental(args)
        print('MEASURED (fake marketplace) no lease -> wiped: %.2f s' % (time.monotonic() - t_end))
        assert kinds(gone) == ['remove_container', 'remove_volume', 'write_state']
        assert not renter_containers(lease_id) and not volume_exists(lease_id)
        assert not os.path.exists(tmp_path / 'state' / 'disks' / (lease_id + '.img'))
    finally:
        cleanup_lease(lease_id, tmp_path / 'state')


def test_fake_marketplace_offline_expiry(renter_image, fake_market, tmp_path):
    """A lease whose expires_at passed is wiped while the API is down, with grace_s=0 (no freeze)."""
    lease_id = 'exp-' + uuid.uuid4().hex[:12]
    key_path, pub = make_keypair(tmp_path / 'key')
    port = free_port()
    args = {'marketplace_url': fake_market.url, 'device_id': 'dev-1', 'device_token': 'offline-test-token-1',
            'state_dir': str(tmp_path / 'state'), 'local_port': port, 'web_local_port': free_port(), 'timeout': 5,
            'require_isolation': False, 'grace_s': 0}
    try:
        fake_market.answer({'lease': fake_lease(lease_id, [pub])})
        assert kinds(run_rental(args)) == CREATED
        # the lease now ends in 20 s (the create, minutes on a busy machine, is not in that window)
        expires_epoch = int(time.time()) + 20
        expires = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires_epoch))
        fake_market.answer({'lease': fake_lease(lease_id, [pub], expires_at=expires)})
        assert 'write_state' in kinds(run_rental(args))
        fake_market.answer({'error': 'unavailable'}, status=503)
        kept = run_rental(args)
        assert time.time() < expires_epoch, 'the converges took longer than the lease had left'
        assert kept['changed'] is False and kept['lease_id'] == lease_id and kept['api_error'], kept
        assert renter_containers(lease_id)
        while time.time() < expires_epoch + 1:
            time.sleep(0.5)
        wiped = run_rental(args)
        assert wiped['api_error']
        assert kinds(wiped) == ['remove_container', 'remove_volume', 'write_state']
        assert not renter_containers(lease_id) and not volume_exists(lease_id)
        assert json.loads((tmp_path / 'state' / 'lease.json').read_text())['lease'] is None
    finally:
        cleanup_lease(lease_id, tmp_path / 'state')


def utc_text(epoch, offset_hours=0):
    """RFC 3339 text of an epoch time, written with the given UTC offset."""
    if not offset_hours:
        return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(epoch))
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(epoch + offset_hours * 3600)) + '%+03d:00' % offset_hours


def test_the_marketplace_clock_decides_whatever_the_device_clock_says(renter_image, fake_market, tmp_path):
    """Device clock moved by +-1 h and +-1 day (libfaketime): leases live and die by the marketplace's
    clock, its server_time while it answers and the boot clock since the last check-in while it does not."""
    key_path, pub = make_keypair(tmp_path / 'key')
    state_dir = tmp_path / 'state'
    args = {'marketplace_url': fake_market.url, 'device_id': 'dev-clock', 'device_token': 'clock-test-token-1',
            'state_dir': str(state_dir), 'local_port': free_port(), 'web_local_port': free_port(), 'timeout': 5,
            'require_isolation': False}
    live_id, late_id, short_id = ('clk%d-%s' % (index, uuid.uuid4().hex[:12]) for index in range(3))
    real_now = int(time.time())
    live = fake_lease(live_id, [pub], expires_at=utc_text(real_now + 3600, offset_hours=2))
    try:
        # a lease written with a +02:00 offset, the device a day behind: created, judged by server_time
        fake_market.answer({'lease': live, 'server_time': utc_text(real_now)})
        first = run_rental(args, clock='-1d')
        assert kinds(first) == CREATED, first
        assert first['clock']['source'] == 'marketplace' and abs(first['clock']['device_ahead_s'] + 86400) < 120
        assert first['lease']['expires_at'] == utc_text(real_now + 3600)
        container_id = first['container_id']
        assert json.loads((state_dir / 'clock.json').read_text())['server_time'] == utc_text(real_now)

        # the marketplace down, the device clock a day ahead or behind: the live lease is kept
        fake_market.answer({'error': 'unavailable'}, status=503)
        for shift in ('+1d', '-1d', '+1h'):
            kept = run_rental(args, clock=shift)
            assert kept['api_error'] and kept['changed'] is False, (shift, kept)
            assert kept['clock']['source'] == 'time since the last check-in', (shift, kept['clock'])
            assert renter_containers(live_id) == [container_id], shift

        # an answer whose lease has expired by the marketplace's clock, the device an hour behind: wiped
        fake_market.answer({'lease': live, 'server_time': utc_text(real_now + 3660)})
        wiped = run_rental(args, clock='-1h')
        assert kinds(wiped) == ['remove_container', 'remove_volume', 'write_state'], wiped
        assert any('its own clock' in w for w in wiped.get('warnings', []))
        assert not renter_containers(live_id)

        # such a lease is never created, even with the device a day behind
        late = fake_lease(late_id, [pub], expires_at=utc_text(real_now - 60))
        fake_market.answer({'lease': late, 'server_time': utc_text(int(time.time()))})
        never = run_rental(args, clock='-1d')
        assert never.get('failed') is not True and kinds(never) == [] and not renter_containers(late_id), never

        # offline expiry by the boot clock: the device a day behind still ends the lease on time
        expires_epoch = int(time.time()) + 8
        short = fake_lease(short_id, [pub], expires_at=utc_text(expires_epoch))
        fake_market.answer({'lease': short, 'server_time': utc_text(int(time.time()))})
        assert kinds(run_rental(args)) == CREATED
        fake_market.answer({'error': 'unavailable'}, status=503)
        while time.time() < expires_epoch + 1:
            time.sleep(0.5)
        ended = run_rental(args, clock='-1d')
        assert kinds(ended) == ['stop', 'write_state'], ended           # frozen (freeze, then wipe)
        assert ended['clock']['source'] == 'time since the last check-in'
        assert not inspect(renter_containers(short_id)[0])['State']['Running']
    finally:
        for lease_id in (live_id, late_id, short_id):
            cleanup_lease(lease_id, state_dir)


# ------------------------------------------------------------------ revocation


def test_a_removed_key_loses_its_ssh_sessions_in_one_converge(renter_image, fake_market, tmp_path):
    """Keys A and B each hold a session and a detached process runs; the lease drops A. Check mode ends
    nothing; one converge ends both sessions from the host, A is refused, B logs in again, and the
    detached process and the container's sshd keep running."""
    lease_id = 'rev-' + uuid.uuid4().hex[:12]
    key_a, pub_a = make_keypair(tmp_path / 'key_a')
    key_b, pub_b = make_keypair(tmp_path / 'key_b')
    port = free_port()
    args = {'marketplace_url': fake_market.url, 'device_id': 'dev-1', 'device_token': 'revocation-token-1',
            'state_dir': str(tmp_path / 'state'), 'local_port': port, 'web_local_port': free_port(),
            'timeout': 5, 'require_isolation': False}
    user = fake_lease(lease_id, [])['username']
    sessions = []
    try:
        fake_market.answer({'lease': fake_lease(lease_id, [pub_a, pub_b])})
        created = run_rental(args)
        assert kinds(created) == CREATED, created
        container_id = created['container_id']
        wait_login(port, user, key_a, timeout=60)
        sshd = inspect(container_id)['State']['Pid']

        def processes(command):
            return [(pid, ppid) for pid, ppid, line in container_processes(container_id) if line == command]

        def connections():
            return [pid for pid, ppid, line in container_processes(container_id)
                    if ppid == sshd and line.startswith('sshd')]

        # a detached process (setsid, nohup, its shell gone): a child of the sshd, but no session
        detach = ssh(port, user, key_b, 'setsid nohup sleep 6003 >/dev/null 2>&1 </dev/null &')
        assert detach.returncode == 0, detach.stderr
        session_a = open_session(port, user, key_a, 'sleep 6001')
        session_b = open_session(port, user, key_b, 'sleep 6002')
        sessions = [session_a, session_b]
        wait_until('two SSH sessions and a detached process', lambda: (
            len(connections()) == 2 and processes('sleep 6001') and processes('sleep 6002')))
        detached = processes('sleep 6003')
        assert len(detached) == 1 and detached[0][1] == sshd, container_processes(container_id)

        fake_market.answer({'lease': fake_lease(lease_id, [pub_b])})
        dry = run_rental(args, check_mode=True, diff=True)
        assert kinds(dry) == ['update_keys', 'end_sessions', 'write_state'], dry
        assert dry['actions'][1]['reason'] == 'a key was removed'
        assert len(dry['diff']['before']['lease']['ssh_key_fingerprints']) == 2
        assert len(dry['diff']['after']['lease']['ssh_key_fingerprints']) == 1
        assert session_a.poll() is None and session_b.poll() is None
        assert ssh(port, user, key_a).returncode == 0
        wait_until('the check-mode login to end', lambda: len(connections()) == 2)

        started = time.monotonic()
        revoked = run_rental(args)
        assert kinds(revoked) == ['update_keys', 'end_sessions', 'write_state'], revoked
        assert revoked['actions'][1]['reason'] == 'ended 2 SSH sessions (a key was removed)', revoked['actions']
        assert session_a.wait(timeout=15) != 0, 'the session of the removed key is still open'
        print('\nMEASURED key removed -> its session ended (one converge): %.2f s' % (time.monotonic() - started))
        assert session_b.wait(timeout=15) != 0   # every session ends: B's holder logs in again
        assert not processes('sleep 6001') and not processes('sleep 6002') and not connections()
        refused = ssh(port, user, key_a)
        assert refused.returncode != 0 and 'Permission denied (publickey)' in refused.stderr, refused.stderr
        assert ssh(port, user, key_b).returncode == 0
        assert processes('sleep 6003') == detached, 'the detached process was killed'
        assert inspect(container_id)['State']['Pid'] == sshd, 'the container or its sshd was restarted'
        assert run_rental(args)['changed'] is False
    finally:
        for session in sessions:
            if session.poll() is None:
                session.kill()
            session.wait()
        cleanup_lease(lease_id, tmp_path / 'state')


# ------------------------------------------------------------------ the reference server

def real_args(marketplace, device, state_dir, port, **extra):
    # The host's own Docker Engine has no isolation rules (they would cut the simulated Pis off
    # the host's services); the rules are tested on simulated Pis (test_sandbox.py).
    args = {'marketplace_url': marketplace.url, 'device_id': device['id'],
            'device_token': device['device_token'], 'state_dir': str(state_dir), 'local_port': port,
            'web_local_port': free_port(), 'timeout': 10, 'require_isolation': False}
    args.update(extra)
    return args


def new_device(marketplace):
    """A registered, online device on the reference server."""
    device = marketplace.create_device(name='rental-' + uuid.uuid4().hex[:8])
    marketplace.register_device(device['id'], device['device_token'])
    marketplace.checkin(device['id'], device['device_token'])
    return device


def test_rental_lifecycle(renter_image, marketplace, tmp_path):
    """create -> login -> idempotent -> keys/limits in place -> restarts -> API down -> end -> wiped."""
    device = new_device(marketplace)
    key1, pub1 = make_keypair(tmp_path / 'key1')
    key2, pub2 = make_keypair(tmp_path / 'key2')
    port = free_port()
    state_dir = tmp_path / 'state'
    args = real_args(marketplace, device, state_dir, port)
    user = 'rt' + uuid.uuid4().hex[:6]
    bystander = 'p2pvps-test-bystander-' + uuid.uuid4().hex[:8]
    docker('run', '-d', '--name', bystander, '--label', 'p2pvps.test=bystander', '--entrypoint', 'sleep',
           RENTER_IMAGE, '3600')
    rental = None
    try:
        t_created = time.monotonic()
        rental = marketplace.create_rental(device['id'], renter=user, ssh_public_key=pub1, hours=1,
                                           limits={'memory_mb': 256, 'cpus': 0.5, 'pids': 128, 'disk_gb': 1})
        lease_id = rental['id']

        # check mode: reports, changes nothing
        dry = run_rental(args, check_mode=True, diff=True)
        assert dry['changed'] is True and kinds(dry) == ['create', 'write_state']
        assert dry['diff']['before'] == {'lease': None, 'containers': []}
        assert dry['diff']['after']['lease']['id'] == lease_id
        assert pub1.split()[1] not in dry['_stdout']
        assert not renter_containers(lease_id) and not volume_exists(lease_id)
        assert not (state_dir / 'lease.json').exists()

        first = run_rental(args, diff=True)
        assert kinds(first) == CREATED, first
        container_id = first['container_id']
        wait_login(port, user, key1, timeout=60)
        login_s = time.monotonic() - t_created
        print('\nMEASURED rental creation -> renter login: %.2f s' % login_s)
        assert 'uid=' in ssh(port, user, key1, 'id').stdout
        # one ed25519 host key, kept across restarts (ssh-keygen -A costs ~1 CPU s per start)
        first_host_keys = host_keys(container_id)
        assert list(first_host_keys) == ['ssh_host_ed25519_key'], first_host_keys
        refused = ssh(port, user, key1, password_only=True)
        assert refused.returncode != 0 and 'Permission denied (publickey)' in refused.stderr

        # limits and confinement visible in docker inspect
        info = inspect(container_id)
        host = info['HostConfig']
        assert host['Memory'] == 256 * 1024 ** 2 and host['NanoCpus'] == 500000000 and host['PidsLimit'] == 128
        assert host['CapDrop'] == ['ALL'] and 'SYS_ADMIN' not in host['CapAdd'] and 'NET_RAW' not in host['CapAdd']
        assert host['SecurityOpt'] == ['no-new-privileges'] and host['Privileged'] is False
        assert host['NetworkMode'] == 'p2pvps-renter' and host['RestartPolicy']['Name'] == 'no'
        assert host['ReadonlyRootfs'] is True and host['OomScoreAdj'] == 1000
        assert sorted(host['Tmpfs']) == ['/run', '/tmp', '/var/tmp'] and 'size=64m' in host['Tmpfs']['/tmp']
        assert host['Sysctls']['net.ipv6.conf.all.disable_ipv6'] == '1'
        web_port = args['web_local_port']
        assert host['PortBindings'] == {'2222/tcp': [{'HostIp': '127.0.0.1', 'HostPort': str(port)}],
                                        '8080/tcp': [{'HostIp': '127.0.0.1', 'HostPort': str(web_port)}]}
        assert not any('docker.sock' in (m.get('Source') or '') for m in info['Mounts'])
        assert info['Config']['Labels']['p2pvps.lease'] == lease_id
        volumes = sorted((m['Name'], m['Destination']) for m in info['Mounts'] if m['Type'] == 'volume')
        # the lease's login directory of the device, read-only (the login message follows the lease)
        binds = [(m['Source'], m['Destination'], m['RW']) for m in info['Mounts'] if m['Type'] == 'bind']
        assert binds == [(str(state_dir / 'login' / lease_id), '/etc/p2pvps-lease', False)], binds
        assert volumes == sorted([('p2pvps-lease-%s' % lease_id, '/home/%s' % user)] + [
            ('p2pvps-lease-%s-%s' % (lease_id, name), '/' + name) for name in ('etc', 'usr', 'var', 'opt', 'srv', 'root')])
        assert first['disk_limit_enforced'] is True, first['disk_limit_reason']
        assert first['sandbox']['disk'] == 'whole' and first['sandbox']['read_only_root'] is True, first['sandbox']
        assert first['sandbox']['write_budget_bps'] == 10 * 1024 ** 2 and first['sandbox']['ipv6'] == 'off'
        assert 'limit_bandwidth' in [a['action'] for a in first['actions']]
        size_kib = int(ssh(port, user, key1, 'df -k --output=size ~ | tail -1').stdout.split()[0])
        assert 0.85 * 1024 ** 2 < size_kib <= 1024 ** 2, size_kib  # the lease's 1 GB disk
        # /usr is on the same 1 GB disk as the home, the root file system is read-only
        assert ssh(port, user, key1, 'df -k --output=source /usr ~ | tail -2 | uniq | wc -l').stdout.strip() == '1'
        assert 'Read-only file system' in ssh(port, user, key1, 'touch /opt-x /x').stderr
        img = state_dir / 'disks' / (lease_id + '.img')
        assert img.stat().st_blocks * 512 >= 1024 ** 3, 'the lease disk image is sparse'
        state = json.loads((state_dir / 'lease.json').read_text())
        assert state['lease']['id'] == lease_id
        assert oct((state_dir / 'lease.json').stat().st_mode & 0o777) == '0o600'

        second = run_rental(args)
        assert second['changed'] is False and second['actions'] == [] and second['container_id'] == container_id

        # keys patched -> written in place, same container; key1 removed -> the sessions end
        marketplace.patch_rental(lease_id, ssh_public_keys=[pub2])
        keys = run_rental(args, diff=True)
        assert kinds(keys) == ['update_keys', 'end_sessions', 'write_state'] and keys['container_id'] == container_id
        assert ssh(port, user, key2).returncode == 0
        assert ssh(port, user, key1).returncode != 0
        assert keys['diff']['before']['lease']['ssh_key_fingerprints'] != \
            keys['diff']['after']['lease']['ssh_key_fingerprints']

        # limits patched -> docker update, same container
        marketplace.patch_rental(lease_id, limits={'memory_mb': 512, 'cpus': 1, 'pids': 256, 'disk_gb': 1})
        limits = run_rental(args)
        # the login message names the limits: rewritten in place
        assert kinds(limits) == ['update_limits', 'write_state', 'write_login_message'] and \
            limits['container_id'] == container_id
        host = inspect(container_id)['HostConfig']
        assert (host['Memory'], host['NanoCpus'], host['PidsLimit']) == (512 * 1024 ** 2, 10 ** 9, 256)
        assert run_rental(args)['changed'] is False

        # container restart (reboot-like) -> same id, only the bandwidth cap of the new veth pair;
        # stopped -> started, same id, capped again
        assert shaped_kbit(container_id) == (20000, 20000)
        docker('restart', container_id)
        assert shaped_kbit(container_id) == (None, None)
        after_restart = run_rental(args)
        assert kinds(after_restart) == ['limit_bandwidth'] and after_restart['container_id'] == container_id
        assert shaped_kbit(container_id) == (20000, 20000)
        assert run_rental(args)['changed'] is False
        assert host_keys(container_id) == first_host_keys
        docker('stop', container_id)
        started = run_rental(args)
        assert kinds(started) == ['start', 'limit_bandwidth'] and started['container_id'] == container_id
        wait_login(port, user, key2)

        # reboot: the loop mount is gone and the container cannot start on the bare mountpoint;
        # decide() plans the mount before the start, and the renter's files are still there
        assert ssh(port, user, key2, 'echo kept-across-reboot > ~/kept').returncode == 0
        docker('stop', container_id)
        mountpoint = str(state_dir / 'disks' / lease_id)
        subprocess.run(['umount', mountpoint], check=True)
        assert not os.path.ismount(mountpoint)
        assert subprocess.run(['docker', 'start', container_id], capture_output=True, check=False).returncode != 0
        dry = run_rental(args, check_mode=True)
        assert kinds(dry) == ['mount_disk', 'start'] and dry['changed'] is True, dry
        assert not os.path.ismount(mountpoint)
        rebooted = run_rental(args)
        assert kinds(rebooted) == ['mount_disk', 'start', 'limit_bandwidth'], rebooted
        assert rebooted['container_id'] == container_id and os.path.ismount(mountpoint)
        wait_login(port, user, key2)
        assert ssh(port, user, key2, 'cat ~/kept').stdout.strip() == 'kept-across-reboot'
        assert run_rental(args)['changed'] is False

        # API stopped -> live lease kept, error reported (and failing only when asked to)
        marketplace.stop()
        try:
            down = run_rental(args)
            assert down.get('failed') is not True and down['changed'] is False
            assert down['api_error'] and down['lease_id'] == lease_id and down['container_id'] == container_id
            strict = run_rental(dict(args, fail_on_api_error=True))
            assert strict.get('failed') is True and renter_containers(lease_id) == [container_id]
            assert device['device_token'] not in down['_stdout'] + strict['_stdout']
        finally:
            marketplace.start()
        assert ssh(port, user, key2).returncode == 0

        # end -> wiped; the bystander is untouched
        t_end = time.monotonic()
        marketplace.end_rental(lease_id)
        rental = None
        gone = run_rental(args, diff=True)
        wipe_s = time.monotonic() - t_end
        print('MEASURED rental end -> wiped (one converge): %.2f s' % wipe_s)
        assert kinds(gone) == ['remove_container', 'remove_volume', 'write_state']
        assert gone['diff']['after'] == {'lease': None, 'containers': []}
        assert not renter_containers(lease_id) and not volume_exists(lease_id)
        assert inspect(bystander)['State']['Running'] is True
        assert run_rental(args)['changed'] is False
    finally:
        if rental is not None:
            marketplace.end_rental(rental['id'])
        docker('rm', '-f', bystander, check=False)
        if rental is not None:
            cleanup_lease(rental['id'], state_dir)


def test_rental_expired_with_api_down_is_frozen_then_resumed_or_wiped(renter_image, marketplace, tmp_path):
    """Freeze, then wipe. The lease expires while the marketplace is stopped: its container is stopped,
    the renter's data kept, and it stays stopped after a reboot-like unmount; the marketplace back
    with the rental extended: the same container runs again with the renter's file. Expired again
    while the marketplace is down: frozen, then wiped once frozen for grace_s."""
    device = new_device(marketplace)
    key, pub = make_keypair(tmp_path / 'key')
    port = free_port()
    state_dir = tmp_path / 'state'
    args = real_args(marketplace, device, state_dir, port, timeout=5)
    user = 'ex' + uuid.uuid4().hex[:6]
    # long enough for the create and the first login on a loaded CI machine (20 s was not), short
    # enough that waiting out the rest costs little
    rental = marketplace.create_rental(device['id'], renter=user, ssh_public_key=pub, duration_s=45)
    lease_id = rental['id']
    mountpoint = str(state_dir / 'disks' / lease_id)
    try:
        created = run_rental(args)
        assert kinds(created) == CREATED, created
        container_id = created['container_id']
        wait_login(port, user, key, timeout=60)
        assert ssh(port, user, key, 'echo renter-data > ~/kept').returncode == 0
        marketplace.stop()
        try:
            kept = run_rental(args)
            assert time.time() < calendar_epoch(rental['expires_at']), 'the create took too long'
            assert kept['changed'] is False and kept['api_error'] and kept['frozen'] is None, kept
            while time.time() < calendar_epoch(rental['expires_at']) + 1:
                time.sleep(0.5)
            frozen = run_rental(args)
            assert frozen['api_error'] and kinds(frozen) == ['stop', 'write_state'], frozen
            assert frozen['lease_id'] == lease_id and frozen['container_id'] == container_id
            assert calendar_epoch(frozen['frozen']['wipe_at']) - calendar_epoch(frozen['frozen']['since']) == 86400
            assert renter_containers(lease_id) == [container_id] and volume_exists(lease_id)
            assert inspect(container_id)['State']['Running'] is False
            assert json.loads((state_dir / 'lease.json').read_text())['frozen_at'] == frozen['frozen']['since']
            again = run_rental(args)
            assert again['changed'] is False and again['frozen'] == frozen['frozen'], again
            # a reboot (the lease disk unmounted): the disk comes back, the container stays stopped
            subprocess.run(['umount', mountpoint], check=True)
            rebooted = run_rental(args)
            assert kinds(rebooted) == ['mount_disk'] and inspect(container_id)['State']['Running'] is False, rebooted
        finally:
            marketplace.start()

        # the renter extends within the window: the same container resumes with the data
        extended = marketplace.extend_rental(lease_id, user, utc_text(int(time.time()) + 15))
        assert extended['id'] == lease_id and extended['active'] is True
        resumed = run_rental(args)
        # the login message follows the extension (new expiry)
        assert kinds(resumed) == ['start', 'write_state', 'limit_bandwidth', 'write_login_message'], resumed
        assert 'extended' in resumed['actions'][0]['reason'] and resumed['frozen'] is None
        assert resumed['container_id'] == container_id and renter_containers(lease_id) == [container_id]
        assert wait_login(port, user, key).returncode == 0
        assert ssh(port, user, key, 'cat ~/kept').stdout == 'renter-data\n'   # a command session prints no login message
        assert 'frozen_at' not in json.loads((state_dir / 'lease.json').read_text())

        # expired again with the marketplace down: frozen; once frozen for grace_s, wiped
        marketplace.stop()
        try:
            while time.time() < calendar_epoch(extended['expires_at']) + 1:
                time.sleep(0.5)
            frozen = run_rental(dict(args, grace_s=2))
            assert kinds(frozen) == ['stop', 'write_state'] and volume_exists(lease_id), frozen
            time.sleep(2)
            wiped = run_rental(dict(args, grace_s=2))
            assert wiped['api_error'] and kinds(wiped) == ['remove_container', 'remove_volume', 'write_state'], wiped
            assert 'grace window' in wiped['actions'][0]['reason']
            assert not renter_containers(lease_id) and not volume_exists(lease_id)
            assert wiped['receipts'] == {'signed': [lease_id], 'acknowledged': [], 'pending': 1}
            assert (state_dir / 'receipts' / (lease_id + '.json')).exists()
        finally:
            marketplace.start()
        delivered = run_rental(args)
        assert delivered['receipts'] == {'signed': [], 'acknowledged': [lease_id], 'pending': 0}, delivered
        assert not (state_dir / 'receipts' / (lease_id + '.json')).exists()
        wipe = assert_receipt_verifies(marketplace.receipt(lease_id), tmp_path)
        assert wipe['lease_id'] == lease_id and wipe['device_id'] == device['id']
        assert wipe['containers'] == [container_id] and 'p2pvps-lease-%s' % lease_id in wipe['volumes']
        assert wipe['bytes'] is not None and 'marketplace unavailable' in wipe['reason']
    finally:
        cleanup_lease(lease_id, state_dir)


def calendar_epoch(iso):
    return calendar.timegm(time.strptime(iso, '%Y-%m-%dT%H:%M:%SZ'))


def test_state_absent_refuses_a_live_lease_unless_forced(renter_image, marketplace, tmp_path):
    """Decommission: state=absent keeps a live lease (fails, nothing changed); force removes it."""
    device = new_device(marketplace)
    pub = make_keypair(tmp_path / 'key')[1]
    args = real_args(marketplace, device, tmp_path / 'state', free_port())
    other = docker('run', '-d', '--label', 'p2pvps.test=bystander', '--entrypoint', 'sleep', RENTER_IMAGE, '600')
    rental = marketplace.create_rental(device['id'], renter='dora', ssh_public_key=pub, hours=1)
    lease_id = rental['id']
    try:
        assert kinds(run_rental(args)) == CREATED
        refused = run_rental(dict(args, state='absent'))
        assert refused.get('failed') is True and 'is live until' in refused['msg'], refused
        assert renter_containers(lease_id) and volume_exists(lease_id)

        dry = run_rental(dict(args, state='absent', force=True), check_mode=True, diff=True)
        assert dry['changed'] is True and renter_containers(lease_id)
        assert kinds(dry) == ['remove_container', 'remove_volume', 'write_state']

        forced = run_rental(dict(args, state='absent', force=True))
        assert kinds(forced) == ['remove_container', 'remove_volume', 'write_state'], forced
        assert not renter_containers(lease_id) and not volume_exists(lease_id)
        assert docker('inspect', '-f', '{{.State.Running}}', other) == 'true'
        again = run_rental(dict(args, state='absent', force=True))
        assert again['changed'] is False and again['actions'] == []
    finally:
        docker('rm', '-f', other, check=False)
        cleanup_lease(lease_id, tmp_path / 'state')


def test_state_absent_after_the_lease_ended(renter_image, marketplace, tmp_path):
    device = new_device(marketplace)
    pub = make_keypair(tmp_path / 'key')[1]
    args = real_args(marketplace, device, tmp_path / 'state', free_port())
    lease_id = marketplace.create_rental(device['id'], renter='eve', ssh_public_key=pub, hours=1)['id']
    try:
        assert kinds(run_rental(args)) == CREATED
        marketplace.end_rental(lease_id)
        removed = run_rental(dict(args, state='absent'))
        assert removed.get('failed') is not True, removed
        assert kinds(removed) == ['remove_container', 'remove_volume', 'write_state']
        assert not renter_containers(lease_id)
        # the receipt of the wipe reaches the marketplace in the same run
        assert removed['receipts'] == {'signed': [lease_id], 'acknowledged': [lease_id], 'pending': 0}
        assert assert_receipt_verifies(marketplace.receipt(lease_id), tmp_path)['lease_id'] == lease_id
    finally:
        cleanup_lease(lease_id, tmp_path / 'state')


def test_state_absent_with_the_marketplace_down_trusts_the_local_lease(renter_image, fake_market, tmp_path):
    lease_id = 'dcm-' + uuid.uuid4().hex[:12]
    pub = make_keypair(tmp_path / 'key')[1]
    args = {'marketplace_url': fake_market.url, 'device_id': 'dev-1', 'device_token': 'decommission-token-1',
            'state_dir': str(tmp_path / 'state'), 'local_port': free_port(), 'web_local_port': free_port(),
            'timeout': 5, 'require_isolation': False}
    try:
        fake_market.answer({'lease': fake_lease(lease_id, [pub])})
        assert kinds(run_rental(args)) == CREATED
        fake_market.answer({'error': 'unavailable'}, status=503)
        refused = run_rental(dict(args, state='absent'))
        assert refused.get('failed') is True and 'is live until' in refused['msg'], refused
        assert renter_containers(lease_id)
        forced = run_rental(dict(args, state='absent', force=True))
        assert kinds(forced) == ['remove_container', 'remove_volume', 'write_state'], forced
        assert forced['api_error'] and not renter_containers(lease_id)
    finally:
        cleanup_lease(lease_id, tmp_path / 'state')


# ------------------------------------------------------------------ what this device can give


def test_limits_beyond_the_device_are_cut_and_a_disk_that_does_not_fit_is_refused(renter_image, fake_market,
                                                                                  tmp_path):
    """A lease asking for more memory and CPUs than the device has runs with what it has (Docker would
    refuse the CPUs, and never restart); a disk that does not fit the free space is refused, nothing made."""
    key_path, pub = make_keypair(tmp_path / 'key')
    args = {'marketplace_url': fake_market.url, 'device_id': 'dev-1', 'device_token': 'limits-test-token-1',
            'state_dir': str(tmp_path / 'state'), 'local_port': free_port(), 'web_local_port': free_port(),
            'timeout': 5, 'require_isolation': False}
    big = 'big-' + uuid.uuid4().hex[:12]
    huge = 'huge-' + uuid.uuid4().hex[:12]
    try:
        fake_market.answer({'lease': fake_lease(big, [pub], limits={
            'memory_mb': 65536, 'cpus': 64, 'pids': 128, 'disk_gb': 1})})
        cut = run_rental(args)
        assert kinds(cut) == CREATED, cut
        host = inspect(cut['container_id'])['HostConfig']
        total_mb = int(open('/proc/meminfo').read().split()[1]) // 1024
        assert host['Memory'] == (total_mb - 256) * 1024 ** 2 and host['NanoCpus'] == os.cpu_count() * 10 ** 9
        assert any('65536 MB of memory' in w for w in cut['warnings']) and any('64 CPUs' in w for w in cut['warnings'])
        assert run_rental(args)['changed'] is False   # the cut is stable: no update every run

        fake_market.answer({'lease': fake_lease(huge, [pub], limits={
            'memory_mb': 256, 'cpus': 1, 'pids': 128, 'disk_gb': 2048})})
        refused = run_rental(args)
        assert refused.get('failed') is True, refused
        assert 'needs a 2048 GB disk' in refused['msg'] and 'free' in refused['msg'], refused['msg']
        assert kinds(refused) == ['remove_container', 'remove_volume']   # the ended lease still goes
        assert refused['refused'] and not renter_containers(huge) and not volume_exists(huge)
        assert not os.path.exists(tmp_path / 'state' / 'disks' / (huge + '.img'))
    finally:
        cleanup_lease(big, tmp_path / 'state')
        cleanup_lease(huge, tmp_path / 'state')


def test_refused_without_isolation_rules_or_for_an_image_not_allowed(renter_image, fake_market, tmp_path):
    pub = make_keypair(tmp_path / 'key')[1]
    lease_id = 'refuse-' + uuid.uuid4().hex[:12]
    args = {'marketplace_url': fake_market.url, 'device_id': 'dev-1', 'device_token': 'refusal-test-token',
            'state_dir': str(tmp_path / 'state'), 'local_port': free_port(), 'web_local_port': free_port(),
            'timeout': 5, 'isolation_script': str(tmp_path / 'no-such-script')}
    fake_market.answer({'lease': fake_lease(lease_id, [pub])})
    try:
        no_rules = run_rental(args)
        assert no_rules.get('failed') is True and 'isolation rules script' in no_rules['msg'], no_rules
        failing = tmp_path / 'failing-check'
        failing.write_text('#!/bin/sh\necho "missing: iptables filter INPUT P2PVPS-IN" >&2\nexit 1\n')
        failing.chmod(0o755)
        missing = run_rental(dict(args, isolation_script=str(failing)))
        assert missing.get('failed') is True and 'missing: iptables filter INPUT P2PVPS-IN' in missing['msg']
        other = run_rental(dict(args, require_isolation=False, allowed_images=['p2pvps/renter:1.0']))
        assert other.get('failed') is True and 'not one of the renter images this device allows' in other['msg']
        image_id = docker('image', 'inspect', '-f', '{{.Id}}', RENTER_IMAGE)
        by_id = run_rental(dict(args, require_isolation=False, allowed_images=[image_id]))
        assert kinds(by_id) == CREATED, by_id
    finally:
        cleanup_lease(lease_id, tmp_path / 'state')


# ------------------------------------------------------------------ what a no-op costs

# Docker calls of a no-op: volumes, containers, one inspect (read with the module's own small
# client: no API version negotiation; the disk status comes from the volume listing). A regression
# above this bound fails the test. The keys file is not copied out of the
# container (the state file records what the module wrote); that copy alone cost Docker more
# CPU than the other calls together.
MAX_DOCKER_CALLS_NOOP = 3


def test_noop_converge_makes_one_api_call_and_few_docker_calls(renter_image, marketplace, tmp_path, monkeypatch):
    """Counted by recording forwarders in front of the real server and the real Docker socket. A no-op does
    not import the Docker SDK (its phase record says so); a create does."""
    monkeypatch.setenv('P2PVPS_RENTAL_PHASES', '1')
    device = new_device(marketplace)
    api = RecordingForwarder(int(marketplace.url.rsplit(':', 1)[1]))
    engine = RecordingForwarder('/var/run/docker.sock', listen_path=tmp_path / 'docker.sock')
    lease_id = marketplace.create_rental(device['id'], renter='nora', hours=1)['id']
    args = real_args(marketplace, device, tmp_path / 'state', free_port(), marketplace_url=api.url,
                     docker_host=engine.url)
    try:
        created = run_rental(args)
        assert created['changed'] is True and created['phases']['sdk_imported'] is True, created
        api.reset()
        engine.reset()
        noop = run_rental(args)
        assert noop['changed'] is False and noop['lease_id'] == lease_id, noop
        assert noop['phases']['sdk_imported'] is False, noop['phases']
        assert [c['call'] for item in noop['phases']['items'] for c in item['docker_calls']] == [
            'GET /volumes', 'GET /containers/json', 'GET /containers/{id}/json'], noop['phases']
        api_calls, docker_calls = api.calls(), engine.calls()
        shown = [method + ' ' + path.split('?')[0] for method, path in docker_calls]
        print('\nMEASURED no-op converge: %d API call(s) %s; %d Docker call(s) %s'
              % (len(api_calls), api_calls, len(docker_calls), shown))
        assert api_calls == [('POST', '/api/v1/devices/%s/checkin' % device['id'])]
        assert len(docker_calls) <= MAX_DOCKER_CALLS_NOOP, docker_calls
        assert all(method == 'GET' for method, dummy in docker_calls), 'a no-op must not write'
        assert not [path for dummy, path in docker_calls if '/archive' in path], shown

        # without the state file's record the keys are read from the container, once
        (tmp_path / 'state' / 'lease.json').unlink()
        engine.reset()
        relearn = run_rental(args)
        assert kinds(relearn) == ['write_state'], relearn
        # the host key this module made is known again (from the lease's login directory): same message
        assert relearn['host_key'] == created['host_key'] and relearn['host_key'] is not None, relearn
        assert relearn['login_message'] == 'unchanged', relearn
        assert len([path for dummy, path in engine.calls() if '/archive' in path]) == 1
    finally:
        api.close()
        engine.close()
        cleanup_lease(lease_id, tmp_path / 'state')


def test_concurrent_converges_create_one_container(renter_image, marketplace, tmp_path):
    """The device timer and a push-mode converge starting together: one creates, one keeps."""
    device = new_device(marketplace)
    lease_id = marketplace.create_rental(device['id'], renter='olga', hours=1)['id']
    args = real_args(marketplace, device, tmp_path / 'state', free_port())
    results = []
    try:
        threads = [threading.Thread(target=lambda: results.append(run_rental(args))) for dummy in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not any(r.get('failed') for r in results), results
        assert sorted(kinds(r) for r in results) == [[], CREATED], results
        assert len(renter_containers(lease_id)) == 1
    finally:
        cleanup_lease(lease_id, tmp_path / 'state')


# ------------------------------------------------------------------ long-poll (wait_s)

class Timed(threading.Thread):
    """run_rental in the background; `.join()` -> (seconds it took, its result)."""

    def __init__(self, args, **kwargs):
        super().__init__(daemon=True)
        self.args, self.kwargs, self.outcome = args, kwargs, None

    def run(self):
        start = time.monotonic()
        result = run_rental(self.args, **self.kwargs)
        self.outcome = (time.monotonic() - start, result)

    def join(self, timeout=300):
        """Waits for the run (started now when it was not yet)."""
        if not self.is_alive() and self.outcome is None:
            self.start()
        super().join(timeout)
        assert self.outcome is not None, 'the rental run did not finish'
        return self.outcome


def etag_file(state_dir):
    path = state_dir / 'checkin.json'
    return json.loads(path.read_text())['lease_etag'] if path.exists() else None


def held_run_started(seconds=4.0):
    """Time for ansible to start the module and for its check-in to be held (ansible's own start-up)."""
    time.sleep(seconds)


def test_long_poll_learns_of_a_new_and_an_ended_rental_within_seconds(renter_image, marketplace, tmp_path):
    device = new_device(marketplace)
    key, pub = make_keypair(tmp_path / 'key')
    state_dir = tmp_path / 'state'
    args = real_args(marketplace, device, state_dir, free_port(), wait_s=120)
    lease_id = None
    try:
        # no lease etag kept yet: answered at once, converged, etag kept, the run ends at once
        first = run_rental(args)
        assert first.get('failed') is not True, first
        assert first['long_poll']['lease_changed'] is True and first['long_poll']['paced_s'] == 0
        assert first['long_poll']['held_s'] < 5
        free_etag = etag_file(state_dir)
        assert free_etag == marketplace.checkin(device['id'], device['device_token'])['lease_etag']

        # check mode: held like any other, changes nothing, keeps no etag
        took, dry = Timed(dict(args, wait_s=3), check_mode=True).join()
        assert dry['long_poll']['held_s'] >= 2.9 and dry['long_poll']['lease_changed'] is False
        assert dry['changed'] is False and etag_file(state_dir) == free_etag

        # a rental created during the wait: the held run creates it at once
        held = Timed(args)
        held.start()
        held_run_started()
        rental = marketplace.create_rental(device['id'], renter='lpuser', ssh_public_key=pub, hours=1,
                                           limits={'memory_mb': 256, 'cpus': 0.5, 'pids': 128, 'disk_gb': 1})
        created = time.monotonic()
        lease_id = rental['id']
        took, result = held.join()
        answered = time.monotonic() - created
        assert kinds(result) == CREATED, result
        assert result['long_poll']['lease_changed'] is True and result['long_poll']['paced_s'] == 0
        wait_login(args['local_port'], 'lpuser', key)
        login = time.monotonic() - created
        print('\nMEASURED long-poll module: rental created -> run done %.1f s -> renter login %.1f s'
              % (answered, login))
        assert answered < 30, answered
        leased_etag = etag_file(state_dir)
        assert leased_etag not in (None, free_etag)

        # a push-mode converge meanwhile is not held up by the waiting run (the wait holds no lock)
        held = Timed(args)
        held.start()
        held_run_started()
        took_push, push = Timed(dict(args, wait_s=0)).join()
        assert push['changed'] is False and 'long_poll' not in push, push
        assert took_push < 30, took_push

        # the rental ends during the wait: the held run wipes at once
        marketplace.end_rental(lease_id)
        ended = time.monotonic()
        took, result = held.join()
        wiped = time.monotonic() - ended
        assert kinds(result) == ['remove_container', 'remove_volume', 'write_state'], result
        assert not renter_containers(lease_id)
        print('MEASURED long-poll module: rental ended -> wiped %.1f s' % wiped)
        assert wiped < 30, wiped
        assert etag_file(state_dir) == free_etag
    finally:
        if lease_id:
            cleanup_lease(lease_id, state_dir)


@pytest.mark.parametrize('answer, status', [
    ({'lease': None, 'checkin_interval_s': 120}, 200),          # a marketplace that does not long-poll
    ({'error': 'unavailable', 'detail': 'down'}, 503),          # a marketplace that errs
], ids=['no-long-poll', 'http-503'])
def test_long_poll_runs_last_wait_s_unless_the_lease_changed(docker_engine, fake_market, tmp_path, answer, status):
    """Run again at once (as the timer does), a device never checks in more than once per wait_s."""
    fake_market.answer(answer, status=status)
    args = {'marketplace_url': fake_market.url, 'device_id': 'dev-1', 'device_token': 'pace-test-token-1',
            'state_dir': str(tmp_path / 'state'), 'local_port': free_port(), 'web_local_port': free_port(),
            'require_isolation': False, 'timeout': 5, 'wait_s': 6}
    took, result = Timed(args).join()
    assert result.get('failed') is not True, result
    assert result['long_poll']['lease_changed'] is False
    assert result['long_poll']['paced_s'] > 2 and took >= 6, (took, result['long_poll'])
    assert (result['api_error'] is not None) == (status != 200)
    assert not (tmp_path / 'state' / 'checkin.json').exists()
    if status != 200:
        # a run that fails (here: on the API error, as asked) is paced too
        took, failed = Timed(dict(args, fail_on_api_error=True)).join()
        assert failed.get('failed') is True and took >= 6, (took, failed)


# ------------------------------------------------------------------ host key and login message

def strict_ssh(port, user, key, known_hosts, command='echo logged-in'):
    """An interactive login that checks the host key against `known_hosts` only (StrictHostKeyChecking=yes):
    sshd prints the login message (pam_motd) only for a login shell with a terminal, so the command is
    typed into that shell (-tt, stdin), not given on the command line."""
    opts = ['-o', 'StrictHostKeyChecking=yes', '-o', 'UserKnownHostsFile=%s' % known_hosts,
            '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=3', '-o', 'LogLevel=ERROR',
            '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-i', key, '-tt']
    return subprocess.run(['ssh', *opts, '-p', str(port), '%s@127.0.0.1' % user],
                          input='%s\nexit\n' % command, capture_output=True, text=True, timeout=30, check=False)


def known_hosts_file(path, port, public_key):
    path.write_text('[127.0.0.1]:%d %s\n' % (port, public_key))
    return str(path)


def keygen_fingerprint(path):
    return subprocess.run(['ssh-keygen', '-lf', str(path)], capture_output=True, text=True,
                          check=True).stdout.split()[1]


def test_the_marketplace_shows_the_host_key_and_the_login_message_follows_an_extension(
        renter_image, marketplace_factory, tmp_path):
    """The module makes the lease's host key, the marketplace shows it: a renter who trusts only that key
    (StrictHostKeyChecking=yes) logs in, sees the lease's limits, expiry and web address, and after an
    extension the new expiry, with the same container never restarted."""
    marketplace = marketplace_factory(web_domain='web.test')
    device = new_device(marketplace)
    key, pub = make_keypair(tmp_path / 'key')
    port = free_port()
    state_dir = tmp_path / 'state'
    args = real_args(marketplace, device, state_dir, port)
    user = 'hk' + uuid.uuid4().hex[:6]
    rental = None
    try:
        rental = marketplace.create_rental(device['id'], renter=user, ssh_public_key=pub, hours=1,
                                           limits={'memory_mb': 256, 'cpus': 0.5, 'pids': 128, 'disk_gb': 1})
        lease_id = rental['id']
        assert rental['ssh_host_key'] is None and rental['ssh_host_key_fingerprint'] is None
        assert rental['web'] is not None

        dry = run_rental(args, check_mode=True)
        assert kinds(dry) == ['create', 'write_state'] and dry['login_message'] == 'written'
        assert dry['host_key'] is None and not (state_dir / 'login').exists()

        first = run_rental(args)
        assert kinds(first) == CREATED, first
        container_id = first['container_id']
        host_key = first['host_key']
        shown = marketplace.get_rental(lease_id)
        # reported at once (one more check-in), stored on the rental, fingerprint as ssh-keygen -lf prints it
        assert shown['ssh_host_key'] == host_key['public_key']
        assert shown['ssh_host_key_fingerprint'] == host_key['fingerprint']
        known = known_hosts_file(tmp_path / 'known_hosts', port, shown['ssh_host_key'])
        assert keygen_fingerprint(known) == shown['ssh_host_key_fingerprint']
        # the container's key is that key; its private half is nowhere on the device nor in the output
        assert host_keys(container_id) == {'ssh_host_ed25519_key': shown['ssh_host_key']}
        private = docker('exec', container_id, 'cat', '/etc/ssh/ssh_host_ed25519_key').splitlines()
        assert private[0] == '-----BEGIN OPENSSH PRIVATE KEY-----'
        assert private[1] not in first['_stdout']
        leftovers = subprocess.run(['grep', '-rl', 'PRIVATE KEY', str(state_dir / 'login'), str(state_dir / 'lease.json')],
                                   capture_output=True, text=True, check=False).stdout
        assert leftovers == ''
        assert not glob.glob(str(state_dir / '.hostkey.*'))
        state = json.loads((state_dir / 'lease.json').read_text())
        assert state['host_key'] == {'lease_id': lease_id, 'public_key': shown['ssh_host_key']}

        wait_login(port, user, key, timeout=60)
        login = strict_ssh(port, user, key, known)
        assert login.returncode == 0 and 'logged-in' in login.stdout, login.stderr
        motd = login.stdout
        assert 'p2pvps rented VPS for %s' % user in motd
        assert 'expires: %s' % rental['expires_at'].replace('T', ' ').replace('Z', ' UTC') in motd
        assert '256 MB memory, 0.5 CPU, 128 processes, 1 GB disk' in motd
        assert rental['web']['url'] in motd
        assert 'host key: %s' % shown['ssh_host_key_fingerprint'] in motd
        # the check can fail: another key in known_hosts is refused
        other = known_hosts_file(tmp_path / 'other_known_hosts', port, fake_key(7))
        refused = strict_ssh(port, user, key, other)
        assert refused.returncode != 0 and 'verification failed' in refused.stderr, refused.stderr
        # the renter cannot change the message: the mount is read-only even for root in the container
        assert docker('exec', container_id, 'sh', '-c', 'echo x > /etc/p2pvps-lease/motd 2>&1 || echo refused'
                      ).endswith('refused')

        second = run_rental(args)
        assert second['changed'] is False and second['actions'] == [] and second['login_message'] == 'unchanged'

        # extension: the message follows, the container is neither recreated nor restarted
        started_at = inspect(container_id)['State']['StartedAt']
        new_expiry = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(calendar_epoch(rental['expires_at']) + 7200))
        marketplace.extend_rental(lease_id, user, new_expiry)
        dry = run_rental(args, check_mode=True, diff=True)
        assert kinds(dry) == ['write_state', 'write_login_message'], dry
        assert new_expiry.replace('T', ' ').replace('Z', ' UTC') in dry['diff']['after']['login_message']
        assert 'expires: %s' % rental['expires_at'].replace('T', ' ').replace('Z', ' UTC') in \
            (state_dir / 'login' / lease_id / 'motd').read_text()          # check mode wrote nothing
        extended = run_rental(args)
        assert kinds(extended) == ['write_state', 'write_login_message'], extended
        assert extended['container_id'] == container_id
        assert inspect(container_id)['State']['StartedAt'] == started_at
        login = strict_ssh(port, user, key, known)
        assert login.returncode == 0, login.stderr
        assert 'expires: %s' % new_expiry.replace('T', ' ').replace('Z', ' UTC') in login.stdout, login.stdout
        assert run_rental(args)['changed'] is False
        assert marketplace.get_rental(lease_id)['ssh_host_key'] == shown['ssh_host_key']

        # a restart keeps the key (the init keeps the key it finds)
        docker('restart', container_id)
        run_rental(args)
        wait_login(port, user, key)
        assert strict_ssh(port, user, key, known).returncode == 0

        marketplace.end_rental(lease_id)
        rental = None
        gone = run_rental(args)
        assert kinds(gone) == ['remove_container', 'remove_volume', 'write_state']
        assert not (state_dir / 'login' / lease_id).exists()
    finally:
        if rental is not None:
            marketplace.end_rental(rental['id'])
            cleanup_lease(rental['id'], state_dir)


# main before the lease host key and the login message (the last commit whose containers have neither)
OLDER_COLLECTION_COMMIT = '0fa986ad1bbc9939ebf4b1d08f42fb19dac926a4'


def older_collection(tmp_path, ref=OLDER_COLLECTION_COMMIT):
    """The collection as it is at `ref` (git archive), for upgrade tests; its ANSIBLE_COLLECTIONS_PATH."""
    root = tmp_path / 'older-collections'
    target = root / 'ansible_collections' / 'p2pvps' / 'fleet'
    target.mkdir(parents=True)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run('git -C %s archive %s plugins meta galaxy.yml | tar -x -C %s' % (repo, ref, target),
                          shell=True, capture_output=True, text=True, check=False)
    require(proc.returncode == 0, 'the collection at %s (git archive: %s)' % (ref, proc.stderr.strip()[:200]))
    return root


def test_a_container_made_by_an_older_version_is_kept_on_upgrade(renter_image, marketplace, tmp_path):
    """Upgrade: a renter container made by the collection without login directories (main before this
    change) is neither recreated nor restarted; its renter keeps the message the init wrote (no expiry)
    and the key the init made, which the marketplace is not told of, until the next lease."""
    older = older_collection(tmp_path)
    device = new_device(marketplace)
    key, pub = make_keypair(tmp_path / 'key')
    port = free_port()
    state_dir = tmp_path / 'state'
    args = real_args(marketplace, device, state_dir, port)
    user = 'up' + uuid.uuid4().hex[:6]
    rental = None
    try:
        rental = marketplace.create_rental(device['id'], renter=user, ssh_public_key=pub, hours=1)
        lease_id = rental['id']
        old = run_rental(args, collections=older)
        assert old.get('failed') is not True, old
        container_id = old['container_id']
        assert not any(m['Type'] == 'bind' for m in inspect(container_id)['Mounts'])
        wait_login(port, user, key, timeout=60)
        old_motd = docker('exec', container_id, 'cat', '/etc/motd')
        assert 'p2pvps rented VPS for %s' % user in old_motd and 'expires' not in old_motd, old_motd
        started_at = inspect(container_id)['State']['StartedAt']
        (state_dir / 'marker').write_text('x')
        assert ssh(port, user, key, 'echo kept > ~/data').returncode == 0

        new = run_rental(args, check_mode=True, diff=True)
        assert new['changed'] is False and new['actions'] == [], new
        new = run_rental(args)
        assert new['changed'] is False and new['actions'] == [], new
        assert new['container_id'] == container_id and new['login_message'] == 'not mounted'
        assert new['host_key'] is None
        assert inspect(container_id)['State']['StartedAt'] == started_at
        assert ssh(port, user, key, 'cat ~/data').stdout == 'kept\n'   # no login message before a command's output
        assert docker('exec', container_id, 'cat', '/etc/motd') == old_motd
        assert marketplace.get_rental(lease_id)['ssh_host_key'] is None
        # an extension changes the state only
        marketplace.extend_rental(lease_id, user, time.strftime(
            '%Y-%m-%dT%H:%M:%SZ', time.gmtime(calendar_epoch(rental['expires_at']) + 3600)))
        extended = run_rental(args)
        assert kinds(extended) == ['write_state'] and extended['container_id'] == container_id
        assert inspect(container_id)['State']['StartedAt'] == started_at
        assert not (state_dir / 'login').exists()
    finally:
        if rental is not None:
            marketplace.end_rental(rental['id'])
            cleanup_lease(rental['id'], state_dir)
