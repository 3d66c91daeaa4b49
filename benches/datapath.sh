#!/usr/bin/env bash
# Data-path benchmark: the app in the pod namespace talks to servers in a server
# namespace (veth pair, TEST-NET addresses), measured three ways in one run:
#
#   direct     app → server                      (no rules, no proxy)
#   podwarden  app → [init rules] → podwarden-proxy (UID 1337) → server
#   haproxy    app → haproxy in the pod (explicit frontends) → server   (reference proxy)
#
# Workloads, each bounded in time (DURATION seconds, default 10):
#   HTTP/1.1 keep-alive rps + latency percentiles   wrk → nginx (small static file)
#   opaque TCP request/response rps                 redis-benchmark PING_INLINE → redis-server
#   bulk TCP throughput                             iperf3 → iperf3 -s
# and podwarden-proxy's idle RSS. Prints ratios to direct and the targets, and
# the CPU time each proxy process spent (utime+stime from /proc/<pid>/stat)
# per 100k requests / per GB during the same workloads: on a small shared box
# the throughput ratios move with the machine's load, CPU per request much less.
#
# Needs root. Builds podwarden-proxy in release mode. Usage: bash benches/datapath.sh
# Env: DURATION (s), ROUNDS (modes interleaved, median reported; default 1),
#      CONNS (wrk/redis connections, default 16), PROXY_THREADS (default 1, the
#      proxy's default; haproxy gets the same nbthread),
#      PODWARDEN_PROXY_BIN (use this binary instead of building one),
#      PODWARDEN_PROXY_ARGS (extra flags for `podwarden-proxy run`, split on
#      spaces, e.g. "--busy-poll-us 50"; printed with the tables),
#      CPU_LAYOUT (which CPU placements to measure, in this order; default
#      "sidecar shared", both in one run, one table each):
#        sidecar  the load generator and the servers on APP_CPU (default 0),
#                 each proxy on PROXY_CPU (default 1): a Kubernetes sidecar
#                 has its own CPU request and the peers live on other nodes,
#                 so the proxy's work should not come out of the app's CPU.
#                 Direct runs pinned the same way, so its ratios compare the
#                 app's CPU with and without a proxy in front. Also prints
#                 how busy each of the two CPUs was during each workload.
#                 Needs >= 2 CPUs (skipped with a note on 1 CPU).
#        shared   nothing pinned: everything on all CPUs (the layout of the
#                 earlier results; whatever a proxy does costs the client's
#                 and servers' CPU time too).
#      Processes are re-pinned in place (taskset -a -p) between layouts,
#      so both use the same proxy and server processes.
#      OPAQUE_OFFLOAD (the proxy's --opaque-offload: off, auto, sockmap; auto and
#      sockmap also start it with CAP_BPF + CAP_NET_ADMIN as ambient capabilities,
#      which it drops after loading). With sockmap the relaying happens in the
#      kernel (softirq and the psock workqueue), which the proxy's CPU figure
#      below does not include.
set -euo pipefail
trap 'echo "datapath.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
root=$PWD
DURATION="${DURATION:-10}"
CONNS="${CONNS:-16}"
PROXY_THREADS="${PROXY_THREADS:-1}"
ROUNDS="${ROUNDS:-1}"
OPAQUE_OFFLOAD="${OPAQUE_OFFLOAD:-off}"
CPU_LAYOUT="${CPU_LAYOUT:-sidecar shared}"
APP_CPU="${APP_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
ncpu=$(nproc)
layouts=()
for l in $CPU_LAYOUT; do
  case $l in
    sidecar)
      if [ "$ncpu" -lt 2 ]; then
        echo "CPU_LAYOUT: sidecar needs >= 2 CPUs, this script may use $ncpu: measuring shared only" >&2
      else
        layouts+=(sidecar)
      fi ;;
    shared) layouts+=(shared) ;;
    *) echo "CPU_LAYOUT: unknown layout '$l' (sidecar, shared)" >&2; exit 1 ;;
  esac
done
[ "${#layouts[@]}" -gt 0 ] || layouts=(shared)
all_cpus=$(taskset -c -p $$ | sed 's/.*: //')  # the CPUs this script may use (nproc counts them)

if [ "$(id -u)" != 0 ]; then
  echo "datapath.sh needs root (it creates network namespaces)" >&2
  exit 1
fi
bash scripts/setup.sh

if [ -n "${PODWARDEN_PROXY_BIN:-}" ]; then
  BIN=$PODWARDEN_PROXY_BIN  # a prebuilt binary, e.g. to compare two builds in turn
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
  echo "building podwarden-proxy (release)..." >&2
  cargo build -q --release -p podwarden-proxy --bins
  BIN="$CARGO_TARGET_DIR/release/podwarden-proxy"
