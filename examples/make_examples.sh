#!/usr/bin/env bash
# Regenerates the bundled example references with ffmpeg's own synthetic sources.
# Everything here is made by this script; no third-party media is bundled.
set -euo pipefail
cd "$(dirname "$0")"
ff() { ffmpeg -hide_banner -loglevel error -y "$@"; }

# Character2: a warm figure (head and shoulders) on a teal gradient, PNG.
ff -f lavfi -i "color=c=black:s=480x600,format=rgb24" -frames:v 1 -vf "geq=\
r='if(lt(hypot(X-240,Y-210),95),235,if(lt(hypot((X-240)/1.6,Y-560),170),200,20+X/6))':\
g='if(lt(hypot(X-240,Y-210),95),150,if(lt(hypot((X-240)/1.6,Y-560),170),60,90+Y/8))':\
b='if(lt(hypot(X-240,Y-210),95),110,if(lt(hypot((X-240)/1.6,Y-560),170),50,110+Y/6))'" character-warm.png

# Character3: a blue robot-like figure on a sand background, JPEG.
ff -f lavfi -i "color=c=black:s=560x560,format=rgb24" -frames:v 1 -vf "geq=\
r='if(between(X,200,360)*between(Y,110,250),70,if(between(X,150,410)*between(Y,270,520),40,220-Y/8))':\
g='if(between(X,200,360)*between(Y,110,250),120,if(between(X,150,410)*between(Y,270,520),90,200-Y/8))':\
b='if(between(X,200,360)*between(Y,110,250),230,if(between(X,150,410)*between(Y,270,520),200,150-Y/8))'" \
  -q:v 3 character-cool.jpg

# Character1: a 3 s, 24 fps clip (a Mandelbrot zoom), H.264 in mp4.
ff -f lavfi -i "mandelbrot=s=640x360:rate=24" -t 3 -c:v libx264 -preset veryfast -crf 30 \
  -pix_fmt yuv420p -movflags +faststart scene.mp4
