# The emulated Raspberry Pi 4's root file system, built by `rpi4.sh up` (sourced there; it uses that
# script's helpers). This file, rpi4.packages and rpi4-requirements.txt are the recipe: their sha256 is
# the cache stamp, so any change here rebuilds the image on the next `up`.

SUITE=bookworm         # Raspberry Pi OS 64-bit is Debian 12 bookworm on arm64
VENV=/home/pi/venv     # inside the chroot: the venv a Pi user makes (first on PATH in ssh sessions)


build() {
  local mirror proxy new=$CACHE/rootfs.new packages
  BUILD_START=$SECONDS
  mirror=$(debian_mirror)
  check_network "$mirror"
  proxy=$(apt_proxy)
  [ -n "$proxy" ] && export http_proxy=$proxy
  packages=$(grep -v -E '^[[:space:]]*(#|$)' "$HERE/rpi4.packages" | paste -sd, -)
  say "building the arm64 root file system in $ROOT (once; several minutes; log: $LOG)"
  remove_tree "$new"
  remove_tree "$ROOT"
  rm -f "$STAMP"
  mkdir -p "$CACHE"
  : >"$LOG"
  trap 'unmount_all "'"$new"'"' EXIT
  phase "debootstrap $SUITE arm64 from $mirror"
  # One retry: a dropped connection to the mirror should not fail a CI run.
  debootstrap --arch=arm64 --variant=minbase --include="$packages" "$SUITE" "$new" "$mirror" >>"$LOG" 2>&1 ||
    { say "debootstrap failed ($(tail -n1 "$LOG")): once more" && unmount_all "$new" && remove_tree "$new" &&
      debootstrap --arch=arm64 --variant=minbase --include="$packages" "$SUITE" "$new" "$mirror" >>"$LOG" 2>&1; } ||
    fail "debootstrap failed: $(tail -n1 "$LOG")"
  echo "deb $mirror $SUITE main" >"$new/etc/apt/sources.list"
  [ -n "$proxy" ] && echo "Acquire::http::Proxy \"$proxy\";" >"$new/etc/apt/apt.conf.d/01proxy"
  echo raspberrypi >"$new/etc/hostname"
  mount_proc "$new"
  # The pi user (no password: key login only; rpi4.sh up installs the key and sshd's settings).
  chroot "$new" useradd --create-home --shell /bin/bash --password '*' pi >>"$LOG" 2>&1
  chroot "$new" chown -R pi:pi /home/pi
  copy_host_config "$new"
  # The README's device setup: a venv with numpy, OpenCV and the runtimes, from the package index.
  cp "$HERE/rpi4-requirements.txt" "$new/tmp/requirements.txt"
  phase "pip install -r rpi4-requirements.txt into $VENV (aarch64 wheels from $(pip_index))"
  pip_env
  as_pi "$new" /usr/bin/python3 -m venv "$VENV" >>"$LOG" 2>&1 || fail "python3 -m venv failed: $(tail -n1 "$LOG")"
  as_pi "$new" "$VENV/bin/pip" install --no-input --progress-bar off -r /tmp/requirements.txt >>"$LOG" 2>&1 ||
    as_pi "$new" "$VENV/bin/pip" install --no-input --progress-bar off -r /tmp/requirements.txt >>"$LOG" 2>&1 ||
    fail "pip install of the device requirements failed: $(grep -E '^ERROR' "$LOG" | tail -n1)"
  rm -f "$new/tmp/requirements.txt"
  # Proof that it is what it should be: aarch64 Python importing every device-side package.
  phase "checking the device packages import on aarch64"
  local check
  check=$(as_pi "$new" python3 -c \
    'import platform, numpy, cv2, onnxruntime; from ai_edge_litert import interpreter; print(platform.machine())' \
    2>>"$LOG") || fail "the device packages do not import inside the chroot: see $LOG"
  [ "$check" = aarch64 ] || fail "the chroot's Python says it runs on ${check:-nothing}, not aarch64"
  unmount_all "$new"
  trap - EXIT
  mv "$new" "$ROOT"
  recipe_hash >"$STAMP"
  phase done
  say "built in $((SECONDS - BUILD_START)) s ($(du -sh --one-file-system "$ROOT" | cut -f1))"
}
