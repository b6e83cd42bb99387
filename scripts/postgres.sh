#!/usr/bin/env bash
# Prints the URL of a PostgreSQL server to use, starting one if needed:
#   1. $DATABASE_URL when set (used as given);
#   2. else a server on 127.0.0.1:5432 when one answers (user postgres, trust auth);
#   3. else a private cluster in .data/postgres, started from the system's PostgreSQL binaries
#      (installed with apt-get when missing and we are root).
# The URL printed names the maintenance database `postgres`; callers create their own databases.
# `scripts/postgres.sh stop` stops the private cluster if this script started one; `restart` restarts it (the
# bank test's PostgreSQL fault).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DATA="$ROOT/.data/postgres"
PRIVATE_PORT="${PRIVATE_PG_PORT:-54329}"
# The shared server probed first; tests of this script point it elsewhere to exercise the private cluster.
PROBE_PORT="${POSTGRES_PROBE_PORT:-5432}"

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
    local name="$1" dir
    if command -v "$name" >/dev/null 2>&1 && [ "$name" != initdb ] && [ "$name" != pg_ctl ]; then
        command -v "$name"; return
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) /usr/local/bin /usr/bin; do
        if [ -x "$dir/$name" ]; then echo "$dir/$name"; return; fi
    done
    return 1
}

# Runs a command as the owner of the private cluster (PostgreSQL refuses to run as root).
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-}" = stop ]; then
    if [ -f "$DATA/postmaster.pid" ]; then
        as_owner "$(find_bin pg_ctl)" -D "$DATA" -m fast stop >&2 || true
    fi
    exit 0
fi

if [ "${1:-}" = restart ]; then
    [ -f "$DATA/postmaster.pid" ] || { log "no private cluster is running in $DATA"; exit 1; }
    as_owner "$(find_bin pg_ctl)" -D "$DATA" -l "$DATA/server.log" -m fast -w -t 60 restart >&2
    exit 0
fi

if [ -n "${DATABASE_URL:-}" ]; then
    echo "$DATABASE_URL"; exit 0
fi

if pg_isready_bin="$(find_bin pg_isready)" && "$pg_isready_bin" -q -h 127.0.0.1 -p "$PROBE_PORT" -t 3; then
    echo "postgres://postgres@127.0.0.1:$PROBE_PORT/postgres"; exit 0
fi

if ! find_bin initdb >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "no PostgreSQL binaries: installing them with apt-get"
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    else
        log "no PostgreSQL server answers and no PostgreSQL binaries are installed; set DATABASE_URL"; exit 1
    fi
fi
INITDB="$(find_bin initdb)"; PG_CTL="$(find_bin pg_ctl)"

mkdir -p "$DATA"
if [ "$(id -u)" = 0 ]; then chown -R postgres "$DATA" 2>/dev/null || { id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres; chown -R postgres "$DATA"; }; fi
if [ ! -f "$DATA/PG_VERSION" ]; then
    log "creating a private cluster in $DATA"
    as_owner "$INITDB" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 >&2
fi
if ! as_owner "$PG_CTL" -D "$DATA" status >/dev/null 2>&1; then
    log "starting the private cluster on 127.0.0.1:$PRIVATE_PORT"
    as_owner "$PG_CTL" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
        -o "-p $PRIVATE_PORT -c listen_addresses=127.0.0.1 -k $DATA -c max_connections=300" start >&2
fi
echo "postgres://postgres@127.0.0.1:$PRIVATE_PORT/postgres"
