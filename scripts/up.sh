#!/usr/bin/env bash
# `make up`: brings the whole system up on this machine in the background and prints its URLs:
#   PostgreSQL (databases `accounts` and `advances`), the Temporal dev server with its Web UI (file-backed, in
#   .data/temporal), the accounts-service, the advances-worker and the advances-api.
# `make down` (scripts/up.sh down) stops what this started. Logs and pid files live in .data/.
# Ports can be moved with ACCOUNTS_LISTEN_ADDR, ADVANCES_LISTEN_ADDR, WORKER_METRICS_ADDR, TEMPORAL_PORT and
# TEMPORAL_UI_PORT; RECONCILE_INTERVAL and the exposure caps (MAX_OUTSTANDING_PER_ACCOUNT, …) pass through
# to the services. Advances get their terms from products (`advances-api product add`), not from settings.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUN="$ROOT/.data/run"; LOGS="$ROOT/.data/logs"
mkdir -p "$RUN" "$LOGS" "$ROOT/.data/temporal"

ACCOUNTS_ADDR="${ACCOUNTS_LISTEN_ADDR:-127.0.0.1:8081}"
ADVANCES_ADDR="${ADVANCES_LISTEN_ADDR:-127.0.0.1:8082}"
METRICS_ADDR="${WORKER_METRICS_ADDR:-127.0.0.1:8083}"
TEMPORAL_PORT="${TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${TEMPORAL_UI_PORT:-8233}"

stop_one() {
    local name="$1" pid
    [ -f "$RUN/$name.pid" ] || return 0
    pid="$(cat "$RUN/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "stopped $name (pid $pid)"
    fi
    rm -f "$RUN/$name.pid"
}

if [ "${1:-}" = down ]; then
    stop_one advances-api
    stop_one advances-worker
    stop_one accounts-service
    stop_one temporal
    "$ROOT/scripts/postgres.sh" stop
    exit 0
fi

# Starts a program in the background, records its pid, and waits until `check` succeeds.
start_one() {
    local name="$1" check="$2"; shift 2
    stop_one "$name"
    nohup "$@" >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    for _ in $(seq 1 300); do
        if eval "$check" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
            echo "$name exited; see $LOGS/$name.log" >&2; tail -20 "$LOGS/$name.log" >&2; exit 1
        fi
        sleep 0.2
    done
    echo "$name did not come up in 60 s; see $LOGS/$name.log" >&2; exit 1
}

"$ROOT/scripts/deps.sh"
TEMPORAL="$("$ROOT/scripts/deps.sh" temporal-path)"
SERVER_URL="$("$ROOT/scripts/postgres.sh")"
BASE="${SERVER_URL%/*}"
for database in accounts advances; do
    psql "$SERVER_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1 \
        || psql "$SERVER_URL" -qc "CREATE DATABASE $database"
done

# The three services alone: built with the workspace's test tools, they would get the tests' hooks too.
cargo build --release --manifest-path "$ROOT/Cargo.toml" -p accounts-service -p advances-api -p advances-activities
BIN="$ROOT/target/release"
ACCOUNTS_DB="${ACCOUNTS_DATABASE_URL:-$BASE/accounts}"
ADVANCES_DB="${ADVANCES_DATABASE_URL:-$BASE/advances}"

# The clients the stack needs, each with only its own scopes. Their tokens are created once and kept in
# .data/tokens.env (git-ignored, mode 600): the databases keep only their hashes.
TOKENS="$ROOT/.data/tokens.env"
touch "$TOKENS"; chmod 600 "$TOKENS"
# ensure_client VAR DATABASE BINARY NAME SCOPES: sets VAR from the file, or adds the client and records its token.
ensure_client() {
    local var="$1" db="$2" bin="$3" name="$4" scopes="$5" token
    token="$(sed -n "s/^$var=//p" "$TOKENS")"
    if [ -z "$token" ]; then
        # A name is never reused; if the file was lost, the client gets a new name.
        token="$(DATABASE_URL="$db" "$BIN/$bin" client add --name "$name" --scopes "$scopes" 2>/dev/null | tail -n 1)" \
            || token="$(DATABASE_URL="$db" "$BIN/$bin" client add --name "$name-$(date +%s)" --scopes "$scopes" | tail -n 1)"
        echo "$var=$token" >>"$TOKENS"
    fi
    printf -v "$var" '%s' "$token"
}
ensure_client WORKER_LEDGER_TOKEN "$ACCOUNTS_DB" accounts-service advances-worker bank:write,accounts:read
ensure_client API_LEDGER_TOKEN "$ACCOUNTS_DB" accounts-service advances-api accounts:read
ensure_client LEDGER_DEMO_TOKEN "$ACCOUNTS_DB" accounts-service demo \
    accounts:read,accounts:write,transfers:write,reports:read,events:read
