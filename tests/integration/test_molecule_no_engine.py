"""The molecule scenarios whose simulated hosts run no Docker Engine (systemd containers only), run
without the team's lock file, beside the heavy ones (tests/fixtures/molecule.py)."""
import pytest

from tests.fixtures.molecule import NO_ENGINE_SCENARIOS, run_scenario

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.mark.parametrize("scenario", NO_ENGINE_SCENARIOS)
def test_molecule_scenario(scenario):
    run_scenario(scenario, locked=False)
