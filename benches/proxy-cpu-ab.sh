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
# In the sidecar layout it also reports, per PING, the app's CPU time (the
# utime+stime of redis-benchmark and redis-server, both on APP_CPU: what a
# proxy costs the app's CPU, softirq work included with tick accounting) and
# the rescheduling (RES) and function-call (CAL) interrupts APP_CPU and
# PROXY_CPU received (/proc/interrupts: cross-CPU wake-ups).
#
# Needs root. Usage:
#   VARIANTS="base2=/path/a:2 base1=/path/a:1 new1=/path/b:1" bash benches/proxy-cpu-ab.sh
#   (label=binary:worker-threads[:extra run flags, comma separated], space
#   separated, e.g. spin50=/path/a:1:--busy-poll-us=50); the binary
#   `direct` runs the turn without a proxy (the load generators as the
#   proxy's UID, which the rules exempt) as the app-side baseline.
# Env: REPS (default 3), HTTP_N (100000, 0 = no HTTP run), REDIS_N (100000),
# BULK_N (2G, 0 = no bulk run), CONNS (16), CPU_LAYOUT (shared = nothing
# pinned, the default; sidecar = load generators and servers on APP_CPU (0),
# the proxy on PROXY_CPU (1), as in datapath.sh; needs >= 2 CPUs).
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
redis_pid=$(pgrep -s "${pids[1]}" redis-server | head -1)
if [ "$CPU_LAYOUT" = sidecar ]; then
  pin "$APP_CPU" "${pids[@]}"
  app() { taskset -c "$APP_CPU" ip netns exec "$S-pod" setpriv --reuid "$uid" --regid "$uid" --clear-groups -- "$@"; }
else
  app() { ns pod setpriv --reuid "$uid" --regid "$uid" --clear-groups -- "$@"; }
fi
# irqs KIND: that interrupt's count on APP_CPU and PROXY_CPU ("a p").
irqs() { awk -v k="$1:" -v a=$((APP_CPU + 2)) -v p=$((PROXY_CPU + 2)) '$1 == k {print $a, $p}' /proc/interrupts; }
per_ping() { python3 -c "import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); n=float(sys.argv[3]); print(' '.join('%.3f' % ((float(y)-float(x))/n) for x, y in zip(a, b)))" "$1" "$2" "$3"; }

