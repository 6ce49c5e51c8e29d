"""The whole story on one machine: marketplace, tunnel server, 3 simulated Pis, a rental.

    python scripts/demo.py [--name demo] [--down-after]     (scripts/demo.sh sets up first)
    python scripts/demo.py --name demo down                 clean up

Steps: start the reference marketplace and the simulated devices, apply p2pvps.fleet.site
through the marketplace inventory, create a rental for a freshly generated renter key, SSH
in as the renter through the tunnel server and run `uname -a`, end the rental, show the
container wiped.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# pylint: disable=wrong-import-position
from tests.fixtures.common import ansible_env  # noqa: E402
from tests.fixtures.devices import DEVICE_DOCKER_IMAGE, DEVICE_IMAGE, create_fleet, docker  # noqa: E402
from tests.fixtures.server import Marketplace  # noqa: E402

RENTER_IMAGE = "p2pvps/renter:latest"
AGENT_INTERVAL_S = 15
PI_COUNT = 3
START = time.monotonic()


def step(text):
    print(f"[demo {time.monotonic() - START:6.1f}s] {text}", flush=True)


def wait_for(what, probe, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        result = probe()
        if result:
            return result, time.monotonic() - start
        time.sleep(1)
    raise SystemExit(f"demo: {what} did not happen within {timeout} s")


def workdir_of(name):
    return Path(tempfile.gettempdir()) / f"p2pvps-demo-{name}"


def load_renter_image(device):
    saved = subprocess.Popen(["docker", "save", RENTER_IMAGE], stdout=subprocess.PIPE)
    subprocess.run(["docker", "exec", "-i", device.container_id, "docker", "load", "-q"],
                   stdin=saved.stdout, check=True, capture_output=True, timeout=600)
    saved.wait(timeout=60)


def start_devices(fleet):
    pis = fleet.add(PI_COUNT, image=DEVICE_DOCKER_IMAGE)
    tunnel = fleet.add(name=f"{fleet.name}-tunnel", image=DEVICE_IMAGE)[0]
    step(f"tunnel server {tunnel.name} ({tunnel.ip}); Pis: "
         + ", ".join(f"{pi.name} ({pi.ip})" for pi in pis))
    for pi in pis:
        load_renter_image(pi)
    step(f"renter image {RENTER_IMAGE} loaded into each Pi (no registry here)")
    return tunnel, pis


def start_marketplace(fleet, workdir, tunnel):
    host_key = tunnel.exec("cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()
    marketplace = Marketplace(workdir / "marketplace", bind_host=fleet.gateway(),
                              tunnel_host=tunnel.ip, tunnel_host_key=" ".join(host_key[:2]),
                              checkin_interval=AGENT_INTERVAL_S, offline_after=120).start()
    (workdir / "marketplace.pid").write_text(str(marketplace._process.pid))  # pylint: disable=protected-access
    step(f"marketplace at {marketplace.url} (operator token in {marketplace.data_dir}/operator_token)")
    return marketplace


def write_inventory(fleet, workdir, marketplace, tunnel, pis, tokens):
    inventory = workdir / "inventory"
    inventory.mkdir(exist_ok=True)
    connection = {
        "ansible_user": "pi", "ansible_become": True,
        "ansible_ssh_private_key_file": str(fleet.key_path),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                   "-o LogLevel=ERROR",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    static = {"all": {
        "vars": {**connection, "p2pvps_marketplace_url": marketplace.url,
                 "docker_storage_driver": "vfs",
                 "rental_agent_interval_s": AGENT_INTERVAL_S, "rental_agent_jitter_s": 2},
        "children": {
            "lab": {"hosts": {pi.name: {"ansible_host": pi.ip, "p2pvps_device_token": tokens[pi.name]}
                              for pi in pis}},
            "p2pvps_tunnel_servers": {"hosts": {tunnel.name: {"ansible_host": tunnel.ip}}},
        }}}
    path = inventory / "01-lab.yml"
    path.write_text(json.dumps(static, indent=2) + "\n")
    path.chmod(0o600)
    (inventory / "02-fleet.marketplace.yml").write_text(json.dumps({
        "plugin": "p2pvps.fleet.marketplace",
        "url": marketplace.url,
        "token_file": str(marketplace.data_dir / "operator_token"),
    }, indent=2) + "\n")
    return inventory


def ansible(*args, timeout=1800):
    proc = subprocess.run(list(args), cwd=ROOT, env=ansible_env(ANSIBLE_PIPELINING="True"),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        print(proc.stdout[-6000:], proc.stderr[-3000:], sep="\n")
        raise SystemExit(f"demo: {' '.join(args[:2])} failed (rc {proc.returncode})")
    return proc.stdout


def apply_site(inventory):
    graph = ansible("ansible-inventory", "-i", str(inventory), "--graph")
    step("marketplace inventory:\n" + "\n".join("    " + line for line in graph.splitlines()))
    started = time.monotonic()
    out = ansible("ansible-playbook", "-i", str(inventory), "p2pvps.fleet.site")
    recap = [line for line in out.splitlines() if "ok=" in line and "failed=" in line]
    step(f"p2pvps.fleet.site applied in {time.monotonic() - started:.0f} s:\n"
         + "\n".join("    " + line.strip() for line in recap))


def renter_ssh(key, user, tunnel, port, command):
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
         "-o", "ConnectTimeout=5", f"{user}@{tunnel.ip}", command],
        capture_output=True, text=True, timeout=30, check=False)


def renter_containers(pi):
    return pi.exec("docker", "ps", "-aq", "--filter", "label=p2pvps.lease", check=False).stdout.split()


def rent_and_return(marketplace, workdir, tunnel, pi, device_id):
    key = workdir / "renter_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop",
                        "-f", str(key)], check=True)
    port = marketplace.request("GET", f"/api/v1/devices/{device_id}").json()["tunnel"]["remote_port"]
    wait_for(f"the tunnel of {pi.name}", lambda: tunnel.exec(
        "sh", "-c", f"ss -ltnH | grep -q ':{port} '", check=False).returncode == 0, 120)
    step(f"tunnel of {pi.name} is up: {tunnel.ip}:{port} -> {pi.name}:127.0.0.1:2222")
    rental = marketplace.create_rental(device_id, renter="alice",
                                       ssh_public_key=Path(f"{key}.pub").read_text().strip(), hours=1)
    step(f"rental {rental['id']} created for alice on {pi.name}; waiting for the device's agent "
         f"(timer every {AGENT_INTERVAL_S} s)")
    command = f"ssh -i {key} -p {port} alice@{tunnel.ip} uname -a"

    def renter_login():
        proc = renter_ssh(key, "alice", tunnel, port, "uname -a; id")
        return proc.stdout.strip() if proc.returncode == 0 else None

    login, waited = wait_for("the renter's login", renter_login, AGENT_INTERVAL_S * 2 + 60)
    step(f"renter logged in {waited:.1f} s after the rental was created:\n    $ {command}\n"
         + "\n".join("    " + line for line in login.splitlines()))
    password = renter_ssh(key, "root", tunnel, port, "true")
    step(f"root login with the same key refused: {password.returncode != 0}")
    marketplace.end_rental(rental["id"])
    step(f"rental {rental['id']} ended; waiting for the wipe")
    waited = wait_for("the wipe", lambda: not renter_containers(pi), AGENT_INTERVAL_S * 2 + 60)[1]
    volumes = pi.exec("docker", "volume", "ls", "-q").stdout.split()
    left = [v for v in volumes if rental["id"] in v]
    step(f"container wiped {waited:.1f} s after the rental ended; lease volumes left: {left or 'none'}")


def down(name):
    workdir = workdir_of(name)
    pid_file = workdir / "marketplace.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    create_fleet(name, workdir / "fleet").destroy()
    docker("network", "rm", f"p2pvps-{name}", check=False)
    shutil.rmtree(workdir, ignore_errors=True)
    step(f"demo {name} removed")


def up(name):
    workdir = workdir_of(name)
    workdir.mkdir(parents=True, exist_ok=True)
    fleet = create_fleet(name, workdir / "fleet")
    tunnel, pis = start_devices(fleet)
    marketplace = start_marketplace(fleet, workdir, tunnel)
    tokens, ids = {}, {}
    for pi in pis:
        ids[pi.name], tokens[pi.name] = marketplace.create_device(pi.name, description="demo Pi")
    step(f"{len(pis)} devices created at the marketplace (each with its own token)")
    inventory = write_inventory(fleet, workdir, marketplace, tunnel, pis, tokens)
    (workdir / "demo.json").write_text(json.dumps({
        "marketplace_url": marketplace.url, "marketplace_data": str(marketplace.data_dir),
        "network": fleet.network, "operator_key": str(fleet.key_path), "inventory": str(inventory),
        "tunnel": {"name": tunnel.name, "ip": tunnel.ip, "container_id": tunnel.container_id},
        "pis": [{"name": pi.name, "ip": pi.ip, "container_id": pi.container_id, "device_id": ids[pi.name]}
                for pi in pis],
    }, indent=2) + "\n")
    apply_site(inventory)
    rent_and_return(marketplace, workdir, tunnel, pis[0], ids[pis[0].name])
    return inventory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", default="up", choices=["up", "down"])
    parser.add_argument("--name", default="demo", help="names the containers, network and work dir")
    parser.add_argument("--down-after", action="store_true", help="clean up at the end (used by the test)")
    args = parser.parse_args(argv)
    if args.action == "down":
        down(args.name)
        return
    down(args.name)   # a previous run of the same name
    try:
        inventory = up(args.name)
    except BaseException:
        if args.down_after:
            down(args.name)
        raise
    if args.down_after:
        down(args.name)
        return
    step(f"done. The fleet is still up: ansible-inventory -i {inventory} --graph\n"
         f"    clean up: bash scripts/demo.sh down{'' if args.name == 'demo' else ' --name ' + args.name}")


if __name__ == "__main__":
    main()
