#!/usr/bin/env bash
# The benchmarks' one command: set up this machine (as the tests do), then measure.
#   bash benchmarks/run.sh            full run (about 55 minutes on 2 cores)
#   bash benchmarks/run.sh --quick    a smaller run
# Results: benchmarks/results.json; benchmarks/README.md explains them.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# gnuplot draws the converge curve (benchmarks/converge-curve.png); bootstrap installs it from the
# configured apt sources with the tests' packages (refreshing the package index first)
P2PVPS_EXTRA_PACKAGES="${P2PVPS_EXTRA_PACKAGES:-} gnuplot-nox" bash scripts/bootstrap.sh
# Every simulated Pi's systemd and dockerd hold inotify instances: with the kernel's default of
# 128 per user, Pis after about the 22nd die at boot (docs/scale.md). The curve goes further.
limit=/proc/sys/fs/inotify/max_user_instances
if [ "$(cat "$limit")" -lt 1024 ]; then
    echo 1024 > "$limit" || echo "could not raise $limit: fleets above about 22 Pis will not boot" >&2
fi
. scripts/env.sh
exec flock /tmp/p2pvps-docker.lock python benchmarks/run.py "$@"