ensure_client ADVANCES_DEMO_TOKEN "$ADVANCES_DB" advances-api demo advances:read,advances:write,alerts:read,events:read

# The product an advance gets unless it names another: the seed's 12 weekly payments, from 10 to 500. Adding
# the same product again changes nothing.
DATABASE_URL="$ADVANCES_DB" "$BIN/advances-api" product add --name standard --payments 12 --interval 7d \
    --min-amount 10 --max-amount 500 --max-failed-extra-payments 12 >/dev/null

start_one temporal "curl -fsS http://127.0.0.1:$TEMPORAL_UI_PORT/ && (exec 3<>/dev/tcp/127.0.0.1/$TEMPORAL_PORT)" \
    "$TEMPORAL" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
    --db-filename "$ROOT/.data/temporal/temporal.db" --log-level warn \
    --search-attribute AdvanceAccountId=Keyword --search-attribute AdvanceStatus=Keyword

DATABASE_URL="$ACCOUNTS_DB" LISTEN_ADDR="$ACCOUNTS_ADDR" \
    start_one accounts-service "curl -fsS http://$ACCOUNTS_ADDR/health" "$BIN/accounts-service"

export TEMPORAL_ADDRESS="127.0.0.1:$TEMPORAL_PORT" ACCOUNTS_URL="http://$ACCOUNTS_ADDR"
DATABASE_URL="$ADVANCES_DB" METRICS_ADDR="$METRICS_ADDR" ACCOUNTS_API_TOKEN="$WORKER_LEDGER_TOKEN" \
    start_one advances-worker "curl -fsS http://$METRICS_ADDR/health" "$BIN/advances-worker"
DATABASE_URL="$ADVANCES_DB" LISTEN_ADDR="$ADVANCES_ADDR" ACCOUNTS_API_TOKEN="$API_LEDGER_TOKEN" \
    start_one advances-api "curl -fsS http://$ADVANCES_ADDR/health" "$BIN/advances-api"

cat <<URLS
The system is up (logs in .data/logs, stop with: make down)
  accounts-service   http://$ACCOUNTS_ADDR/api/v1/      docs http://$ACCOUNTS_ADDR/docs/
  advances-api       http://$ADVANCES_ADDR/api/v1/advances   docs http://$ADVANCES_ADDR/docs/
  advances-worker    http://$METRICS_ADDR/health   http://$METRICS_ADDR/metrics
  Temporal Web UI    http://127.0.0.1:$TEMPORAL_UI_PORT/   (server 127.0.0.1:$TEMPORAL_PORT, data in .data/temporal)
  health / metrics   http://$ACCOUNTS_ADDR/health  http://$ADVANCES_ADDR/health  (and /metrics on each)
  PostgreSQL         $ACCOUNTS_DB   $ADVANCES_DB
Tokens (also in .data/tokens.env; more clients: target/release/accounts-service client add --name N --scopes …):
  demo client of the ledger (accounts, transfers, reports, events; no bank:write):
    $LEDGER_DEMO_TOKEN
  demo client of the advances-api (advances:read, advances:write, alerts:read, events:read):
    $ADVANCES_DEMO_TOKEN
Products (target/release/advances-api product list; DATABASE_URL=$ADVANCES_DB):
$(DATABASE_URL="$ADVANCES_DB" "$BIN/advances-api" product list | sed 's/^/  /')
URLS
