#!/usr/bin/env bash
# Installs every system package podwarden's demo, tests and benchmarks need.
# Idempotent; safe to run on a fresh Debian machine as root, with no stdin.
set -euo pipefail
pkgs=(
  # namespaces, rules, processes as other UIDs
  iptables iproute2 util-linux procps
  # clients and servers the demo, e2e tests and benches drive
  curl ca-certificates openssl python3 dnsutils iputils-ping netcat-openbsd tcpdump
  redis-server redis-tools nginx nghttp2-client nghttp2-server
  # reference proxy and load generators for benches/datapath.sh
  haproxy wrk iperf3
  # promtool (e2e: the metrics of a live proxy pass `promtool check metrics`)
  prometheus
  # native build dependencies of some crates
  pkg-config cmake
  # reference WAF the differential tests and benches/waf-vs-modsec.sh load (dlopen)
  libmodsecurity3
  # setcap/getcap: scripts/image-rootfs.sh gives the proxy its file capabilities (check-image.sh)
  libcap2-bin
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Daemons must not start on install (the tests run their own, in namespaces).
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >/dev/null
  if ((created_policy)); then rm -f "$policy"; fi
fi
