"""Faults on a simulated Raspberry Pi with an enforced lease disk (issue 13, item 6).

One simulated Pi with its own Docker Engine (DEVICE_DOCKER_IMAGE: dockerd under systemd, loop
devices) and a real marketplace for the whole file; the `rental` module runs on the Pi in push
mode (ansible ad-hoc over SSH, as an operator would). The Pi's state directory is its own small
partition (an ext4 image mounted at boot from /etc/fstab), so a disk-full fault fills that
partition and nothing of the host. Each test checks that the lease has the enforced disk (a
loop-mounted ext4 file system), so none of them can pass on a plain volume.

Docker-heavy: run as `flock /tmp/p2pvps-heavy.lock .venv/bin/python -m pytest
tests/integration/test_faults.py`. The host-side variants of "marketplace down across an
expiry" are test_rental_module.py::test_rental_expired_with_api_down_is_frozen_then_resumed_or_wiped and
::test_fake_marketplace_offline_expiry; the Pi variant is test 5 here.

The power cycle runs last. Two bugs this file found are fixed and stay tested here: after a power
cycle Docker refused to remove an ended lease's volumes ("volume has active mounts", because
dockerd itself restarted the container at boot onto the bare mountpoints; renter containers now
have the restart policy "no"), and a container whose creation dockerd did not finish was started
again and again without its root file system (one that never started is now recreated).
"""
import calendar
import datetime as dt
import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.common import ansible_env, image_available, require, run_ansible
from tests.fixtures.devices import DEVICE_DOCKER_IMAGE, PiDevice, PiFleet, create_fleet
from tests.fixtures.server import Marketplace, assert_receipt_verifies

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RENTER_IMAGE = "p2pvps/renter:latest"
# The inventory group of the collection's playbooks (p2pvps.fleet.renter_images runs on it).
DEVICES = "p2pvps_devices"
STATE_DIR = "/var/lib/p2pvps"
DISK_DIR = STATE_DIR + "/disks"
STATE_PARTITION = "/var/lib/p2pvps-state.img"   # the state partition of the simulated Pi
STATE_PARTITION_MB = 2560   # a 1 GB lease disk, and 1 GB free so that the marketplace offers another
LIMITS = {"memory_mb": 256, "cpus": 0.5, "pids": 128, "disk_gb": 1}
CREATED = ["create", "write_state", "limit_bandwidth"]
WIPED = ["remove_container", "remove_volume", "write_state"]
# A lease that ends during the test: made for LEASE_S (a create on the Pi takes some 15 s, on a busy
# CI machine more than 40), and extended after the create when less than EXPIRY_S is left, the time
# two converges need.
LEASE_S = 90
EXPIRY_S = 45


