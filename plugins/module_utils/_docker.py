# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!

"""The one Docker SDK layer of the collection: observe renter containers and lease
volumes, create / start / update / remove them, and the per-lease disk (a loop-
mounted ext4 file system where the host allows it). Decisions live in _rental.py."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import tarfile
import time
import traceback

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.compat.version import LooseVersion

from ansible_collections.p2pvps.fleet.plugins.module_utils import _facts, _lease, _rental, _renter_login

# The Docker SDK is not imported by a converge that changes nothing (its import and its client's
# set-up are measured in benchmarks/results.md): such a run reads the Engine with EngineReader below.
# It is imported on the first change that needs it (RenterDocker.api), or by sdk_problem().
# HAS_DOCKER None: not tried yet.
HAS_DOCKER = None
DOCKER_IMPORT_ERROR = None
DOCKER_VERSION = None
REQUESTS_VERSION = None
_SDK = None
#: A list while the rental module records its phase times: each Engine call appends (call, wall seconds).
CALL_LOG = None
# Seconds one change may take: `docker create` copies the image's system directories into the lease's
# new volumes within the call (5 s on an overlay2 host; more than 60 s for 5 vfs Engines at once on a
# loaded 2-core machine, benchmarks/README.md). Reads keep RenterDocker's timeout.
CHANGE_TIMEOUT_S = 600
MIN_DOCKER_SDK = '5.0.0'
MIN_DOCKER_SDK_WITH_NEW_REQUESTS = '7.1.0'
NEW_REQUESTS = '2.32.0'

RENTER_HOME = '/home'
AUTHORIZED_KEYS_DIR = '/etc/ssh/authorized_keys'
# What the renter image's sshd needs, and nothing more. Measured by real logins with one
# capability dropped at a time: without CHOWN, SETUID, SETGID or SYS_CHROOT no login works
# (useradd, privilege separation, user switch); without FOWNER the home directory keeps the
# wrong owner; KILL lets the root sshd end the renter's session processes; AUDIT_WRITE lets
# sshd (built with Linux audit) write its login records on kernels where audit reaches the
# container. DAC_OVERRIDE was measured as not needed and is not given.
CAP_ADD = ['CHOWN', 'SETUID', 'SETGID', 'SYS_CHROOT', 'FOWNER', 'KILL', 'AUDIT_WRITE']
LABEL_DISK = 'p2pvps.disk'
LABEL_MOUNT = 'p2pvps.mount'
DISK_LOOP = 'ext4-loop'
DISK_NONE = 'none'
GIB = 1024 ** 3
# Everything a renter can write outside tmpfs lives on the lease disk: the home, and these
# system directories, copied from the image into the lease's volumes when the container is
# first created (Docker copies an image's content into an empty volume). The root file system
# itself is read-only, so package installs work and nothing lands on the owner's SD card.
SYSTEM_DIRS = ('etc', 'usr', 'var', 'opt', 'srv', 'root')
RENTER_NETWORK = 'p2pvps-renter'
OOM_SCORE_ADJ = 1000
SPEC_VERSION = '3'
# sshd's privilege separation needs no more than CAP_ADD; a renter who is root in a user
# namespace (Docker's userns-remap) also needs these to manage their own files as root
# (dpkg, chown of other users' files). They act only inside the namespace.
CAP_ADD_ROOT = ['DAC_OVERRIDE', 'FSETID']


class RentalDockerError(Exception):
    """A Docker or disk operation of the rental converge failed."""


# ---------------------------------------------------------------- Docker Engine errors and the SDK

class DockerException(Exception):
    """A Docker Engine call failed: the reader's errors, and the SDK's (translated by _SdkCalls)."""


class APIError(DockerException):
    """The Engine answered with an HTTP error status."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status_code = status

    def is_client_error(self):
        return self.status_code is not None and 400 <= self.status_code < 500


class NotFound(APIError):
    """HTTP 404: no such container, volume, image or network."""


class SdkMissing(DockerException):
    """A change needs the Docker SDK for Python, and it is missing or unusable."""

    def __init__(self, message, exception=None):
        super().__init__(message)
        self.exception = exception


def load_sdk():
    """The `docker` package (imported on the first call), or None when it cannot be imported."""
    global HAS_DOCKER, DOCKER_IMPORT_ERROR, DOCKER_VERSION, REQUESTS_VERSION, _SDK
    if HAS_DOCKER is None:
        try:
            import docker
            import docker.errors
        except ImportError:
            DOCKER_IMPORT_ERROR = traceback.format_exc()
            HAS_DOCKER = False
        else:
            _SDK, HAS_DOCKER = docker, True
            DOCKER_VERSION = getattr(docker, '__version__', '0')
            try:
                import requests
                REQUESTS_VERSION = getattr(requests, '__version__', None)
            except ImportError:
                REQUESTS_VERSION = None
    return _SDK if HAS_DOCKER else None


