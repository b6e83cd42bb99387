# The two commands a newcomer needs: `make up` and `make test`. See README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help up down test bench lint schemathesis chaos

help:
	@echo "make up     - bring the system up in the background and print its URLs (make down stops it)"
	@echo "make test   - everything the tests need, then all tests"
	@echo "make bench  - release benchmarks; figures go to BENCHMARKS.md (BASELINE=<rev>: an older ledger beside this one)"
	@echo "make lint   - cargo fmt --check and clippy"
	@echo "make chaos  - the bank test under faults at full size (RELIABILITY.md)"
	@echo "make schemathesis - both services' OpenAPI specs against generated input (100 examples per operation)"

up:
	@scripts/up.sh

down:
	@scripts/up.sh down

# The binaries and the tests are built in one invocation, so that the features dev-dependencies turn on are
# unified once: built apart, every crate those features reach (the whole Temporal SDK) compiles twice.
# The system tests mostly wait on timers and child processes, not on the CPU: four at a time, not two.
test:
	@export TEST_TEMPORAL_CLI="$$(scripts/deps.sh temporal-path)" && \
	  export TEST_DATABASE_URL="$$(scripts/postgres.sh)" && \
	  cargo build --workspace --bins --tests && \
	  RUST_TEST_THREADS="$${RUST_TEST_THREADS:-4}" cargo test --workspace && \
	  SCHEMATHESIS_EXAMPLES=25 scripts/schemathesis.sh

schemathesis:
	@cargo build --workspace --bins && scripts/schemathesis.sh

# The bank test at full size against the private PostgreSQL cluster (so that it can be restarted).
chaos:
	@export TEST_TEMPORAL_CLI="$$(scripts/deps.sh temporal-path)" && cargo build --release --bins && \
	  export TEST_DATABASE_URL="$$(POSTGRES_PROBE_PORT=1 scripts/postgres.sh)" && \
	  CHAOS_PG_RESTART="$(CURDIR)/scripts/postgres.sh restart" target/release/chaos

# `make bench BASELINE=<git rev>` also runs that revision's accounts-service beside this one (one keyed client).
bench:
	@scripts/deps.sh && export TEST_DATABASE_URL="$$(scripts/postgres.sh)" && \
	  if [ -n "$(BASELINE)" ]; then export BENCH_BASELINE_LEDGER="$$(scripts/bench-baseline.sh $(BASELINE))"; fi && \
	  cargo build --release --bins && \
	  target/release/bench

lint:
	scripts/deps.sh
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
