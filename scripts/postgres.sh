#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the server tests and the benchmarks (Debian's
# `postgresql` package; scripts/bootstrap.sh installs it). It listens on a unix socket in
# DIR and on 127.0.0.1:PORT, runs as the `postgres` user and trusts local connections.
# fsync is off: the cluster holds test data only and is deleted by `stop`.
#   usage: scripts/postgres.sh start DIR [PORT]   prints the admin URL (SQLAlchemy, psycopg)
#          scripts/postgres.sh stop DIR
set -euo pipefail
action="${1:?start or stop}"
dir="${2:?directory of the cluster}"
port="${3:-55432}"
bin="$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
as_postgres() { runuser -u postgres -- "$@"; }

case "$action" in
start)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        install -d -o postgres -g postgres -m 0700 "$dir" "$dir/data"
        as_postgres "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale C.UTF-8 >/dev/null
    fi
    if ! as_postgres "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
            "-k $dir -h 127.0.0.1 -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" >/dev/null
    fi
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    if [ -f "$dir/data/PG_VERSION" ]; then
        as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: $0 start|stop DIR [PORT]" >&2
    exit 2
    ;;
esac
