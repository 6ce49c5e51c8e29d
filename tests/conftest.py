"""Shared pytest set-up. Fixtures live in tests/fixtures/, one file per concern."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".cache" / "collections"

# Import the collection as `ansible_collections.p2pvps.fleet` (setup-venv.sh makes the link).
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
# The reference server is imported as `p2pvps_server` (server/p2pvps_server).
if str(ROOT / "server") not in sys.path:
    sys.path.insert(0, str(ROOT / "server"))

os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLLECTIONS))
os.environ.setdefault("ANSIBLE_ROLES_PATH", str(ROOT / "roles"))
os.environ.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
os.environ.setdefault("ANSIBLE_NOCOLOR", "1")

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.server",
    "tests.fixtures.devices",
]

# The longest test files first: with `--dist loadfile` each file runs whole on one worker, in the
# order collected, and a long file picked up late is the run's tail. Measured in CI on 2026-12-03
# (seconds of test time, 3 workers, the 40 slowest tests only): molecule about 1450, demo 820,
# molecule_no_engine 700, rental_module 430, fleet_e2e 400, faults 370.
LONGEST_FIRST = ("test_molecule.py", "test_demo.py", "test_molecule_no_engine.py", "test_rental_module.py",
                 "test_fleet_e2e.py", "test_faults.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)   # stable: tests keep their order within a file
