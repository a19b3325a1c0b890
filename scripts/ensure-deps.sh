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

if have_ffmpeg; then
  exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
  echo "ensure-deps: installing ffmpeg with apt-get" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq ffmpeg >/dev/null
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
