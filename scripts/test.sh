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
# Two workers: Docker-heavy groups (demo fleet, molecule, host renter containers) run side by
# side; tests that share a fixture or the host's renter containers stay on one worker (xdist_group).
python -m pytest -n 2 --dist loadgroup "$@"
