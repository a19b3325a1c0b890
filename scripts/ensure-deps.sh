#!/usr/bin/env bash
# Installs what r2v needs at run time and in its tests when it is missing: ffmpeg and
# ffprobe (with libx264, the native AAC encoder and libvpx). On Debian/Ubuntu it uses
# apt-get; elsewhere it says exactly what to install and exits non-zero.
set -euo pipefail

# grep reads all of ffmpeg's output (no -q), so pipefail does not see a SIGPIPE.
have_ffmpeg() {
  command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 &&
    ffmpeg -hide_banner -encoders 2>/dev/null | grep libx264 >/dev/null
}

# With --clients: Node.js with npm and Python with venv, for the official clients'
# conformance tests, and a Vulkan driver (Mesa's lavapipe runs on the CPU) for the wgpu tests.
have_clients() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
    command -v python3 >/dev/null 2>&1 && python3 -m venv --help >/dev/null 2>&1
}
# With --clients also Debian's Chromium, which the playground's browser test drives.
have_browser() {
  command -v chromium >/dev/null 2>&1
}
# With --clients also Postgres (Debian's server packages; the tests run their own clusters).
have_postgres() {
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
# With --clients also nginx, the balancer of the fleet tests (and of docs/nginx-r2v.conf).
have_nginx() {
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1
}
have_vulkan() {
  ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 &&
    { ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null; }
}

want_clients=0
[ "${1:-}" = "--clients" ] && want_clients=1

missing=()
have_ffmpeg || missing+=(ffmpeg)
if [ $want_clients = 1 ] && ! have_clients; then
  missing+=(nodejs npm python3 python3-venv)
fi
if [ $want_clients = 1 ] && ! have_vulkan; then
  missing+=(mesa-vulkan-drivers libvulkan1)
fi
if [ $want_clients = 1 ] && ! have_browser; then
  missing+=(chromium)
fi
if [ $want_clients = 1 ] && ! have_postgres; then
  missing+=(postgresql)
fi
if [ $want_clients = 1 ] && ! have_nginx; then
  missing+=(nginx-light)
fi
if [ ${#missing[@]} = 0 ]; then
  exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  echo "ensure-deps: installing ${missing[*]} with apt-get" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ $want_clients = 1 ] && ! have_clients; then
  echo "ensure-deps: the conformance tests need Node.js 18+ with npm, and Python 3.9+ with venv" >&2
  exit 1
fi
if [ $want_clients = 1 ] && ! have_browser; then
  echo "ensure-deps: the playground test needs Chromium at /usr/bin/chromium (Debian: chromium), or CHROMIUM=path" >&2
  exit 1
fi
if [ $want_clients = 1 ] && ! have_postgres; then
  echo "ensure-deps: the store and fleet tests need Postgres's server programs (Debian: postgresql)" >&2
  exit 1
fi
if [ $want_clients = 1 ] && ! have_nginx; then
  echo "ensure-deps: the fleet tests need nginx (Debian: nginx-light)" >&2
  exit 1
fi
if [ $want_clients = 1 ] && ! have_vulkan; then
  echo "ensure-deps: the wgpu tests need a Vulkan driver: Mesa's lavapipe (Debian: mesa-vulkan-drivers) or a GPU's" >&2
  exit 1
fi

if ! have_ffmpeg; then
  cat >&2 <<'MSG'
ensure-deps: r2v needs the ffmpeg and ffprobe programs (FFmpeg 5.1 or newer) built with
libx264 (and libvpx for one test). Install them with your package manager, e.g.
  Debian/Ubuntu: sudo apt-get install ffmpeg
  Fedora:        sudo dnf install ffmpeg   (from RPM Fusion)
  macOS:         brew install ffmpeg
then run the command again.
MSG
  exit 1
fi
