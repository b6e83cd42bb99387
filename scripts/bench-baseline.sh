#!/usr/bin/env bash
# Builds the accounts-service of an older revision in release, for `make bench` to run beside this build:
#   scripts/bench-baseline.sh REV [PATCH]   # prints the binary's path (target/baseline/release/accounts-service)
# The revision is checked out in a worktree under target/ (git-ignored) and built with a target directory of
# its own, so this build's artifacts are untouched. PATCH, when given, is applied to the checkout first: a variant
# of a revision without one feature, to measure what the feature costs (scripts/bench-variants/, BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: scripts/bench-baseline.sh REV [PATCH]}"
# Resolved here, in this checkout: inside the worktree, `HEAD` would name the worktree's last checkout.
rev="$(git rev-parse --verify "$rev^{commit}")"
patch="${2:-}"
src="target/baseline-src"
if [ -d "$src" ]; then
    git -C "$src" checkout -q --force --detach "$rev" >&2
else
    git worktree add -q --detach "$src" "$rev" >&2
fi
if [ -n "$patch" ]; then
    git -C "$src" apply "$(realpath "$patch")" >&2
fi
CARGO_TARGET_DIR="$PWD/target/baseline" cargo build -q --release -p accounts-service --manifest-path "$src/Cargo.toml" >&2
echo "$PWD/target/baseline/release/accounts-service"
