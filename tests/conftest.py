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
