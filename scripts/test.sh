#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this). Sets up a fresh machine
# first, then runs: changelog lint, collection build + ansible-doc, ansible-lint and
# ansible-test sanity (side by side), then the pytest suite (unit, server, integration, molecule) with
# the server suite again on PostgreSQL beside it (a throw-away cluster: scripts/postgres.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
. scripts/env.sh
step() { printf '\n==== [%4ss] %s\n' "$SECONDS" "$*"; }

# The three static checks run side by side: each is mostly one process, and they write to
# separate places (.cache/build, .cache/sanity). Each one's output is shown whole once all end.
run_check() {   # name, command...: output to $checks/name, "rc seconds" to $checks/name.rc
    local name="$1" started="$SECONDS" rc=0
    shift
    "$@" > "$checks/$name" 2>&1 || rc=$?
    echo "$rc $((SECONDS - started))" > "$checks/$name.rc"
}
step "static checks, side by side: collection build + ansible-doc, ansible-lint, ansible-test sanity"
checks="$(mktemp -d)"
run_check "collection build, install and ansible-doc" bash scripts/check-collection.sh &
run_check "ansible-lint (production profile)" ansible-lint --profile production --nocolor -q &
run_check "ansible-test sanity" bash scripts/sanity.sh &
wait
failed=0
[ "$(find "$checks" -name '*.rc' | wc -l)" = 3 ] || failed=1   # a check killed before its end
for log in "$checks"/*.rc; do
    read -r rc seconds < "$log"
    printf '\n---- %s: exit %s after %s s\n' "$(basename "$log" .rc)" "$rc" "$seconds"
    cat "${log%.rc}"
    [ "$rc" = 0 ] || failed=1
done
rm -rf "$checks"
[ "$failed" = 0 ] || { echo "a static check failed (above)" >&2; exit 1; }
# The server suite on PostgreSQL runs beside the main suite, one worker (a throw-away cluster:
# scripts/postgres.sh): much of it is waiting (held check-ins, expiries), which the main suite's
# workers fill; run after it, it was a tail of about 3 minutes.
pg_pid=""
if [ "$#" -eq 0 ]; then
    pg_dir="$(mktemp -d /var/tmp/p2pvps-pg-XXXXXX)"
    trap 'bash scripts/postgres.sh stop "$pg_dir"' EXIT
    pg_port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    pg_url="$(bash scripts/postgres.sh start "$pg_dir" "$pg_port")"
    step "server suite on PostgreSQL started beside pytest (its output follows pytest's)"
    P2PVPS_TEST_POSTGRES="$pg_url" python -m pytest -n 1 --basetemp "$pg_dir/pytest" -p no:cacheprovider \
        --durations=10 tests/server > "$pg_dir/pytest.log" 2>&1 &
    pg_pid=$!
fi

step "pytest"
# Three workers on CI's two cores, a test file each at a time (--dist loadfile): much of an
# integration test is waiting (device timers, tunnels, the devices' own work), so a third worker
# fills that time. The demo fleet, the molecule scenarios and the host's renter containers
# (test_rental_module.py) each stay on one worker. Files are handed out in the order
# tests/conftest.py sorts them (the longest first), not by their number of tests.
rc=0
python -m pytest -n "${P2PVPS_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder --durations=40 "$@" || rc=$?

if [ -n "$pg_pid" ]; then
    pg_rc=0
    wait "$pg_pid" || pg_rc=$?
    step "server suite on PostgreSQL (ran beside pytest)"
    cat "$pg_dir/pytest.log"
    echo "PostgreSQL server suite: exit $pg_rc"
    [ "$pg_rc" = 0 ] || rc=1
fi
exit "$rc"
