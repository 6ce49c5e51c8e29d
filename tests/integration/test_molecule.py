"""The molecule scenarios whose simulated hosts run a Docker Engine of their own, one at a time under
the team's lock file (tests/fixtures/molecule.py), and the check that every role has a scenario."""
import pytest
import yaml

from tests.fixtures.common import ROOT
from tests.fixtures.molecule import (
    ENGINE_SCENARIOS, MOLECULE_DIR, NO_ENGINE_SCENARIOS, SCENARIOS, SECRETS, run_scenario, scenario_secrets,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())


def test_every_role_has_its_own_scenario():
    assert "device" in ROLES and "rental_agent" in ROLES, ROLES
    missing = [role for role in ROLES if role not in SCENARIOS]
    assert not missing, f"roles without a molecule scenario: {missing} (scenarios: {SCENARIOS})"
    for role in ROLES:
        assert f"p2pvps.fleet.{role}" in (MOLECULE_DIR / role / "converge.yml").read_text(), role
    assert set(NO_ENGINE_SCENARIOS) < set(SCENARIOS) and "e2e_tunnel" in ENGINE_SCENARIOS
    for scenario in SECRETS:
        assert scenario_secrets(scenario) and all(len(secret) >= 16 for secret in scenario_secrets(scenario))


def test_scenarios_use_the_checkout_and_install_no_copy_of_the_collection():
    # molecule's prerun installs the collection into ~/.ansible/collections (ansible-galaxy --force)
    # at the start of every run: two scenarios running at once removed each other's copy mid-run
    for scenario in SCENARIOS:
        config = yaml.safe_load((MOLECULE_DIR / scenario / "molecule.yml").read_text())
        assert config.get("prerun") is False, scenario


def test_no_engine_scenarios_start_no_docker_engine():
    for scenario in NO_ENGINE_SCENARIOS:
        text = (MOLECULE_DIR / scenario / "molecule.yml").read_text()
        assert "device-docker" not in text, scenario
        assert "p2pvps.fleet.docker" not in (MOLECULE_DIR / scenario / "converge.yml").read_text(), scenario


@pytest.mark.parametrize("scenario", ENGINE_SCENARIOS)
def test_molecule_scenario(scenario):
    run_scenario(scenario, locked=True)
