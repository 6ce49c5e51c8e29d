"""Run every molecule scenario (molecule/<name>/) from pytest, so CI runs them too.

Each scenario is a full `molecule test -s <name>` (create, [check], converge, idempotence,
verify, destroy) against the locally built systemd device images. Docker-heavy: runs are
serialised with the team's lock file, and in CI a missing Docker Engine or image fails.
"""
import shutil
import subprocess
import time

import pytest
import yaml

from tests.fixtures.common import ROOT, ansible_env, docker_available, image_available, require

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MOLECULE_DIR = ROOT / "molecule"
SCENARIOS = sorted(p.parent.name for p in MOLECULE_DIR.glob("*/molecule.yml"))
LOCK = "/tmp/p2pvps-docker.lock"
IMAGES = ("p2pvps/device:latest", "p2pvps/device-docker:latest", "p2pvps/gateway:latest",
          "p2pvps/renter:latest")
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())
# The roles a scenario exercises besides its namesake (one scenario per role would not fit CI's time).
ALSO_COVERS = {"device": {"renter_image", "rental_agent", "module_runtime", "docker", "tunnel_agent"}}
# Inventory variables of a scenario that are secrets: no molecule output may show them.
SECRETS = {"device": ("device_token",)}


def covered_roles():
    covered = {}
    for scenario in SCENARIOS:
        for role in {scenario, *ALSO_COVERS.get(scenario, ())}:
            covered.setdefault(role, []).append(scenario)
    return covered


def scenario_secrets(scenario):
    config = yaml.safe_load((MOLECULE_DIR / scenario / "molecule.yml").read_text())
    group_vars = config["provisioner"].get("inventory", {}).get("group_vars", {})
    return [str(group[name]) for group in group_vars.values() for name in SECRETS.get(scenario, ())
            if name in group]


def test_every_role_has_a_scenario():
    assert "device" in ROLES and "rental_agent" in ROLES, ROLES
    missing = [role for role in ROLES if role not in covered_roles()]
    assert not missing, f"roles without a molecule scenario: {missing} (scenarios: {SCENARIOS})"
    # The mapping names only roles and scenarios that exist, and each scenario converges its namesake.
    for scenario, roles in ALSO_COVERS.items():
        assert scenario in SCENARIOS and scenario in ROLES and roles <= set(ROLES), (scenario, roles)
        assert f"p2pvps.fleet.{scenario}" in (MOLECULE_DIR / scenario / "converge.yml").read_text()
    assert scenario_secrets("device") and all(len(secret) >= 16 for secret in scenario_secrets("device"))
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
    secrets = scenario_secrets(scenario)
    for secret in secrets:
        proc.stdout, proc.stderr = proc.stdout.replace(secret, "<SECRET>"), proc.stderr.replace(secret, "<SECRET>")
    assert proc.returncode == 0, (f"molecule test -s {scenario} failed after {elapsed:.0f} s\n"
                                  f"{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}")
    assert "<SECRET>" not in proc.stdout + proc.stderr, "a secret of the scenario's inventory was printed"
