"""Runs the official fal-client (pinned in requirements.txt), unmodified, against a running
`r2v serve`. Environment: R2V_BASE (http://127.0.0.1:PORT), R2V_KEY (id:secret),
R2V_EXAMPLES (the repository's examples/ folder), and R2V_PUBLIC_BASE when the server's
own URLs name another node (a fleet's --public-url). Prints "ok - <case>" per case and exits
non-zero at the first failure. The server must allow private URLs (webhooks come back to
127.0.0.1) and run one worker.
"""

import asyncio
import base64
import hashlib
import http.server
import json
import os
import sys
import threading
import time
import traceback
import urllib.request

import fal_client
import fal_client.client as fc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BASE = os.environ["R2V_BASE"]
# Where the server's own URLs point (its --public-url): BASE unless a fleet test says otherwise.
PUBLIC = os.environ.get("R2V_PUBLIC_BASE", BASE)
KEY = os.environ["R2V_KEY"]
EXAMPLES = os.environ["R2V_EXAMPLES"]
ENDPOINT = "wan/v2.6/reference-to-video/flash"

# Recipe A of PROTOCOL §7.2: patch the module constants before the first call.
fc.QUEUE_URL_FORMAT = f"{BASE}/"
fc.RUN_URL_FORMAT = f"{BASE}/run/"
fc.REST_URL = BASE
fc.CDN_URL = BASE

SMALL = {"resolution": "720p", "duration": "5", "enable_audio": False, "seed": 7}
client = fal_client.SyncClient(key=KEY)
CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def check_video(data, frames=150):
    video = data["video"]
    assert video["content_type"] == "video/mp4", video
    assert video["num_frames"] == frames, video
    assert video["fps"] == 30, video
    assert video["url"].startswith(f"{PUBLIC}/files/"), video["url"]
    assert isinstance(data["seed"], int)


def wait_for(request_id, predicate):
    for _ in range(600):
        status = client.status(ENDPOINT, request_id, with_logs=True)
        if predicate(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"request {request_id} never reached the expected state")


@case
def subscribe_sync_with_logs():
    updates = []
    enqueued = []
    data = client.subscribe(
        ENDPOINT,
        {"prompt": "[0-2s] A lighthouse at dusk. [2-5s] Waves roll in.", **SMALL},
        with_logs=True,
        on_enqueue=enqueued.append,
        on_queue_update=updates.append,
    )
    check_video(data)
    assert len(enqueued) == 1
    done = [u for u in updates if isinstance(u, fal_client.Completed)]
    assert done, updates
    messages = [line["message"] for line in done[-1].logs]
    assert any("render: 150/150 (100%)" in m for m in messages), messages
    assert any(isinstance(u, fal_client.InProgress) for u in updates)


@case
def subscribe_async_with_logs():
    async def main():
        async_client = fal_client.AsyncClient(key=KEY)
        updates = []
        data = await async_client.subscribe(
            ENDPOINT, {"prompt": "A red kite over a beach.", **SMALL}, with_logs=True, on_queue_update=updates.append
        )
        check_video(data)
        assert isinstance(updates[-1], fal_client.Completed)

    asyncio.run(main())


