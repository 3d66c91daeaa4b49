#!/usr/bin/env bash
# Assembles the podwarden image's root filesystem into DEST: the step the
# Dockerfile runs in its build stage, and the step scripts/check-image.sh runs
# on a developer's or CI's machine (no container runtime needed there), so
# what the image holds is checked without building the image.
#
#   scripts/image-rootfs.sh DEST --bin-dir DIR --crs-dir DIR
#
#   --bin-dir DIR   holds podwarden-proxy, podwarden-operator and podwarden
#                   (cargo's target/release or target/debug)
#   --crs-dir DIR   an OWASP CRS release tree (rules/, crs-setup.conf.example,
#                   LICENSE); its content must match CRS_TREE_SHA256 below
#                   (override with the env var CRS_TREE_SHA256 for another
#                   CRS version, and say so in the image's labels)
#
# DEST gets:
#   usr/local/bin/podwarden-proxy           no file capabilities: the init
#       container (root, bounding set NET_ADMIN+NET_RAW), the postStart hook
#       and the sidecar with process attribution off run this one
#   usr/local/bin/podwarden-proxy-procattr  the same binary (a copy: file
#       capabilities live on the inode, so not a hard link) with
#       cap_sys_ptrace,cap_dac_read_search+ep: the sidecar with process
#       attribution on, as the non-root proxy UID (see below)
#   usr/local/bin/podwarden-operator, usr/local/bin/podwarden
#   etc/podwarden/crs/{rules/,crs-setup.conf.example,LICENSE}  (root-owned,
#       read-only) — the proxy's default --waf-rules-dir
#   var/lib/podwarden                       owned by the proxy UID
#
# Why two proxy files: a file with capabilities in its *effective* set cannot
# be executed at all (execve fails with EPERM, the kernel's check for
# capability-dumb binaries) by a process whose bounding set lacks them. The
# init container's bounding set is NET_ADMIN+NET_RAW and the attribution-off
# sidecar's is empty, so a single capable binary would break both; the
# uncapped copy serves them.
#
# Needs root (setcap needs CAP_SETFCAP, chown needs CAP_CHOWN), setcap/getcap
# (Debian: libcap2-bin), sha256sum. Exits non-zero with the reason on failure.
set -euo pipefail

# sha256 of the CRS v4.28.0 tree as published (rules/, crs-setup.conf.example,
# LICENSE): see crs_tree_digest. A content digest rather than the tarball's:
# it is derived from the files the tests use, and GitHub's generated archives
# have changed their bytes (compression) before without any content change.
CRS_TREE_SHA256_V4_28_0=949415788a2834c595fcc391d2c379fc4599ee852c314b5a5140b66f1dd21b42
CRS_TREE_SHA256=${CRS_TREE_SHA256:-$CRS_TREE_SHA256_V4_28_0}
PROXY_UID=${PROXY_UID:-1337}
PROXY_CAPS=cap_dac_read_search,cap_sys_ptrace=ep

die() { echo "image-rootfs: $*" >&2; exit 1; }

# The digest of a CRS tree: sha256 over `sha256sum` lines of every file under
# rules/ plus crs-setup.conf.example and LICENSE, relative paths, C-sorted.
crs_tree_digest() {
  (
    cd "$1"
    { find rules -type f; printf '%s\n' crs-setup.conf.example LICENSE; } \
      | LC_ALL=C sort | while IFS= read -r f; do sha256sum -- "$f"; done | sha256sum | cut -d' ' -f1
  )
}

if [ "${1:-}" = "--print-crs-digest" ]; then
  [ -n "${2:-}" ] || die "usage: $0 --print-crs-digest CRS_DIR"
  crs_tree_digest "$2"
  exit 0
fi

dest=${1:-}
[ -n "$dest" ] && [ "${dest#-}" = "$dest" ] || die "usage: $0 DEST --bin-dir DIR --crs-dir DIR"
shift
bin_dir= crs_dir=
while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) bin_dir=${2:-}; shift 2 ;;
    --crs-dir) crs_dir=${2:-}; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$bin_dir" ] || die "--bin-dir is required"
[ -n "$crs_dir" ] || die "--crs-dir is required"
[ "$(id -u)" = 0 ] || die "run as root (setcap and chown need it)"
for tool in setcap getcap sha256sum install; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install libcap2-bin coreutils)"
done
for b in podwarden-proxy podwarden-operator podwarden; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b missing (cargo build --release -p podwarden-proxy -p podwarden-operator -p podwarden-cli)"
done
[ -d "$crs_dir/rules" ] && [ -f "$crs_dir/crs-setup.conf.example" ] && [ -f "$crs_dir/LICENSE" ] \
  || die "$crs_dir is not a CRS release tree (rules/, crs-setup.conf.example, LICENSE)"

got=$(crs_tree_digest "$crs_dir")
[ "$got" = "$CRS_TREE_SHA256" ] || die "CRS content digest mismatch in $crs_dir: got $got, pinned $CRS_TREE_SHA256"

mkdir -p "$dest"
bin="$dest/usr/local/bin"
install -d -m 0755 "$bin"
install -m 0755 "$bin_dir/podwarden-proxy" "$bin/podwarden-proxy"
install -m 0755 "$bin_dir/podwarden-proxy" "$bin/podwarden-proxy-procattr"
install -m 0755 "$bin_dir/podwarden-operator" "$bin/podwarden-operator"
install -m 0755 "$bin_dir/podwarden" "$bin/podwarden"

# Process attribution reads other UIDs' /proc/<pid>/fd (socket inodes) and
# /proc/<pid>/exe: CAP_SYS_PTRACE passes the kernel's ptrace access check
# for those links, CAP_DAC_READ_SEARCH lets the proxy list the 0500 fd
# directories of processes it does not own. Nothing else: the proxy binds
# ports >= 1024 and never writes outside its own files.
setcap "$PROXY_CAPS" "$bin/podwarden-proxy-procattr"
# Capabilities are cleared by any later write or chown of the file: set them
# last and read them back.
caps=$(getcap "$bin/podwarden-proxy-procattr")
case $caps in
  *"$PROXY_CAPS"*) ;;
  *) die "setcap did not stick on $bin/podwarden-proxy-procattr (got: ${caps:-none}); does the filesystem keep security xattrs?" ;;
esac
[ -z "$(getcap "$bin/podwarden-proxy")" ] || die "$bin/podwarden-proxy must carry no file capabilities"

crs="$dest/etc/podwarden/crs"
rm -rf "$crs"
install -d -m 0755 "$crs" "$crs/rules"
install -m 0644 "$crs_dir/crs-setup.conf.example" "$crs_dir/LICENSE" "$crs/"
find "$crs_dir/rules" -maxdepth 1 -type f -exec install -m 0644 {} "$crs/rules/" \;
[ "$(crs_tree_digest "$crs")" = "$CRS_TREE_SHA256" ] || die "the CRS copy in $crs differs from its source"

# The default state dir, for a proxy run outside a pod; in a pod the state
# lives on the podwarden-run emptyDir (its mount point is the runtime's to make:
# /var/run is a link to /run in Debian images, so we ship nothing there).
install -d -m 0750 -o "$PROXY_UID" -g "$PROXY_UID" "$dest/var/lib/podwarden"
echo "image-rootfs: $dest ready (CRS $CRS_TREE_SHA256, $bin/podwarden-proxy-procattr: $PROXY_CAPS)"
