"""Revocation that bites on the tunnel server (role tunnel_server, module tunnel_keys), for real.

A simulated tunnel server (Debian, systemd, journald, OpenSSH) gets the role from a playbook;
"devices" are real OpenSSH clients on this host holding `ssh -N -R` tunnels to it. A key taken
out of the list loses its live connection in the same run, a key beyond the per-key cap loses
its newest connections, a bad entry is skipped without blocking the others, and with the
marketplace as the source a device deleted there loses its tunnel within one timer interval.
"""
import json
import subprocess
import time

import pytest

from tests.fixtures.common import ansible_env, run_ansible
from tests.fixtures.fleet import GATEWAY_IMAGE, wait_for
from tests.fixtures.server import Marketplace

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PLAYBOOK = """- hosts: pis
  become: true
  gather_facts: false
  roles:
    - p2pvps.fleet.tunnel_server
"""
TASK = "Authorise the device keys"
INTERVAL_S = 5


def keygen(folder, name, key_type="ed25519"):
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", f"{name}@test", "-f", str(path)],
                   check=True)
    return path


def public(path):
    return path.with_suffix(".pub").read_text().strip()


class TunnelServer:
    def __init__(self, fleet, tmp_path):
        self.fleet = fleet
        self.device = fleet.devices[0]
        self.tmp_path = tmp_path
        self.playbook = tmp_path / "tunnel_server.yml"
        self.playbook.write_text(PLAYBOOK)
        self.clients = []

    def apply(self, variables, check_mode=False):
        """Run the role; the tunnel_keys task's result."""
        extra = self.tmp_path / "vars.json"
        extra.write_text(json.dumps(variables))
        args = ["ansible-playbook", "-i", str(self.fleet.inventory_path), str(self.playbook), "-e", f"@{extra}"]
        if check_mode:
            args.append("--check")
        proc = run_ansible(args, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1"),
                           check=False)
        try:
            plays = json.loads(proc.stdout)["plays"]
        except ValueError as exc:
            raise AssertionError(f"no JSON from ansible-playbook:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}") from exc
        assert proc.returncode == 0, proc.stdout[-6000:]
        results = [task["hosts"][self.device.name] for task in plays[0]["tasks"] if TASK in task["task"]["name"]]
        assert len(results) == 1
        return results[0]

    def connect(self, key, forward_port=None):
        """A device's tunnel: `ssh -N [-R port:...]` as the tunnel user; the running client."""
        args = ["ssh", "-N", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
                "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5"]
        if forward_port:
            args += ["-R", f"*:{forward_port}:127.0.0.1:9"]
        client = subprocess.Popen(args + [f"tunnel@{self.device.ip}"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.clients.append(client)
        return client

    def listening(self, port):
        return f":{port} " in self.device.exec("ss", "-ltnH").stdout

    def tunnel_connections(self):
        """Live connections of the tunnel user (its unprivileged sshd processes)."""
        out = self.device.exec("pgrep", "-u", "tunnel", "-x", "sshd", check=False).stdout
        return len(out.split())

    def authorised(self):
        text = self.device.exec("cat", "/etc/ssh/p2pvps-tunnel/authorized_keys").stdout
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    def close(self):
        for client in self.clients:
            client.kill()
            client.wait()


@pytest.fixture
def server(pi_fleet_factory, tmp_path):
    tunnel = TunnelServer(pi_fleet_factory(count=1, image=GATEWAY_IMAGE), tmp_path)
    yield tunnel
    tunnel.close()


def test_a_removed_key_loses_its_session_and_a_key_beyond_the_cap_its_newest(server, tmp_path):
    gone, kept, busy = (keygen(tmp_path, name) for name in ("gone", "kept", "busy"))
    rsa = keygen(tmp_path, "old-rsa", "rsa")
    devices = [{"name": "pi-gone", "key": public(gone), "port": 20001},
               {"name": "pi-kept", "key": public(kept), "port": 20002, "web_port": 30002},
               {"name": "pi-busy", "key": public(busy), "port": 20003},
               {"name": "pi-rsa", "key": public(rsa), "port": 20004}]
    first = server.apply({"tunnel_server_device_keys": devices, "tunnel_server_port_min": 20000,
                          "tunnel_server_port_max": 20999})
    assert first["skipped_count"] == 1 and first["skipped_entries"][0]["name"] == "pi-rsa"
    assert "accepted key type" in first["skipped_entries"][0]["reason"]
    assert [line.split()[-1] for line in server.authorised()] == ["pi-gone", "pi-kept", "pi-busy"]

    gone_client = server.connect(gone, 20001)
    kept_client = server.connect(kept, 20002)
    busy_tunnel = server.connect(busy, 20003)
    wait_for("three tunnels", lambda: all(server.listening(port) for port in (20001, 20002, 20003)), 30, 0.5)
    busy_extras = []
    for count in (4, 5):   # one after the other: the newest is the one beyond the cap
        busy_extras.append(server.connect(busy))
        wait_for(f"{count} connections", lambda: server.tunnel_connections() == count, 30, 0.2)  # pylint: disable=cell-var-from-loop
        time.sleep(0.1)

    after = devices[1:3]
    variables = {"tunnel_server_device_keys": after, "tunnel_server_port_min": 20000, "tunnel_server_port_max": 20999}
    checked = server.apply(variables, check_mode=True)
    assert sorted(item["reason"] for item in checked["ended_sessions"]) == [
        "its key is no longer authorised", "more than 2 sessions with one key"]
    time.sleep(1)
    assert gone_client.poll() is None and server.tunnel_connections() == 5      # check mode ended nothing

    started = time.monotonic()
    applied = server.apply(variables)
    assert applied["changed"] and len(applied["ended_sessions"]) == 2
    wait_for("the removed key's client to be cut off", lambda: gone_client.poll() is not None, 10, 0.2)
    print(f"MEASURED key removed -> its live tunnel cut: {time.monotonic() - started:.1f} s (one role run)")
    assert not server.listening(20001)
    assert kept_client.poll() is None and busy_tunnel.poll() is None   # the others keep their tunnels
    assert [client.poll() is None for client in busy_extras] == [True, False]   # the newest beyond the cap
    assert server.listening(20002) and server.listening(20003)

    again = server.connect(gone, 20001)
    assert again.wait(timeout=30) == 255 and b"Permission denied" in again.stderr.read()
    assert server.apply(variables)["changed"] is False


def test_a_device_deleted_at_the_marketplace_loses_its_tunnel_within_one_interval(server, tmp_path):
    marketplace = Marketplace(tmp_path / "marketplace", bind_host=server.fleet.gateway(), port_quarantine=0).start()
    try:
        keys, ports, ids = {}, {}, {}
        for name in ("one", "two"):
            keys[name] = keygen(tmp_path, name)
            ids[name], token = marketplace.create_device(f"pi-{name}")
            ports[name] = marketplace.register_device(ids[name], token, key=public(keys[name]))["tunnel"]["remote_port"]
        result = server.apply({"tunnel_server_marketplace_url": marketplace.url,
                               "tunnel_server_gateway_token": marketplace.gateway_token,
                               "tunnel_server_interval_s": INTERVAL_S})
        assert result["devices"] == 2 and result["skipped_count"] == 0
        assert server.device.exec("systemctl", "is-active", "p2pvps-tunnel-keys.timer").stdout.strip() == "active"
        clients = {name: server.connect(keys[name], ports[name]) for name in ("one", "two")}
        wait_for("both tunnels", lambda: all(server.listening(port) for port in ports.values()), 30, 0.5)
        time.sleep(INTERVAL_S + 2)   # a timer run that changes nothing
        assert all(client.poll() is None for client in clients.values())

        assert marketplace.request("DELETE", f"/api/v1/devices/{ids['one']}").status_code == 204
        dummy, seconds = wait_for("the deleted device's tunnel to be cut", lambda: clients["one"].poll() is not None,
                                  INTERVAL_S * 3 + 10, 0.2)
        print(f"MEASURED device deleted at the marketplace -> its tunnel cut: {seconds:.1f} s "
              f"(timer every {INTERVAL_S} s)")
        assert seconds <= INTERVAL_S + 5
        assert not server.listening(ports["one"]) and clients["two"].poll() is None
        assert [line.split()[-1] for line in server.authorised()] == [ids["two"]]
    finally:
        marketplace.stop()
