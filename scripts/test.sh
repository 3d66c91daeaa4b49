#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, property and end-to-end tests.
# End-to-end tests need root (they create network namespaces); as non-root
# they print why they skip. As root a skip is a failure (PODWARDEN_E2E_STRICT=1):
# in CI a missing tool must not pass silently.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# e2e tests run the binaries; they find them next to the test executables
# (CARGO_TARGET_DIR is honoured) or in PODWARDEN_BIN_DIR.
cargo build --workspace --bins
if [ "$(id -u)" = 0 ]; then
  export PODWARDEN_E2E_STRICT="${PODWARDEN_E2E_STRICT:-1}"
fi
cargo test --workspace -- --test-threads=2
if [ -f scripts/check-chart.sh ]; then
  bash scripts/check-chart.sh
fi
# The image's root filesystem, assembled as the Dockerfile does, checked without a container runtime.
if [ -f scripts/check-image.sh ]; then
  bash scripts/check-image.sh
fi
