"""The execution environment for AWX / Ansible Automation Platform (ee/, meta/execution-environment.yml).

Building the image needs its base image from a registry these machines cannot pull from, so the
build itself is not run here: `ansible-builder create` must produce a complete build context, and
`ansible-builder introspect` must find what the collection declares it needs.
"""
import subprocess

import yaml

from tests.fixtures.common import ROOT

BUILDER = ROOT / ".venv" / "bin" / "ansible-builder"
DEFINITION = ROOT / "ee" / "execution-environment.yml"


def builder(*args):
    proc = subprocess.run([str(BUILDER), *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_ansible_builder_creates_a_complete_build_context(tmp_path):
    context = tmp_path / "context"
    builder("create", "-f", str(DEFINITION), "-c", str(context), "--output-filename", "Containerfile")
    containerfile = (context / "Containerfile").read_text()
    definition = yaml.safe_load(DEFINITION.read_text())
    assert f'ARG EE_BASE_IMAGE="{definition["images"]["base_image"]["name"]}"' in containerfile
    assert "ansible-core>=2.19,<2.20 ansible-runner" in containerfile
    assert "ansible-galaxy collection install" in containerfile and "-r requirements.yml" in containerfile
    # introspection of the collections' meta/execution-environment.yml happens in the build
    assert "introspect" in containerfile and "install-from-bindep" in containerfile
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert {"name": "p2pvps.fleet", "version": ">=0.1.0"} in requirements["collections"]
    for script in ("assemble", "introspect.py", "install-from-bindep", "entrypoint"):
        assert (context / "_build" / "scripts" / script).is_file()


def test_the_collection_declares_what_its_controller_side_needs(tmp_path):
    collections = tmp_path / "collections"
    (collections / "ansible_collections" / "p2pvps").mkdir(parents=True)
    (collections / "ansible_collections" / "p2pvps" / "fleet").symlink_to(ROOT)
    found = yaml.safe_load(builder("introspect", "--sanitize", str(collections)).split("\n", 1)[1])
    assert not found.get("python"), found   # the marketplace client needs only the standard library
    assert found["system"] == ["openssh-client [platform:dpkg]  # from collection p2pvps.fleet",
                               "openssh-clients [platform:rpm]  # from collection p2pvps.fleet"]
