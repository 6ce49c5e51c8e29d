"""The emulated job's checks (docs/emulated-architectures.md), run by scripts/emulated-arch.sh as root
after it has built p2pvps/device-ARCH and p2pvps/renter-ARCH:

1. the device-side unit tests (tests/unit/plugins) with the device image's ARM Python and Debian's
   ansible-core, in a chroot of the device image;
2. one real rental lifecycle with the rental module running as ARM code in that chroot: the reference
   server on loopback, the host's Docker Engine (its socket bound into the chroot), the lease disk made
   by the image's ARM mkfs.ext4 and mount, the renter's ARM sshd reached over SSH, a no-op, the end of
   the lease and the wipe.

    python tests/emulated/arm_check.py --arch arm64 [--skip-unit]

Prints one line per step and, last, a JSON summary. Exits non-zero on the first failed step.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

# pylint: disable=wrong-import-position
from tests.fixtures.fleet import SSH_OPTS  # noqa: E402
from tests.fixtures.server import Marketplace  # noqa: E402

MACHINES = {"arm64": ("linux/arm64", "aarch64"), "armhf": ("linux/arm/v7", "armv7l")}
MODULE = "ansible_collections.p2pvps.fleet.plugins.modules.rental"
START = time.monotonic()
# Unit tests that check what the kernel says of a process, which under qemu-user is qemu: the kernel
# runs /usr/bin/qemu-ARCH-static for every emulated program (binfmt_misc), so /proc/PID/exe of any
# ARM process is the qemu binary. On a Pi it is the program itself.
EMULATION_ARTIFACTS = {
    "tests/unit/plugins/module_utils/test__proc.py::test_program_is_the_path_and_file_of_the_executable":
        "/proc/PID/exe of an emulated process is the qemu binary, not the program",
}


def log(message):
    print(f"[arm-check {time.monotonic() - START:6.0f}s] {message}", flush=True)


def run(*cmd, check=True, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run(cmd, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}: "
                           f"{(proc.stdout or '')[-3000:]}{(proc.stderr or '')[-3000:]}")
    return proc


class DeviceChroot:
    """The device image's file system, unpacked, with the host's /dev, /proc, /sys and Docker socket
    bound in, the repository read-only at /src, and `shared` (a host directory) at the same path
    inside and outside, so that what the module mounts there is what the host's dockerd sees."""

    def __init__(self, image, platform, work, shared):
        self.root = work / "rootfs"
        self.image, self.platform, self.shared = image, platform, shared
        self.mounts = []

    def __enter__(self):
        self.root.mkdir()
        container = run("docker", "create", "--platform", self.platform, self.image).stdout.strip()
        try:
            export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
            run("tar", "-x", "-C", str(self.root), stdin=export.stdout, capture_output=False)
            if export.wait() != 0:
                raise RuntimeError("docker export failed")
        finally:
            run("docker", "rm", container)
        for name in ("dev", "proc", "sys"):
            self._bind(Path("/") / name, self.root / name, "--rbind")
            run("mount", "--make-rslave", str(self.root / name))
        (self.root / "run" / "docker.sock").touch()
        self._bind(Path("/run/docker.sock"), self.root / "run" / "docker.sock")
        self._bind(ROOT, self.root / "src")
        run("mount", "-o", "remount,bind,ro", str(self.root / "src"))
        # The shared directory: a shared mount on the host, bound into the chroot as its peer.
        self._bind(self.shared, self.shared)
        run("mount", "--make-shared", str(self.shared))
        self._bind(self.shared, self.root / str(self.shared).lstrip("/"))
        collections = self.root / "tmp" / "collections" / "ansible_collections" / "p2pvps"
        collections.mkdir(parents=True)
        (collections / "fleet").symlink_to("/src")
        return self

    def _bind(self, source, target, flag="--bind"):
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        run("mount", flag, str(source), str(target))
        self.mounts.append(target)

    def __exit__(self, *exc):
        for target in reversed(self.mounts):
            run("umount", "-R", "-l", str(target), check=False)

    def python(self, *args, cwd="/", timeout=900):
        """Run the chroot's python3 (ARM code, through qemu-user-static) with the collection importable."""
        variables = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
                     "PYTHONPATH": "/tmp/collections", "PYTHONDONTWRITEBYTECODE": "1"}
        return run("chroot", str(self.root), "/usr/bin/env", "-i", "-C", cwd,
                   *[f"{k}={v}" for k, v in variables.items()], "python3", *args, check=False, timeout=timeout)


def step_machine(device, machine):
    out = device.python("-c", "import platform, ansible; print(platform.machine(), ansible.__version__)")
    found, ansible_version = out.stdout.split()
    assert found == machine, f"the chroot's python3 runs as {found}, not {machine}"
    log(f"chroot python3: platform.machine() = {found}, Debian ansible-core {ansible_version}")
    return {"machine": found, "ansible_core": ansible_version}


def step_unit(device):
    start = time.monotonic()
    deselect = [arg for test in EMULATION_ARTIFACTS for arg in ("--deselect", test)]
    proc = device.python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *deselect,
                         "tests/unit/plugins", cwd="/src", timeout=3600)
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    log(f"unit tests under emulation: {summary} ({time.monotonic() - start:.0f} s)")
    if proc.returncode != 0:
        raise RuntimeError(f"unit tests failed:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}")
    return {"summary": summary, "seconds": round(time.monotonic() - start), "deselected": EMULATION_ARTIFACTS}


