#!/usr/bin/env bash
# ansible-test sanity needs the collection under ansible_collections/<ns>/<name>:
# copy the tracked (and new, not ignored) files there and run it with the local
# Python (no --docker on these machines). Extra arguments go to ansible-test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.cache/sanity/ansible_collections/p2pvps/fleet"
rm -rf "$dest" && mkdir -p "$dest"
cd "$root"
git ls-files -z --cached --others --exclude-standard | grep -zv '^\.ci/' \
    | while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done \
    | xargs -0 -I{} cp --parents -P {} "$dest/"
# ansible-test bootstraps pip in each sanity venv with a get-pip script it
# downloads from a host these machines cannot reach. Stand in for it: install
# the same pip version with the venv's pip from the configured package index.
pip_version="$(sed -n "s/^ *pip='\\([0-9.]*\\)',/\\1/p" \
    "$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" | head -n1)"
pip_version="${pip_version:-24.2}"
bootstrap="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ ! -f "$bootstrap" ]; then
    mkdir -p "$(dirname "$bootstrap")" "$root/.cache/wheels"
    pip download -q --no-deps -d "$root/.cache/wheels" "pip==$pip_version" 2>&1 | grep -v '^WARNING: Location' || true
    wheel="$(ls "$root"/.cache/wheels/pip-"$pip_version"-*.whl)"
    cat > "$bootstrap" <<PY
# Local stand-in for ansible-test's get-pip script: run pip from its wheel.
import sys
sys.path.insert(0, "$wheel")
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--disable-pip-version-check", *args]))
PY
fi
cd "$dest"
git init -q . && git add -A >/dev/null
ansible-test sanity --local --python 3.11 --color no "$@"
