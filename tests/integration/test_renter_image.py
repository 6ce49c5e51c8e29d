"""The renter_image role (through the playbook p2pvps.fleet.renter_images) on a simulated Pi.

tarball: check mode changes nothing, a tarball holding another image than the operator expects is
refused, the image is loaded and named once (a second run changes nothing), a new tarball moves the
name and keeps the old image. pull: from a registry on the Pi's loopback by digest, once; an
unpinned reference is refused before anything runs. Small stand-in images keep it quick; that a
rental runs with an image the role loaded is test_rental_agent.py (the real renter image)."""
import json
import re
import subprocess
import uuid

import pytest

from tests.fixtures.common import run_ansible
from tests.fixtures.devices import DEVICE_DOCKER_IMAGE

pytestmark = [pytest.mark.docker]
NAME = "p2pvps-renterimg/renter:current"
COPY = "/var/tmp/p2pvps-renter-image.tar"


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

    # pull: a registry (Debian's docker-registry) on the Pi's loopback, which Docker trusts over HTTP.
    # The first image goes there by digest and leaves the Pi; the role pulls it back by that digest.
    digest = push_to_loopback_registry(pi, first_id, "127.0.0.1:5000/renter:1")
    pi.exec("docker", "rmi", "-f", first_id)   # all its names (the tarball's tag, the registry's) and the image
    assert image_id(pi, first_id) is None
    pinned = f"127.0.0.1:5000/renter@{digest}"
    checked = apply(fleet, "--check", renter_image_source="pull", renter_image_pull=pinned)
    assert checked.returncode == 0 and "changed=0" not in checked.stdout, checked.stdout[-3000:]
    assert image_id(pi, first_id) is None
    pulled = apply(fleet, renter_image_source="pull", renter_image_pull=pinned)
    assert pulled.returncode == 0, pulled.stdout[-3000:]
    assert image_id(pi, NAME) == first_id
    again = apply(fleet, renter_image_source="pull", renter_image_pull=pinned)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


def push_to_loopback_registry(pi, image, reference):
    """Start Debian's docker-registry on the Pi's 127.0.0.1:5000, push `image` as `reference`; its digest."""
    subprocess.run(["docker", "cp", "/usr/bin/docker-registry", f"{pi.container_id}:/usr/local/bin/docker-registry"],
                   check=True, timeout=60)
    pi.exec("sh", "-c", "printf 'version: 0.1\\nstorage:\\n  filesystem:\\n    rootdirectory: /var/tmp/registry\\n"
            "http:\\n  addr: 127.0.0.1:5000\\n' > /var/tmp/registry.yml && "
            "setsid -f docker-registry serve /var/tmp/registry.yml >/var/tmp/registry.log 2>&1 < /dev/null")
    pi.exec("sh", "-c", "for _ in $(seq 100); do curl -sf http://127.0.0.1:5000/v2/ >/dev/null && exit 0; "
            "sleep 0.1; done; cat /var/tmp/registry.log; exit 1")
    pi.exec("docker", "tag", image, reference)
    pushed = pi.exec("docker", "push", reference).stdout
    return re.search(r"digest: (sha256:[0-9a-f]{64})", pushed).group(1)
