"""The renter_image role (through the playbook p2pvps.fleet.renter_images) on a simulated Pi.

tarball: check mode changes nothing, a tarball holding another image than the operator expects is
refused, the image is loaded and named once (a second run changes nothing), a new tarball moves the
name and keeps the old image; an unpinned `pull` is refused before anything runs.

pull: from a registry on the Pi's loopback by digest (check mode, once, then no change); the same
image by its tag alone is refused.

Small stand-in images keep it quick; that a rental runs with an image the role loaded is
test_rental_agent.py (the real renter image)."""
import json
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.fixtures.common import require, run_ansible
from tests.fixtures.devices import DEVICE_DOCKER_IMAGE

pytestmark = [pytest.mark.docker]
NAME = "p2pvps-renterimg/renter:current"
COPY = "/var/tmp/p2pvps-renter-image.tar"
REGISTRY = "/usr/bin/docker-registry"


@pytest.fixture
def tarballs(tmp_path):
    """Two one-file images saved as tarballs: [(path, image id), ...]; their host tags removed after."""
    made, tags = [], []
    for index in (1, 2):
        content = tmp_path / f"image{index}"
        content.mkdir()
        (content / "version").write_text(f"{index} {uuid.uuid4()}\n")
        tag = f"p2pvps-renterimg/stand-in:{uuid.uuid4().hex[:8]}"
        tar = subprocess.run(["tar", "-C", str(content), "-c", "."], capture_output=True, check=True).stdout
        image_id = subprocess.run(["docker", "import", "-", tag], input=tar, capture_output=True, check=True
                                  ).stdout.decode().strip()
        tags.append(tag)
        path = tmp_path / f"image{index}.tar"
        subprocess.run(["docker", "save", "-o", str(path), tag], check=True)
        made.append((path, image_id))
    subprocess.run(["docker", "rmi", *tags], capture_output=True, check=False)
    return made


def apply(fleet, *extra, **role_vars):
    """The collection's playbook p2pvps.fleet.renter_images (the role on p2pvps_devices)."""
    return run_ansible(["ansible-playbook", "-i", str(fleet.inventory_path), "p2pvps.fleet.renter_images",
                        "-e", json.dumps({"renter_image_name": NAME, **role_vars}), *extra], check=False,
                       timeout=300)


def image_id(pi, name):
    proc = pi.exec("docker", "image", "inspect", "-f", "{{.Id}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_tarball_is_loaded_once_checked_and_named(pi_fleet_factory, tarballs):
    fleet = pi_fleet_factory(count=1, image=DEVICE_DOCKER_IMAGE)
    fleet.write_inventory(group="p2pvps_devices")
    pi = fleet.devices[0]
    (first, first_id), (second, second_id) = tarballs

    checked = apply(fleet, "--check", renter_image_source="tarball", renter_image_tarball=str(first))
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert "changed=0" not in checked.stdout
    assert image_id(pi, first_id) is None and image_id(pi, NAME) is None
    assert pi.exec("test", "-e", COPY, check=False).returncode != 0

    wrong = apply(fleet, renter_image_source="tarball", renter_image_tarball=str(first),
                  renter_image_id=second_id)
    assert wrong.returncode != 0 and f"the first {first_id}" in wrong.stdout, wrong.stdout[-3000:]
    assert image_id(pi, first_id) is None

    unpinned = apply(fleet, renter_image_source="pull", renter_image_pull="registry.example.org/renter:1")
    assert unpinned.returncode != 0 and "pinned by digest" in unpinned.stdout, unpinned.stdout[-3000:]

    loaded = apply(fleet, renter_image_source="tarball", renter_image_tarball=str(first),
                   renter_image_id=first_id)
    assert loaded.returncode == 0, loaded.stdout[-3000:]
    assert image_id(pi, NAME) == first_id
    assert pi.exec("test", "-e", COPY, check=False).returncode != 0
    for extra in ((), ("--check",)):
        again = apply(fleet, *extra, renter_image_source="tarball", renter_image_tarball=str(first),
                      renter_image_id=first_id)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]

    # A new image: the name moves to it; the old one stays (a live lease may run it).
    moved = apply(fleet, renter_image_source="tarball", renter_image_tarball=str(second))
    assert moved.returncode == 0, moved.stdout[-3000:]
    assert image_id(pi, NAME) == second_id and image_id(pi, first_id) == first_id


def test_pull_by_digest_from_a_loopback_registry(pi_fleet_factory):
    """The operator's registry is Debian's docker-registry on the Pi's loopback (Docker trusts
    127.0.0.1 over plain HTTP): an image is pushed there, leaves the Pi and comes back by digest."""
    require(Path(REGISTRY).exists(), f"{REGISTRY} (Debian's docker-registry; scripts/bootstrap.sh installs it)")
    fleet = pi_fleet_factory(count=1, image=DEVICE_DOCKER_IMAGE)
    fleet.write_inventory(group="p2pvps_devices")
    pi = fleet.devices[0]
    start_loopback_registry(pi)
    tagged = "127.0.0.1:5000/renter:1"
    pi.exec("sh", "-c", f"mkdir -p /var/tmp/stand-in && echo {uuid.uuid4()} > /var/tmp/stand-in/version && "
            f"tar -C /var/tmp/stand-in -c . | docker import - {tagged}")
    want = image_id(pi, tagged)
    pushed = pi.exec("docker", "push", tagged).stdout
    digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed)
    assert digest, pushed
    pinned = f"127.0.0.1:5000/renter@{digest.group(1)}"
    pi.exec("docker", "rmi", "-f", want)
    assert image_id(pi, want) is None

    # The registry has the tag, but a tag alone can change under the fleet: refused.
    unpinned = apply(fleet, renter_image_source="pull", renter_image_pull=tagged)
    assert unpinned.returncode != 0 and "pinned by digest" in unpinned.stdout, unpinned.stdout[-3000:]
    checked = apply(fleet, "--check", renter_image_source="pull", renter_image_pull=pinned)
    assert checked.returncode == 0 and "changed=0" not in checked.stdout, checked.stdout[-3000:]
    assert image_id(pi, want) is None and image_id(pi, NAME) is None
    pulled = apply(fleet, renter_image_source="pull", renter_image_pull=pinned)
    assert pulled.returncode == 0, pulled.stdout[-3000:]
    assert image_id(pi, NAME) == want
    for extra in ((), ("--check",)):
        again = apply(fleet, *extra, renter_image_source="pull", renter_image_pull=pinned)
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


def start_loopback_registry(pi):
    """Debian's docker-registry (the host's binary) on the Pi's 127.0.0.1:5000, storing in /var/tmp."""
    subprocess.run(["docker", "cp", REGISTRY, f"{pi.container_id}:/usr/local/bin/docker-registry"],
                   check=True, timeout=60)
    pi.exec("sh", "-c", "printf 'version: 0.1\\nstorage:\\n  filesystem:\\n    rootdirectory: /var/tmp/registry\\n"
            "http:\\n  addr: 127.0.0.1:5000\\n' > /var/tmp/registry.yml && "
            "setsid -f docker-registry serve /var/tmp/registry.yml >/var/tmp/registry.log 2>&1 < /dev/null")
    pi.exec("sh", "-c", "for _ in $(seq 100); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && exit 0; "
            "sleep 0.1; done; cat /var/tmp/registry.log; exit 1")