@dataclass
class Rig:
    fleet: PiFleet
    pi: PiDevice
    marketplace: Marketplace
    device: tuple
    workdir: Path
    rental: dict = None
    clean: dict = field(default_factory=dict)   # what a clean create leaves on the Pi

    @property
    def args(self):
        return {"marketplace_url": self.marketplace.url, "device_id": self.device[0],
                "device_token": self.device[1], "state_dir": STATE_DIR, "timeout": 10,
                # Docker comes with this image, not from the docker role: no isolation rules.
                "require_isolation": False,
                # The state partition holds a 1 GB lease disk and little more.
                "disk_reserve_mb": 32}

    def converge_cmd(self, **extra):
        cmd = [str(Path(".venv/bin/ansible").resolve()), DEVICES, "-i", str(self.fleet.inventory_path),
               "-m", "p2pvps.fleet.rental", "-a", json.dumps(dict(self.args, **extra))]
        return cmd, ansible_env(ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")

    def converge(self, **extra):
        """Run the module once on the Pi; its result dict (failed or not)."""
        cmd, env = self.converge_cmd(**extra)
        return parse_result(run_ansible(cmd, env=env, check=False, timeout=300), self.pi.name)

    def sh(self, script, check=True, timeout=120):
        return self.pi.exec("sh", "-c", script, check=check, timeout=timeout).stdout

    def new_lease(self, **rental):
        """End the current rental (if any), make a new one, converge: one clean create."""
        if self.rental is not None:
            self.marketplace.end_rental(self.rental["id"])
        self.rental = self.marketplace.create_rental(self.device[0], renter="r" + os.urandom(3).hex(),
                                                     limits=LIMITS, **(rental or {"hours": 1}))
        result = self.converge()
        assert_ok(result)
        assert kinds(result)[-len(CREATED):] == CREATED, result
        assert_enforced(self, result)
        if not self.clean:
            self.clean = {"lease": self.rental["id"], "volumes": volumes(self)}
        return result


def parse_result(proc, host):
    try:
        return json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"][host]
    except (ValueError, KeyError, IndexError):
        raise AssertionError("unexpected ansible output (%d):\n%s\n%s" % (
            proc.returncode, proc.stdout[-4000:], proc.stderr[-2000:])) from None


def assert_ok(result):
    assert not result.get("failed"), (result.get("msg"), kinds(result), result.get("warnings"))
    return result


def kinds(result):
    return [action["action"] for action in result.get("actions") or []]


def mounts(rig, under=DISK_DIR):
    """Mount points under `under` inside the Pi."""
    return [line.split()[4] for line in rig.sh("cat /proc/self/mountinfo").splitlines()
            if line.split()[4].startswith(under + "/")]


def assert_enforced(rig, result):
    """The lease runs on its own loop-mounted ext4 file system, not a plain volume."""
    lease_id = result["lease_id"]
    assert result["disk_limit_enforced"] is True, result
    assert mounts(rig) == [f"{DISK_DIR}/{lease_id}"], mounts(rig)
    fstype = rig.sh(f"findmnt -n -o FSTYPE {DISK_DIR}/{lease_id}").strip()
    assert fstype == "ext4", fstype


def lease_containers(rig, lease_id=None):
    label = f"p2pvps.lease={lease_id}" if lease_id else "p2pvps.lease"
    return rig.sh(f"docker ps -aq --no-trunc --filter label={label}").split()


def container_state(rig, container_id):
    return json.loads(rig.sh(f"docker inspect -f '{{{{json .State}}}}' {container_id}"))


def volumes(rig, lease_id=None):
    flt = f"--filter label=p2pvps.lease={lease_id}" if lease_id else ""
    return sorted(rig.sh(f"docker volume ls -q {flt}").split())


def put_renter_image(fleet, workdir):
    """The Pi's Docker has no registry: the renter image is a `docker save` tarball on the
    controller, which the collection's playbook p2pvps.fleet.renter_images loads into the Pi (as an
    operator's would)."""
    tarball = workdir / "renter.tar"
    subprocess.run(["docker", "save", "-o", str(tarball), RENTER_IMAGE], check=True, timeout=300)
    run_ansible(["ansible-playbook", "-i", str(fleet.inventory_path), "p2pvps.fleet.renter_images",
                 "-e", json.dumps({"renter_image_name": RENTER_IMAGE, "renter_image_source": "tarball",
                                   "renter_image_tarball": str(tarball)})], timeout=600)


@pytest.fixture(scope="module")
def rig(docker_engine, tmp_path_factory):
    for image in (DEVICE_DOCKER_IMAGE, RENTER_IMAGE):
        require(image_available(image), f"the local image {image} (tests/images/build.sh)")
    workdir = tmp_path_factory.mktemp("faults")
    fleet = create_fleet(f"f{os.urandom(4).hex()}", workdir / "fleet")
    marketplace = None
    try:
        pi = fleet.add(1, image=DEVICE_DOCKER_IMAGE)[0]
        fleet.write_inventory(group=DEVICES)
        marketplace = Marketplace(workdir / "marketplace", bind_host=fleet.gateway(), disk_reserve_gb=0).start()
        put_renter_image(fleet, workdir)
        # The state directory on its own partition, mounted at boot like any /etc/fstab entry.
        pi.exec("sh", "-c", f"""set -e
            truncate -s {STATE_PARTITION_MB}M {STATE_PARTITION}
            mkfs.ext4 -q -F -m 0 -L p2pvps-state {STATE_PARTITION}
            mkdir -p {STATE_DIR}
            echo '{STATE_PARTITION} {STATE_DIR} ext4 loop,x-systemd.requires=p2pvps-loop-nodes.service 0 0' \
                >> /etc/fstab
            systemctl daemon-reload
            mount {STATE_DIR}
            chmod 700 {STATE_DIR}""")
        device = marketplace.online_device("faults-pi")
        yield Rig(fleet=fleet, pi=pi, marketplace=marketplace, device=device, workdir=workdir)
    finally:
        if marketplace is not None:
            marketplace.stop()
        fleet.destroy()


# ---------------------------------------------------------------- 2. dockerd killed mid-create

# When to kill dockerd: once the lease volume exists (its disk is made and mounted, the
# system-directory volumes and the container are not), and once the container's configuration
# exists (created, maybe not started).
TRIGGERS = {
    "volume": "docker volume inspect p2pvps-lease-{lease} >/dev/null 2>&1",
    "container": "docker ps -aq --filter label=p2pvps.lease={lease} | grep -q .",
}


@pytest.mark.parametrize("trigger", [   # "volume" second: it replaces what "container" may leave broken
    "container",
    "volume",
])
def test_dockerd_killed_mid_create_leaves_no_orphan(rig, trigger):
    if rig.rental is None:
        rig.new_lease()
    old = rig.rental["id"]
    rig.marketplace.end_rental(old)
    rig.rental = rig.marketplace.create_rental(rig.device[0], renter="k" + os.urandom(3).hex(),
                                               limits=LIMITS, hours=1)
    lease_id = rig.rental["id"]
    condition = TRIGGERS[trigger].format(lease=lease_id)
    watcher = subprocess.Popen(
        ["docker", "exec", rig.pi.container_id, "sh", "-c",
         f"for i in $(seq 1 1500); do if {condition}; then kill -9 $(pidof dockerd); echo killed; exit 0; fi; "
         f"sleep 0.02; done; echo never; exit 1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cmd, env = rig.converge_cmd()
    try:
        interrupted = parse_result(subprocess.run(cmd, env=env, capture_output=True, text=True,
                                                  timeout=300, check=False), rig.pi.name)
    finally:
        out, err = watcher.communicate(timeout=90)
    assert out.strip() == "killed", (out, err, interrupted.get("msg"), kinds(interrupted))
    print(f"\ninterrupted converge ({trigger}): failed={interrupted.get('failed')} "
          f"msg={str(interrupted.get('msg'))[:300]}")
    # (reset-failed: two kills in a row hit systemd's start limit of the unit)
    rig.sh("systemctl reset-failed docker.service; systemctl restart docker && for i in $(seq 1 60); do docker info >/dev/null 2>&1 && exit 0; "
           "sleep 0.5; done; exit 1", timeout=120)

    again = rig.converge()
    assert_ok(again)
    assert_enforced(rig, again)
    container_id = again["container_id"]
    assert lease_containers(rig, lease_id) == [container_id]
    assert container_state(rig, container_id)["Running"] is True, (kinds(again), container_state(rig, container_id))
    # nothing else: no orphan container, no volume a clean create would not make, no old lease
    assert rig.sh("docker ps -aq --no-trunc").split() == [container_id]
    assert volumes(rig) == volumes(rig, lease_id)
    if rig.clean:
        assert volumes(rig) == sorted(v.replace(rig.clean["lease"], lease_id) for v in rig.clean["volumes"])
    assert rig.sh(f"ls -A {DISK_DIR}").split() == sorted([lease_id, lease_id + ".dev", lease_id + ".img"])
    assert len(rig.sh(f"losetup -j {DISK_DIR}/{lease_id}.img").splitlines()) == 1
    assert rig.converge()["changed"] is False


# ---------------------------------------------------------------- 3. SIGKILL mid-write

KILL_ROUNDS = 200


def test_sigkill_mid_write_leaves_the_old_or_the_new_state(rig, tmp_path):
    """The writer of the state file killed at random moments (SIGKILL: no clean-up runs)."""
    from ansible_collections.p2pvps.fleet.plugins.module_utils import _state

    if rig.rental is None:
        rig.new_lease()
    real = json.loads(rig.sh(f"cat {STATE_DIR}/lease.json"))
    assert real["lease"]["id"] == rig.rental["id"]
    # The Pi's real state, made large (a state file reader ignores the extra field) so that a
    # write takes long enough to be cut in the middle; still under the reader's 1 MB.
    docs = [dict(real, padding=["%d-%06d-%s" % (gen, i, "x" * 24) for i in range(14000)]) for gen in (1, 2)]
    path = tmp_path / "lease.json"
    _state.write_json_atomic(str(path), docs[0])
    assert 300 * 1024 < path.stat().st_size < 1024 * 1024
    rng = random.Random(13)
    cut, leftovers = 0, []
    for dummy in range(KILL_ROUNDS):
        pid = os.fork()
        if pid == 0:   # the writer: the real write function, old and new content in turn, until killed
            try:
                generation = 1
                while True:
                    _state.write_json_atomic(str(path), docs[generation])
                    generation = 1 - generation
            finally:
                os._exit(0)
        time.sleep(rng.uniform(0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert json.loads(path.read_text()) in docs   # parses; the old or the new content, whole
        lease, warning = _state.read_state(str(path))
        assert warning is None and lease.id == rig.rental["id"]
        temps = sorted(tmp_path.glob(".lease.json.*"))
        if temps:
            cut += 1
            leftovers.append(temps[0].read_bytes())
            for temp in temps:
                temp.unlink()
    print(f"\nMEASURED {KILL_ROUNDS} SIGKILLs of the state writer, {cut} in the middle of a write; "
          "the state file parsed every time")
    assert cut >= KILL_ROUNDS // 4, cut   # the kills did land in the middle of writes

    # What a killed writer leaves behind (partial temporary files) never fails the next run.
    state_before = rig.sh(f"cat {STATE_DIR}/lease.json")
    partial = [data for data in leftovers if data][:2] + [b""]
    names = [f".lease.json.cut{i}" for i in range(len(partial))] + [".clock.json.cut0"]
    for name, data in zip(names, partial + [b'{"marketplace_ti']):
        subprocess.run(["docker", "exec", "-i", rig.pi.container_id, "sh", "-c", f"cat > {STATE_DIR}/{name}"],
                       input=data, check=True, timeout=30)
    try:
        after = rig.converge()
        assert_ok(after)
        assert after["changed"] is False and after["lease_id"] == rig.rental["id"], after
        assert_enforced(rig, after)
        assert rig.sh(f"cat {STATE_DIR}/lease.json") == state_before
    finally:
        rig.sh(f"cd {STATE_DIR} && rm -f " + " ".join(names))


# ---------------------------------------------------------------- 4. disk full

def test_disk_full_fails_clearly_and_keeps_the_live_lease(rig):
    from tests.fixtures.server import ed25519_public_key

    if rig.rental is None:
        rig.new_lease()
    lease_id = rig.rental["id"]
    steady = rig.converge()
    assert assert_ok(steady)["lease_id"] == lease_id, steady
    container_id = steady["container_id"]
    started_at = container_state(rig, container_id)["StartedAt"]
    state_before = rig.sh(f"cat {STATE_DIR}/lease.json")
    rig.marketplace.patch_rental(lease_id, ssh_public_keys=[ed25519_public_key("second@laptop")])
    # Fill the state partition: allocate what is free, then write until nothing fits.
    rig.sh(f"""cd {STATE_DIR}
        free=$(df --output=avail -B1 . | tail -1)
        fallocate -l $((free - 1048576)) filler || true
        dd if=/dev/zero of=filler2 bs=4k 2>/dev/null || true
        sync""")
    assert rig.sh(f"df --output=avail -B1 {STATE_DIR} | tail -1").strip() == "0"
    try:
        full = rig.converge()
        assert full.get("failed") is True, full
        assert "No space left on device" in full["msg"] and "write_state" in full["msg"], full["msg"]
        print(f"\nMEASURED disk-full converge message: {full['msg']}")
        # the live lease is untouched: same container, not restarted, its disk mounted
        assert lease_containers(rig) == [container_id]
        state = container_state(rig, container_id)
        assert state["Running"] is True and state["StartedAt"] == started_at
        assert mounts(rig) == [f"{DISK_DIR}/{lease_id}"]
        # the old state file is whole, and no temporary file was left behind
        assert rig.sh(f"cat {STATE_DIR}/lease.json") == state_before
        assert rig.sh(f"ls -A {STATE_DIR} | grep '^\\.lease\\.json\\.' || true").strip() == ""
    finally:
        rig.sh(f"rm -f {STATE_DIR}/filler {STATE_DIR}/filler2")

    freed = rig.converge()
    assert_ok(freed)
    assert "write_state" in kinds(freed), freed
    assert freed["container_id"] == container_id
    assert_enforced(rig, freed)
    assert container_state(rig, container_id)["StartedAt"] == started_at
    assert rig.sh(f"cat {STATE_DIR}/lease.json") != state_before
    assert rig.converge()["changed"] is False


# ---------------------------------------------------------------- 5. marketplace down across an expiry

def test_marketplace_down_across_an_expiry_wipes_the_lease_on_the_pi(rig):
    """The Pi variant of test_rental_module.py::test_rental_expired_with_api_down_is_frozen_then_resumed_or_wiped:
    frozen at the expiry, wiped once frozen for grace_s."""
    if rig.rental is not None:
        rig.marketplace.end_rental(rig.rental["id"])
    rig.rental = None
    rig.new_lease(duration_s=LEASE_S)
    lease_id = rig.rental["id"]
    expires = calendar.timegm(time.strptime(rig.rental["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    if expires < time.time() + EXPIRY_S:   # a slow create: the renter extends the lease
        # in whole seconds (the API's precision) and later than the lease's expiry, as the API requires
        wanted = max(int(time.time()) + EXPIRY_S + 1, expires + 1)
        extended = rig.marketplace.extend_rental(
            lease_id, rig.rental["renter"], dt.datetime.fromtimestamp(wanted, dt.timezone.utc))
        expires = calendar.timegm(time.strptime(extended["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert assert_ok(rig.converge())["lease_id"] == lease_id   # the Pi learns the lease's expiry
    rig.marketplace.stop()
    try:
        kept = rig.converge()
        assert assert_ok(kept)["changed"] is False and kept["api_error"], kept
        assert kept["lease_id"] == lease_id and time.time() < expires, "two converges took longer than EXPIRY_S"
        while time.time() < expires + 1:
            time.sleep(0.5)
        frozen = rig.converge()
        assert kinds(assert_ok(frozen)) == ["stop", "write_state"] and volumes(rig), frozen   # freeze, then wipe
        wiped = rig.converge(grace_s=0)   # frozen as long as the grace window: wiped
        assert assert_ok(wiped)["api_error"], wiped
        assert kinds(wiped) == WIPED, wiped
        assert lease_containers(rig) == [] and volumes(rig) == [] and mounts(rig) == []
        assert rig.sh(f"ls -A {DISK_DIR}").split() == []
        assert json.loads(rig.sh(f"cat {STATE_DIR}/lease.json"))["lease"] is None
        # its signed wipe receipt waits on the Pi, across a power cycle, until the marketplace is back
        assert wiped["receipts"] == {"signed": [lease_id], "acknowledged": [], "pending": 1}, wiped
        rig.fleet.restart(rig.pi)
    finally:
        rig.marketplace.start()
        rig.rental = None
    delivered = assert_ok(rig.converge())
    assert delivered["receipts"] == {"signed": [], "acknowledged": [lease_id], "pending": 0}, delivered
    wipe = assert_receipt_verifies(rig.marketplace.receipt(lease_id), rig.workdir)
    assert wipe["device_id"] == rig.device[0] and wipe["disk_image"] == f"{DISK_DIR}/{lease_id}.img"
    assert wipe["bytes"] == LIMITS["disk_gb"] * 1024 ** 3


# ---------------------------------------------------------------- 1. power cycle (last: see below)

def test_reboot_with_a_live_lease_remounts_the_disk_and_keeps_the_container(rig):
    created = rig.new_lease()
    lease_id, container_id = created["lease_id"], created["container_id"]
    user = created["lease"]["username"]
    # the container's entrypoint makes the renter's user; write as that user (by number: the
    # Engine looks names up in the image's /etc, not in the lease disk's copy)
    uid = rig.sh(f"for i in $(seq 1 60); do docker exec {container_id} id -u {user} 2>/dev/null && exit 0; "
                 f"sleep 0.5; done; exit 1").strip()
    as_renter = f"docker exec -u {uid}:{uid} {container_id}"
    rig.sh(f"{as_renter} sh -c 'echo kept-across-reboot > /home/{user}/kept && sync'")

    rig.fleet.restart(rig.pi)
    assert rig.sh(f"findmnt -n -o SOURCE {STATE_DIR}").strip(), "the state partition is not mounted at boot"
    assert mounts(rig) == [], "a loop mount survived the power cycle"
    assert container_state(rig, container_id)["Running"] is False   # cannot start on the bare mountpoint

    after = rig.converge()
    assert_ok(after)
    assert kinds(after)[:2] == ["mount_disk", "start"], after
    assert after["container_id"] == container_id and after["lease_id"] == lease_id
    assert_enforced(rig, after)
    assert container_state(rig, container_id)["Running"] is True
    assert lease_containers(rig) == [container_id]
    kept = rig.sh(f"{as_renter} cat /home/{user}/kept").strip()
    assert kept == "kept-across-reboot"
    assert rig.converge()["changed"] is False


def test_a_lease_ended_after_a_power_cycle_is_wiped(rig):
    assert rig.rental is not None
    rig.marketplace.end_rental(rig.rental["id"])
    lease_id, rig.rental = rig.rental["id"], None
    wiped = assert_ok(rig.converge())
    assert kinds(wiped) == WIPED, wiped
    assert lease_containers(rig) == [] and volumes(rig) == [] and mounts(rig) == []
    assert not rig.sh(f"ls -A {DISK_DIR}").split(), lease_id
