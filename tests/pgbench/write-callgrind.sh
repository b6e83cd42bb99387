#!/usr/bin/env bash
# Counts the instructions PostgreSQL spends writing groups of transfers (BENCHMARKS.md, "Every account's book:
# where the writing statement's instructions go"): the statement of `db/movements.rs` (`write_rows`) for 16
# transfers between random accounts, then COMMIT, 200 times, in a single-user backend under callgrind, which counts
# the same whatever else the machine is doing.
#   tests/pgbench/write-callgrind.sh BINARY [NAME=SQL]...
# BINARY, an accounts-service build, migrates a scratch database in a private cluster (target/callgrind-pg, port
# 54339): 100 000 accounts and 300 000 of today's rows. Each NAME=SQL is a variant: a copy of that database where SQL
# ran first. "full" (the copy as migrated) is always counted first. Prints the instructions per group of each, and
# for "full" the share of the functions that take the most. Needs valgrind; a few minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
binary="$(realpath "${1:?usage: write-callgrind.sh BINARY [NAME=SQL]...}")"
shift
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
data="$root/target/callgrind-pg"
port=54339
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_cg() { psql -h 127.0.0.1 -p $port -U postgres -qAtX -v ON_ERROR_STOP=1 "$@"; }

rm -rf "$data"
mkdir -p "$data"
[ "$(id -u)" = 0 ] && chown postgres "$data"
as_owner "$bin/initdb" -D "$data/db" -U postgres --auth=trust --encoding=UTF8 >/dev/null
as_owner "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -o "-p $port -c listen_addresses=127.0.0.1 -k $data \
    -c autovacuum=off -c TimeZone=UTC" start >/dev/null
trap 'as_owner "$bin/pg_ctl" -D "$data/db" -m fast stop >/dev/null 2>&1 || true' EXIT
psql_cg -d postgres -c "CREATE DATABASE cg"
DATABASE_URL="postgres://postgres@127.0.0.1:$port/cg" "$binary" client add --name cg --scopes accounts:read >/dev/null
psql_cg -d cg <<'SQL'
INSERT INTO accounts (id, balance)
SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 1000000 FROM generate_series(1, 100000) g;
SELECT setseed(0.25);
INSERT INTO transactions (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status,
                          recorded_by, src_balance_after, dst_balance_after)
SELECT gen_random_uuid(), clock_timestamp(), 'transfer',
       ('00000000-0000-0000-0000-' || lpad(a::text, 12, '0'))::uuid,
       ('00000000-0000-0000-0000-' || lpad(((a + b) % 100000 + 1)::text, 12, '0'))::uuid,
       1, 'credit', 'success', 'cg', 1000000, 1000000
FROM (SELECT 1 + floor(random() * 100000)::int AS a, 1 + floor(random() * 99998)::int AS b
      FROM generate_series(1, 300000)) AS pairs;
ANALYZE;
SQL
variants=("full=SELECT 1" "$@")
for variant in "${variants[@]}"; do
    psql_cg -d postgres -c "CREATE DATABASE \"v_${variant%%=*}\" TEMPLATE cg"
    psql_cg -d "v_${variant%%=*}" -c "${variant#*=}" >/dev/null
done
as_owner "$bin/pg_ctl" -D "$data/db" -m fast stop >/dev/null

# The statement of write_rows for 16 transfers among 32 random accounts, each side's balance written: prepared
# once, run 200 times, each in its own transaction. (Single-user mode with -j: a command ends at ";" + empty line.)
script="$data/groups.sql"
{
    printf 'SELECT setseed(0.5);\n\n'
    sed -e '/^--/d' "$here/write-group.sql"
    printf ';\n\n'
    for _ in $(seq 200); do printf 'BEGIN;\n\nEXECUTE write_group;\n\nCOMMIT;\n\n'; done
} > "$script"
chmod a+r "$script"
for variant in "${variants[@]}"; do
    name="${variant%%=*}"
    out="$data/callgrind.$name.out"
    (cd "$data" && as_owner valgrind --tool=callgrind --callgrind-out-file="$out" \
        --toggle-collect=PortalStart --toggle-collect=PortalRun --toggle-collect=CommitTransactionCommand \
        "$bin/postgres" --single -j -D "$data/db" -c fsync=off -c autovacuum=off "v_$name" < "$script" \
        > "$data/$name.log" 2>&1)
    total=$(sed -n 's/^summary: //p' "$out")
    echo "$name: $((total / 200)) instructions per group of 16 transfers"
done
echo "full, inclusive share of the writing statement and its commit:"
callgrind_annotate --inclusive=yes "$data/callgrind.full.out" 2>/dev/null |
    grep -E ' \?\?\?:(ExecConstraints|ExecCheck|stringToNode|ExecPrepareExpr|RI_FKey_check_ins|ExecInsertIndexTuples|_bt_search|XLogInsert|heap_insert|heap_update) ' |
    sed -e 's/ \[.*//' -e 's/???://'
