#!/usr/bin/env bash
# podwarden-waf against libmodsecurity 3 in the same run: full CRS v4 at
# paranoia 1, a benign browser GET, a 4 KiB JSON POST and an SQLi GET.
# Prints each engine's median and the ratio (policies/waf/conformance/DIFFERENTIAL.md
# records the results). Needs libmodsecurity3 (scripts/setup.sh) and CRS in
# ../shared/crs/v4.28.0; skips with a message otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -p podwarden-waf-modsec-ref --bench ratio -- "$@"
