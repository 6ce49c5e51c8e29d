#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this). Sets up a fresh machine
# first, then runs: changelog lint, collection build + ansible-doc, ansible-lint,
# ansible-test sanity, and the pytest suite (unit, server, integration, molecule).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
. scripts/env.sh
step() { printf '\n==== [%4ss] %s\n' "$SECONDS" "$*"; }

step "collection build, install and ansible-doc"
bash scripts/check-collection.sh
step "ansible-lint (production profile)"
ansible-lint --profile production --nocolor -q
step "ansible-test sanity"
bash scripts/sanity.sh
step "pytest"
# Two workers, a test file each at a time (--dist loadfile): the demo fleet, the molecule
# scenarios and the host's renter containers (test_rental_module.py) each stay on one worker.
python -m pytest -n 2 --dist loadfile --durations=30 "$@"
