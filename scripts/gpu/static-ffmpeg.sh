#!/usr/bin/env bash
# A static ffmpeg and ffprobe for a GPU machine whose image has none (the lent H200's has none),
# built from Debian's ffmpeg source with only what r2v uses: x264 and AAC out; rawvideo, PCM,
# mp4/mov, Matroska/WebM and still images in; the filters r2v asks for. Needs deb-src for
# Debian's archive (added for the download and removed again), libx264-dev, zlib1g-dev and nasm.
#
#   scripts/gpu/static-ffmpeg.sh DEST      writes DEST/ffmpeg and DEST/ffprobe (about 11 MB each)
set -euo pipefail
dest=$(realpath -m "${1:?usage: static-ffmpeg.sh DEST}")
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -f /etc/apt/sources.list.d/r2v-ffmpeg-src.sources' EXIT
sed -n '/^Types: deb$/,/^$/p' /etc/apt/sources.list.d/debian.sources | head -n 6 |
  sed 's/^Types: deb$/Types: deb-src/' > /etc/apt/sources.list.d/r2v-ffmpeg-src.sources
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libx264-dev zlib1g-dev nasm >/dev/null
(cd "$work" && apt-get source --download-only -qq ffmpeg && tar xf ffmpeg_*.orig.tar.xz)
cd "$work"/ffmpeg-*/
./configure --prefix="$work/out" --disable-autodetect --enable-zlib --enable-gpl --enable-libx264 \
  --disable-doc --disable-ffplay --disable-network --disable-debug --disable-everything \
  --enable-protocol=file,pipe \
  --enable-demuxer=rawvideo,s16le,f32le,wav,mov,matroska,image2,image2pipe,png_pipe,jpeg_pipe,webp_pipe,bmp_pipe,gif,aac,mp3 \
  --enable-muxer=mp4,mov,rawvideo,matroska,null,s16le,f32le,wav,image2 \
  --enable-decoder=rawvideo,h264,hevc,mpeg4,vp8,vp9,png,mjpeg,webp,bmp,gif,aac,mp3,pcm_s16le,pcm_f32le \
  --enable-encoder=libx264,aac,rawvideo,png,pcm_s16le \
  --enable-parser=h264,hevc,aac,png,mjpeg,vp8,vp9,mpeg4video --enable-bsfs \
  --enable-filter=fps,scale,format,null,anull,aresample,aformat,copy,setpts,pad,crop,trim,atrim,concat,anullsrc,color,overlay,split,asplit \
  --extra-ldflags=-static --pkg-config-flags=--static >/dev/null
make -j"$(nproc)" >/dev/null && make install >/dev/null
mkdir -p "$dest" && cp "$work/out/bin/ffmpeg" "$work/out/bin/ffprobe" "$dest/"
echo "wrote $dest/ffmpeg and $dest/ffprobe"
