"""The README's main command and the operator playbooks, on one demo fleet.

The module fixture runs scripts/demo.py (marketplace, tunnel server, 3 simulated Pis,
p2pvps.fleet.site through the marketplace inventory, a rental end to end) under a name of
its own and keeps the fleet up; the tests then use it for status, push converge,
decommission and ansible-pull onboarding, and the fixture removes it at the end.
"""
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.fixtures.common import ROOT, ansible_env, docker_available, require
from tests.fixtures.devices import DEVICE_DOCKER_IMAGE, create_fleet
from tests.fixtures.fleet import fleet_ansible_env, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class Demo:
    def __init__(self, name, output, info):
        self.name = name
        self.output = output
        self.info = info
        self.inventory = info["inventory"]
        self.url = info["marketplace_url"]
        token = (Path(info["marketplace_data"]) / "operator_token").read_text().strip()
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {token}"

    def api(self, method, path, **kwargs):
        return self.http.request(method, self.url + "/api/v1" + path, timeout=30, **kwargs)

    def pi(self, index):
        return self.info["pis"][index]

    def playbook(self, name, *args, check=True):
        # The operator playbooks run from the collection the demo installed from its built tarball.
        env = fleet_ansible_env(self.info["collections_path"], Path(self.info["collections_path"]).parent)
        proc = subprocess.run(["ansible-playbook", "-i", self.inventory, f"p2pvps.fleet.{name}", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
        if check:
            assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        return proc


def in_container(container_id, *cmd, check=True, timeout=300, **kwargs):
    interactive = ["-i"] if "input" in kwargs else []
    proc = subprocess.run(["docker", "exec", *interactive, container_id, *cmd], capture_output=True, text=True,
                          timeout=timeout, check=False, **kwargs)
    if check:
        assert proc.returncode == 0, f"{cmd}: {proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    return proc


def renter_containers(pi):
    return in_container(pi["container_id"], "docker", "ps", "-aq", "--filter", "label=p2pvps.lease").stdout.split()


@pytest.fixture(scope="module")
def demo():
    require(docker_available(), "a running Docker Engine")
    name = f"t{uuid.uuid4().hex[:6]}"
    demo_py = [sys.executable, "scripts/demo.py", "--name", name]
    try:
        proc = subprocess.run(demo_py, cwd=ROOT, env=ansible_env(), capture_output=True, text=True,
                              timeout=1500, check=False)
        print(proc.stdout)
        assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
        info = json.loads((Path(tempfile.gettempdir()) / f"p2pvps-demo-{name}" / "fleet.json").read_text())
        yield Demo(name, proc.stdout, info)
    finally:
        subprocess.run([*demo_py, "down"], cwd=ROOT, env=ansible_env(), capture_output=True, timeout=300,
                       check=False)


def test_demo_rents_a_pi_and_wipes_it(demo):
    out = demo.output
    # What an operator installs from Galaxy, not the repository, ran the fleet.
    assert re.search(r"collection p2pvps-fleet-[\d.]+\.tar\.gz built and installed into \S+, as from Galaxy", out), out
    installed = Path(demo.info["collections_path"]) / "ansible_collections" / "p2pvps" / "fleet"
    assert (installed / "MANIFEST.json").is_file() and not (installed / "tests").exists()
    # The renter's `uname -a; id` ran inside the rented container, reached through the tunnel.
    assert re.search(r"^\s+Linux \S+ .*GNU/Linux$", out, re.M), out
    assert re.search(r"^\s+uid=\d+\(alice\)", out, re.M), out
    # Root in the container is an unprivileged user of the device (user-namespace remapping).
    assert re.search(r"root login with the same key: uid 0 in the container is uid 10\d{5} on the device", out), out
    # The renter's own web server, over HTTPS at the lease's hostname through the gateway, then gone.
    assert re.search(r"^\s+<h1>Hello from a rented Raspberry Pi</h1>$", out, re.M), out
    assert re.search(r"https://alice-[a-z0-9]{6}\.web\.test/ answered [\d.]+ s after the rental was created", out), out
    assert re.search(r"http://alice-[a-z0-9]{6}\.web\.test/ answers 404", out), out
    assert "lease volumes left: none" in out
    assert re.search(rf"{demo.name}-pi1 +: ok=\d+ +changed=\d+ +unreachable=0 +failed=0", out), out
    assert "@p2pvps_status_new:" in out and "@p2pvps_free:" in out, out   # the inventory plugin's groups


def test_site_is_idempotent(demo):
    # The Pi that was rented and wiped, and the tunnel server: the other Pis run the same tasks on
    # the same inputs (each role's molecule scenario checks its own idempotence), and a limited run
    # makes the tunnel server mix this run's registration with the marketplace's data for the rest.
    pi = demo.pi(0)
    second = demo.playbook("site", "-l", f"{pi['name']}:p2pvps_tunnel_servers")
    recap = [line for line in second.stdout.splitlines() if "ok=" in line and "failed=" in line]
    assert any(line.startswith(pi["name"] + " ") for line in recap), second.stdout[-6000:]
    assert len(recap) >= 2, recap   # the Pi and at least one tunnel server
    for line in recap:
        assert "changed=0" in line and "failed=0" in line, second.stdout[-6000:]


def test_status_and_push_converge(demo):
    pi = demo.pi(1)
    status = demo.playbook("status")
    lines = re.findall(r"STATUS (\S+): ([^\"]*)", status.stdout)
    assert {host for host, _line in lines} == {p["name"] for p in demo.info["pis"]}, status.stdout
    for host, line in lines:
        assert line.startswith("online, no lease, container none, tunnel up"), (host, line)
        assert line.endswith("sandbox complete"), (host, line)

    key = subprocess.run(["ssh-keygen", "-y", "-f", demo.info["operator_key"]], capture_output=True,
                         text=True, check=True).stdout.strip()
    rental = demo.api("POST", "/rentals", json={"device_id": pi["device_id"], "renter": "bob",
                                                "ssh_public_key": key, "hours": 1}).json()
    converge = demo.playbook("converge", "-l", pi["name"])
    # The device's own timer may have been first; either way the lease is what runs now.
    assert f"lease {rental['id']}, actions " in converge.stdout, converge.stdout[-4000:]
    assert renter_containers(pi)
    status = demo.playbook("status", "-l", pi["name"])
    assert re.search(rf"STATUS {pi['name']}: online, lease {rental['id']} until \S+, container running, tunnel up, "
                     r"sandbox complete", status.stdout), status.stdout[-3000:]
    demo.api("DELETE", f"/rentals/{rental['id']}")
    gone = demo.playbook("converge", "-l", pi["name"])
    assert "lease none, actions " in gone.stdout, gone.stdout[-4000:]
    assert not renter_containers(pi)


def test_decommission_refuses_a_live_lease_then_removes_everything(demo):
    pi = demo.pi(2)
    key = subprocess.run(["ssh-keygen", "-y", "-f", demo.info["operator_key"]], capture_output=True,
                         text=True, check=True).stdout.strip()
    rental = demo.api("POST", "/rentals", json={"device_id": pi["device_id"], "renter": "carl",
                                                "ssh_public_key": key, "hours": 1}).json()
    demo.playbook("converge", "-l", pi["name"])
    assert renter_containers(pi)

    refused = demo.playbook("decommission", "-l", pi["name"], check=False)
    assert refused.returncode != 0 and "is live until" in refused.stdout, refused.stdout[-4000:]
    assert renter_containers(pi), "a refused decommission must leave the lease alone"
    assert in_container(pi["container_id"], "systemctl", "is-active", "p2pvps-rental-agent.timer").stdout.strip() \
        == "active"

    demo.playbook("decommission", "-l", pi["name"], "-e", "p2pvps_decommission_force=true")
    cid = pi["container_id"]
    assert not renter_containers(pi)
    volumes = in_container(cid, "docker", "volume", "ls", "-q").stdout
    assert "p2pvps-lease-" not in volumes, volumes
    for path in ("/etc/systemd/system/p2pvps-tunnel.service", "/etc/systemd/system/p2pvps-rental-agent.timer",
                 "/etc/systemd/system/p2pvps-rental-agent.service", "/var/lib/p2pvps-tunnel", "/etc/p2pvps",
                 "/var/lib/p2pvps", "/usr/local/lib/p2pvps"):
        assert in_container(cid, "test", "-e", path, check=False).returncode != 0, path
    assert in_container(cid, "getent", "passwd", "p2pvps-tunnel", check=False).returncode != 0
    assert in_container(cid, "pgrep", "-f", "ssh -N", check=False).returncode != 0
    assert in_container(cid, "docker", "info", "-f", "{{.ServerVersion}}").stdout.strip(), "Docker stays"
    assert demo.api("GET", f"/devices/{pi['device_id']}").status_code == 404
    assert demo.api("GET", f"/rentals/{rental['id']}").json()["ended_at"]

    # The marketplace inventory no longer lists the device: name it in an inventory of its own.
    gone = Path(demo.inventory).parent / "decommissioned.yml"
    gone.write_text(json.dumps({"p2pvps_devices": {"hosts": {pi["name"]: {"p2pvps_device_id": pi["device_id"]}}}}))
    again = demo.playbook("decommission", "-l", pi["name"], "-i", str(gone))
    assert re.search(rf"{pi['name']} +: ok=\d+ +changed=0 +unreachable=0 +failed=0", again.stdout), \
        again.stdout[-4000:]

    # status of the decommissioned device: no tunnel unit any more, the marketplace refuses it
    in_container(cid, "sh", "-c", "umask 077 && printf %s revoked-token-0123456789abcdef > /root/old-token")
    status = demo.playbook("status", "-l", pi["name"], "-i", str(gone), "-e", "p2pvps_device_token_file=/root/old-token")
    assert f"STATUS {pi['name']}: marketplace unknown, no lease, container none, tunnel down, sandbox complete (" \
        in status.stdout, \
        status.stdout[-3000:]
    assert "tunnel: p2pvps-tunnel.service is not installed" in status.stdout, status.stdout[-3000:]


def repo_snapshot(dest):
    """The working tree as a git repository (what `git push` would publish)."""
    work = dest / "work"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = work / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@p2pvps", "-C", str(work)]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "snapshot"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(dest / "p2pvps.git")], check=True)
    return dest / "p2pvps.git"


def test_ansible_pull_onboarding(demo, tmp_path):
    fleet = create_fleet(demo.name, Path(demo.info["inventory"]).parent / "fleet")
    pi = fleet.add(name=f"{demo.name}-fresh", image=DEVICE_DOCKER_IMAGE)[0]
    created = demo.api("POST", "/devices", json={"name": pi.name}).json()
    subprocess.run(["docker", "cp", str(repo_snapshot(tmp_path)), f"{pi.container_id}:/srv/"], check=True)
    in_container(pi.container_id, "sh", "-c", "umask 077 && mkdir -p /etc/p2pvps && cat > /etc/p2pvps/device_token",
                 input=created["device_token"])
    in_container(pi.container_id, "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                 "apt-get install -y -qq --no-install-recommends git ansible-core >/dev/null", timeout=900)

    started = time.monotonic()
    pull = in_container(
        pi.container_id, "env", "ANSIBLE_COLLECTIONS_PATH=/opt/p2pvps", "ansible-pull",
        "-U", "file:///srv/p2pvps.git", "-d", "/opt/p2pvps/ansible_collections/p2pvps/fleet", "-i", "localhost,",
        "-e", f"p2pvps_marketplace_url={demo.url}", "-e", f"p2pvps_device_id={created['id']}",
        "-e", "docker_storage_driver=overlay2", "-e", "rental_agent_interval_s=15",
        "playbooks/onboard/local.yml", check=False, timeout=1200)
    print(f"MEASURED ansible-pull onboarding: {time.monotonic() - started:.0f} s")
    assert pull.returncode == 0, pull.stdout[-6000:] + pull.stderr[-3000:]
    assert created["device_token"] not in pull.stdout + pull.stderr

    device = demo.api("GET", f"/devices/{created['id']}").json()
    assert device["registered"] and device["tunnel_public_key"].startswith("ssh-ed25519 ")
    assert device["facts"]["docker_version"]
    assert in_container(pi.container_id, "systemctl", "is-active", "p2pvps-rental-agent.timer").stdout.strip() \
        == "active"
    wait_for("the agent's first check-in", lambda: demo.api(
        "GET", f"/devices/{created['id']}").json()["status"] == "online", 60)

    # The operator authorises the new key from the marketplace inventory; the tunnel comes up.
    demo.playbook("tunnel_servers")
    port = device["tunnel"]["remote_port"]
    tunnel = demo.info["tunnel"]["container_id"]
    wait_for("the new device's tunnel", lambda: in_container(
        tunnel, "sh", "-c", f"ss -ltnH | grep -q ':{port} '", check=False).returncode == 0, 90)
