#!/usr/bin/env bash
# The test command the README gives: formatting, lints, the documentation
# examples, then every suite on every backend. Installs the cargo tools it
# needs when they are missing. REVSTORE_SOAK=N multiplies case counts and
# durations for long runs.
#
# The PostgreSQL backend's tests need a server: unless REVSTORE_POSTGRES_URL
# names one already, a throwaway server is started for the run
# (scripts/postgres.sh, which installs Debian's postgresql when it is
# missing) and stopped afterwards, also on failure. Where none can be
# started those tests report that they were skipped and why; under CI (CI
# set) that is an error instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features --doc
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps --quiet
if [ -z "${REVSTORE_POSTGRES_URL:-}" ]; then
  if postgres_env=$(./scripts/postgres.sh start); then
    eval "$postgres_env"
    trap './scripts/postgres.sh stop "$REVSTORE_POSTGRES_DIR"' EXIT
  elif [ -n "${CI:-}" ] && [ "${CI}" != false ] && [ "${CI}" != 0 ]; then
    echo "scripts/test.sh: no PostgreSQL server could be started, and CI must run its tests" >&2
    exit 1
  else
    echo "scripts/test.sh: no PostgreSQL server could be started: the PostgreSQL tests will be skipped" >&2
  fi
fi
cargo nextest run --workspace --all-features --profile ci
