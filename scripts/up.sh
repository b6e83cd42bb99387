#!/usr/bin/env bash
# `make up`: brings the system up on this machine in the background and prints its URLs.
# `make down` (scripts/up.sh down) stops what this started. Logs and pid files live in .data/.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN="$ROOT/.data/run"; LOGS="$ROOT/.data/logs"
mkdir -p "$RUN" "$LOGS"

stop_one() {
    local name="$1" pid
    [ -f "$RUN/$name.pid" ] || return 0
    pid="$(cat "$RUN/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$RUN/$name.pid"
}

if [ "${1:-}" = down ]; then
    stop_one accounts-service
    "$ROOT/scripts/postgres.sh" stop
    exit 0
fi

SERVER_URL="$("$ROOT/scripts/postgres.sh")"
BASE="${SERVER_URL%/*}"
psql "$SERVER_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = 'accounts'" | grep -q 1 \
    || psql "$SERVER_URL" -qc "CREATE DATABASE accounts"

cargo build --release --bins --manifest-path "$ROOT/Cargo.toml"

ACCOUNTS_ADDR="${ACCOUNTS_LISTEN_ADDR:-127.0.0.1:8081}"
stop_one accounts-service
DATABASE_URL="${ACCOUNTS_DATABASE_URL:-$BASE/accounts}" LISTEN_ADDR="$ACCOUNTS_ADDR" \
    nohup "$ROOT/target/release/accounts-service" >>"$LOGS/accounts-service.log" 2>&1 &
echo $! >"$RUN/accounts-service.pid"

for _ in $(seq 1 150); do
    if curl -fsS "http://$ACCOUNTS_ADDR/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$(cat "$RUN/accounts-service.pid")" 2>/dev/null; then
        echo "accounts-service exited; see $LOGS/accounts-service.log" >&2; tail -20 "$LOGS/accounts-service.log" >&2; exit 1
    fi
    sleep 0.2
done
curl -fsS "http://$ACCOUNTS_ADDR/health" >/dev/null

cat <<URLS
The system is up (logs in .data/logs, stop with: make down)
  accounts-service   http://$ACCOUNTS_ADDR/api/v1/
  API docs           http://$ACCOUNTS_ADDR/docs/
  OpenAPI            http://$ACCOUNTS_ADDR/api/v1/openapi.json
  health / metrics   http://$ACCOUNTS_ADDR/health   http://$ACCOUNTS_ADDR/metrics
  PostgreSQL         $BASE/accounts
URLS
