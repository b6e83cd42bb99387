#!/usr/bin/env bash
# One keyed client against one accounts-service with BATCH_COMMITTERS=0, profiled (BENCHMARKS.md, "One money
# path"). Run from a scratch directory, which receives the logs and perf-NAME.data:
#   tests/pgbench/lone-service.sh BINARY NAME PORT
# A fresh database prof_NAME on 127.0.0.1:5432, 200 funded accounts, 3 s of warm-up, then 12 s of keyed transfers
# from lone-client.py (which prints the p50) while perf samples the service for 8 s.
set -e
here="$(cd "$(dirname "$0")" && pwd)"
bin=$1; name=$2; port=$3
db=prof_$name
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" 2>/dev/null
url=postgres://postgres@127.0.0.1:5432/$db
token=$(DATABASE_URL=$url $bin client add --name bench --scopes accounts:read,transfers:write | tail -n 1)
psql -h 127.0.0.1 -U postgres $db -qAtc "INSERT INTO accounts (id, balance) SELECT ('00000000-0000-0000-0000-' || lpad(g::text, 12, '0'))::uuid, 1000000 FROM generate_series(1, 200) g RETURNING id" > accounts-$name.txt
DATABASE_URL=$url LISTEN_ADDR=127.0.0.1:$port BATCH_COMMITTERS=0 RUST_LOG=warn $bin > svc-$name.log 2>&1 &
pid=$!
for i in $(seq 50); do curl -fsS http://127.0.0.1:$port/health >/dev/null 2>&1 && break; sleep 0.2; done
python3 "$here/lone-client.py" $port $token 3 accounts-$name.txt >/dev/null  # warm up
python3 "$here/lone-client.py" $port $token 12 accounts-$name.txt &
drv=$!
sleep 2
perf record -F 999 -g -p $pid -o perf-$name.data -- sleep 8 2>/dev/null >/dev/null
wait $drv
kill $pid; wait $pid 2>/dev/null || true
