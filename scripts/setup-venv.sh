#!/usr/bin/env bash
# Create .venv from the pinned requirements and lay out the collections Ansible
# needs: this collection itself (symlinked) and community.docker, ansible.posix,
# community.general taken from the `ansible` package on PyPI (Galaxy is not
# reachable everywhere we run). Re-running is cheap: nothing is redone.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
cache="$root/.cache"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
stamp="$venv/.requirements.sha256"
want="$(cat "$root/requirements.txt" "$root/server/requirements.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/requirements.txt" 2>&1 \
        | grep -v "^WARNING: Location" || true
    "$venv/bin/pip" check >/dev/null
    echo "$want" > "$stamp"
fi

collections="$cache/collections/ansible_collections"
ansible_pkg="ansible==12.3.0"
if [ ! -f "$collections/community/docker/MANIFEST.json" ]; then
    mkdir -p "$cache/wheels" "$collections"
    "$venv/bin/pip" download -q --no-deps --disable-pip-version-check -d "$cache/wheels" "$ansible_pkg" 2>&1 \
        | grep -v "^WARNING: Location" || true
    "$venv/bin/python" - "$cache/wheels" "$collections" <<'PY'
import pathlib, sys, zipfile
wheels, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wanted = ("ansible_collections/community/docker/", "ansible_collections/ansible/posix/",
          "ansible_collections/community/general/")
wheel = sorted(wheels.glob("ansible-*.whl"))[-1]
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(wanted):
            archive.extract(name, dest.parent)
PY
fi
mkdir -p "$collections/p2pvps"
ln -sfn "$root" "$collections/p2pvps/fleet"
echo "venv ready: $venv"
