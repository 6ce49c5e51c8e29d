"""The simulated Pi devices are real Ansible targets over SSH."""
import json

import pytest

from tests.fixtures.common import run_ansible

pytestmark = pytest.mark.docker


def test_three_devices_answer_ping_and_setup(pi_fleet_factory):
    fleet = pi_fleet_factory(count=3)
    inventory = str(fleet.inventory_path)

    ping = run_ansible(["ansible", "-i", inventory, "pis", "-m", "ansible.builtin.ping"])
    assert ping.stdout.count('"ping": "pong"') == 3, ping.stdout

    setup = run_ansible(["ansible", "-i", inventory, "pis", "-m", "ansible.builtin.setup",
                         "-a", "gather_subset=!all,hardware,virtual", "--tree",
                         str(fleet.workdir / "facts")])
    assert setup.returncode == 0
    for device in fleet.devices:
        facts = json.loads((fleet.workdir / "facts" / device.name).read_text())["ansible_facts"]
        assert facts["ansible_memtotal_mb"] > 0
        assert facts["ansible_system"] == "Linux"
        assert facts["ansible_service_mgr"] == "systemd"


def test_device_runs_systemd_and_unique_host_keys(pi_fleet_factory):
    fleet = pi_fleet_factory(count=2)
    states = [d.exec("systemctl", "is-system-running", check=False).stdout.strip()
              for d in fleet.devices]
    assert all(state in ("running", "degraded") for state in states), states
    keys = {d.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
            for d in fleet.devices}
    assert len(keys) == 2, "host keys must be generated per device, not baked in the image"
