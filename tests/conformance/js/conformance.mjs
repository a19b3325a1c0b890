// Runs the official @fal-ai/client (pinned in package.json), unmodified, against a running
// `r2v serve`. Environment: R2V_BASE (http://127.0.0.1:PORT), R2V_KEY (id:secret),
// R2V_EXAMPLES (the repository's examples/ folder). Prints "ok - <case>" per case and
// exits non-zero at the first failure. The server must allow private URLs (webhooks
// come back to 127.0.0.1) and run one worker.
import { createFalClient, ApiError, ValidationError } from "@fal-ai/client";
import { createServer } from "node:http";
import { createHash, createPublicKey, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import assert from "node:assert/strict";

const BASE = process.env.R2V_BASE;
// Where the server's own URLs point (its --public-url): BASE unless a fleet test says otherwise.
const PUBLIC = process.env.R2V_PUBLIC_BASE || BASE;
const KEY = process.env.R2V_KEY;
const EXAMPLES = process.env.R2V_EXAMPLES;
const ENDPOINT = "wan/v2.6/reference-to-video/flash";
const HOST_MAP = { "queue.fal.run": BASE, "fal.run": `${BASE}/run`, "rest.fal.ai": BASE };
const rewrite = (url) => {
  const u = new URL(url);
  const base = HOST_MAP[u.host];
  return base ? `${base}${u.pathname}${u.search}` : url;
};
// Recipe A of PROTOCOL §7.1: requestMiddleware.
const fal = createFalClient({ credentials: KEY, requestMiddleware: async (req) => ({ ...req, url: rewrite(req.url) }) });
const small = { resolution: "720p", duration: "5", enable_audio: false, seed: 7 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function checkVideo(data, frames = 150) {
  assert.equal(data.video.content_type, "video/mp4");
  assert.equal(data.video.num_frames, frames);
  assert.equal(data.video.fps, 30);
  assert.ok(data.video.url.startsWith(`${PUBLIC}/files/`), data.video.url);
  assert.equal(typeof data.seed, "number");
}

async function waitFor(requestId, predicate) {
  for (let i = 0; i < 600; i++) {
    const status = await fal.queue.status(ENDPOINT, { requestId, logs: true });
    if (predicate(status)) return status;
    await sleep(100);
  }
  throw new Error(`request ${requestId} never reached the expected state`);
}

const cases = [];
const test = (name, fn) => cases.push([name, fn]);

test("subscribe, polling, with logs", async () => {
  const updates = [];
  let enqueued;
  const { data, requestId } = await fal.subscribe(ENDPOINT, {
    input: { prompt: "[0-2s] A lighthouse at dusk. [2-5s] Waves roll in.", ...small },
    logs: true,
    pollInterval: 200,
    onEnqueue: (id) => (enqueued = id),
    onQueueUpdate: (u) => updates.push(u),
  });
  checkVideo(data);
  assert.equal(requestId, enqueued);
  const last = updates.at(-1);
  assert.equal(last.status, "COMPLETED");
  assert.ok(last.logs.some((l) => /render: \d+\/150 \(\d+%\)/.test(l.message)), "step logs with percentages");
  assert.ok(last.logs.some((l) => l.message.includes("not a neural model")));
  assert.ok(last.metrics.inference_time > 0);
});

test("subscribe, streaming, with logs", async () => {
  const updates = [];
  const { data } = await fal.subscribe(ENDPOINT, {
    input: { prompt: "A red kite over a beach.", ...small },
    logs: true,
    mode: "streaming",
    onQueueUpdate: (u) => updates.push(u),
  });
  checkVideo(data);
  const statuses = updates.map((u) => u.status);
  assert.equal(statuses.at(-1), "COMPLETED");
  // The client concatenates the logs of every event: each line must arrive once.
  const messages = updates.at(-1).logs.map((l) => l.timestamp + l.message);
  assert.equal(new Set(messages).size, messages.length, "no duplicated log lines");
  assert.ok(messages.length > 5);
});

test("submit with a webhook; signature verified against the JWKS", async () => {
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const hook = `http://127.0.0.1:${server.address().port}/hook`;
  try {
    const { request_id } = await fal.queue.submit(ENDPOINT, { input: { prompt: "A quiet harbour.", ...small }, webhookUrl: hook });
    for (let i = 0; i < 600 && received.length === 0; i++) await sleep(100);
    assert.equal(received.length, 1, "one delivery");
    const { headers, body } = received[0];
    assert.equal(headers["x-fal-webhook-request-id"], request_id);
    const jwks = await (await fetch(`${BASE}/.well-known/jwks.json`)).json();
    const message = Buffer.from(
      `${request_id}\n${headers["x-fal-webhook-user-id"]}\n${headers["x-fal-webhook-timestamp"]}\n${createHash("sha256").update(body).digest("hex")}`,
    );
    const signature = Buffer.from(headers["x-fal-webhook-signature"], "hex");
    const valid = jwks.keys.some((jwk) => verify(null, message, createPublicKey({ key: jwk, format: "jwk" }), signature));
    assert.ok(valid, "signature verifies with a JWKS key");
    assert.ok(!verify(null, Buffer.concat([message, Buffer.from("x")]), createPublicKey({ key: jwks.keys[0], format: "jwk" }), signature));
    const payload = JSON.parse(body);
    assert.equal(payload.status, "OK");
    assert.equal(payload.request_id, request_id);
    checkVideo(payload.payload);
  } finally {
    server.close();
  }
});

test("status with and without logs, then result", async () => {
  const { request_id: requestId } = await fal.queue.submit(ENDPOINT, { input: { prompt: "Snow on pines.", ...small } });
  const done = await waitFor(requestId, (s) => s.status === "COMPLETED");
  assert.ok(Array.isArray(done.logs) && done.logs.length > 0);
  const quiet = await fal.queue.status(ENDPOINT, { requestId, logs: false });
  assert.equal(quiet.status, "COMPLETED");
  assert.equal(quiet.logs, null);
  const result = await fal.queue.result(ENDPOINT, { requestId });
  assert.equal(result.requestId, requestId);
  checkVideo(result.data);
});

test("cancel a running and a queued request", async () => {
  const { request_id: running } = await fal.queue.submit(ENDPOINT, {
    input: { prompt: "A long slow pan across a city.", resolution: "1080p", duration: "10", enable_audio: false },
  });
  await waitFor(running, (s) => s.status === "IN_PROGRESS");
  const { request_id: queued } = await fal.queue.submit(ENDPOINT, { input: { prompt: "Never rendered.", ...small } });
  const waiting = await fal.queue.status(ENDPOINT, { requestId: queued, logs: false });
  assert.equal(waiting.status, "IN_QUEUE");
  assert.equal(waiting.queue_position, 0);
  await fal.queue.cancel(ENDPOINT, { requestId: queued });
  await fal.queue.cancel(ENDPOINT, { requestId: running });
  for (const requestId of [queued, running]) {
    const end = await waitFor(requestId, (s) => s.status === "COMPLETED");
    assert.equal(end.error_type, "client_cancelled");
    await assert.rejects(fal.queue.result(ENDPOINT, { requestId }), (e) => e instanceof ApiError && e.status === 499);
  }
  const logs = (await fal.queue.status(ENDPOINT, { requestId: queued, logs: true })).logs.map((l) => l.message);
  assert.ok(!logs.some((m) => m.startsWith("claimed")), "a queued request never starts");
  await assert.rejects(fal.queue.cancel(ENDPOINT, { requestId: running }), (e) => e instanceof ApiError && e.status === 400 && e.body.status === "ALREADY_COMPLETED");
});

test("storage upload, then the returned URL as a reference", async () => {
  const png = readFileSync(`${EXAMPLES}/character-warm.png`);
  const url = await fal.storage.upload(new Blob([png], { type: "image/png" }));
  assert.ok(url.startsWith(`${PUBLIC}/files/`), url);
  const back = Buffer.from(await (await fetch(url)).arrayBuffer());
  assert.ok(back.equals(png), "the file reads back");
  const { data } = await fal.subscribe(ENDPOINT, { input: { prompt: "Character1 smiles.", image_urls: [url], ...small } });
  checkVideo(data);
});

test("multipart upload over 90 MB", async () => {
  const big = new Uint8Array(91 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
  const url = await fal.storage.upload(new Blob([big], { type: "application/octet-stream" }));
  const back = new Uint8Array(await (await fetch(url)).arrayBuffer());
  assert.equal(back.length, big.length);
  assert.equal(createHash("sha256").update(back).digest("hex"), createHash("sha256").update(big).digest("hex"));
});

test("data: URI references", async () => {
  const png = readFileSync(`${EXAMPLES}/character-cool.jpg`).toString("base64");
  const { data } = await fal.subscribe(ENDPOINT, {
    input: { prompt: "Character1 waves.", image_urls: [`data:image/jpeg;base64,${png}`], ...small },
  });
  checkVideo(data);
});

test("422 errors surface as ValidationError with the detail list", async () => {
  await assert.rejects(fal.subscribe(ENDPOINT, { input: { prompt: "", aspect_ratio: "2:1" } }), (e) => {
    assert.ok(e instanceof ValidationError);
    assert.equal(e.status, 422);
    assert.deepEqual(e.body.detail.map((d) => d.type), ["string_too_short", "enum"]);
    assert.deepEqual(e.body.detail[1].loc, ["body", "aspect_ratio"]);
    return true;
  });
  // A reference that fails its check in the worker: the request completes with the 422.
  const tiny = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
  await assert.rejects(
    fal.subscribe(ENDPOINT, { input: { prompt: "Character1.", image_urls: [`data:image/png;base64,${tiny}`], ...small } }),
    (e) => {
      assert.ok(e instanceof ValidationError);
      assert.equal(e.body.detail[0].type, "image_too_small");
      assert.deepEqual(e.body.detail[0].loc, ["body", "image_urls", 0]);
      return true;
    },
  );
});

test("sync run", async () => {
  const { data, requestId } = await fal.run(ENDPOINT, { input: { prompt: "A windmill turning.", ...small } });
  checkVideo(data);
  assert.ok(requestId);
});

test("proxy recipe (proxyUrl, when: always)", async () => {
  const proxied = createFalClient({ credentials: KEY, proxyUrl: { url: `${BASE}/api/fal/proxy`, when: "always" } });
  const { data } = await proxied.subscribe(ENDPOINT, { input: { prompt: "Lanterns at night.", ...small }, logs: true });
  checkVideo(data);
  const url = await proxied.storage.upload(new Blob(["hello world"], { type: "text/plain" }));
  assert.equal(await (await fetch(url)).text(), "hello world");
});

for (const [name, fn] of cases) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    console.log(`FAILED - ${name}`);
    console.error(e);
    process.exit(1);
  }
}
console.log(`${cases.length} passed, 0 failed`);
