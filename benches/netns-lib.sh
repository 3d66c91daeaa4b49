# Sourced by the bench scripts (datapath.sh, proxy-cpu-ab.sh): a pod namespace
# and a server namespace on one veth (TEST-NET addresses, nothing routed
# anywhere else), the servers the workloads talk to, background processes in
# their own process groups, and cleanup of all of it on exit.
#
# The caller sets S (namespace prefix), POD and SERVER before sourcing.

work=$(mktemp -d "/tmp/$S.XXXXXX")
chmod 755 "$work"
pids=()
bg_caps=()  # extra setpriv flags for the next bg (e.g. the proxy's capabilities)
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null; done
  wait 2>/dev/null
  for n in pod server; do
    for p in $(ip netns pids "$S-$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$S-$n" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

ns() { local n=$1; shift; ip netns exec "$S-$n" "$@"; }
app() { ns pod setpriv --reuid 1000 --regid 1000 --clear-groups -- "$@"; }
# bg LOG NS UID CMD...: a background process in namespace NS as UID (- for
# root), in its own process group so cleanup kills all of it.
bg() {
  local log=$1 n=$2 uid=$3; shift 3
  local priv=()
  [ "$uid" = - ] || priv=(setpriv --reuid "$uid" --regid "$uid" --clear-groups "${bg_caps[@]}" --)
  setsid ip netns exec "$S-$n" "${priv[@]}" "$@" >"$work/$log.log" 2>&1 &
  pids+=($!)
  last_pid=$!
}
# pin CPUS GROUP...: every thread of every process in the sessions that bg
# started (setsid: session id = the bg pid) allowed on CPUS only; threads
# started later inherit it.
pin() {
  local cpus=$1 g p found; shift
  for g in "$@"; do
    found=
    for p in $(pgrep -s "$g"); do taskset -a -p -c "$cpus" "$p" >/dev/null; found=1; done
    [ -n "$found" ] || { echo "pin: no process in session $g" >&2; exit 1; }
  done
}
listening() { ns "$1" ss -ltnH | awk '{print $4}' | grep -q ":$2\$"; }
wait_port() { # ns port
  for _ in $(seq 100); do listening "$1" "$2" && return 0; sleep 0.1; done
  echo "nothing listening on $2 in $1" >&2; tail -n 20 "$work"/*.log >&2; exit 1
}

# pod <-> server on one veth; nothing routes anywhere else.
make_topology() {
  ip netns add "$S-pod"; ip netns add "$S-server"
  for n in pod server; do ns $n ip link set lo up; done
  ip -n "$S-pod" link add eth0 type veth peer name eth0 netns "$S-server"
  ip -n "$S-pod" addr add "$POD/24" dev eth0
  ip -n "$S-server" addr add "$SERVER/24" dev eth0
  ip -n "$S-pod" link set eth0 up; ip -n "$S-server" link set eth0 up
  ip -n "$S-pod" route add "$SERVER/32" dev eth0
  ip -n "$S-server" route add "$POD/32" dev eth0
}

# start_servers PORT...: nginx (80, a 512-byte file), redis (6379) and
# iperf3 (5201) in the server namespace, each one asked for.
start_servers() {
  local p
  for p in "$@"; do
    case $p in
      80)
        mkdir -p "$work/www" "$work/nginx"
        head -c 512 /dev/zero | tr '\0' 'x' >"$work/www/index.html"
        cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 80; root $work/www; }
}
NGINX
        bg nginx server - nginx -c "$work/nginx.conf" ;;
      6379) bg redis server - redis-server --port 6379 --bind 0.0.0.0 --protected-mode no --save "" --appendonly no --dir "$work" ;;
      5201) bg iperf server - iperf3 -s -p 5201 ;;
      *) echo "start_servers: no server for port $p" >&2; exit 1 ;;
    esac
  done
  for p in "$@"; do wait_port server "$p"; done
}
