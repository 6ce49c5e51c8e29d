"""The renter_image role: every variable has a default and an argument spec, the recipe lives in the
role (shipped with the collection, not under tests/), and the rental agent allows, by default, the
image the role names."""
import jinja2
import pytest
import yaml

from tests.fixtures.common import ROOT

ROLE = ROOT / "roles" / "renter_image"


def load(path):
    return yaml.safe_load(path.read_text())


def test_every_variable_has_a_default_and_an_argument_spec():
    defaults = load(ROLE / "defaults" / "main.yml")
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(set(defaults) ^ set(options)) == []
    for name, spec in options.items():
        assert spec["default"] == defaults[name], name
    assert options["renter_image_source"]["choices"] == ["none", "tarball", "pull", "build"]
    tasks = {path.stem for path in (ROLE / "tasks").glob("*.yml")}
    assert set(options["renter_image_source"]["choices"]) - {"none"} <= tasks


def test_the_recipe_ships_with_the_role_not_under_tests():
    recipe = ROLE / "files" / "renter"
    for name in ("build.sh", "packages.txt", "setup.sh", "import-changes",
                 "rootfs/usr/local/sbin/p2pvps-renter-init"):
        assert (recipe / name).is_file(), name
    assert not (ROOT / "tests" / "images" / "renter").exists()
    ignored = load(ROOT / "galaxy.yml")["build_ignore"]
    assert not any(pattern.startswith("roles") for pattern in ignored)


@pytest.mark.parametrize("fleet_vars", [{}, {"p2pvps_renter_image": "registry.example.org/renter:2"}],
                         ids=["default", "p2pvps_renter_image set"])
def test_the_agent_allows_the_image_the_role_names_by_default(fleet_vars):
    env = jinja2.Environment()
    agent = load(ROOT / "roles" / "rental_agent" / "defaults" / "main.yml")["rental_agent_allowed_images"]
    role = load(ROLE / "defaults" / "main.yml")["renter_image_name"]
    name = env.from_string(role).render(**fleet_vars)
    assert name == fleet_vars.get("p2pvps_renter_image", "p2pvps/renter:latest")
    assert env.from_string(agent).render(**fleet_vars) == str([name])