fi

S="pw-bench-$$"  # namespaces $S-pod, $S-server; scratch dir /tmp/$S.*
POD=192.0.2.10
SERVER=198.51.100.10
. "$root/benches/netns-lib.sh"
make_topology
start_servers 80 6379 5201
server_groups=("${pids[@]}")

# haproxy in the pod, explicit frontends on loopback (a reference, not transparent).
cat >"$work/haproxy.cfg" <<EOF
global
  maxconn 8192
  nbthread $PROXY_THREADS
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend http
  mode http
  bind 127.0.0.1:10080
  default_backend nginx
backend nginx
  mode http
  server s1 $SERVER:80
frontend redis
  mode tcp
  bind 127.0.0.1:16379
  default_backend redis
backend redis
  mode tcp
  server s1 $SERVER:6379
frontend iperf
  mode tcp
  bind 127.0.0.1:15201
  default_backend iperf
backend iperf
  mode tcp
  server s1 $SERVER:5201
EOF

# All three run side by side in the same pod, so modes can be interleaved
# round by round (the median is reported): the rules are applied once, and
# "direct" is the load generator running as the proxy's UID, which the rules
# exempt; haproxy also runs as that UID so its upstream legs go straight out.
[ "$OPAQUE_OFFLOAD" = off ] || bg_caps=(--inh-caps +bpf,+net_admin --ambient-caps +bpf,+net_admin)
read -r -a proxy_args <<<"${PODWARDEN_PROXY_ARGS:-}"
bg proxy pod 1337 env PODWARDEN_LOG=warn PODWARDEN_OPAQUE_OFFLOAD="$OPAQUE_OFFLOAD" "$BIN" run --admin-addr 127.0.0.1:15000 --worker-threads "$PROXY_THREADS" "${proxy_args[@]}"
proxy_group=$last_pid
bg_caps=()
bg haproxy pod 1337 haproxy -f "$work/haproxy.cfg" -db
haproxy_group=$last_pid
for p in 15001 15006 15000 10080 16379 15201; do wait_port pod $p; done
proxy_pid=$(ns pod ss -ltnpH "sport = :15001" | sed -nE 's/.*pid=([0-9]+).*/\1/p' | head -1)
haproxy_pid=$(ns pod ss -ltnpH "sport = :10080" | sed -nE 's/.*pid=([0-9]+).*/\1/p' | head -1)
ns pod "$BIN" init >/dev/null
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
sleep 1
idle_rss=$(rss_mb "$proxy_pid")

declare -A R  # "mode.metric" -> space-separated values, one per round
L=shared  # the layout being measured; keys are "layout.mode.metric"
add() { R[$L.$1]="${R[$L.$1]:-} $2"; }
add_busy() { # mode workload snap0
  local b; b=$(busy "$3" "$(cpu_snap)")
  add "$1.$2_busy_app" "${b%% *}"; add "$1.$2_busy_proxy" "${b##* }"
}
# The load generator runs on $gen_cpus (set per layout, see pin_layout).
gen_cpus=$all_cpus
as() { local uid=$1; shift; taskset -c "$gen_cpus" ip netns exec "$S-pod" setpriv --reuid "$uid" --regid "$uid" --clear-groups -- "$@"; }
pin_layout() { # layout
  case $1 in
    sidecar) gen_cpus=$APP_CPU; pin "$APP_CPU" "${server_groups[@]}"; pin "$PROXY_CPU" "$proxy_group" "$haproxy_group" ;;
    shared) gen_cpus=$all_cpus; pin "$all_cpus" "${server_groups[@]}" "$proxy_group" "$haproxy_group" ;;
  esac
}
# Busy share (everything but idle and iowait, all processes and softirq) of
# the app's and the proxy's CPU between two snapshots, in the sidecar layout.
cpu_snap() { awk -v a="cpu$APP_CPU" -v p="cpu$PROXY_CPU" '$1 == a || $1 == p {t=0; for (i=2; i<=NF; i++) t+=$i; printf "%s %s ", t, $5 + $6}' /proc/stat; }
busy() { # snap0 snap1 -> "app% proxy%"
  python3 -c 'import sys; a=[float(x) for x in sys.argv[1].split()]; b=[float(x) for x in sys.argv[2].split()]
print(" ".join("%.0f" % (100 * (1 - (b[i+1]-a[i+1]) / (b[i]-a[i]))) if b[i] > a[i] else "" for i in (0, 2)))' "$1" "$2" 2>/dev/null || echo ""
}
uid_of() { [ "$1" = podwarden ] && echo 1000 || echo 1337; }
# CPU time (clock ticks, all threads) of the proxy process a mode goes through.
tck=$(getconf CLK_TCK)
pid_of() { case $1 in podwarden) echo "$proxy_pid" ;; haproxy) echo "$haproxy_pid" ;; *) echo "" ;; esac; }
ticks() { local p; p=$(pid_of "$1"); [ -n "$p" ] && awk '{print $14 + $15}' "/proc/$p/stat" || echo 0; }
per() { # ticks0 ticks1 units scale -> CPU seconds per `scale` units ("" when no proxy or no units)
  python3 -c "import sys; t0,t1,n,k=sys.argv[1:]; print('%.3f' % ((float(t1)-float(t0))/$tck/float(n)*float(k)) if n and float(n) > 0 else '')" "$@" 2>/dev/null || echo ""
}

