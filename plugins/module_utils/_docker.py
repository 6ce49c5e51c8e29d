# -*- coding: utf-8 -*-
# Copyright (c) 2026, p2pvps.fleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE: this file is part of p2pvps.fleet's internals. It is not a public API
# of the collection and may change at any time, without deprecation. Do not use
# it from outside the collection.
#
# The one Docker SDK layer of the collection: observe renter containers and lease
# volumes, create / start / update / remove them, and the per-lease disk (a loop-
# mounted ext4 file system where the host allows it). Decisions live in _rental.py.

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import subprocess
import tarfile
import time
import traceback

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.compat.version import LooseVersion

from ansible_collections.p2pvps.fleet.plugins.module_utils import _rental

DOCKER_IMPORT_ERROR = None
try:
    import docker
    from docker.errors import APIError, DockerException, NotFound
    HAS_DOCKER = True
    DOCKER_VERSION = getattr(docker, '__version__', '0')
except ImportError:
    DOCKER_IMPORT_ERROR = traceback.format_exc()
    HAS_DOCKER = False
    DOCKER_VERSION = None

    class DockerException(Exception):  # type: ignore[no-redef]
        """Stand-in so this file loads without the Docker SDK."""

    class NotFound(DockerException):  # type: ignore[no-redef]
        pass

    APIError = DockerException  # type: ignore[misc]

try:
    import requests
    REQUESTS_VERSION = getattr(requests, '__version__', None)
except ImportError:
    REQUESTS_VERSION = None

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
DISK_LOOP = 'ext4-loop'
DISK_NONE = 'none'
GIB = 1024 ** 3


class RentalDockerError(Exception):
    """A Docker or disk operation of the rental converge failed."""


def sdk_problem():
    """None when the Docker SDK is usable, else (message, traceback or None)."""
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


def _run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RentalDockerError('%s failed (%d): %s' % (argv[0], proc.returncode,
                                                        proc.stderr.decode('utf-8', 'replace').strip()[-500:]))
    return proc.stdout.decode('utf-8', 'replace')


class LeaseDisk:
    """A per-lease ext4 file system in a sparse image file, loop-mounted by the module.

    The lease volume binds `<mountpoint>/home`, a directory that exists only inside the
    mounted file system: when the file system is not mounted (after a reboot) the
    container fails to start instead of silently writing to the unlimited root disk,
    and the next converge mounts it and starts the container again.
    """

    def __init__(self, disk_dir, lease_id):
        self.lease_id = _rental.parse_lease_id(lease_id)
        self.image = os.path.join(disk_dir, lease_id + '.img')
        self.mountpoint = os.path.join(disk_dir, lease_id)
        self.device_dir = os.path.join(self.mountpoint, 'home')

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

    def create(self, size_gb):
        os.makedirs(os.path.dirname(self.image), mode=0o700, exist_ok=True)
        if not os.path.exists(self.image):
            tmp = self.image + '.tmp'
            with open(tmp, 'wb') as handle:
                handle.truncate(size_gb * GIB)
            os.chmod(tmp, 0o600)
            _run(['mkfs.ext4', '-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1',
                  '-L', 'p2pvps-lease', tmp])
            os.replace(tmp, self.image)
        self.ensure_mounted()

    def ensure_mounted(self):
        """Mount the lease file system (idempotent); True when a mount was done."""
        if self.mounted():
            return False
        os.makedirs(self.mountpoint, mode=0o700, exist_ok=True)
        _run(['mount', '-t', 'ext4', '-o', 'loop,nosuid,nodev', self.image, self.mountpoint])
        if not os.path.isdir(self.device_dir):
            os.mkdir(self.device_dir, 0o755)
        return True

    def grow(self, size_gb):
        """Grow the image and its file system; online when mounted (needs CAP_SYS_RESOURCE).

        Returns False when the file system is mounted and could not be grown online: the
        caller then unmounts it (stopping the container) and calls grow() again.
        """
        if size_gb * GIB > os.stat(self.image).st_size:
            with open(self.image, 'r+b') as handle:
                handle.truncate(size_gb * GIB)
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
        for path in (self.image, self.image + '.tmp'):
            if os.path.exists(path):
                os.unlink(path)