class _SdkCalls(object):
    """The SDK's APIClient with its errors translated into this file's (one set of except clauses
    for both ways of talking to the Engine)."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        errors = _SDK.errors

        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            except errors.NotFound as exc:
                raise NotFound(str(exc), getattr(exc, 'status_code', 404)) from exc
            except errors.APIError as exc:
                raise APIError(str(exc), exc.status_code) from exc
            except errors.DockerException as exc:
                raise DockerException(str(exc)) from exc
            finally:
                _log_call('sdk ' + name, started)
        return call


def _log_call(what, started):
    if CALL_LOG is not None:
        CALL_LOG.append((what, time.perf_counter() - started))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__('localhost', timeout=timeout)
        self.socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class EngineReader(object):
    """A small Docker Engine API client over its unix socket, on the standard library only.

    It answers the reads of a converge (the listings and inspects, the authorized_keys copy) with the
    same JSON and the same method names as the SDK's APIClient, and removes containers and volumes
    (an expiry). Creating, starting and updating go through the SDK. Its paths carry no API version: the
    Engine serves them at its own version, so nothing is negotiated (the SDK's `GET /version`). The
    API version the Engine announces in its answers (`Api-Version`) is what the SDK is then made with.
    Only `unix://` Engines: for tcp:// and ssh:// (TLS, SSH tunnels) RenterDocker reads through the SDK.
    """

    def __init__(self, socket_path, timeout=60):
        self.socket_path = socket_path
        self.timeout = timeout
        self.api_version = None
        self._conn = None

    @classmethod
    def for_host(cls, docker_host, timeout=60):
        """A reader of `docker_host`, or None when it is not a unix socket."""
        if isinstance(docker_host, str) and docker_host.startswith('unix://') and len(docker_host) > 7:
            return cls(docker_host[len('unix://'):], timeout)
        return None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _exchange(self, method, target):
        """(status, body) of one call, on the kept connection (made again once if the Engine closed it)."""
        for attempt in (1, 2):
            fresh = self._conn is None
            if fresh:
                self._conn = _UnixConnection(self.socket_path, self.timeout)
            try:
                self._conn.request(method, target, headers={'Accept': 'application/json'})
                response = self._conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if fresh or attempt == 2:
                    raise
                continue
            except (OSError, http.client.HTTPException):
                self.close()
                raise
            self.api_version = response.getheader('Api-Version') or self.api_version
            if response.will_close:
                self.close()
            return response.status, body
        raise AssertionError('unreachable')

    def get(self, path, params=None, method='GET'):
        """The body of `GET path?params`; NotFound / APIError for an HTTP error status."""
        target = path + ('?' + urlencode(params) if params else '')
        started = time.perf_counter()
        try:
            status, body = self._exchange(method, target)
        except (http.client.HTTPException, OSError) as exc:
            # For example no Engine at the socket: "GET /containers/json: [Errno 2] No such file or directory".
            raise DockerException('%s %s: %s' % (method, path, exc)) from exc
        finally:
            _log_call(method + ' ' + '/'.join('{id}' if len(part) > 24 else part for part in path.split('/')),
                      started)
        if status >= 400:
            try:
                detail = json.loads(body.decode('utf-8')).get('message')
            except (ValueError, UnicodeError, AttributeError):
                detail = body.decode('utf-8', 'replace')[:300]
            cls = NotFound if status == 404 else APIError
            raise cls('%d %s for %s %s: %s' % (status, 'Client Error' if status < 500 else 'Server Error',
                                               method, path, detail), status)
        return body

    def _json(self, path, params=None):
        return json.loads(self.get(path, params).decode('utf-8'))

    # The SDK's APIClient calls a converge reads with, with its signatures.

    def containers(self, all=False, filters=None):   # pylint: disable=redefined-builtin
        params = {'all': 1 if all else 0}
        if filters:
            params['filters'] = _filters(filters)
        return self._json('/containers/json', params)

    def inspect_container(self, container_id):
        return self._json('/containers/%s/json' % quote(container_id, safe=''))

    def volumes(self, filters=None):
        return self._json('/volumes', {'filters': _filters(filters)} if filters else None)

    def inspect_volume(self, name):
        return self._json('/volumes/%s' % quote(name, safe=''))

    def get_archive(self, container_id, path):
        """(chunks of the tar stream, None): the file `path` of the container as a tar archive."""
        body = self.get('/containers/%s/archive' % quote(container_id, safe=''), {'path': path})
        return [body], None

    # Removals, so that ending a lease needs no SDK either.

    def remove_container(self, container_id, force=False, v=False):
        self.get('/containers/%s' % quote(container_id, safe=''), {'force': int(force), 'v': int(v)}, 'DELETE')

    def remove_volume(self, name, force=False):
        self.get('/volumes/%s' % quote(name, safe=''), {'force': int(force)}, 'DELETE')


def _filters(filters):
    """Filters as the Engine takes them (as the SDK sends them): JSON of name -> list of strings."""
    converted = {}
    for name, value in filters.items():
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        converted[name] = value if isinstance(value, list) else [value]
    return json.dumps(converted)


@dataclass(frozen=True)
class Sandbox:
    """The module's sandbox settings for renter containers.

    bridge: Linux bridge of the renter network (the docker role's isolation rules name it).
    write_bps / write_iops: write budget on the lease disk's loop device (0: none).
    """
    bridge: str = 'p2pvps0'
    write_bps: int = 0
    write_iops: int = 0

    def spec(self):
        """One string for the container label: a change recreates the container (home kept)."""
        return 'v%s;net=%s/%s;wbps=%d;wiops=%d' % (SPEC_VERSION, RENTER_NETWORK, self.bridge,
                                                   self.write_bps, self.write_iops)


def tmpfs_mounts(memory_mb):
    """Size-capped tmpfs for the writable scratch paths (tmpfs pages count against the memory limit)."""
    scratch = min(1024, max(16, memory_mb // 4))
    return {
        '/tmp': 'rw,nosuid,nodev,size=%dm,mode=1777' % scratch,
        '/var/tmp': 'rw,nosuid,nodev,size=%dm,mode=1777' % scratch,
        '/run': 'rw,nosuid,nodev,noexec,size=16m,mode=755',
    }


def system_volume_name(lease_id, name):
    return '%s-%s' % (_lease.volume_name(lease_id), name)


def sdk_problem():
    """None when the Docker SDK is usable, else (message, traceback or None). Imports the SDK."""
    load_sdk()
    python = '%s %s (%s)' % (platform.python_implementation(), platform.python_version(),
                             os.sys.executable)
    if not HAS_DOCKER:
        return (missing_required_lib('docker') + ' Python used: %s.' % python, DOCKER_IMPORT_ERROR)
    if LooseVersion(DOCKER_VERSION) < LooseVersion(MIN_DOCKER_SDK):
        return ('The Docker SDK for Python (docker) %s is too old: %s or newer is needed. Python used: %s.'
                % (DOCKER_VERSION, MIN_DOCKER_SDK, python), None)
    if (REQUESTS_VERSION and LooseVersion(REQUESTS_VERSION) >= LooseVersion(NEW_REQUESTS)
            and LooseVersion(DOCKER_VERSION) < LooseVersion(MIN_DOCKER_SDK_WITH_NEW_REQUESTS)):
        return ('The Docker SDK for Python (docker) %s does not work with requests %s (requests %s or '
                'newer needs docker %s or newer). Python used: %s.'
                % (DOCKER_VERSION, REQUESTS_VERSION, NEW_REQUESTS, MIN_DOCKER_SDK_WITH_NEW_REQUESTS, python),
                None)
    return None


#: The Docker Engine option of the modules that use one (doc fragment p2pvps.fleet._device).
DOCKER_HOST_ARGS = dict(
    docker_host=dict(type='str', default='unix:///var/run/docker.sock'),
)


def engine_version(docker_host, timeout=5):
    """The Docker Engine's version through the Docker SDK, or None (no SDK, or no engine answers)."""
    docker = load_sdk()
    if docker is None:
        return None
    try:
        # A fixed API version: negotiating one ('auto', the SDK 7 default) is a GET /version of its own.
        client = docker.APIClient(base_url=docker_host, version=docker.constants.DEFAULT_DOCKER_API_VERSION,
                                  timeout=timeout)
        try:
            version = client.version(api_version=False).get('Version')
        finally:
            client.close()
    except (docker.errors.DockerException, OSError, ValueError):
        return None
    return _facts.parse_docker_version(version) if isinstance(version, str) else None


def engine_info(docker_host, timeout=10):
    """The Docker Engine's GET /info answer (a dict), or None (no answer). A unix socket is read with
    EngineReader; another host through the Docker SDK, when it can be imported."""
    try:
        reader = EngineReader.for_host(docker_host, timeout)
        if reader is not None:
            try:
                info = json.loads(reader.get('/info').decode('utf-8'))
            finally:
                reader.close()
        else:
            sdk = load_sdk()
            if sdk is None:
                return None
            client = sdk.APIClient(base_url=docker_host, version=sdk.constants.DEFAULT_DOCKER_API_VERSION,
                                   timeout=timeout)
            try:
                info = client.info()
            finally:
                client.close()
    except Exception:  # pylint: disable=broad-except
        # any failure to ask (no Engine, refused, garbage, an SDK error) is "no answer": the caller falls back
        return None
    return info if isinstance(info, dict) else None


def _run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RentalDockerError('%s failed (%d): %s' % (argv[0], proc.returncode,
                                                        proc.stderr.decode('utf-8', 'replace').strip()[-500:]))
    return proc.stdout.decode('utf-8', 'replace')


class LeaseDisk:
    """A per-lease ext4 file system in an image file allocated in full, loop-mounted by the module.

    The lease volumes bind `<mountpoint>/home` and `<mountpoint>/system/<dir>`, directories
    that exist only inside the mounted file system: when the file system is not mounted
    (after a reboot) the container fails to start instead of silently writing to the
    unlimited root disk, and the next converge mounts it and starts the container again.
    The image is allocated block by block when it is made (never sparse): a full SD card
    cannot make the renter's file system fail later.
    `<disk_dir>/<lease>.dev` links to the loop device, so the container's write budget,
    resolved by Docker at every start, follows the device across remounts.
    """

    def __init__(self, disk_dir, lease_id):
        self.lease_id = _lease.parse_lease_id(lease_id)
        self.image = os.path.join(disk_dir, lease_id + '.img')
        self.mountpoint = os.path.join(disk_dir, lease_id)
        self.device_dir = os.path.join(self.mountpoint, 'home')
        self.system_root = os.path.join(self.mountpoint, 'system')
        self.link = os.path.join(disk_dir, lease_id + '.dev')

    def system_dir(self, name):
        return os.path.join(self.system_root, name)

    @staticmethod
    def unsupported_reason():
        """None when this host can give leases a size-limited disk, else why not."""
        if os.geteuid() != 0:
            return 'the module does not run as root, so it cannot loop-mount a per-lease file system'
        for tool in ('mkfs.ext4', 'mount', 'umount', 'losetup'):
            if not shutil.which(tool) and not os.path.exists(os.path.join('/sbin', tool)):
                return '%s is not installed' % tool
        if not os.path.exists('/dev/loop-control'):
            return 'the kernel offers no loop devices (/dev/loop-control is missing)'
        return None

    def size_gb(self):
        try:
            return os.stat(self.image).st_size // GIB
        except OSError:
            return None

    def _mountinfo_line(self):
        """The /proc/self/mountinfo line of the mountpoint, or None when it is not mounted."""
        target = os.path.realpath(self.mountpoint)
        with open('/proc/self/mountinfo') as handle:
            for line in handle:
                fields = line.split(' ')
                if len(fields) > 4 and fields[4] == target:
                    return line
        return None

    def mounted(self):
        return self._mountinfo_line() is not None

    def mount_source(self):
        line = self._mountinfo_line()
        if line is None or ' - ' not in line:
            return None
        return line.split(' - ', 1)[1].split(' ')[1]

    def create(self, size_gb, owner=None):
        os.makedirs(os.path.dirname(self.image), mode=0o700, exist_ok=True)
        if not os.path.exists(self.image):
            tmp = self.image + '.tmp'
            with open(tmp, 'wb') as handle:
                os.posix_fallocate(handle.fileno(), 0, size_gb * GIB)
            os.chmod(tmp, 0o600)
            # nodiscard: mkfs would otherwise punch the freshly allocated blocks out again.
            # lazy_itable_init=0: the kernel's lazy init would zero the inode tables later through the
            # loop device, which punches them out of the image (some 16 MiB per GB no longer reserved).
            _run(['mkfs.ext4', '-q', '-F', '-m', '0', '-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=1',
                  '-L', 'p2pvps-lease', tmp])
            os.replace(tmp, self.image)
        self.ensure_mounted(owner)

    def ensure_mounted(self, owner=None):
        """Mount the lease file system (idempotent); True when a mount was done.

        owner: (uid, gid) that owns the home and system directories when they are made
        (the renter's root under user-namespace remapping; None: root).
        """
        if self.mounted():
            self._link_device()
            return False
        os.makedirs(self.mountpoint, mode=0o700, exist_ok=True)
        _run(['mount', '-t', 'ext4', '-o', 'loop,nosuid,nodev,nodiscard', self.image, self.mountpoint])
        self._refuse_discards()
        self.make_dirs(owner)
        self._link_device()
        return True

    def _refuse_discards(self):
        """Keep the image allocated: a discard (fstrim.timer, a renter's deletes) would punch holes
        in it, and refilling them on a full card fails. Best effort: /sys may be read-only."""
        source = self.mount_source() or ''
        try:
            with open('/sys/block/%s/queue/discard_max_bytes' % os.path.basename(source), 'w') as handle:
                handle.write('0')
        except OSError:
            pass

    def make_dirs(self, owner=None):
        for path in [self.device_dir] + [self.system_dir(name) for name in SYSTEM_DIRS]:
            if not os.path.isdir(path):
                os.makedirs(path, 0o755)
                if owner is not None:
                    os.chown(path, *owner)

    def reset_system(self, owner=None):
        """Forget the system directories (copied from an older image); the home stays."""
        if self.mounted() and os.path.isdir(self.system_root):
            shutil.rmtree(self.system_root)
            self.make_dirs(owner)

    def _link_device(self):
        source = self.mount_source()
        if source is None or not source.startswith('/dev/'):
            return
        try:
            if os.readlink(self.link) == source:
                return
        except OSError:
            pass
        tmp = self.link + '.tmp'
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(source, tmp)
        os.replace(tmp, self.link)

    def grow(self, size_gb):
        """Grow the image and its file system; online when mounted (needs CAP_SYS_RESOURCE).

        Returns False when the file system is mounted and could not be grown online: the
        caller then unmounts it (stopping the container) and calls grow() again.
        """
        if size_gb * GIB > os.stat(self.image).st_size:
            with open(self.image, 'r+b') as handle:
                os.posix_fallocate(handle.fileno(), 0, size_gb * GIB)
        if self.mounted():
            source = self.mount_source()
            try:
                _run(['losetup', '-c', source])
                _run(['resize2fs', source])
                return True
            except RentalDockerError:
                return False
        _run(['e2fsck', '-p', '-f', self.image])
        _run(['resize2fs', self.image])
        return True

    def unmount(self):
        if self.mounted():
            _run(['umount', self.mountpoint])

    def destroy(self):
        if os.path.isdir(self.mountpoint) and self.mounted():
            _run(['umount', self.mountpoint])
        if os.path.isdir(self.mountpoint) and not self.mounted():
            try:
                os.rmdir(self.mountpoint)
            except OSError:
                # something unexpected inside the mountpoint directory: leave it for the operator
                pass
        for path in (self.image, self.image + '.tmp', self.link):
            if os.path.lexists(path):
                os.unlink(path)


def root_owned_tar(files):
    """A tar archive (bytes) of (name, content bytes, mode) files owned by root, for put_archive."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as tar:
        for name, content, mode in files:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            info.uid = info.gid = 0
            info.mtime = int(time.time())
            info.uname = info.gname = 'root'
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


class RenterDocker:
    """Renter containers and lease volumes on one Docker Engine."""

    def __init__(self, docker_host, disk_dir, timeout=60):
        self.docker_host = docker_host
        self.timeout = timeout
        self.reader = EngineReader.for_host(docker_host, timeout)
        self._api = None
        self.disk_dir = disk_dir
        self.inspected = {}   # container id -> its last `docker inspect`, read once per run
        self.volume_options = None   # volume name -> driver options, from the last listing
        self.volume_labels = None    # volume name -> labels, from the last listing

    @property
    def api(self):
        """The SDK's APIClient for changes, made on first use (SdkMissing without a usable SDK). Its API
        version is the one the Engine announced to the reader: no `GET /version` to negotiate one."""
        if self._api is None:
            started = time.perf_counter()
            problem = sdk_problem()
            if problem:
                raise SdkMissing(*problem)
            version = (self.reader.api_version if self.reader is not None else None) or 'auto'
            self._api = _SdkCalls(_SDK.APIClient(base_url=self.docker_host, version=version,
                                                 timeout=max(self.timeout, CHANGE_TIMEOUT_S)))
            _log_call('import the SDK, make its client (version %s)' % version, started)
        return self._api

    @property
    def read(self):
        """What the reads and removals go through: the reader on a unix socket, else the SDK."""
        return self.reader if self.reader is not None else self.api

    # ------------------------------------------------------------ observe

    def renter_containers(self, recorded_keys=None):
        """The renter containers, observed.

        recorded_keys maps a lease id to the sha256 of the authorized_keys the module last wrote
        for it (its state file): the module is the only writer of that root-owned file, so a
        container of such a lease is not read, which saves Docker a copy out of the container on
        every converge (the most expensive call of a no-op). Other containers are read.
        """
        found = self.read.containers(all=True, filters={'label': '%s=%s' % (
            _rental.LABEL_ROLE, _rental.ROLE_RENTER)})
        observed = []
        for item in found:
            try:
                attrs = self.read.inspect_container(item['Id'])
            except NotFound:
                continue   # removed while we looked
            self.inspected[attrs['Id']] = attrs
            observed.append(self._observe(attrs, recorded_keys or {}))
        return observed

    def _inspect(self, container_id, fresh):
        """This run's `docker inspect` of the container (fresh: asked again, after a change)."""
        attrs = None if fresh else self.inspected.get(container_id)
        if attrs is None:
            attrs = self.inspected[container_id] = self.read.inspect_container(container_id)
        return attrs

    def container_state(self, container_id, fresh=False):
        return self._inspect(container_id, fresh).get('State') or {}

    def container_sandbox(self, container_id, fresh=False):
        """What the renter container `container_id` really enforces (see sandbox_report)."""
        attrs = self._inspect(container_id, fresh)
        if fresh or self.volume_options is None:
            self.lease_volumes()
        return sandbox_report(attrs, self.volume_options, self.disk_dir)

    def _observe(self, attrs, recorded_keys):
        labels = attrs.get('Config', {}).get('Labels') or {}
        host = attrs.get('HostConfig') or {}
        state = attrs.get('State') or {}
        lease_id = _safe(_lease.parse_lease_id, labels.get(_rental.LABEL_LEASE))
        username = _safe(_lease.parse_username, labels.get(_rental.LABEL_USER))
        expires = _safe(_lease.parse_time, labels.get(_rental.LABEL_EXPIRES))
        binding = _binding(host, _rental.RENTER_PORT)
        web = _binding(host, _rental.WEB_PORT)
        keys_hash = recorded_keys.get(lease_id)
        if keys_hash is None and username:
            keys_hash = self._keys_hash(attrs['Id'], username)
        if keys_hash is None:
            keys_hash = labels.get(_rental.LABEL_KEYS)
        return _rental.ObservedContainer(
            id=attrs['Id'],
            name=attrs.get('Name', '').lstrip('/'),
            lease_id=lease_id,
            running=bool(state.get('Running')),
            status=state.get('Status') or '',
            image=attrs.get('Config', {}).get('Image'),
            username=username,
            local_port=_port(binding),
            local_ip=binding.get('HostIp'),
            web_port=_port(web),
            web_ip=web.get('HostIp'),
            web_url=labels.get(_rental.LABEL_WEB_URL),
            spec=labels.get(_rental.LABEL_SPEC),
            memory_bytes=host.get('Memory') or None,
            nano_cpus=host.get('NanoCpus') or None,
            pids=host.get('PidsLimit') or None,
            keys_hash=keys_hash,
            expires_at=expires,
            created=attrs.get('Created', ''),
            started_at=state.get('StartedAt') or '',
            pid=state.get('Pid') or None,
        )

    def _keys_hash(self, container_id, username):
        """sha256 of the authorized_keys file really in the container (None if absent)."""
        try:
            stream, dummy = self.read.get_archive(container_id, '%s/%s' % (AUTHORIZED_KEYS_DIR, username))
        except NotFound:
            return None
        except APIError:
            # e.g. the lease disk is not mounted (check mode after a reboot): fall back to the label
            return None
        data = b''.join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                return None
            return hashlib.sha256(tar.extractfile(member).read()).hexdigest()

    def lease_volumes(self):
        volumes = self.read.volumes(filters={'label': '%s=%s' % (_rental.LABEL_ROLE, _rental.ROLE_RENTER)})
        self.volume_options = {item.get('Name'): item.get('Options') or {} for item in volumes.get('Volumes') or []}
        self.volume_labels = {item.get('Name'): item.get('Labels') or {} for item in volumes.get('Volumes') or []}
        observed = []
        for item in volumes.get('Volumes') or []:
            lease_id = _safe(_lease.parse_lease_id, (item.get('Labels') or {}).get(_rental.LABEL_LEASE))
            if lease_id is None or item.get('Name') != _lease.volume_name(lease_id):
                continue
            observed.append(self._observe_volume(item, lease_id))
        return observed

    def _observe_volume(self, volume, lease_id):
        """The lease volume, with the size of its lease disk and whether that is mounted (None: no disk)."""
        if (volume.get('Labels') or {}).get(LABEL_DISK) != DISK_LOOP:
            return _rental.ObservedVolume(lease_id, volume['Name'])
        disk = LeaseDisk(self.disk_dir, lease_id)
        size_gb = disk.size_gb()
        mounted = None if size_gb is None else disk.mounted()
        return _rental.ObservedVolume(lease_id, volume['Name'], size_gb, mounted)

    def mount_disk(self, lease_id):
        """Mount the lease's disk again (a loop mount does not survive a reboot)."""
        LeaseDisk(self.disk_dir, lease_id).ensure_mounted()

    def disk_status(self, lease_id, fresh=True):
        """(enforced, reason) for the volume of a lease that exists (None: no volume).

        fresh=False: from this run's volume listing (lease_volumes), when nothing changed since.
        """
        name = _lease.volume_name(lease_id)
        if not fresh and self.volume_labels is not None:
            labels = self.volume_labels.get(name)
            if labels is None:
                return None, 'no lease volume'
        else:
            try:
                labels = self.read.inspect_volume(name).get('Labels') or {}
            except NotFound:
                return None, 'no lease volume'
        if labels.get(LABEL_DISK) == DISK_LOOP:
            disk = LeaseDisk(self.disk_dir, lease_id)
            return True, 'the lease volume is a %d GiB ext4 file system in a loop-mounted image (%s)' % (
                disk.size_gb() or 0, disk.image)
        return False, labels.get('p2pvps.disk_reason') or (
            'the lease volume is a plain Docker volume without a size limit')

    # ------------------------------------------------------------ change

    def engine_owner(self):
        """(uid, gid) of the renter's root on the host when Docker remaps user namespaces, else None.

        With userns-remap, Docker keeps its data in `<data-root>/<uid>.<gid>`: that uid is
        root inside the containers and an unprivileged user on the device.
        """
        info = self.api.info()
        if not any('name=userns' in option for option in info.get('SecurityOptions') or []):
            return None
        tail = os.path.basename(info.get('DockerRootDir') or '')
        uid, dot, gid = tail.partition('.')
        if not (dot and uid.isdigit() and gid.isdigit()):
            raise RentalDockerError('Docker remaps user namespaces, but its data root %r does not tell '
                                    'the remapped uid' % info.get('DockerRootDir'))
        return int(uid), int(gid)

    def ensure_network(self, bridge):
        """The renter network: its own Linux bridge, no traffic between its containers, no IPv6."""
        try:
            network = self.api.inspect_network(RENTER_NETWORK)
        except NotFound:
            try:
                self.api.create_network(
                    RENTER_NETWORK, driver='bridge', enable_ipv6=False, check_duplicate=True,
                    labels={_rental.LABEL_ROLE: 'renter-network'},
                    options={'com.docker.network.bridge.name': bridge,
                             'com.docker.network.bridge.enable_icc': 'false'})
            except APIError as exc:
                if not exc.is_client_error():   # 409: made meanwhile by another converge
                    raise
            network = self.api.inspect_network(RENTER_NETWORK)
        options = network.get('Options') or {}
        if options.get('com.docker.network.bridge.enable_icc') != 'false' or network.get('EnableIPv6') \
                or options.get('com.docker.network.bridge.name') != bridge:
            raise RentalDockerError(
                'the Docker network %s exists but is not the renter network (it needs bridge %s, '
                'inter-container traffic off and no IPv6); remove it and converge again'
                % (RENTER_NETWORK, bridge))

    def renter_network_icc(self):
        """V(off)/V(on): traffic between containers of the renter network; None before it exists."""
        try:
            network = self.api.inspect_network(RENTER_NETWORK)
        except NotFound:
            return None
        icc = (network.get('Options') or {}).get('com.docker.network.bridge.enable_icc')
        return 'off' if icc == 'false' else 'on'

    def ensure_volume(self, lease, require_disk_limit=False, owner=None):
        """Create the lease's volumes if missing, mount its disk if it has one; (enforced, reason)."""
        name = lease.volume_name
        try:
            self.api.inspect_volume(name)
        except NotFound:
            self._create_volume(lease, require_disk_limit, owner)
        enforced, reason = self.disk_status(lease.id)
        disk = LeaseDisk(self.disk_dir, lease.id)
        if enforced:
            disk.ensure_mounted(owner)
            disk.make_dirs(owner)
        elif require_disk_limit:
            raise RentalDockerError('a disk limit is required but not enforced: %s' % reason)
        self._ensure_system_volumes(lease.id, disk if enforced else None)
        return enforced, reason

    def _create_volume(self, lease, require_disk_limit, owner):
        labels = {_rental.LABEL_ROLE: _rental.ROLE_RENTER, _rental.LABEL_LEASE: lease.id}
        reason = LeaseDisk.unsupported_reason()
        if reason is None:
            disk = LeaseDisk(self.disk_dir, lease.id)
            try:
                disk.create(lease.limits.disk_gb, owner)
            except (OSError, RentalDockerError) as exc:
                reason = 'creating the loop-mounted ext4 file system failed: %s' % exc
                _safe_destroy(disk)
            else:
                labels[LABEL_DISK] = DISK_LOOP
                self.api.create_volume(name=lease.volume_name, driver='local', labels=labels, driver_opts={
                    'type': 'none', 'o': 'bind', 'device': disk.device_dir})
                return
        if require_disk_limit:
            raise RentalDockerError('a disk limit is required but cannot be enforced: %s' % reason)
        labels[LABEL_DISK] = DISK_NONE
        labels['p2pvps.disk_reason'] = reason[:200]
        self.api.create_volume(name=lease.volume_name, driver='local', labels=labels)

    def _lease_volume_names(self, lease_id, mount=None):
        label = '%s=%s' % (_rental.LABEL_LEASE, lease_id)
        filters = {'label': [label, '%s=%s' % (LABEL_MOUNT, mount)] if mount else [label]}
        return [item['Name'] for item in self.read.volumes(filters=filters).get('Volumes') or []]

    def _ensure_system_volumes(self, lease_id, disk):
        """The volumes of the writable system directories: on the lease disk when it is enforced."""
        present = set(self._lease_volume_names(lease_id, 'system'))
        for name in SYSTEM_DIRS:
            volume = system_volume_name(lease_id, name)
            if volume in present:
                continue
            labels = {_rental.LABEL_ROLE: _rental.ROLE_RENTER, _rental.LABEL_LEASE: lease_id, LABEL_MOUNT: 'system'}
            options = None
            if disk is not None:
                options = {'type': 'none', 'o': 'bind', 'device': disk.system_dir(name)}
            self.api.create_volume(name=volume, driver='local', labels=labels, driver_opts=options)

    def reset_system(self, lease_id, owner=None):
        """Remove the lease's copies of the system directories (the home volume stays)."""
        for name in self._lease_volume_names(lease_id, 'system'):
            self._remove_volume_named(name)
        LeaseDisk(self.disk_dir, lease_id).reset_system(owner)

    def create(self, lease, publish, sandbox, owner=None, login_dir=None, prepare=None):
        """Create and start the renter container of `lease` (its volumes must exist); its id.

        owner: the renter's root on the host under user-namespace remapping (see engine_owner);
        only then may the renter log in as root (root in the container, nobody on the device).
        login_dir: the lease's login directory on the device, mounted read-only (_renter_login).
        prepare: called with the new container's id before its first start (the host key goes in then).
        """
        root_login = owner is not None
        host_config = self.api.create_host_config(
            binds=self._binds(lease, login_dir),
            port_bindings=_port_bindings(publish),
            # Never started by dockerd itself: at boot that would be before the agent mounts the lease
            # disk, onto the bare mountpoints (writes land on the device's disk; Docker 20.10 also
            # leaks the volumes' mount count and refuses to remove them). The agent mounts, then starts.
            restart_policy={'Name': 'no'},
            mem_limit=lease.limits.memory_bytes,
            memswap_limit=lease.limits.memory_bytes,
            nano_cpus=lease.limits.nano_cpus,
            pids_limit=lease.limits.pids,
            oom_score_adj=OOM_SCORE_ADJ,
            read_only=True,
            tmpfs=tmpfs_mounts(lease.limits.memory_mb),
            sysctls={'net.ipv6.conf.all.disable_ipv6': '1', 'net.ipv6.conf.default.disable_ipv6': '1'},
            security_opt=['no-new-privileges'],
            cap_drop=['ALL'],
            cap_add=CAP_ADD + (CAP_ADD_ROOT if root_login else []),
            network_mode=RENTER_NETWORK,
            privileged=False,
            **self._write_budget(lease.id, sandbox)
        )
        created = self.api.create_container(
            image=lease.image,
            name=lease.container_name,
            labels=_labels(lease, publish),
            environment=_environment(lease, root_login),
            ports=[int(port.split('/')[0]) for port in _port_bindings(publish)],
            host_config=host_config,
            hostname=lease.container_name[:63],
        )
        if prepare is not None:
            prepare(created['Id'])
        self.api.start(created['Id'])
        return created['Id']

    def _binds(self, lease, login_dir=None):
        binds = {lease.volume_name: {'bind': '%s/%s' % (RENTER_HOME, lease.username), 'mode': 'rw'}}
        for name in SYSTEM_DIRS:
            binds[system_volume_name(lease.id, name)] = {'bind': '/' + name, 'mode': 'rw'}
        if login_dir is not None:
            binds[login_dir] = {'bind': _renter_login.CONTAINER_LOGIN_DIR, 'mode': 'ro'}
        return binds

    def has_login_dir(self, container_id):
        """Whether the container mounts a lease login directory (containers made before it existed do not)."""
        mounts = self._inspect(container_id, False).get('Mounts') or []
        return any(m.get('Destination') == _renter_login.CONTAINER_LOGIN_DIR for m in mounts)

    def root_login(self, container_id):
        """Whether the renter of the container may log in as root (what its init was told at creation)."""
        env = self._inspect(container_id, False).get('Config', {}).get('Env') or []
        return 'P2PVPS_ROOT_LOGIN=1' in env

    def host_public_key(self, container_id):
        """The host public key line in the container (its /etc volume), or None."""
        try:
            stream, dummy = self.read.get_archive(container_id, _renter_login.HOST_KEY_PATH + '.pub')
        except (NotFound, APIError):
            return None
        with tarfile.open(fileobj=io.BytesIO(b''.join(stream))) as tar:
            member = tar.next()
            if member is None or not member.isfile() or member.size > 4096:
                return None
            return tar.extractfile(member).read().decode('ascii', 'replace')

    def put_host_key(self, container_id, host_key):
        """Write the lease's host key pair into the container's /etc/ssh (root-owned; the private key 0600)."""
        directory, name = _renter_login.HOST_KEY_PATH.rsplit('/', 1)
        archive = root_owned_tar(((name, host_key.private, 0o600),
                                  (name + '.pub', (host_key.public + '\n').encode('ascii'), 0o644)))
        if not self.api.put_archive(container_id, directory, archive):
            raise RentalDockerError('writing the host key into the container failed')

    def _write_budget(self, lease_id, sandbox):
        """Docker's write limits on the lease disk's loop device (through the link that follows it)."""
        disk = LeaseDisk(self.disk_dir, lease_id)
        if not (sandbox.write_bps or sandbox.write_iops) or not os.path.exists(disk.link):
            return {}
        budget = {}
        if sandbox.write_bps:
            budget['device_write_bps'] = [{'Path': disk.link, 'Rate': sandbox.write_bps}]
        if sandbox.write_iops:
            budget['device_write_iops'] = [{'Path': disk.link, 'Rate': sandbox.write_iops}]
        return budget

    def start(self, container_id, lease_id=None):
        if lease_id is not None:
            enforced, dummy = self.disk_status(lease_id)
            if enforced:
                LeaseDisk(self.disk_dir, lease_id).ensure_mounted()
        self.api.start(container_id)

    def stop(self, container_id):
        """Stop (freeze) a renter container; Docker keeps a stopped container stopped across its own and the
        device's restarts (restart policy unless-stopped or no)."""
        self.api.stop(container_id, timeout=10)

    def update_keys(self, container_id, lease):
        """Rewrite /etc/ssh/authorized_keys/<user> and .../root (root-owned, 0644) without recreating.

        root's copy is only read by sshd where the renter may log in as root (user namespaces).
        """
        content = lease.authorized_keys.encode('utf-8')
        archive = root_owned_tar((name, content, 0o644) for name in (lease.username, 'root'))
        if not self.api.put_archive(container_id, AUTHORIZED_KEYS_DIR, archive):
            raise RentalDockerError('writing the authorized keys into the container failed')

    def update_limits(self, container_id, lease):
        api = self.api
        # The SDK's update_container() knows neither NanoCpus nor PidsLimit: post the API call.
        data = {
            'Memory': lease.limits.memory_bytes,
            'MemorySwap': lease.limits.memory_bytes,
            'NanoCpus': lease.limits.nano_cpus,
            'PidsLimit': lease.limits.pids,
        }
        res = api._post_json(api._url('/containers/{0}/update', container_id), data=data)
        return api._result(res, True)

    def remove_container(self, container_id):
        try:
            self.read.remove_container(container_id, force=True, v=False)
        except NotFound:
            pass

    def remove_volume(self, lease_id):
        """Remove every volume of the lease (home and system directories) and its disk.

        Returns what was removed, for the wipe receipt: {volumes: names, disk_image: path or None,
        bytes: the disk image's size, else what the volumes held (None where it cannot be measured)}.
        """
        present = sorted(self._lease_volume_names(lease_id))
        disk = LeaseDisk(self.disk_dir, lease_id)
        removed = {'volumes': present, 'disk_image': None, 'bytes': None}
        try:
            removed['bytes'] = os.stat(disk.image).st_size
            removed['disk_image'] = disk.image
        except OSError:
            removed['bytes'] = self._volumes_bytes(present)
        names = set(present) | {_lease.volume_name(lease_id)}
        for name in sorted(names):
            self._remove_volume_named(name)
        disk.destroy()
        return removed

    def _volumes_bytes(self, names):
        """Bytes of the files in the volumes (no lease disk); None when a volume cannot be read."""
        total = 0
        for name in names:
            try:
                mountpoint = self.read.inspect_volume(name)['Mountpoint']
            except (NotFound, KeyError):
                continue
            if not os.path.isdir(mountpoint):
                return None
            for root, dirs, files in os.walk(mountpoint):
                for entry in files:
                    try:
                        total += os.lstat(os.path.join(root, entry)).st_size
                    except OSError:
                        pass
        return total

    def _remove_volume_named(self, name):
        try:
            self.read.remove_volume(name, force=True)
        except NotFound:
            pass

    def resize_disk(self, lease, container_id=None):
        """Grow the lease disk; when it cannot grow online, stop the container for it."""
        disk = LeaseDisk(self.disk_dir, lease.id)
        if disk.grow(lease.limits.disk_gb):
            return
        running = False
        if container_id is not None:
            running = bool(self.read.inspect_container(container_id)['State'].get('Running'))
            self.stop(container_id)
        disk.unmount()
        disk.grow(lease.limits.disk_gb)
        disk.ensure_mounted()
        if running:
            self.api.start(container_id)

    def image_allowed(self, image, allowed):
        """Whether `image` is in `allowed`: by the exact name, or by the local image's id or repo digest."""
        if image in allowed:
            return True
        try:
            attrs = self.api.inspect_image(image)
        except NotFound:
            return False
        return attrs.get('Id') in allowed or any(digest in allowed for digest in attrs.get('RepoDigests') or [])

    def image_present(self, image):
        try:
            self.api.inspect_image(image)
            return True
        except NotFound:
            return False


def sandbox_report(attrs, volume_options, disk_dir):
    """What a renter container enforces, read from its `docker inspect` (for status reports).

    volume_options: volume name -> the volume's driver options (from the volume listing).
    disk: `whole` when the root file system is read-only, the scratch paths are size-capped
    tmpfs and every volume binds a directory of the loop-mounted lease disk; `home` when only
    the renter's home does (containers made by older versions of this collection); else `none`.
    """
    host = attrs.get('HostConfig') or {}
    env = dict(item.partition('=')[::2] for item in (attrs.get('Config') or {}).get('Env') or [])
    disk_root = os.path.realpath(disk_dir) + os.sep
    volumes = [m for m in attrs.get('Mounts') or [] if m.get('Type') == 'volume']
    on_disk = [m for m in volumes if _volume_device(volume_options, m).startswith(disk_root)]
    tmpfs = host.get('Tmpfs') or {}
    capped = all('size=' in (tmpfs.get(path) or '') for path in ('/tmp', '/var/tmp', '/run'))
    if host.get('ReadonlyRootfs') and capped and volumes and len(on_disk) == len(volumes):
        disk = 'whole'
    elif any(m.get('Destination', '').startswith(RENTER_HOME + '/') for m in on_disk):
        disk = 'home'
    else:
        disk = 'none'
    sysctls = host.get('Sysctls') or {}
    write_bps = host.get('BlkioDeviceWriteBps') or []
    write_iops = host.get('BlkioDeviceWriteIOps') or []
    return {
        'disk': disk,
        'read_only_root': bool(host.get('ReadonlyRootfs')),
        'ipv6': 'off' if sysctls.get('net.ipv6.conf.all.disable_ipv6') == '1' else 'on',
        'network': host.get('NetworkMode'),
        'user_namespace': 'on' if env.get('P2PVPS_ROOT_LOGIN') == '1' else 'off',
        'oom_score_adj': host.get('OomScoreAdj'),
        'write_budget_bps': write_bps[0].get('Rate') if write_bps else None,
        'write_budget_iops': write_iops[0].get('Rate') if write_iops else None,
    }


def _volume_device(volume_options, mount):
    device = (volume_options.get(mount.get('Name')) or {}).get('device')
    return os.path.realpath(device) if device else ''


def _port_bindings(publish):
    bindings = {_rental.RENTER_PORT: ('127.0.0.1', publish.ssh_port)}
    if publish.web_port is not None:
        bindings[_rental.WEB_PORT] = ('127.0.0.1', publish.web_port)
    return bindings


def _labels(lease, publish):
    labels = {
        _rental.LABEL_ROLE: _rental.ROLE_RENTER,
        _rental.LABEL_LEASE: lease.id,
        _rental.LABEL_USER: lease.username,
        _rental.LABEL_KEYS: lease.keys_hash,
        _rental.LABEL_EXPIRES: _lease.format_time(lease.expires_at),
        _rental.LABEL_SPEC: publish.spec or '',
    }
    if lease.web is not None:
        labels[_rental.LABEL_WEB_URL] = lease.web.url
    return labels


def _environment(lease, root_login):
    """What the renter image's init reads (roles/renter_image/files/renter/rootfs/usr/local/sbin/p2pvps-renter-init)."""
    limits = lease.limits
    return {
        'P2PVPS_RENTER_USER': lease.username,
        'P2PVPS_AUTHORIZED_KEYS': '\n'.join(lease.keys),
        'P2PVPS_ROOT_LOGIN': '1' if root_login else '0',
        'P2PVPS_WEB_URL': '' if lease.web is None else lease.web.url,
        'P2PVPS_WEB_PORT': _rental.WEB_PORT.split('/', maxsplit=1)[0],
        'P2PVPS_LIMITS': '%d MB memory, %g CPU, %d processes, %d GB disk' % (
            limits.memory_mb, limits.cpus, limits.pids, limits.disk_gb),
    }


def _binding(host_config, port):
    """The first host binding of a container port ({} when it is not published)."""
    return ((host_config.get('PortBindings') or {}).get(port) or [{}])[0] or {}


def _port(binding):
    port = binding.get('HostPort')
    return int(port) if port and str(port).isdigit() else None


def _safe(parse, value):
    if value is None:
        return None
    try:
        return parse(value)
    except _lease.LeaseError:
        return None


def _safe_destroy(disk):
    try:
        disk.destroy()
    except (OSError, RentalDockerError):
        pass
