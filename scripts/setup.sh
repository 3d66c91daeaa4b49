#!/usr/bin/env bash
# Installs every system package podwarden's demo, tests and benchmarks need.
# Idempotent; safe to run on a fresh Debian machine as root.
set -euo pipefail
pkgs=(
  iptables iproute2 procps curl ca-certificates openssl python3
  redis-server redis-tools netcat-openbsd dnsutils
  nghttp2-client haproxy wrk iperf3 nginx
  pkg-config cmake
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Services the packages start on install would hold ports the tests use.
for svc in redis-server nginx haproxy; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
  pkill -x "$svc" 2>/dev/null || true
done
