#!/usr/bin/env bash
# An emulated Raspberry Pi 4: the Pi's user space (Debian 12 bookworm, arm64, Python 3.11, the
# aarch64 wheels of numpy / OpenCV / ai-edge-litert / onnxruntime) in a chroot that runs under
# qemu-aarch64 through binfmt_misc, reachable as pi@127.0.0.1:2222 over ssh with a generated key.
#
#   rpi4.sh up      build the root file system once (cached), start sshd inside it   (make emulated-rpi4)
#   rpi4.sh stop    stop sshd and everything else running inside it, unmount /proc    (make emulated-rpi4-stop)
#   rpi4.sh status  say whether it is built and running
#
# Cache: ${EDGEPOSE_EMU_CACHE:-/var/cache/edgepose/emulated-rpi4} holds the root file system, the
# recipe stamp (sha256 of rpi4-recipe.sh, rpi4.packages and rpi4-requirements.txt: a change rebuilds),
# the ssh key and an ssh config, and build.log. Port: ${EDGEPOSE_EMU_PORT:-2222}. Debian mirror: the
# host's apt sources (override with EDGEPOSE_EMU_MIRROR), apt's proxy if it has one.
#
# Exit status: 0 done; 3 it cannot work on this machine (not root, no binfmt_misc, no qemu or
# debootstrap, no network to the mirror or the package index, port taken), with one line saying why
# (tests skip with that line); 1 anything else (a bug: see build.log).
#
# Only /proc is mounted inside, never the host's /sys: with it the runtimes' CPU-info library reads the
# host's topology and the interpreter segfaults under qemu. Without it, that library prints harmless
# warnings ("Error in cpuinfo: ..."); filter_cpuinfo_warnings below is the one filter for them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${EDGEPOSE_EMU_CACHE:-/var/cache/edgepose/emulated-rpi4}
PORT=${EDGEPOSE_EMU_PORT:-2222}
ROOT=$CACHE/rootfs
STAMP=$CACHE/recipe.sha256
LOG=$CACHE/build.log
SSH_DIR=$CACHE/ssh
KEY=$SSH_DIR/id_ed25519
SSH_CONFIG=$SSH_DIR/config
SSHD_PID=/run/edgepose-sshd.pid # inside the chroot
# The CPU qemu emulates: a Pi 4's Cortex-A72 (ARMv8.0: NEON, no dot product, no fp16 arithmetic, no
# SVE). qemu's default "max" CPU offers all of those, and XNNPACK would pick kernels a Pi never runs.
EMULATED_CPU=cortex-a72
# The recipe: what goes into the root file system. Its hash is the cache key (rpi4.sh itself is not
# part of it: how the image is started and stopped does not change what is in it).
RECIPE=("$HERE/rpi4-recipe.sh" "$HERE/rpi4.packages" "$HERE/rpi4-requirements.txt")
# shellcheck source=rpi4-recipe.sh
source "$HERE/rpi4-recipe.sh" # SUITE, VENV, build()

unavailable() { # it cannot work here: one line, exit 3
  echo "emulated-rpi4: $*" >&2
  exit 3
}
fail() { # it should have worked: one line, exit 1
  echo "emulated-rpi4: $*" >&2
  exit 1
}
say() { echo "emulated-rpi4: $*" >&2; }
phase() { # a timed step of the build, in the log and on stderr
  local now=$SECONDS
  [ -n "${PHASE_START:-}" ] && echo "[build] $PHASE_NAME: $((now - PHASE_START)) s" >>"$LOG"
  PHASE_NAME=$1 PHASE_START=$now
  [ "$1" = done ] || say "$1"
}

# The CPU-info library's complaints about the missing /sys, and onnxruntime's echo of them (harmless:
# XNNPACK and onnxruntime fall back to their defaults).
filter_cpuinfo_warnings() {
  grep -v -E '^(Error|Warning) in cpuinfo: |^onnxruntime (cpuid_info )?warning: (cpuinfo_initialize failed|Failed to initialize PyTorch cpuinfo|Unknown CPU vendor)' || true
}

recipe_hash() { cat "${RECIPE[@]}" | sha256sum | cut -d' ' -f1; }

# ------------------------------------------------------------------------------------ preconditions

