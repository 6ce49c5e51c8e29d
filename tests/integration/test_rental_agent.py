"""Pull mode: the rental_agent role's timer converges a simulated Pi to its lease."""
import json
import subprocess
import time

import pytest

from tests.fixtures.common import run_ansible
from tests.fixtures.devices import DEVICE_DOCKER_IMAGE

pytestmark = [pytest.mark.docker, pytest.mark.slow]
INTERVAL_S = 15


def renter_containers(device, lease_id=None):
    label = f"p2pvps.lease={lease_id}" if lease_id else "p2pvps.lease"
    return device.exec("docker", "ps", "-aq", "--filter", f"label={label}").stdout.split()


def wait_for(condition, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(1)
    raise AssertionError(f"not reached within {timeout} s")


def apply_role(fleet, marketplace, device_id, token, tmp_path):
    playbook = tmp_path / "agent.yml"
    playbook.write_text(json.dumps([{
        "name": "Rental agent", "hosts": "pis", "become": True,
        "roles": [{"role": "p2pvps.fleet.rental_agent"}],
        "vars": {"rental_agent_marketplace_url": marketplace.url,
                 "rental_agent_device_id": device_id,
                 "rental_agent_device_token": token,
                 "rental_agent_validate_certs": False,
                 "rental_agent_interval_s": INTERVAL_S,
                 "rental_agent_jitter_s": 2,
                 # Docker comes with this image, not from the docker role: no isolation rules to
                 # check (test_fleet_e2e.py runs the agent with them).
                 "rental_agent_require_isolation": False},
    }]))
    return run_ansible(["ansible-playbook", "-i", str(fleet.inventory_path), str(playbook)],
                       timeout=600)


def test_timer_converges_device_to_lease(pi_fleet_factory, marketplace_factory, tmp_path):
    fleet = pi_fleet_factory(count=1, image=DEVICE_DOCKER_IMAGE)
    pi = fleet.devices[0]
    marketplace = marketplace_factory(bind_host=fleet.gateway(), checkin_interval=INTERVAL_S)
    # The device's Docker has no registry either: give it the renter image.
    saved = subprocess.Popen(["docker", "save", "p2pvps/renter:latest"], stdout=subprocess.PIPE)
    subprocess.run(["docker", "exec", "-i", pi.container_id, "docker", "load", "-q"],
                   stdin=saved.stdout, check=True, capture_output=True, timeout=300)
    saved.wait(timeout=60)

    device_id, token = marketplace.create_device("agent-pi")
    marketplace.register_device(device_id, token)
    marketplace.checkin(device_id, token)

    first = apply_role(fleet, marketplace, device_id, token, tmp_path)
    assert token not in first.stdout
    second = apply_role(fleet, marketplace, device_id, token, tmp_path)
    assert "changed=0" in second.stdout, second.stdout[-3000:]
    assert pi.exec("stat", "-c", "%a %U", "/etc/p2pvps/device_token").stdout.split() == ["600", "root"]
    assert pi.exec("systemctl", "is-active", "p2pvps-rental-agent.timer").stdout.strip() == "active"

    renter_key = tmp_path / "renter"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(renter_key)], check=True)
    rental = marketplace.create_rental(device_id, renter="carol",
                                       ssh_public_key=(tmp_path / "renter.pub").read_text().strip(),
                                       hours=1)
    appeared = wait_for(lambda: renter_containers(pi, rental["id"]), INTERVAL_S * 2 + 30)
    print(f"\nMEASURED rental created -> container on the device (pull mode): {appeared:.1f} s "
          f"(timer interval {INTERVAL_S} s)")
    subprocess.run(["docker", "exec", "-i", pi.container_id, "sh", "-c",
                    "umask 077 && cat > /root/renter_key"], input=renter_key.read_bytes(),
                   check=True, timeout=30)
    login = wait_for(lambda: pi.exec(
        "ssh", "-p", "2222", "-i", "/root/renter_key", "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "carol@127.0.0.1",
        "id -un", check=False).stdout.strip() == "carol", 30)
    print(f"MEASURED renter login on the device's 127.0.0.1:2222 after {appeared + login:.1f} s")

    marketplace.end_rental(rental["id"])
    wiped = wait_for(lambda: not renter_containers(pi), INTERVAL_S * 2 + 30)
    print(f"MEASURED rental ended -> container wiped (pull mode): {wiped:.1f} s")
    volumes = pi.exec("docker", "volume", "ls", "-q").stdout
    assert f"p2pvps-lease-{rental['id']}" not in volumes

    journal = pi.exec("journalctl", "-u", "p2pvps-rental-agent.service", "--no-pager").stdout
    assert "p2pvps-rental-agent" in journal or "rental" in journal
    assert token not in journal
    device = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()
    assert device["status"] == "online"