class RenterDocker:
    """Renter containers and lease volumes on one Docker Engine."""

    def __init__(self, docker_host, disk_dir, timeout=60):
        self.client = docker.DockerClient(base_url=docker_host, version='auto', timeout=timeout)
        self.disk_dir = disk_dir

    # ------------------------------------------------------------ observe

    def renter_containers(self, recorded_keys=None):
        """The renter containers, observed.

        recorded_keys maps a lease id to the sha256 of the authorized_keys the module last wrote
        for it (its state file): the module is the only writer of that root-owned file, so a
        container of such a lease is not read, which saves Docker a copy out of the container on
        every converge (the most expensive call of a no-op). Other containers are read.
        """
        found = self.client.api.containers(all=True, filters={'label': '%s=%s' % (
            _rental.LABEL_ROLE, _rental.ROLE_RENTER)})
        observed = []
        for item in found:
            try:
                attrs = self.client.api.inspect_container(item['Id'])
            except NotFound:
                continue   # removed while we looked
            observed.append(self._observe(attrs, recorded_keys or {}))
        return observed

    def _observe(self, attrs, recorded_keys):
        labels = attrs.get('Config', {}).get('Labels') or {}
        host = attrs.get('HostConfig') or {}
        state = attrs.get('State') or {}
        lease_id = _safe(_rental.parse_lease_id, labels.get(_rental.LABEL_LEASE))
        username = _safe(_rental.parse_username, labels.get(_rental.LABEL_USER))
        expires = _safe(_rental.parse_time, labels.get(_rental.LABEL_EXPIRES))
        binding = ((host.get('PortBindings') or {}).get(_rental.RENTER_PORT) or [{}])[0] or {}
        port = binding.get('HostPort')
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
            local_port=int(port) if port and str(port).isdigit() else None,
            local_ip=binding.get('HostIp'),
            memory_bytes=host.get('Memory') or None,
            nano_cpus=host.get('NanoCpus') or None,
            pids=host.get('PidsLimit') or None,
            keys_hash=keys_hash,
            expires_at=expires,
            created=attrs.get('Created', ''),
        )

    def _keys_hash(self, container_id, username):
        """sha256 of the authorized_keys file really in the container (None if absent)."""
        try:
            stream, dummy = self.client.api.get_archive(container_id, '%s/%s' % (AUTHORIZED_KEYS_DIR, username))
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
        volumes = self.client.api.volumes(filters={'label': '%s=%s' % (_rental.LABEL_ROLE, _rental.ROLE_RENTER)})
        observed = []
        for item in volumes.get('Volumes') or []:
            lease_id = _safe(_rental.parse_lease_id, (item.get('Labels') or {}).get(_rental.LABEL_LEASE))
            if lease_id is None or item.get('Name') != _rental.volume_name(lease_id):
                continue
            observed.append(_rental.ObservedVolume(lease_id, item['Name'], self._volume_disk_gb(item, lease_id)))
        return observed

    def mount_lease_disks(self, volumes):
        """Mount the file systems of loop-backed lease `volumes` (lost on reboot); the lease ids mounted."""
        mounted = []
        for volume in volumes:
            if volume.disk_gb is None:
                continue
            disk = LeaseDisk(self.disk_dir, volume.lease_id)
            if os.path.exists(disk.image) and disk.ensure_mounted():
                mounted.append(volume.lease_id)
        return mounted

    def _volume_disk_gb(self, volume, lease_id):
        if (volume.get('Labels') or {}).get(LABEL_DISK) != DISK_LOOP:
            return None
        return LeaseDisk(self.disk_dir, lease_id).size_gb()

    def disk_status(self, lease_id):
        """(enforced, reason) for the volume of a lease that exists."""
        try:
            volume = self.client.api.inspect_volume(_rental.volume_name(lease_id))
        except NotFound:
            return None, 'no lease volume'
        if (volume.get('Labels') or {}).get(LABEL_DISK) == DISK_LOOP:
            disk = LeaseDisk(self.disk_dir, lease_id)
            return True, 'the lease volume is a %d GiB ext4 file system in a loop-mounted image (%s)' % (
                disk.size_gb() or 0, disk.image)
        return False, (volume.get('Labels') or {}).get('p2pvps.disk_reason') or (
            'the lease volume is a plain Docker volume without a size limit')

    # ------------------------------------------------------------ change

    def ensure_volume(self, lease, require_disk_limit=False):
        """Create the lease volume if missing, mount its disk if it has one; (enforced, reason)."""
        name = lease.volume_name
        try:
            self.client.api.inspect_volume(name)
        except NotFound:
            self._create_volume(lease, require_disk_limit)
        enforced, reason = self.disk_status(lease.id)
        if enforced:
            LeaseDisk(self.disk_dir, lease.id).ensure_mounted()
        elif require_disk_limit:
            raise RentalDockerError('a disk limit is required but not enforced: %s' % reason)
        return enforced, reason

    def _create_volume(self, lease, require_disk_limit):
        labels = {_rental.LABEL_ROLE: _rental.ROLE_RENTER, _rental.LABEL_LEASE: lease.id}
        reason = LeaseDisk.unsupported_reason()
        if reason is None:
            disk = LeaseDisk(self.disk_dir, lease.id)
            try:
                disk.create(lease.limits.disk_gb)
            except (OSError, RentalDockerError) as exc:
                reason = 'creating the loop-mounted ext4 file system failed: %s' % exc
                _safe_destroy(disk)
            else:
                labels[LABEL_DISK] = DISK_LOOP
                self.client.api.create_volume(name=lease.volume_name, driver='local', labels=labels, driver_opts={
                    'type': 'none', 'o': 'bind', 'device': disk.device_dir})
                return
        if require_disk_limit:
            raise RentalDockerError('a disk limit is required but cannot be enforced: %s' % reason)
        labels[LABEL_DISK] = DISK_NONE
        labels['p2pvps.disk_reason'] = reason[:200]
        self.client.api.create_volume(name=lease.volume_name, driver='local', labels=labels)

    def create(self, lease, local_port):
        """Create and start the renter container of `lease` (its volume must exist); its id."""
        labels = {
            _rental.LABEL_ROLE: _rental.ROLE_RENTER,
            _rental.LABEL_LEASE: lease.id,
            _rental.LABEL_USER: lease.username,
            _rental.LABEL_KEYS: lease.keys_hash,
            _rental.LABEL_EXPIRES: _rental.format_time(lease.expires_at),
        }
        host_config = self.client.api.create_host_config(
            binds={lease.volume_name: {'bind': '%s/%s' % (RENTER_HOME, lease.username), 'mode': 'rw'}},
            port_bindings={_rental.RENTER_PORT: ('127.0.0.1', local_port)},
            restart_policy={'Name': 'unless-stopped'},
            mem_limit=lease.limits.memory_bytes,
            memswap_limit=lease.limits.memory_bytes,
            nano_cpus=lease.limits.nano_cpus,
            pids_limit=lease.limits.pids,
            security_opt=['no-new-privileges'],
            cap_drop=['ALL'],
            cap_add=list(CAP_ADD),
            network_mode='bridge',
            privileged=False,
        )
        created = self.client.api.create_container(
            image=lease.image,
            name=lease.container_name,
            labels=labels,
            environment={'P2PVPS_RENTER_USER': lease.username,
                         'P2PVPS_AUTHORIZED_KEYS': '\n'.join(lease.keys)},
            ports=[2222],
            host_config=host_config,
            hostname=lease.container_name[:63],
        )
        self.client.api.start(created['Id'])
        return created['Id']

    def start(self, container_id, lease_id=None):
        if lease_id is not None:
            enforced, dummy = self.disk_status(lease_id)
            if enforced:
                LeaseDisk(self.disk_dir, lease_id).ensure_mounted()
        self.client.api.start(container_id)

    def update_keys(self, container_id, lease):
        """Rewrite /etc/ssh/authorized_keys/<user> (root-owned, 0644) without recreating."""
        content = lease.authorized_keys.encode('utf-8')
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w') as tar:
            info = tarfile.TarInfo(lease.username)
            info.size = len(content)
            info.mode = 0o644
            info.uid = info.gid = 0
            info.mtime = int(time.time())
            info.uname = info.gname = 'root'
            tar.addfile(info, io.BytesIO(content))
        if not self.client.api.put_archive(container_id, AUTHORIZED_KEYS_DIR, buf.getvalue()):
            raise RentalDockerError('writing the authorized keys into the container failed')

    def update_limits(self, container_id, lease):
        api = self.client.api
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
            self.client.api.remove_container(container_id, force=True, v=False)
        except NotFound:
            pass

    def remove_volume(self, lease_id):
        try:
            self.client.api.remove_volume(_rental.volume_name(lease_id), force=True)
        except NotFound:
            pass
        LeaseDisk(self.disk_dir, lease_id).destroy()

    def resize_disk(self, lease, container_id=None):
        """Grow the lease disk; when it cannot grow online, stop the container for it."""
        disk = LeaseDisk(self.disk_dir, lease.id)
        if disk.grow(lease.limits.disk_gb):
            return
        running = False
        if container_id is not None:
            running = bool(self.client.api.inspect_container(container_id)['State'].get('Running'))
            self.client.api.stop(container_id, timeout=10)
        disk.unmount()
        disk.grow(lease.limits.disk_gb)
        disk.ensure_mounted()
        if running:
            self.client.api.start(container_id)

    def image_present(self, image):
        try:
            self.client.api.inspect_image(image)
            return True
        except NotFound:
            return False


def _safe(parse, value):
    if value is None:
        return None
    try:
        return parse(value)
    except _rental.LeaseError:
        return None


def _safe_destroy(disk):
    try:
        disk.destroy()
    except (OSError, RentalDockerError):
        pass