run_wrk() { # mode url
  local out t0 c0
  t0=$(ticks "$1"); c0=$(cpu_snap)
  out=$(as "$(uid_of "$1")" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$2" 2>&1)
  add_busy "$1" http "$c0"
  [ "$1" = direct ] || add "$1.http_cpu" "$(per "$t0" "$(ticks "$1")" "$(awk '/requests in/ {print $1}' <<<"$out")" 100000)"
  echo "$out" >>"$work/wrk-$1.txt"
  add "$1.http_rps" "$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  for q in 50 90 99; do
    add "$1.http_p$q" "$(awk -v q="$q%" '$1 == q {v=$2; u=v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
      f = (u == "us") ? 0.001 : (u == "s") ? 1000 : 1; printf "%.3f", v * f}' <<<"$out")"
  done
  local errs; errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)
  [ -z "$errs" ] || echo "  wrk ($1): $errs" >&2
}
run_redis() { # mode host port
  local n=$((DURATION * 20000)) raw out t0 s0 s1 rps reqs c0
  t0=$(ticks "$1"); s0=$(date +%s.%N); c0=$(cpu_snap)
  raw=$(as "$(uid_of "$1")" timeout $((DURATION * 4)) redis-benchmark -h "$2" -p "$3" -c "$CONNS" -n "$n" -t ping_inline -q 2>&1 | tr '\r' '\n' || true)
  s1=$(date +%s.%N)
  add_busy "$1" tcp "$c0"
  out=$(grep 'requests per second' <<<"$raw" | tail -1 || true)
  if [ -n "$out" ]; then
    rps=$(sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' <<<"$out"); reqs=$n
  else
    # Cut off by the timeout (a loaded machine): the overall rate of its last
    # progress line, over the time it ran.
    rps=$(grep -oE 'rps=[0-9.]+ \(overall: [0-9.]+\)' <<<"$raw" | tail -1 | sed -E 's/.*overall: ([0-9.]+)\)/\1/' || true)
    reqs=$(python3 -c "import sys; print(int(float(sys.argv[1]) * (float(sys.argv[3]) - float(sys.argv[2]))))" "$rps" "$s0" "$s1" 2>/dev/null || echo "")
    echo "  redis-benchmark ($1): cut off after $((DURATION * 4))s; rate from its last progress line: ${rps:-none}" >&2
  fi
  [ "$1" = direct ] || add "$1.tcp_cpu" "$(per "$t0" "$(ticks "$1")" "$reqs" 100000)"
  echo "$out" >>"$work/redis-$1.txt"
  add "$1.tcp_rps" "$rps"
}
run_iperf() { # mode host port
  local out t0 c0
  t0=$(ticks "$1"); c0=$(cpu_snap)
  out=$(as "$(uid_of "$1")" iperf3 -c "$2" -p "$3" -t "$DURATION" -J 2>&1)
  add_busy "$1" bulk "$c0"
  [ "$1" = direct ] || add "$1.bulk_cpu" "$(per "$t0" "$(ticks "$1")" "$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["end"]["sum_received"]["bytes"])' <<<"$out" 2>/dev/null)" 1e9)"
  add "$1.gbps" "$(python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' <<<"$out" 2>/dev/null || echo "")"
}

declare -A LOAD  # layout -> load average at its end
for L in "${layouts[@]}"; do
  pin_layout "$L"
  for round in $(seq "$ROUNDS"); do
    for mode in direct podwarden haproxy; do
      echo "== $L layout, round $round: $mode" >&2
      case $mode in
        haproxy) run_wrk $mode "http://127.0.0.1:10080/"; run_redis $mode 127.0.0.1 16379; run_iperf $mode 127.0.0.1 15201 ;;
        *) run_wrk $mode "http://$SERVER/"; run_redis $mode "$SERVER" 6379; run_iperf $mode "$SERVER" 5201 ;;
      esac
    done
  done
  LOAD[$L]=$(cut -d' ' -f1-3 /proc/loadavg)
