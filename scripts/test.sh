#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and end-to-end tests.
# End-to-end tests need root (they create network namespaces); as non-root
# they print why they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace -- --test-threads=2
