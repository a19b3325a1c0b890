"""Peak memory of `r2v serve` under four probes (three hostile), for BENCHMARKS.md.

Each probe runs against a fresh server (so its peak RSS, VmHWM, is the probe's own), next to
the same server's peak after start-up and one `GET /health` (the baseline):
  1. a 1 GiB body to POST /worker/v1/claim on a server without a worker token;
  2. a submit whose `image_urls` holds 1 000 000 integers;
  3. a submit with five 5000x5000 16-bit RGBA PNGs as data URIs, rendered by the preview engine.

Usage: python3 scripts/bench/hostile_probes.py NAME=BINARY [NAME=BINARY ...]
Prints a Markdown table: one row per probe and binary.
"""

import base64
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

FLASH = "/wan/v2.6/reference-to-video/flash"


def start(binary, data_dir, args):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "R2V_LOG": "error"},
        text=True,
    )
    base = proc.stdout.readline().strip().removeprefix("r2v serve listening on ")
    key = proc.stdout.readline().strip().split(": ")[-1]
    host, port = base.removeprefix("http://").split(":")
    return proc, (host, int(port)), key


def peak_mib(proc):
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def request(addr, method, path, body=None, headers=None, timeout=600):
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def probe_worker_body(addr, key):
    """1 GiB to /worker/v1/claim, no token; returns when the server answers or closes."""
    sock = socket.create_connection(addr)
    size = 1 << 30
    sock.sendall(
        b"POST /worker/v1/claim HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {size}\r\n\r\n".encode()
    )
    chunk = b" " * (1 << 20)
    try:
        for _ in range(size // len(chunk)):
            sock.sendall(chunk)
    except OSError:
        pass  # the server answered and closed without reading it
    sock.settimeout(60)
    try:
        answer = sock.recv(64).split(b" ")[1].decode()
    except (OSError, IndexError):
        answer = "closed"
    sock.close()
    return f"HTTP {answer}"


def probe_long_list(addr, key):
    body = b'{"prompt":"Character1 waves","image_urls":[' + b",".join([b"1"] * 1_000_000) + b"]}"
    status, data = request(
        addr,
        "POST",
        FLASH,
        body,
        {"authorization": f"Key {key}", "content-type": "application/json"},
    )
    return f"HTTP {status}, {len(data):,} byte body"


def rgba16_png(side):
    raw = zlib.compressobj(9)
    row = b"\x00" + struct.pack(">HHHH", 30000, 20000, 10000, 65535) * side
    out = b"".join(raw.compress(row) for _ in range(side)) + raw.flush()

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0))
        + chunk(b"IDAT", out)
        + chunk(b"IEND", b"")
    )


def probe_large_references(addr, key, uri):
    body = json.dumps(
        {
            "prompt": "Character1 Character2 Character3 Character4 Character5 dance",
            "resolution": "720p",
            "duration": "5",
            "enable_audio": False,
            "image_urls": [uri] * 5,
        }
    ).encode()
    auth = {"authorization": f"Key {key}"}
    status, data = request(
        addr, "POST", FLASH, body, {**auth, "content-type": "application/json"}
    )
    request_id = json.loads(data)["request_id"]
    while True:
        _, data = request(addr, "GET", f"/wan/v2.6/requests/{request_id}/status", None, auth)
        if json.loads(data)["status"] == "COMPLETED":
            break
        time.sleep(0.2)
    _, data = request(addr, "GET", f"/wan/v2.6/requests/{request_id}", None, auth)
    result = json.loads(data)
    return "rendered" if "video" in result else f"failed: {str(result)[:80]}"


def probe_multipart_upload(addr, key):
    """300 MB through the JS client's multipart flow: 30 parts of 10 MB, then complete."""
    auth = {"authorization": f"Key {key}"}
    status, data = request(
        addr, "POST", "/storage/upload/initiate-multipart?storage_type=fal-cdn-v3",
        json.dumps({"content_type": "video/mp4", "file_name": "big.mp4"}).encode(),
        {**auth, "content-type": "application/json"},
    )
    upload_url = json.loads(data)["upload_url"]
    path, query = upload_url.split("/storage/", 1)[1].split("?", 1)
    part = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    parts = []
    for number in range(1, 31):
        status, data = request(addr, "PUT", f"/storage/{path}/{number}?{query}", part,
                               {"content-type": "application/octet-stream"})
        parts.append({"partNumber": number, "etag": json.loads(data)["etag"]})
    status, data = request(addr, "POST", f"/storage/{path}/complete?{query}",
                           json.dumps({"parts": parts}).encode(), {"content-type": "application/json"})
    return f"{status}"


def main():
    binaries = [arg.split("=", 1) for arg in sys.argv[1:]]
    png = rgba16_png(5000)
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    probes = [
        ("1 GiB body to /worker/v1/claim, no token", probe_worker_body, ["--workers", "0"]),
        ("1 000 000 integers in image_urls", probe_long_list, ["--workers", "0"]),
        (
            f"five 5000x5000 16-bit RGBA PNG data URIs ({len(uri) * 5 / 1e6:.2f} MB)",
            lambda addr, key: probe_large_references(addr, key, uri),
            ["--x264-preset", "ultrafast"],
        ),
        ("a 300 MB multipart upload (30 parts of 10 MB)", probe_multipart_upload, ["--workers", "0"]),
    ]
    print("| probe | build | answer | seconds | peak RSS after start + /health | peak RSS after the probe |")
    print("|---|---|---|---|---|---|")
    for name, probe, args in probes:
        for label, binary in binaries:
            with tempfile.TemporaryDirectory() as data_dir:
                proc, addr, key = start(binary, data_dir, args)
                try:
                    request(addr, "GET", "/health")
                    idle = peak_mib(proc)
                    started = time.monotonic()
                    answer = probe(addr, key)
                    seconds = time.monotonic() - started
                    peak = peak_mib(proc)
                finally:
                    proc.kill()
                    proc.wait()
            print(f"| {name} | {label} | {answer} | {seconds:.1f} | {idle:.0f} MiB | {peak:.0f} MiB |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