init_bin=
for v in $VARIANTS; do b=${v#*=}; b=${b%%:*}; [ "$b" = direct ] || { init_bin=$b; break; }; done
ns pod "${init_bin:?a variant with a proxy binary}" init >/dev/null

ticks() { if [ -n "$1" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi; }
switches() { [ -n "$1" ] || { echo 0; return; }; cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
uid=1000
tck=$(getconf CLK_TCK)
declare -A R  # "label.metric" -> values, one per turn

for rep in $(seq "$REPS"); do
  for v in $VARIANTS; do
    label=${v%%=*}; rest=${v#*=}; bin=${rest%%:*}; rest=${rest#*:}; threads=${rest%%:*}
    extra=(); [ "$rest" = "$threads" ] || IFS=, read -r -a extra <<<"${rest#*:}"
    if [ "$bin" = direct ]; then
      uid=1337; pid=; proxy_group=
    else
      uid=1000
      bg "proxy-$label" pod 1337 env PODWARDEN_LOG=warn "$bin" run --admin-addr 127.0.0.1:15000 --worker-threads "$threads" "${extra[@]}"
      proxy_group=$last_pid
      wait_port pod 15001
      [ "$CPU_LAYOUT" = shared ] || pin "$PROXY_CPU" "$proxy_group"
      pid=$(ns pod ss -ltnpH "sport = :15001" | sed -nE 's/.*pid=([0-9]+).*/\1/p' | head -1)
    fi
    # Warm-up: the proxy's lazy start-up work stays out of the figures.
    app h2load --h1 -n 200 -c "$CONNS" "http://$SERVER/" >/dev/null
    if [ "$HTTP_N" != 0 ]; then
      t0=$(ticks "$pid"); c0=$(switches "$pid")
      out=$(app h2load --h1 -n "$HTTP_N" -c "$CONNS" "http://$SERVER/")
      t1=$(ticks "$pid"); c1=$(switches "$pid"); http_s=$(python3 -c "print('%.2f' % (($t1 - $t0) / $tck))")
      ok=$(awk '/^requests:/ {print $8}' <<<"$out")
      [ "$ok" = "$HTTP_N" ] || echo "  $label: h2load: only $ok of $HTTP_N requests succeeded" >&2
      R[$label.http_cpu]+=" $(python3 -c "print('%.3f' % (($t1 - $t0) / $tck / $HTTP_N * 1e5))")"
      R[$label.http_cs]+=" $(python3 -c "print('%.3f' % (($c1 - $c0) / $HTTP_N))")"
    else
      http_s=0; R[$label.http_cpu]+=" 0"; R[$label.http_cs]+=" 0"
    fi
    t0=$(ticks "$pid"); c0=$(switches "$pid"); rs0=$(ticks "$redis_pid"); res0=$(irqs RES); cal0=$(irqs CAL)
    : >"$work/time"; chmod 666 "$work/time"
    rps=$(app /usr/bin/time -o "$work/time" -f '%U %S' redis-benchmark -h "$SERVER" -p 6379 -c "$CONNS" -n "$REDIS_N" -t ping_inline -q 2>/dev/null |
      tr '\r' '\n' | sed -nE 's/.*: ([0-9.]+) requests per second.*/\1/p' | tail -1)
    R[$label.rps]+=" ${rps:-0}"
    rb=$(tail -1 "$work/time")
    t1=$(ticks "$pid"); c1=$(switches "$pid"); rs1=$(ticks "$redis_pid"); res1=$(irqs RES); cal1=$(irqs CAL)
    R[$label.redis_cpu]+=" $(python3 -c "print('%.3f' % (($t1 - $t0) / $tck / $REDIS_N * 1e5))")"
    R[$label.redis_cs]+=" $(python3 -c "print('%.3f' % (($c1 - $c0) / $REDIS_N))")"
    # redis-benchmark's own utime+stime plus redis-server's, per 100k PINGs.
    R[$label.app_cpu]+=" $(python3 -c "import sys; u, s = sys.argv[1].split(); print('%.3f' % ((float(u) + float(s) + ($rs1 - $rs0) / $tck) / $REDIS_N * 1e5))" "$rb")"
    read -r a p <<<"$(per_ping "$res0" "$res1" "$REDIS_N")"; R[$label.res_app]+=" $a"; R[$label.res_proxy]+=" $p"
    read -r a p <<<"$(per_ping "$cal0" "$cal1" "$REDIS_N")"; R[$label.cal_app]+=" $a"
    redis_s=$(python3 -c "print('%.2f' % (($t1 - $t0) / $tck))")
    if [ "$BULK_N" != 0 ]; then
      t0=$(ticks "$pid")
      bytes=$(app iperf3 -c "$SERVER" -p 5201 -n "$BULK_N" -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])')
      t1=$(ticks "$pid")
      R[$label.bulk_cpu]+=" $(python3 -c "print('%.3f' % (($t1 - $t0) / $tck / $bytes * 1e9))")"
    else
      R[$label.bulk_cpu]+=" 0"
    fi
    echo "turn $rep $label: proxy CPU ${http_s} s for HTTP, ${redis_s} s for redis (app${R[$label.app_cpu]##* } s/100k PINGs, ${rps:-?} PINGs/s); load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    if [ -n "$proxy_group" ]; then
      kill -- "-$proxy_group" 2>/dev/null || true
      wait "$proxy_group" 2>/dev/null || true
      for _ in $(seq 100); do listening pod 15001 || break; sleep 0.1; done
    fi
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
if [ "$CPU_LAYOUT" = sidecar ]; then
  echo
  echo "per PING, sidecar layout: the app's CPU (redis-benchmark + redis-server on CPU $APP_CPU) and interrupts received"
  printf "%-10s %26s %26s %26s %26s %26s\n" "variant" "PINGs/s min med" "app CPU s/100k min med" "RES/PING CPU $APP_CPU min med" "RES/PING CPU $PROXY_CPU min med" "CAL/PING CPU $APP_CPU min med"
  for v in $VARIANTS; do
    label=${v%%=*}
    printf "%-10s %26s %26s %26s %26s %26s\n" "$label" "$(stat "${R[$label.rps]}")" "$(stat "${R[$label.app_cpu]}")" "$(stat "${R[$label.res_app]}")" \
      "$(stat "${R[$label.res_proxy]}")" "$(stat "${R[$label.cal_app]}")"
  done
fi
