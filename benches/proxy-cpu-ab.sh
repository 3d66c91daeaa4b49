#!/usr/bin/env bash
# A/B of podwarden-proxy builds or settings by the proxy's CPU time per
# request, on a box too loaded for throughput ratios to mean much.
#
# One pod namespace and one server namespace (TEST-NET addresses, as in
# datapath.sh) with nginx and redis; the `init` rules stay in place while the
# variants take turns as the proxy (UID 1337), round-robin, REPS times. Each
# turn sends a fixed number of requests through the transparent path:
#   HTTP/1.1 keep-alive  h2load --h1 -n HTTP_N -c CONNS → nginx (512-byte file)
#   opaque TCP           redis-benchmark -n REDIS_N -c CONNS PING_INLINE → redis
#   bulk TCP             iperf3 -n BULK_N (one stream, app → server) → iperf3
# and reports, per variant, the proxy's CPU seconds (utime+stime, all threads)
# per 100k requests and per GB, and its context switches per request
# (voluntary + involuntary, all threads), min and median over the turns. The work is the
# same in every turn, so these compare variants even while the machine's load
# moves; the minimum is the least-disturbed turn.
#
# Needs root. Usage:
#   VARIANTS="base2=/path/a:2 base1=/path/a:1 new1=/path/b:1" bash benches/proxy-cpu-ab.sh
#   (label=binary:worker-threads, space separated)
# Env: REPS (default 3), HTTP_N (100000), REDIS_N (100000), BULK_N (2G, 0 = no
# bulk run), CONNS (16), CPU_LAYOUT (shared = nothing pinned, the default;
# sidecar = load generators and servers on APP_CPU (0), the proxy on
# PROXY_CPU (1), as in datapath.sh; needs >= 2 CPUs).
set -euo pipefail
trap 'echo "proxy-cpu-ab.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
REPS="${REPS:-3}"
HTTP_N="${HTTP_N:-100000}"
REDIS_N="${REDIS_N:-100000}"
BULK_N="${BULK_N:-2G}"
CONNS="${CONNS:-16}"
CPU_LAYOUT="${CPU_LAYOUT:-shared}"
APP_CPU="${APP_CPU:-0}"
PROXY_CPU="${PROXY_CPU:-1}"
case $CPU_LAYOUT in
  shared) ;;
  sidecar) [ "$(nproc)" -ge 2 ] || { echo "CPU_LAYOUT=sidecar needs >= 2 CPUs; using shared" >&2; CPU_LAYOUT=shared; } ;;
  *) echo "CPU_LAYOUT: sidecar or shared, not '$CPU_LAYOUT'" >&2; exit 1 ;;
esac
: "${VARIANTS:?set VARIANTS=\"label=binary:threads ...\"}"
[ "$(id -u)" = 0 ] || { echo "proxy-cpu-ab.sh needs root" >&2; exit 1; }

S="pw-ab-$$"
POD=192.0.2.20
SERVER=198.51.100.20
. "$(dirname "$0")/netns-lib.sh"
make_topology
start_servers 80 6379 5201
if [ "$CPU_LAYOUT" = sidecar ]; then
  pin "$APP_CPU" "${pids[@]}"
  app() { taskset -c "$APP_CPU" ip netns exec "$S-pod" setpriv --reuid 1000 --regid 1000 --clear-groups -- "$@"; }
fi

first=${VARIANTS%% *}; first=${first#*=}
ns pod "${first%:*}" init >/dev/null

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
tck=$(getconf CLK_TCK)
declare -A R  # "label.metric" -> values, one per turn

for rep in $(seq "$REPS"); do
  for v in $VARIANTS; do
    label=${v%%=*}; rest=${v#*=}; bin=${rest%:*}; threads=${rest##*:}
    bg "proxy-$label" pod 1337 env PODWARDEN_LOG=warn "$bin" run --admin-addr 127.0.0.1:15000 --worker-threads "$threads"
    proxy_group=$last_pid
    [ "$CPU_LAYOUT" = shared ] || pin "$PROXY_CPU" "$proxy_group"
    wait_port pod 15001
    pid=$(ns pod ss -ltnpH "sport = :15001" | sed -nE 's/.*pid=([0-9]+).*/\1/p' | head -1)
    # Warm-up: the proxy's lazy start-up work stays out of the figures.
    app h2load --h1 -n 200 -c "$CONNS" "http://$SERVER/" >/dev/null
    t0=$(ticks "$pid"); c0=$(switches "$pid")
    out=$(app h2load --h1 -n "$HTTP_N" -c "$CONNS" "http://$SERVER/")
    t1=$(ticks "$pid"); c1=$(switches "$pid"); http_s=$(python3 -c "print('%.2f' % (($t1 - $t0) / $tck))")
    ok=$(awk '/^requests:/ {print $8}' <<<"$out")
    [ "$ok" = "$HTTP_N" ] || echo "  $label: h2load: only $ok of $HTTP_N requests succeeded" >&2
    R[$label.http_cpu]+=" $(python3 -c "print('%.3f' % (($t1 - $t0) / $tck / $HTTP_N * 1e5))")"
    R[$label.http_cs]+=" $(python3 -c "print('%.3f' % (($c1 - $c0) / $HTTP_N))")"
    t0=$(ticks "$pid"); c0=$(switches "$pid")
    app redis-benchmark -h "$SERVER" -p 6379 -c "$CONNS" -n "$REDIS_N" -t ping_inline -q >/dev/null 2>&1
    t1=$(ticks "$pid"); c1=$(switches "$pid")
    R[$label.redis_cpu]+=" $(python3 -c "print('%.3f' % (($t1 - $t0) / $tck / $REDIS_N * 1e5))")"
    R[$label.redis_cs]+=" $(python3 -c "print('%.3f' % (($c1 - $c0) / $REDIS_N))")"
    redis_s=$(python3 -c "print('%.2f' % (($t1 - $t0) / $tck))")
    if [ "$BULK_N" != 0 ]; then
      t0=$(ticks "$pid")
      bytes=$(app iperf3 -c "$SERVER" -p 5201 -n "$BULK_N" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])')
      t1=$(ticks "$pid")
      R[$label.bulk_cpu]+=" $(python3 -c "print('%.3f' % (($t1 - $t0) / $tck / $bytes * 1e9))")"
    else
      R[$label.bulk_cpu]+=" 0"
    fi
    echo "turn $rep $label: proxy CPU ${http_s} s for HTTP, ${redis_s} s for redis; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    kill -- "-$proxy_group" 2>/dev/null || true
    wait "$proxy_group" 2>/dev/null || true
    for _ in $(seq 100); do listening pod 15001 || break; sleep 0.1; done
  done
done

stat() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print("%.3f %.3f" % (min(v), statistics.median(v)))' $1; }
echo
echo "proxy CPU per request, $REPS turn(s) per variant, $CONNS connections, $(nproc) CPUs, CPU_LAYOUT=$CPU_LAYOUT, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-10s %26s %26s %26s %26s %20s\n" "variant" "CPU s/100k HTTP min med" "switches/HTTP req min med" "CPU s/100k redis min med" "switches/PING min med" "CPU s/GB min med"
for v in $VARIANTS; do
  label=${v%%=*}
  printf "%-10s %26s %26s %26s %26s %20s\n" "$label" "$(stat "${R[$label.http_cpu]}")" "$(stat "${R[$label.http_cs]}")" \
    "$(stat "${R[$label.redis_cpu]}")" "$(stat "${R[$label.redis_cs]}")" "$(stat "${R[$label.bulk_cpu]}")"
done