check_host() {
  [ "$(id -u)" = 0 ] || unavailable "needs root (debootstrap, chroot, binfmt_misc): run it as root"
  case "$CACHE" in
    /*) ;;
    *) unavailable "EDGEPOSE_EMU_CACHE must be an absolute path (got $CACHE)" ;;
  esac
  case "$CACHE" in *[[:space:]]*) unavailable "EDGEPOSE_EMU_CACHE must not contain spaces" ;; esac
  local tool
  for tool in debootstrap chroot ssh ssh-keygen sha256sum curl; do
    command -v "$tool" >/dev/null 2>&1 ||
      unavailable "$tool not found: apt-get install qemu-user-static debootstrap binfmt-support openssh-client curl"
  done
  [ -x /usr/bin/qemu-aarch64-static ] ||
    unavailable "qemu-aarch64-static not found: apt-get install qemu-user-static binfmt-support"
}

# qemu-aarch64 registered with binfmt_misc, with the F flag (the interpreter is opened at registration,
# so the chroot needs no copy of it). Debian's qemu-user-static ships that registration.
check_binfmt() {
  local dir=/proc/sys/fs/binfmt_misc
  if [ ! -e "$dir/register" ]; then
    mount -t binfmt_misc binfmt_misc "$dir" >/dev/null 2>&1 ||
      unavailable "binfmt_misc is not available (cannot mount $dir): the kernel or container does not allow it"
  fi
  if [ ! -e "$dir/qemu-aarch64" ]; then
    if command -v update-binfmts >/dev/null 2>&1; then
      update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
  fi
  if [ ! -e "$dir/qemu-aarch64" ]; then # no binfmt-support: register it by hand, as Debian's file says
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:FP' \
      >"$dir/register" 2>/dev/null ||
      unavailable "cannot register qemu-aarch64 with binfmt_misc"
  fi
  grep -q '^enabled' "$dir/qemu-aarch64" || echo 1 >"$dir/qemu-aarch64" ||
    unavailable "qemu-aarch64 is registered with binfmt_misc but disabled and cannot be enabled"
}

# The Debian mirror this machine's apt uses (first URI ending in /debian), else deb.debian.org.
debian_mirror() {
  if [ -n "${EDGEPOSE_EMU_MIRROR:-}" ]; then
    echo "$EDGEPOSE_EMU_MIRROR"
    return
  fi
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -o -E '(https?|file)://[^ ]*/debian/?( |$)' | head -n1 | tr -d ' ' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

apt_proxy() { # apt's http proxy, if it has one (Acquire::http::Proxy)
  local HTTP_PROXY_SETTING=""
  eval "$(apt-config shell HTTP_PROXY_SETTING Acquire::http::Proxy 2>/dev/null || true)"
  echo "$HTTP_PROXY_SETTING"
}

# pip's index: PIP_INDEX_URL, or index-url in a host pip configuration, else PyPI.
pip_index() {
  if [ -n "${PIP_INDEX_URL:-}" ]; then
    echo "$PIP_INDEX_URL"
    return
  fi
  local url
  url=$(cat /etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" 2>/dev/null |
    sed -n -E 's/^[[:space:]]*index-url[[:space:]]*=[[:space:]]*([^[:space:]]+).*/\1/p' | tail -n1 || true)
  echo "${url:-https://pypi.org/simple}"
}

check_network() { # needed only to build: the Debian mirror and the package index
  local mirror=$1 index
  index=$(pip_index)
  curl -fsS --max-time 20 -o /dev/null "$mirror/dists/$SUITE/Release" 2>/dev/null ||
    unavailable "cannot reach the Debian mirror $mirror (needed once, to build the root file system)"
  curl -fsS --max-time 20 -o /dev/null "${index%/}/numpy/" 2>/dev/null ||
    unavailable "cannot reach the package index $index (needed once, to install numpy, OpenCV and the runtimes)"
}

# ------------------------------------------------------------------------------------------ mounts

mounts_under() { # mount points at or below $1, deepest first
  awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts | sort -r
}

unmount_all() {
  local m
  for m in $(mounts_under "$1"); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}

mount_proc() {
  mountpoint -q "$1/proc" || mount -t proc proc "$1/proc"
}

# Processes whose root directory is the chroot (sshd, ssh sessions, anything they started).
chroot_pids() {
  local p link
  for p in /proc/[0-9]*; do
    link=$(readlink "$p/root" 2>/dev/null) || continue
    [ "$link" = "$1" ] && echo "${p#/proc/}"
  done
  return 0
}

kill_chroot() {
  local pids i
  pids=$(chroot_pids "$1")
  [ -n "$pids" ] || return 0
  kill $pids 2>/dev/null || true
  for i in $(seq 50); do
    pids=$(chroot_pids "$1")
    [ -n "$pids" ] || return 0
    sleep 0.2
  done
  kill -9 $pids 2>/dev/null || true
}

remove_tree() { # a root file system, only once nothing is mounted inside it
  [ -e "$1" ] || return 0
  kill_chroot "$1"
  unmount_all "$1"
  [ -z "$(mounts_under "$1")" ] || fail "cannot remove $1: something is still mounted inside it"
  rm -rf --one-file-system "$1"
}

# ------------------------------------------------------------------------------------ host configuration

# The host's CA bundle(s) and pip configuration, so that pip inside reaches the same index the same way.
copy_host_config() {
  local root=$1 f
  for f in /etc/resolv.conf /etc/hosts; do
    [ -f "$f" ] && cp -L "$f" "$root$f"
  done
  for f in /etc/ssl/certs/ca-certificates.crt "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" "${REQUESTS_CA_BUNDLE:-}" \
    $(sed -n -E 's/^[[:space:]]*cert[[:space:]]*=[[:space:]]*([^[:space:]]+).*/\1/p' \
      /etc/pip.conf /etc/xdg/pip/pip.conf "$HOME/.config/pip/pip.conf" 2>/dev/null || true); do
    [ -n "$f" ] && [ -f "$f" ] || continue
    mkdir -p "$root$(dirname "$f")"
    cp -L "$f" "$root$f"
  done
  [ -f /etc/pip.conf ] && cp -L /etc/pip.conf "$root/etc/pip.conf"
  if [ -d /etc/xdg/pip ]; then
    mkdir -p "$root/etc/xdg"
    rm -rf "$root/etc/xdg/pip"
    cp -rL /etc/xdg/pip "$root/etc/xdg/pip"
  fi
  for f in "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf" "${PIP_CONFIG_FILE:-}"; do
    [ -n "$f" ] && [ -f "$f" ] || continue
    mkdir -p "$root/home/pi/.config/pip"
    cat "$f" >>"$root/home/pi/.config/pip/pip.conf.new"
  done
  if [ -f "$root/home/pi/.config/pip/pip.conf.new" ]; then
    mv "$root/home/pi/.config/pip/pip.conf.new" "$root/home/pi/.config/pip/pip.conf"
    chroot "$root" chown -R pi:pi /home/pi/.config
  fi
}

# The host's PIP_* settings, one array element each (values may hold spaces).
pip_env() { mapfile -t PIP_ENV < <(env | grep -E '^PIP_[A-Z_]+=' || true); }

as_pi() { # run a command inside the chroot $1 as pi, with a clean environment plus PIP_*
  local root=$1 ids
  shift
  ids=$(awk -F: '$1 == "pi" { print $3 ":" $4 }' "$root/etc/passwd")
  chroot --userspec="$ids" "$root" env -i HOME=/home/pi PATH=$VENV/bin:/usr/bin:/bin QEMU_CPU=$EMULATED_CPU \
    "${PIP_ENV[@]}" "$@"
}

# ----------------------------------------------------------------------------------------------- ssh

# The key (kept across rebuilds), sshd's settings and the pi user's session environment: the venv first
# on PATH (what `source ~/venv/bin/activate` does on a Pi) and the emulated CPU for every process.
setup_ssh() {
  mkdir -p "$SSH_DIR"
  chmod 700 "$SSH_DIR"
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C "edgepose-emulated-rpi4" -f "$KEY"
  install -d -m 700 "$ROOT/home/pi/.ssh"
  install -m 600 "$KEY.pub" "$ROOT/home/pi/.ssh/authorized_keys"
  printf 'PATH=%s/bin:/usr/local/bin:/usr/bin:/bin\nQEMU_CPU=%s\n' "$VENV" "$EMULATED_CPU" \
    >"$ROOT/home/pi/.ssh/environment"
  cat >"$ROOT/etc/ssh/sshd_config.d/edgepose.conf" <<EOF
# edgepose's emulated Raspberry Pi 4 (devices/emulated/rpi4.sh): key login as pi on 127.0.0.1 only.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PermitUserEnvironment PATH,QEMU_CPU
UseDNS no
EOF
  chroot "$ROOT" chown -R pi:pi /home/pi/.ssh
  echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$ROOT/etc/ssh/ssh_host_ed25519_key.pub")" >"$SSH_DIR/known_hosts"
  cat >"$SSH_CONFIG" <<EOF
# ssh -F $SSH_CONFIG emulated-rpi4   (written by devices/emulated/rpi4.sh)
Host emulated-rpi4
  HostName 127.0.0.1
  Port $PORT
  User pi
  IdentityFile $KEY
  IdentitiesOnly yes
  UserKnownHostsFile $SSH_DIR/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
EOF
}

sshd_pid() { # the running sshd of this chroot, if any
  local pid
  pid=$(cat "$ROOT$SSHD_PID" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$ROOT" ] && echo "$pid"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

start_sshd() {
  port_taken && unavailable "port $PORT on 127.0.0.1 is taken by something else (set EDGEPOSE_EMU_PORT)"
  mount_proc "$ROOT"
  copy_host_config "$ROOT"
  mkdir -p "$ROOT/run/sshd"
  QEMU_CPU=$EMULATED_CPU chroot "$ROOT" /usr/sbin/sshd -o "ListenAddress=127.0.0.1:$PORT" -o "PidFile=$SSHD_PID" \
    -E /var/log/edgepose-sshd.log || fail "sshd did not start: $(tail -n1 "$ROOT/var/log/edgepose-sshd.log" 2>/dev/null)"
}

wait_for_ssh() {
  local i out
  for i in $(seq 60); do
    if out=$(ssh -F "$SSH_CONFIG" emulated-rpi4 uname -m 2>/dev/null); then
      [ "$out" = aarch64 ] || fail "ssh reached a machine that says $out, not aarch64"
      return 0
    fi
    sleep 1
  done
  fail "sshd started but ssh pi@127.0.0.1:$PORT does not answer: see $ROOT/var/log/edgepose-sshd.log"
}

# -------------------------------------------------------------------------------------------- commands

up() {
  check_host
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9 # concurrent `up`s (test workers) wait for the first
  check_binfmt
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$(recipe_hash)" ] || [ ! -d "$ROOT" ]; then
    [ -d "$ROOT" ] && say "the recipe changed: rebuilding"
    build
  fi
  setup_ssh
  if ! sshd_pid >/dev/null; then
    start_sshd
  fi
  wait_for_ssh
  say "up: ssh -F $SSH_CONFIG emulated-rpi4   (pi@127.0.0.1:$PORT, key $KEY)"
  # What tests and tools read (stdout, key=value): how to reach it.
  printf 'ssh_config=%s\nidentity=%s\nhost=pi@127.0.0.1\nport=%s\n' "$SSH_CONFIG" "$KEY" "$PORT"
}

stop() {
  [ "$(id -u)" = 0 ] || unavailable "needs root: run it as root"
  [ -d "$CACHE" ] || {
    say "not built (nothing to stop)"
    return 0
  }
  exec 9>"$CACHE/.lock"
  flock 9
  local pid
  if pid=$(sshd_pid); then
    kill "$pid" 2>/dev/null || true
  fi
  kill_chroot "$ROOT"
  unmount_all "$ROOT"
  rm -f "$ROOT$SSHD_PID"
  say "stopped"
}

status() {
  if [ ! -f "$STAMP" ]; then
    echo "emulated-rpi4: not built ($CACHE)"
  elif [ "$(cat "$STAMP")" != "$(recipe_hash)" ]; then
    echo "emulated-rpi4: built from an older recipe (the next up rebuilds it)"
  elif sshd_pid >/dev/null; then
    echo "emulated-rpi4: up on pi@127.0.0.1:$PORT (ssh -F $SSH_CONFIG emulated-rpi4)"
  else
    echo "emulated-rpi4: built, not running"
  fi
}

case "${1:-}" in
  up) up ;;
  stop) stop ;;
  status) status ;;
  filter) filter_cpuinfo_warnings ;; # stdin -> stdout without the CPU-info warnings
  *)
    echo "usage: $0 up|stop|status" >&2
    exit 2
    ;;
esac
