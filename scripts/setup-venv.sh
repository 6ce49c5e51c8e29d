#!/usr/bin/env bash
# Create .venv from the pinned requirements and lay out the collections Ansible
# needs: this collection itself (symlinked) and community.docker, ansible.posix,
# community.general taken from the `ansible` package on PyPI (Galaxy is not
# reachable everywhere we run). Re-running is cheap: nothing is redone.
#
# A fresh clone (CI) reuses a venv built by an earlier run on the same machine: the venv
# lives in the user's cache ($P2PVPS_CACHE_DIR, default ~/.cache/p2pvps-fleet), named by a
# hash of the pinned requirements and of the Python that runs it, and .venv links to it. A
# venv is never changed once its stamp is written; a new pin makes a new one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
cache="$root/.cache"
shared="${P2PVPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/p2pvps-fleet}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
stamp_name=".requirements.sha256"
want="$( (cat "$root/requirements.txt" "$root/server/requirements.txt"; "$python" -VV; command -v "$python") \
    | sha256sum | cut -d' ' -f1)"

build_venv() {   # $1: where; the stamp is written last, so a half-built venv is never used
    rm -rf "$1"
    "$python" -m venv "$1"
    "$1/bin/pip" install -q --disable-pip-version-check -r "$root/requirements.txt" 2>&1 \
        | grep -v "^WARNING: Location" || true
    "$1/bin/pip" check >/dev/null
    echo "$want" > "$1/$stamp_name"
}

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/$stamp_name" 2>/dev/null)" != "$want" ]; then
    cached="$shared/venv-${want:0:16}"
    mkdir -p "$shared"
    (
        flock 9
        [ "$(cat "$cached/$stamp_name" 2>/dev/null)" = "$want" ] || build_venv "$cached"
    ) 9>"$shared/venv.lock"
    rm -rf "$venv"
    ln -s "$cached" "$venv"
fi

collections="$cache/collections/ansible_collections"
ansible_pkg="ansible==12.3.0"
if [ ! -f "$collections/community/docker/MANIFEST.json" ]; then
    mkdir -p "$shared/wheels" "$collections"
    "$venv/bin/pip" download -q --no-deps --disable-pip-version-check -d "$shared/wheels" "$ansible_pkg" 2>&1 \
        | grep -v "^WARNING: Location" || true
    "$venv/bin/python" - "$shared/wheels" "$collections" "${ansible_pkg#ansible==}" <<'PY'
import pathlib, sys, zipfile
wheels, dest, version = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
wanted = ("ansible_collections/community/docker/", "ansible_collections/ansible/posix/",
          "ansible_collections/community/general/")
wheel = next(wheels.glob(f"ansible-{version}-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(wanted):
            archive.extract(name, dest.parent)
PY
fi
mkdir -p "$collections/p2pvps"
ln -sfn "$root" "$collections/p2pvps/fleet"
echo "venv ready: $venv"