done
loaded_rss=$(rss_mb "$proxy_pid")
records=$(ns pod curl -s --max-time 5 http://127.0.0.1:15000/flows | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo "?")
intercepted=$(ns pod iptables -t nat -nvxL PODWARDEN_REDIRECT | awk '$3 == "REDIRECT" {print $1}')

median() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:] if x]; print(("%.3f" % statistics.median(v)).rstrip("0").rstrip(".") if v else "")' $1; }
ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print('%.2f' % (float(a)/float(b)) if a and b and float(b) else '-')" "${1:-}" "${2:-}"; }
row() { # label key [target]
  local d p h
  d=$(median "${R[$L.direct.$2]:-}"); p=$(median "${R[$L.podwarden.$2]:-}"); h=$(median "${R[$L.haproxy.$2]:-}")
  printf "%-30s %12s %12s %7s %12s %7s   %s\n" "$1" "$d" "$p" "$(ratio "$p" "$d")" "$h" "$(ratio "$h" "$d")" "${3:-}"
}
cpu_row() { # label key
  local p h
  p=$(median "${R[$L.podwarden.$2]:-}"); h=$(median "${R[$L.haproxy.$2]:-}")
  printf "%-30s %12s %12s %9s\n" "$1" "$p" "$h" "$(ratio "$p" "$h")"
}
busy_row() { # label workload
  local m cells=()
  for m in direct podwarden haproxy; do
    cells+=("$(median "${R[$L.$m.$2_busy_app]:-}")/$(median "${R[$L.$m.$2_busy_proxy]:-}")")
  done
  printf "%-30s %12s %12s %12s\n" "$1" "${cells[@]}"
}
for L in "${layouts[@]}"; do
  case $L in
    sidecar) where="sidecar layout: load generator + servers on CPU $APP_CPU, each proxy on CPU $PROXY_CPU" ;;
    *) where="shared layout: nothing pinned, everything on CPUs $all_cpus" ;;
  esac
  echo
  echo "podwarden data-path benchmark, $where"
  echo "  ${DURATION}s per run, median of $ROUNDS round(s), $CONNS connections, $ncpu CPUs, proxy threads $PROXY_THREADS, load average at the end of this layout ${LOAD[$L]}"
  [ "${#proxy_args[@]}" -eq 0 ] || echo "  podwarden-proxy run flags: ${proxy_args[*]}"
  printf "%-30s %12s %12s %7s %12s %7s   %s\n" "" "direct" "podwarden" "ratio" "haproxy" "ratio" "target (podwarden/direct)"
  row "HTTP/1.1 rps (wrk → nginx)" http_rps ">= 0.60"
  row "HTTP p50 latency ms" http_p50
  row "HTTP p90 latency ms" http_p90
  row "HTTP p99 latency ms" http_p99
  row "opaque TCP rps (redis PING)" tcp_rps ">= 0.80"
  row "bulk TCP Gbit/s (iperf3)" gbps ">= 0.70"
  echo
  printf "%-30s %12s %12s %9s\n" "proxy CPU seconds (utime+stime)" "podwarden" "haproxy" "pw/hap"
  cpu_row "per 100k HTTP/1.1 requests" http_cpu
  cpu_row "per 100k redis PINGs" tcp_cpu
  cpu_row "per GB bulk TCP" bulk_cpu
  if [ "$L" = sidecar ]; then
    echo
    printf "%-30s %12s %12s %12s\n" "% busy, CPU $APP_CPU (app) / CPU $PROXY_CPU (proxy)" "direct" "podwarden" "haproxy"
    busy_row "  during HTTP/1.1" http
    busy_row "  during redis PING" tcp
    busy_row "  during bulk TCP" bulk
  fi
done
echo
echo "podwarden-proxy RSS: idle ${idle_rss} MB (target <= 15 MB), after load ${loaded_rss} MB; /flows holds $records records"
echo "connections the rules redirected to the proxy: $intercepted (only the podwarden mode's)"
relay=$(ns pod curl -s --max-time 5 http://127.0.0.1:15000/metrics | awk '/^podwarden_opaque_relay_info/ && $2 == 1 {print $1}')
echo "opaque relay: ${relay:-unknown (binary without the metric)} (OPAQUE_OFFLOAD=$OPAQUE_OFFLOAD)"
