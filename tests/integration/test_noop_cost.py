"""What a converge with nothing to change costs: API calls and Docker Engine calls, counted.

The module talks to the real reference server through a recording TCP forwarder and to the
real Docker Engine through a recording unix-socket forwarder; the counts are exact.
"""
import json
import subprocess
import sys
import uuid

import pytest

from tests.fixtures.common import ansible_env, free_port, image_available, require, run_ansible
from tests.fixtures.proxies import RecordingForwarder
from tests.fixtures.server import ed25519_public_key

# Same worker as test_rental_module.py (renter containers on the host's Docker Engine).
pytestmark = [pytest.mark.docker, pytest.mark.xdist_group("host_renters")]
RENTER_IMAGE = "p2pvps/renter:latest"
DOCKER_SOCKET = "/var/run/docker.sock"
# Docker calls of a no-op: version negotiation, volumes, containers, inspect, the keys file,
# the volume's disk status. A regression above this bound fails the test.
MAX_DOCKER_CALLS_NOOP = 6


def run_rental(args):
    cmd = ["ansible", "localhost", "-i", "localhost,", "-c", "local", "-m", "p2pvps.fleet.rental",
           "-a", json.dumps(args), "-e", f"ansible_python_interpreter={sys.executable}"]
    proc = run_ansible(cmd, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1"),
                       check=False, timeout=300)
    result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result.get("failed") is not True, result
    return result


def test_noop_converge_makes_one_api_call_and_few_docker_calls(docker_engine, marketplace, tmp_path):
    require(image_available(RENTER_IMAGE), f"the local image {RENTER_IMAGE}")
    device = marketplace.create_device(f"noop-{uuid.uuid4().hex[:6]}")
    marketplace.register_device(device["id"], device["device_token"])
    marketplace.checkin(device["id"], device["device_token"])
    port = int(marketplace.url.rsplit(":", 1)[1])
    api = RecordingForwarder(port)
    engine = RecordingForwarder(DOCKER_SOCKET, listen_path=tmp_path / "docker.sock")
    lease_id = marketplace.create_rental(device["id"], renter="nora", ssh_public_key=ed25519_public_key(),
                                         hours=1)["id"]
    args = {"marketplace_url": api.url, "device_id": device["id"], "device_token": device["device_token"],
            "state_dir": str(tmp_path / "state"), "local_port": free_port(), "docker_host": engine.url}
    try:
        assert run_rental(args)["changed"] is True
        api.reset()
        engine.reset()
        noop = run_rental(args)
        assert noop["changed"] is False and noop["lease_id"] == lease_id
        api_calls, docker_calls = api.calls(), engine.calls()
        shown = [method + " " + path.split("?")[0] for method, path in docker_calls]
        print(f"\nMEASURED no-op converge: {len(api_calls)} API call(s) {api_calls}; "
              f"{len(docker_calls)} Docker call(s) {shown}")
        assert api_calls == [("POST", f"/api/v1/devices/{device['id']}/checkin")]
        assert len(docker_calls) <= MAX_DOCKER_CALLS_NOOP, docker_calls
        assert all(method == "GET" for method, path in docker_calls), "a no-op must not write"
    finally:
        marketplace.end_rental(lease_id)
        run_rental(args)
        api.close()
        engine.close()
        subprocess.run(["docker", "volume", "rm", "-f", f"p2pvps-lease-{lease_id}"], capture_output=True,
                       check=False)