@case
def submit_with_webhook_signature_verified():
    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((dict((k.lower(), v) for k, v in self.headers.items()), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        handle = client.submit(ENDPOINT, {"prompt": "A quiet harbour.", **SMALL}, webhook_url=url, priority="low")
        for _ in range(600):
            if received:
                break
            time.sleep(0.1)
        assert len(received) == 1, received
        headers, body = received[0]
        assert headers["x-fal-webhook-request-id"] == handle.request_id
        jwks = json.load(urllib.request.urlopen(f"{BASE}/.well-known/jwks.json"))
        message = "\n".join(
            [handle.request_id, headers["x-fal-webhook-user-id"], headers["x-fal-webhook-timestamp"], hashlib.sha256(body).hexdigest()]
        ).encode()
        signature = bytes.fromhex(headers["x-fal-webhook-signature"])
        verified = False
        for jwk in jwks["keys"]:
            raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
            try:
                Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)
                verified = True
            except Exception:
                pass
        assert verified, "the signature verifies with a JWKS key"
        assert abs(time.time() - int(headers["x-fal-webhook-timestamp"])) < 300
        payload = json.loads(body)
        assert payload["status"] == "OK" and payload["request_id"] == handle.request_id
        check_video(payload["payload"])
    finally:
        server.shutdown()


@case
def status_with_and_without_logs_then_result():
    handle = client.submit(ENDPOINT, {"prompt": "Snow on pines.", **SMALL})
    done = wait_for(handle.request_id, lambda s: isinstance(s, fal_client.Completed))
    assert done.logs and done.metrics["inference_time"] > 0
    quiet = handle.status(with_logs=False)
    assert isinstance(quiet, fal_client.Completed) and quiet.logs is None
    check_video(handle.get())
    check_video(client.result(ENDPOINT, handle.request_id))


@case
def cancel_running_and_queued():
    running = client.submit(ENDPOINT, {"prompt": "A long pan.", "resolution": "1080p", "duration": "10", "enable_audio": False})
    wait_for(running.request_id, lambda s: isinstance(s, fal_client.InProgress))
    queued = client.submit(ENDPOINT, {"prompt": "Never rendered.", **SMALL})
    position = queued.status()
    assert isinstance(position, fal_client.Queued) and position.position == 0, position
    queued.cancel()
    running.cancel()
    for handle in (queued, running):
        end = wait_for(handle.request_id, lambda s: isinstance(s, fal_client.Completed))
        assert end.error_type == "client_cancelled", end
        try:
            handle.get()
            raise AssertionError("the result of a cancelled request must fail")
        except fal_client.client.FalClientHTTPError as e:
            assert e.status_code == 499, e
    try:
        running.cancel()
        raise AssertionError("cancelling a completed request must fail")
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 400 and "ALREADY_COMPLETED" in e.message, e


@case
def uploads_then_used_as_references():
    png = open(os.path.join(EXAMPLES, "character-warm.png"), "rb").read()
    cdn = client.upload(png, "image/png", file_name="ref.png")
    gcs = client.upload(png, "image/png", file_name="ref2.png", repository="fal")
    from_file = client.upload_file(os.path.join(EXAMPLES, "character-cool.jpg"))
    for url in (cdn, gcs, from_file):
        assert url.startswith(f"{PUBLIC}/files/"), url
    assert urllib.request.urlopen(cdn).read() == png
    assert urllib.request.urlopen(gcs).read() == png
    data = client.subscribe(ENDPOINT, {"prompt": "Character1 meets Character2 and Character3.", "image_urls": [cdn, gcs, from_file], **SMALL})
    check_video(data)


@case
def multipart_upload_over_100_mb():
    # Over fc.MULTIPART_THRESHOLD (100 MiB) upload_file takes the client's multipart flow:
    # POST /files/upload/multipart, part PUTs and a complete under the returned access_url.
    import tempfile
    size = fc.MULTIPART_THRESHOLD + 3 * 1024 * 1024 + 17
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.mp4")
        with open(path, "wb") as f:
            block = bytes(range(251)) * 4177
            written = 0
            while written < size:
                chunk = block[: size - written]
                f.write(chunk)
                written += len(chunk)
        digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
        url = client.upload_file(path)
    assert url.startswith(f"{PUBLIC}/files/"), url
    back = urllib.request.urlopen(url).read()
    assert len(back) == size and hashlib.sha256(back).hexdigest() == digest, len(back)
    # As a reference it is read from the server's store and judged by SPEC §2's limits.
    try:
        client.subscribe(ENDPOINT, {"prompt": "Character1 dances.", "video_urls": [url], **SMALL})
        raise AssertionError("expected a 422: a reference video is at most 100 MB")
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 422, e
        detail = e.response.json()["detail"]
        assert detail[0]["type"] == "file_too_large" and detail[0]["loc"] == ["body", "video_urls", 0], detail
    # The same flow (the client's own MultipartUpload) for a file that fits the limits makes
    # a usable reference.
    png = open(os.path.join(EXAMPLES, "character-warm.png"), "rb").read()
    ref = fc.MultipartUpload.save(client=client._get_cdn_client(), token_manager=client._token_manager,
                                  file_name="ref.png", data=png, content_type="image/png", chunk_size=len(png) // 3 + 1)
    assert urllib.request.urlopen(ref).read() == png
    check_video(client.subscribe(ENDPOINT, {"prompt": "Character1 waves.", "image_urls": [ref], **SMALL}))


@case
def data_uri_references():
    uri = fal_client.encode_file(os.path.join(EXAMPLES, "character-cool.jpg"))
    assert uri.startswith("data:")
    check_video(client.subscribe(ENDPOINT, {"prompt": "Character1 waves.", "image_urls": [uri], **SMALL}))


@case
def validation_error_surfaces_with_details():
    try:
        client.subscribe(ENDPOINT, {"prompt": "x" * 1501, "duration": "7"})
        raise AssertionError("expected a 422")
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 422, e
        detail = e.response.json()["detail"]
        assert [d["type"] for d in detail] == ["string_too_long", "enum"], detail
        assert detail[0]["ctx"]["max_length"] == 1500
    tiny = fal_client.encode(open(os.path.join(EXAMPLES, "scene.mp4"), "rb").read()[:2000], "video/mp4")
    try:
        client.subscribe(ENDPOINT, {"prompt": "Character1.", "video_urls": [tiny], **SMALL})
        raise AssertionError("expected a 422 from the worker")
    except fal_client.client.FalClientHTTPError as e:
        assert e.status_code == 422, e
        detail = e.response.json()["detail"]
        assert detail[0]["loc"] == ["body", "video_urls", 0] and detail[0]["type"] == "unsupported_video_format", detail


@case
def sync_run():
    check_video(client.run(ENDPOINT, {"prompt": "A windmill turning.", **SMALL}))


failed = 0
for fn in CASES:
    try:
        fn()
        print(f"ok - {fn.__name__}", flush=True)
    except Exception:
        print(f"FAILED - {fn.__name__}", flush=True)
        traceback.print_exc()
        sys.exit(1)
print(f"{len(CASES)} passed, 0 failed")
