#!/usr/bin/env bash
# The test command the README gives: formatting, lints, every suite on every
# backend, and the documentation examples. REVSTORE_SOAK=N multiplies case
# counts and durations for long runs.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features --doc
cargo nextest run --workspace --all-features --profile ci
