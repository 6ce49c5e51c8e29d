#!/usr/bin/env bash
# The main job (README): set up this machine, then run the whole story with a local
# marketplace, a tunnel server and 3 simulated Pis. `bash scripts/demo.sh down` cleans up.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
. scripts/env.sh
exec python scripts/demo.py "$@"