def converge(device, args_file):
    start = time.monotonic()
    proc = device.python("-m", MODULE, str(args_file), timeout=1800)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError(f"module output: {proc.stdout[-3000:]} {proc.stderr[-3000:]}") from None
    if result.get("failed"):
        raise RuntimeError(f"module failed: {result.get('msg')}")
    return result, round(time.monotonic() - start, 1)


def ssh(port, user, key, command):
    return run("ssh", *SSH_OPTS, "-i", str(key), "-p", str(port), f"{user}@127.0.0.1", command, check=False,
               stdin=subprocess.DEVNULL, timeout=120)


def wait_login(port, user, key, timeout=300):
    deadline = time.monotonic() + timeout
    while True:
        proc = ssh(port, user, key, "id -un; uname -m")
        if proc.returncode == 0:
            return proc.stdout.split()
        if time.monotonic() > deadline:
            raise RuntimeError(f"renter login failed: {proc.stderr[-500:]}")
        time.sleep(1)


def lease_disk(device, lease_id):
    """The lease's disk image and its mount, as the host (and so dockerd) sees them."""
    disks = device.shared / "state" / "disks"
    image, mountpoint = disks / f"{lease_id}.img", disks / lease_id
    with open("/proc/self/mountinfo") as handle:
        mounted = [line.split()[8] for line in handle if line.split()[4] == str(mountpoint)]
    assert image.is_file() and mounted == ["ext4"], (image, mounted)
    return f"{image.name} {image.stat().st_size // 2 ** 20} MiB, {mounted[0]} on {mountpoint}"


def lease_leftovers(lease_id):
    containers = run("docker", "ps", "-aq", "--filter", f"label=p2pvps.lease={lease_id}").stdout.split()
    volumes = run("docker", "volume", "ls", "-q", "--filter", f"name=p2pvps-lease-{lease_id}").stdout.split()
    return containers + volumes


def step_rental(device, market, arch, machine, work):
    renter_image = f"p2pvps/renter-{arch}:latest"
    image_arch = run("docker", "image", "inspect", "-f", "{{.Architecture}}", renter_image).stdout.strip()
    assert image_arch == device.platform.split("/")[1], f"{renter_image} is recorded as {image_arch}"
    key = work / "renter_key"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "renter@arm-check", "-f", str(key))
    record = {"renter_image_architecture": image_arch}
    node = market.create_device(name=f"arm-{arch}-" + uuid.uuid4().hex[:6])
    market.register_device(node["id"], node["device_token"])
    market.checkin(node["id"], node["device_token"])
    port = 42000 + os.getpid() % 1000
    args = {"marketplace_url": market.url, "device_id": node["id"], "device_token": node["device_token"],
            "state_dir": str(device.shared / "state"), "local_port": port, "web_local_port": port + 1,
            "timeout": 30, "allowed_images": [renter_image],
            # The host's own Engine has no isolation rules (the docker role writes them on a Pi).
            "require_isolation": False,
            # tc's netlink messages are not translated by qemu-user ("Cannot talk to rtnetlink:
            # Operation not supported"): the cap is tested natively (test_fleet_e2e.py), not here.
            "bandwidth_mbit": 0}
    args_file = device.shared / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    args_file.chmod(0o600)
    user = "arm" + uuid.uuid4().hex[:5]
    lease = market.create_rental(node["id"], renter=user, ssh_public_key=(work / "renter_key.pub").read_text().strip(),
                                 hours=1, image=renter_image,
                                 limits={"memory_mb": 256, "cpus": 1, "pids": 128, "disk_gb": 1})
    try:
        created, record["create_s"] = converge(device, args_file)
        assert created["changed"] and created["lease_id"] == lease["id"], created
        log(f"create: {created['msg']} ({record['create_s']} s)")
        record["lease_disk"] = lease_disk(device, created["lease_id"])
        log(f"lease disk made by the ARM mkfs.ext4 and mounted from the chroot, seen by the host: "
            f"{record['lease_disk']}")
        who, where = wait_login(port, user, key)
        assert (who, where) == (user, machine), (who, where)
        record["renter_login"] = f"{who} on {where}"
        log(f"renter SSH login through the ARM sshd: id -un = {who}, uname -m = {where}")
        noop, record["noop_s"] = converge(device, args_file)
        assert not noop["changed"], noop
        log(f"no-op: changed={noop['changed']} ({record['noop_s']} s)")
        market.end_rental(lease["id"])
        ended, record["expiry_s"] = converge(device, args_file)
        lease, left = None, lease_leftovers(created["lease_id"])
        images = sorted(path.name for path in (device.shared / "state").rglob("*.img"))
        assert ended["changed"] and ended["lease_id"] is None and not left and not images, (ended, left, images)
        log(f"expiry: {ended['msg']} ({record['expiry_s']} s); no container, volume or disk image left")
    finally:
        if lease is not None:
            with contextlib.suppress(Exception):
                market.end_rental(lease["id"])
                converge(device, args_file)
    return record


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", choices=sorted(MACHINES), required=True)
    parser.add_argument("--skip-unit", action="store_true")
    options = parser.parse_args()
    platform, machine = MACHINES[options.arch]
    summary = {"arch": options.arch}
    with tempfile.TemporaryDirectory(prefix="p2pvps-armcheck-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        shared = work / "shared"
        shared.mkdir(mode=0o700)
        market = Marketplace(work / "marketplace").start()
        try:
            with DeviceChroot(f"p2pvps/device-{options.arch}:latest", platform, work, shared) as device:
                summary.update(step_machine(device, machine))
                if not options.skip_unit:
                    summary["unit"] = step_unit(device)
                summary["rental"] = step_rental(device, market, options.arch, machine, work)
        finally:
            market.stop()
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
