"""Run every molecule scenario (molecule/<name>/) from pytest, so CI runs them too.

Each scenario is a full `molecule test -s <name>` (create, [check], converge, idempotence,
verify, destroy) against the locally built systemd device images. Docker-heavy: runs are
serialised with the team's lock file, and in CI a missing Docker Engine or image fails.
"""
import shutil
import subprocess
import time

import pytest

from tests.fixtures.common import ROOT, ansible_env, docker_available, image_available, require

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MOLECULE_DIR = ROOT / "molecule"
SCENARIOS = sorted(p.parent.name for p in MOLECULE_DIR.glob("*/molecule.yml"))
LOCK = "/tmp/p2pvps-docker.lock"
IMAGES = ("p2pvps/device:latest", "p2pvps/gateway:latest")


def test_every_role_has_a_scenario():
    roles = {"docker", "tunnel_agent", "tunnel_server", "web_gateway"}
    assert roles <= set(SCENARIOS), SCENARIOS
    assert "e2e_tunnel" in SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario):
    require(docker_available(), "a running Docker Engine")
    for image in IMAGES:
        require(image_available(image), f"the local image {image} (tests/images/build.sh)")
    molecule = ROOT / ".venv" / "bin" / "molecule"
    require(molecule.exists(), "molecule in the project venv")
    cmd = [str(molecule), "test", "-s", scenario]
    if shutil.which("flock"):
        cmd = ["flock", LOCK, *cmd]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(ANSIBLE_PIPELINING="True"),
                          capture_output=True, text=True, timeout=1200, check=False)
    elapsed = time.monotonic() - start
    print(f"molecule test -s {scenario}: {elapsed:.0f} s (rc {proc.returncode})")
    for line in proc.stdout.splitlines():
        if "RECONNECT" in line or "SDK/API" in line or "UNROUTED" in line:
            print(line.strip())
    assert proc.returncode == 0, (f"molecule test -s {scenario} failed after {elapsed:.0f} s\n"
                                  f"{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}")
