"""The module_runtime role on this machine (local connection): it installs the modules and their
module_utils once, copies nothing while the sources are unchanged, and installs an edited source
on the next run. The role runs from a copy of the collection, so a test can edit a source."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.common import ROOT, ansible_env, run_ansible

INSTALL = "Install the modules and module_utils (the same code push mode runs)"
STAMP = "Write the fingerprint of the installed code"
COMPILE = "Compile the installed code for the interpreter that runs it"
CODE_TASKS = ("Create the install directory", "Make a temporary archive on the controller", INSTALL, COMPILE, STAMP)


@pytest.fixture
def collection(tmp_path):
    """A copy of the role and the plugins it installs, as an installed collection."""
    if os.geteuid() != 0:
        pytest.fail("the role installs root-owned files: run as root (CI does)")
    target = tmp_path / "collections" / "ansible_collections" / "p2pvps" / "fleet"
    target.mkdir(parents=True)
    for part in ("galaxy.yml", "meta", "roles/module_runtime", "plugins/modules", "plugins/module_utils"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / part)
    return target


def controller_tmp(collection):
    """The controller's temporary directory for these runs: the test's own, so that another test
    running the role at the same time (the module_runtime scenario) cannot put archives in it."""
    path = collection.parent.parent.parent / "controller-tmp"
    path.mkdir(exist_ok=True)
    return path


def converge(collection, install_dir, check=False):
    """One run of the role; its task results per name (the json callback)."""
    playbook = collection.parent.parent.parent / "runtime.yml"
    playbook.write_text(json.dumps([{
        "name": "Module runtime", "hosts": "localhost", "gather_facts": False,
        "roles": [{"role": "p2pvps.fleet.module_runtime"}],
        "vars": {"module_runtime_modules": ["rental"], "module_runtime_install_dir": str(install_dir),
                 "module_runtime_install_ansible": False, "module_runtime_packages": [],
                 "module_runtime_python": sys.executable}}]))
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                      TMPDIR=str(controller_tmp(collection)))
    # this copy first, the project's other collections (ansible.posix's json callback) after it
    env["ANSIBLE_COLLECTIONS_PATH"] = "%s:%s" % (collection.parent.parent.parent, env["ANSIBLE_COLLECTIONS_PATH"])
    cmd = ["ansible-playbook", "-i", "localhost,", "-c", "local", str(playbook),
           "-e", "ansible_python_interpreter=%s" % sys.executable] + (["--check"] if check else [])
    proc = run_ansible(cmd, env=env)
    tasks = json.loads(proc.stdout)["plays"][0]["tasks"]
    return {task["task"]["name"].split(" : ", 1)[-1]: task["hosts"]["localhost"] for task in tasks}


def plugins_of(install_dir):
    return install_dir / "ansible_collections" / "p2pvps" / "fleet" / "plugins"


def installed(install_dir):
    plugins = plugins_of(install_dir)
    return {str(path.relative_to(plugins)): path.read_text() for path in plugins.rglob("*.py")}


def assert_runs_from_byte_code(install_dir, tmp_path):
    """Run the installed module as a unit does; every collection file it loads comes from byte code
    the role compiled (python -v says which cached file matched each source)."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {}}))
    run = subprocess.run([sys.executable, "-v", "-m", "ansible_collections.p2pvps.fleet.plugins.modules.rental",
                          str(args)], env=dict(os.environ, PYTHONPATH=str(install_dir), PYTHONDONTWRITEBYTECODE="1"),
                         capture_output=True, text=True, check=False, timeout=60)
    assert "marketplace_url is required" in run.stdout, (run.stdout, run.stderr[-3000:])
    plugins = plugins_of(install_dir)
    loaded = {line.split(" matches ", 1)[1].strip() for line in run.stderr.splitlines()
              if line.startswith("# ") and " matches " in line}
    used = {str(plugins / "modules" / "rental.py"), str(plugins / "module_utils" / "_api.py"),
            str(plugins / "module_utils" / "_docker.py")}
    assert used <= loaded, sorted(used - loaded)
    for cached in plugins.rglob("*.pyc"):
        assert (cached.stat().st_uid, cached.stat().st_mode & 0o7777) == (0, 0o644), cached
    assert "# code object from '%s'" % (plugins / "modules" / "rental.py") not in run.stderr


def controller_archives(collection):
    return set(controller_tmp(collection).glob("ansible*.tar"))


def test_the_runtime_is_installed_once_and_follows_an_edited_source(collection, tmp_path):
    install_dir = tmp_path / "runtime"
    utils = sorted(path.name for path in (collection / "plugins" / "module_utils").glob("*.py"))
    archives_before = controller_archives(collection)

    dry = converge(collection, install_dir, check=True)
    assert dry["Create the install directory"].get("changed") and dry[INSTALL].get("skipped"), dry
    assert dry[STAMP].get("changed"), dry
    assert not install_dir.exists()

    first = converge(collection, install_dir)
    assert first[INSTALL].get("changed"), first
    archive = Path(first["Make a temporary archive on the controller"]["path"])
    assert archive.parent == controller_tmp(collection), archive
    files = installed(install_dir)
    assert sorted(files) == ["module_utils/" + name for name in utils] + ["modules/rental.py"]
    assert files["modules/rental.py"] == (ROOT / "plugins" / "modules" / "rental.py").read_text()
    plugins = plugins_of(install_dir)
    for path in [plugins / "modules", *plugins.rglob("*.py")]:
        mode = 0o755 if path.is_dir() else 0o644
        assert (path.stat().st_uid, path.stat().st_mode & 0o7777) == (0, mode), path
    # the stamp holds a digest of the sources, not the sources themselves
    assert re.fullmatch(r"[0-9a-f]{64}", (install_dir / ".sources-rental.sha256").read_text())
    # the installed code runs from the byte code the role compiled (the units write none): the module
    # refuses an empty argument file
    assert_runs_from_byte_code(install_dir, tmp_path)

    second = converge(collection, install_dir)
    assert all(second[name].get("skipped") for name in CODE_TASKS), second
    assert not any(result.get("changed") for result in second.values()), second

    # a new version of one module_util (an upgraded collection): check mode says so (unarchive skips
    # itself in check mode, the fingerprint reports the change) and leaves it,
    # the next run installs it, and the run after that copies nothing
    edited = collection / "plugins" / "module_utils" / utils[0]
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert converge(collection, install_dir, check=True)[STAMP].get("changed")
    assert not installed(install_dir)["module_utils/" + utils[0]].endswith("# edited\n")
    assert converge(collection, install_dir)[INSTALL].get("changed")
    assert installed(install_dir)["module_utils/" + utils[0]].endswith("# edited\n")
    assert_runs_from_byte_code(install_dir, tmp_path)   # compiled again, the edited file too
    assert converge(collection, install_dir)[INSTALL].get("skipped")
    # the controller's temporary archives are removed, check mode's too
    assert not archives_before and not controller_archives(collection)
