// The r2v playground: a form built from this server's /openapi.json, references uploaded
// through the storage protocol, requests submitted to the queue and followed over the status
// stream. Only this server's own API is called, with the key the user saved in this browser.

const $ = (selector) => document.querySelector(selector);
const KEY_STORE = "r2v.key";
const STATUS_BASE = "/wan/v2.6/requests";
// Fields the form lays out itself; every other input property is generated from the schema.
const OWN_FIELDS = ["prompt", "video_urls", "image_urls"];
const FIELD_ORDER = ["negative_prompt", "aspect_ratio", "resolution", "duration", "seed",
  "enable_audio", "enable_prompt_expansion", "multi_shots", "enable_safety_checker"];

const state = {
  key: localStorage.getItem(KEY_STORE) || "",
  needsKey: true,
  schema: null,
  refs: [], // {id, kind: "video"|"image", name, preview, url, status: "uploading"|"ready"|"failed", error}
  follow: null, // AbortController of the request being followed
  current: null, // request id being followed
};
let nextRefId = 1;

// --- API -------------------------------------------------------------------------------

async function api(method, path, { json, body, headers = {}, signal } = {}) {
  const h = { ...headers };
  if (state.key) h.authorization = `Key ${state.key}`;
  if (json !== undefined) {
    h["content-type"] = "application/json";
    body = typeof json === "string" ? json : JSON.stringify(json);
  }
  return fetch(path, { method, headers: h, body, signal });
}

/** A readable sentence for a failed response. */
async function failure(response) {
  let text = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (typeof body.detail === "string") text += `: ${body.detail}`;
    else if (Array.isArray(body.detail)) text += `: ${body.detail.map((d) => d.msg).join("; ")}`;
  } catch { /* not JSON */ }
  if (response.status === 401) text += ". Save a valid API key above.";
  return text;
}

function showBanner(text) {
  const banner = $("#banner");
  banner.textContent = text;
  banner.hidden = !text;
}

// --- Key -------------------------------------------------------------------------------

function keyOwner() {
  return state.key ? state.key.split(":")[0] : "anonymous";
}

async function checkKey() {
  const status = $("#key-status");
  // Without a key: a server started with --no-auth answers.
  const anonymous = await fetch("/storage/auth/token", { method: "POST" }).catch(() => null);
  state.needsKey = !(anonymous && anonymous.ok);
  if (!state.needsKey) {
    status.textContent = "This server runs without keys: none is needed.";
    return;
  }
  if (!state.key) {
    status.textContent = "This server needs a key. It is kept in this browser's storage.";
    return;
  }
  const checked = await api("POST", "/storage/auth/token");
  status.textContent = checked.ok
    ? `Key ${keyOwner()} saved in this browser.`
    : `The saved key was refused (${checked.status}).`;
}

function setupKey() {
  $("#key").value = state.key;
  $("#key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.key = $("#key").value.trim();
    if (state.key) localStorage.setItem(KEY_STORE, state.key);
    else localStorage.removeItem(KEY_STORE);
    await checkKey();
    renderHistory();
  });
  $("#key-forget").addEventListener("click", async () => {
    state.key = "";
    $("#key").value = "";
    localStorage.removeItem(KEY_STORE);
    await checkKey();
    renderHistory();
  });
}

// --- The form, from the OpenAPI document --------------------------------------------------

/** A property's schema with references followed and, of its alternatives, the first that is
 * not `null` (the form's control follows it: lenient forms such as `"yes"` or 1 for a
 * boolean come after the plain one). */
function resolve(schema, document) {
  if (!schema) return {};
  const { $ref, oneOf, anyOf, ...own } = schema;
  if ($ref) return { ...resolve(document.components.schemas[$ref.split("/").pop()], document), ...own };
  const variant = (oneOf || anyOf || []).find((s) => s.type !== "null");
  return variant ? { ...resolve(variant, document), ...own } : own;
}

function humanize(name) {
  const words = name.replace(/^enable_/, "").replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function describe(property) {
  return (property.description || "").replace(/`/g, "").split("\n").join(" ");
}

function buildField(name, property) {
  const wrap = document.createElement("div");
  wrap.className = "field";
  wrap.id = `field-${name}`;
  const id = `f-${name}`;
  const hintId = `hint-${name}`;
  const errorId = `error-${name}`;
  const types = [].concat(property.type || []);
  let control;
  if (property.enum) {
    control = document.createElement("select");
    for (const value of property.enum) control.add(new Option(value, value));
    if (property.default !== undefined) control.value = String(property.default);
  } else if (types.includes("boolean")) {
    wrap.classList.add("check");
    control = document.createElement("input");
    control.type = "checkbox";
    control.checked = property.default !== false;
  } else if (types.includes("integer")) {
    control = document.createElement("input");
    control.type = "text";
    control.inputMode = "numeric";
    control.placeholder = "random";
    control.autocomplete = "off";
  } else {
    control = document.createElement(property.maxLength > 200 ? "textarea" : "input");
    if (control.tagName === "INPUT") control.type = "text";
    else control.rows = 2;
    if (property.maxLength) control.maxLength = property.maxLength;
    wrap.classList.add("wide");
  }
  control.id = id;
  control.name = name;
  control.dataset.field = name;
  control.setAttribute("aria-describedby", `${hintId} ${errorId}`);
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = humanize(name);
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.id = hintId;
  hint.textContent = describe(property);
  const error = document.createElement("p");
  error.className = "error";
  error.id = errorId;
  if (control.type === "checkbox") {
    label.prepend(control);
    wrap.append(label, hint, error);
  } else {
    wrap.append(label, control, hint, error);
  }
  control.addEventListener("input", renderCode);
  control.addEventListener("change", renderCode);
  return wrap;
}

async function setupForm() {
  const response = await fetch("/openapi.json");
  const document_ = await response.json();
  const input = document_.components.schemas.InputSchema;
  const properties = {};
  for (const [name, property] of Object.entries(input.properties)) {
    properties[name] = resolve(property, document_);
  }
  state.schema = properties;
  const names = Object.keys(properties).filter((n) => !OWN_FIELDS.includes(n));
  names.sort((a, b) => (FIELD_ORDER.indexOf(a) + 1 || 99) - (FIELD_ORDER.indexOf(b) + 1 || 99));
  const container = $("#generated-fields");
  for (const name of names) container.append(buildField(name, properties[name]));

  const prompt = properties.prompt;
  $("#prompt").maxLength = prompt.maxLength || 100000;
  $("#prompt").setAttribute("aria-description", describe(prompt));
  $("#refs-hint").textContent =
    `Up to ${properties.video_urls.maxItems} videos and ${properties.image_urls.maxItems} images, ` +
    `${properties.image_urls.maxItems} in all. Videos come first: they are Character1, Character2…`;
}

// --- References ------------------------------------------------------------------------

/** References in Character order: videos first, then images, each in the order given. */
function orderedRefs() {
  return [...state.refs.filter((r) => r.kind === "video"), ...state.refs.filter((r) => r.kind === "image")];
}

function limits() {
  const s = state.schema;
  return { video: s.video_urls.maxItems, image: s.image_urls.maxItems, total: s.image_urls.maxItems };
}

async function uploadFile(file) {
  const initiated = await api("POST", "/storage/upload/initiate?storage_type=fal-cdn-v3", {
    json: { content_type: file.type || "application/octet-stream", file_name: file.name },
  });
  if (!initiated.ok) throw new Error(await failure(initiated));
  const { upload_url: uploadUrl, file_url: fileUrl } = await initiated.json();
  const put = await fetch(uploadUrl, {
    method: "PUT",
    headers: { "content-type": file.type || "application/octet-stream" },
    body: file,
  });
  if (!put.ok) throw new Error(await failure(put));
  return fileUrl;
}

function addFiles(files) {
  const max = limits();
  for (const file of files) {
    const kind = file.type.startsWith("video/") ? "video" : "image";
    const count = state.refs.filter((r) => r.kind === kind).length;
    if (count >= max[kind] || state.refs.length >= max.total) {
      showBanner(`At most ${max[kind]} ${kind}s and ${max.total} references in all: ${file.name} was not added.`);
      continue;
    }
    const ref = {
      id: nextRefId++, kind, name: file.name, preview: URL.createObjectURL(file), url: null, status: "uploading",
    };
    state.refs.push(ref);
    uploadFile(file)
      .then((url) => { ref.url = url; ref.status = "ready"; })
      .catch((error) => { ref.status = "failed"; ref.error = error.message; })
      .finally(renderRefs);
  }
  renderRefs();
}

function moveRef(ref, step) {
  const same = state.refs.filter((r) => r.kind === ref.kind);
  const at = same.indexOf(ref);
  const other = same[at + step];
  if (!other) return;
  const i = state.refs.indexOf(ref);
  const j = state.refs.indexOf(other);
  [state.refs[i], state.refs[j]] = [state.refs[j], state.refs[i]];
  renderRefs();
  document.querySelector(`[data-ref="${ref.id}"] [data-move="${step}"]`)?.focus();
}

function removeRef(ref) {
  state.refs = state.refs.filter((r) => r !== ref);
  URL.revokeObjectURL(ref.preview);
  renderRefs();
  $("#dropzone").focus();
}

function renderRefs() {
  const list = $("#refs");
  list.replaceChildren();
  orderedRefs().forEach((ref, index) => {
    const tag = `Character${index + 1}`;
    const item = document.createElement("li");
    item.dataset.ref = ref.id;
    item.dataset.kind = ref.kind;
    item.setAttribute("aria-label", `${tag}: ${ref.kind} ${ref.name}`);
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    const media = document.createElement(ref.kind === "video" ? "video" : "img");
    media.src = ref.preview;
    if (ref.kind === "video") { media.muted = true; media.preload = "metadata"; } else { media.alt = ""; }
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = tag;
    thumb.append(media, badge);
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = `${ref.kind === "video" ? "Video" : "Image"}: ${ref.name}`;
    const status = document.createElement("div");
    status.className = `state ${ref.status}`;
    status.textContent = ref.status === "failed" ? `Upload failed: ${ref.error}` : ref.status === "uploading" ? "Uploading…" : "Uploaded";
    const tools = document.createElement("div");
    tools.className = "tools";
    const button = (text, label, action, attrs = {}) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "secondary";
      b.textContent = text;
      b.setAttribute("aria-label", `${label} ${tag}`);
      for (const [k, v] of Object.entries(attrs)) b.dataset[k] = v;
      b.addEventListener("click", action);
      return b;
    };
    tools.append(
      button("↑", "Move earlier:", () => moveRef(ref, -1), { move: "-1" }),
      button("↓", "Move later:", () => moveRef(ref, 1), { move: "1" }),
      button("Remove", "Remove", () => removeRef(ref)),
    );
    item.append(thumb, name, status, tools);
    list.append(item);
  });
  $("#submit").disabled = state.refs.some((r) => r.status === "uploading");
  renderPrompt();
}

function setupReferences() {
  const zone = $("#dropzone");
  const picker = $("#ref-files");
  zone.addEventListener("click", () => picker.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); picker.click(); }
  });
  picker.addEventListener("change", () => { addFiles([...picker.files]); picker.value = ""; });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    addFiles([...event.dataTransfer.files]);
  });
}

// --- The prompt: counter and tags without a reference ------------------------------------

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function renderPrompt() {
  const prompt = $("#prompt");
  const text = prompt.value;
  const max = state.schema?.prompt.maxLength;
  const count = [...text].length;
  const counter = $("#prompt-count");
  counter.textContent = max ? `${count} / ${max} characters` : `${count} characters`;
  counter.classList.toggle("warn", max !== undefined && count > max);
  const references = state.refs.length;
  const dangling = new Set();
  const marked = escapeHtml(text).replace(/\bCharacter(\d+)\b/g, (tag, n) => {
    if (Number(n) >= 1 && Number(n) <= references) return tag;
    dangling.add(tag);
    return `<mark>${tag}</mark>`;
  });
  $("#prompt-backdrop").innerHTML = `${marked}\n`;
  $("#prompt-tags").textContent = dangling.size
    ? `${[...dangling].join(", ")} ${dangling.size === 1 ? "has" : "have"} no reference.`
    : "";
  renderCode();
}

function setupPrompt() {
  const prompt = $("#prompt");
  prompt.addEventListener("input", renderPrompt);
  prompt.addEventListener("scroll", () => { $("#prompt-backdrop").scrollTop = prompt.scrollTop; });
}

// --- The request body and its code ----------------------------------------------------

function endpoint() {
  return document.querySelector("input[name=endpoint]:checked").value;
}

/** The request body as JSON text (a seed is written as typed: it may exceed 2^53). */
function requestJson() {
  const body = { prompt: $("#prompt").value };
  const refs = orderedRefs().filter((r) => r.url);
  const videos = refs.filter((r) => r.kind === "video").map((r) => r.url);
  const images = refs.filter((r) => r.kind === "image").map((r) => r.url);
  if (videos.length) body.video_urls = videos;
  if (images.length) body.image_urls = images;
  let seed = null;
  for (const control of document.querySelectorAll("#generated-fields [data-field]")) {
    const name = control.dataset.field;
    if (control.type === "checkbox") body[name] = control.checked;
    else if (name === "seed") {
      if (control.value.trim()) { seed = control.value.trim(); body.seed = "__SEED__"; }
    } else if (control.value !== "") body[name] = control.value;
  }
  let text = JSON.stringify(body, null, 2);
  if (seed !== null) {
    text = text.replace('"__SEED__"', /^\d+$/.test(seed) ? seed : JSON.stringify(seed));
  }
  return text;
}

let codeLang = "json";

function renderCode() {
  if (!state.schema) return;
  const json = requestJson();
  const base = window.location.origin;
  const path = endpoint();
  const snippets = {
    json,
    curl: [
      `curl -s -X POST "${base}/${path}" \\`,
      `  -H "Authorization: Key $R2V_KEY" \\`,
      `  -H "Content-Type: application/json" \\`,
      `  -d '${json.replace(/'/g, "'\\''")}'`,
    ].join("\n"),
    js: [
      `import { createFalClient } from "@fal-ai/client";`,
      `const BASE = "${base}";`,
      `const HOSTS = { "queue.fal.run": BASE, "fal.run": \`\${BASE}/run\`, "rest.fal.ai": BASE };`,
      `const rewrite = (url) => { const u = new URL(url); return HOSTS[u.host] ? \`\${HOSTS[u.host]}\${u.pathname}\${u.search}\` : url; };`,
      `const fal = createFalClient({ credentials: process.env.R2V_KEY, requestMiddleware: async (r) => ({ ...r, url: rewrite(r.url) }) });`,
      ``,
      `const { data } = await fal.subscribe("${path}", {`,
      `  input: ${json.split("\n").join("\n  ")},`,
      `  logs: true, onQueueUpdate: (u) => console.log(u.status, u.logs?.at(-1)?.message),`,
      `});`,
      `console.log(data.video.url);`,
    ].join("\n"),
    python: [
      `import json, os, fal_client, fal_client.client as fc`,
      `BASE = "${base}"`,
      `fc.QUEUE_URL_FORMAT, fc.RUN_URL_FORMAT, fc.REST_URL, fc.CDN_URL = f"{BASE}/", f"{BASE}/run/", BASE, BASE`,
      ``,
      `client = fal_client.SyncClient(key=os.environ["R2V_KEY"])`,
      `arguments = json.loads(r"""${json}""")`,
      `result = client.subscribe("${path}", arguments, with_logs=True, on_queue_update=print)`,
      `print(result["video"]["url"])`,
    ].join("\n"),
  };
  $("#code-text").textContent = snippets[codeLang];
}

function setupCode() {
  const tabs = [...document.querySelectorAll("#code [role=tab]")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => {
      codeLang = tab.dataset.lang;
      for (const t of tabs) t.setAttribute("aria-selected", String(t === tab));
      renderCode();
    });
  }
  for (const radio of document.querySelectorAll("input[name=endpoint]")) radio.addEventListener("change", renderCode);
}

// --- Errors by field ----------------------------------------------------------------------

function clearErrors() {
  for (const error of document.querySelectorAll(".error")) error.textContent = "";
  showBanner("");
}

/** A 422's details under the fields they concern; the rest in the banner. */
function showDetails(details) {
  const elsewhere = [];
  for (const detail of details) {
    const [where, field, index] = detail.loc || [];
    let target = where === "body" && field ? $(`#error-${CSS.escape(String(field))}`) : null;
    if (where === "body" && field === undefined) target = $("#error-references");
    if (!target) { elsewhere.push(detail.msg); continue; }
    const prefix = typeof index === "number" ? `${field === "video_urls" ? "Video" : "Image"} ${index + 1}: ` : "";
    const line = `${prefix}${detail.msg} (${detail.type})`;
    target.textContent = target.textContent ? `${target.textContent} ${line}` : line;
  }
  if (elsewhere.length) showBanner(elsewhere.join(" "));
  const first = document.querySelector(".error:not(:empty)");
  first?.closest(".field")?.querySelector("textarea, input, select, [tabindex]")?.focus();
}

// --- Running a request ----------------------------------------------------------------

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const response = await api("POST", `/${endpoint()}`, { json: requestJson() }).catch((e) => e);
  if (response instanceof Error) return showBanner(`The server could not be reached: ${response.message}`);
  if (response.status === 422) return showDetails((await response.json()).detail);
  if (!response.ok) return showBanner(await failure(response));
  const submitted = await response.json();
  addHistory({ id: submitted.request_id, endpoint: endpoint(), prompt: $("#prompt").value, at: Date.now() });
  follow(submitted.request_id);
}

function setRunStatus(text) {
  $("#run-status").textContent = text;
}

function appendLogs(logs) {
  const list = $("#run-logs");
  for (const log of logs || []) {
    const item = document.createElement("li");
    item.textContent = log.message;
    list.append(item);
    const percent = /\((\d+)%\)/.exec(log.message);
    if (percent) $("#run-progress").value = Number(percent[1]);
  }
  list.scrollTop = list.scrollHeight;
}

function onStatus(status) {
  if (status.status === "IN_QUEUE") {
    setRunStatus(`In queue, position ${status.queue_position ?? 0}.`);
  } else if (status.status === "IN_PROGRESS") {
    setRunStatus("In progress.");
  }
  appendLogs(status.logs);
  return status.status === "COMPLETED" ? status : null;
}

/** Reads the status stream (server-sent events); resolves with the COMPLETED status. */
async function streamStatus(id, signal) {
  const response = await api("GET", `${STATUS_BASE}/${id}/status/stream?logs=1`, { signal });
  if (!response.ok || !response.body) throw new Error(await failure(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return null;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) {
        const completed = onStatus(JSON.parse(data));
        if (completed) return completed;
      }
    }
  }
}

async function follow(id) {
  state.follow?.abort();
  const controller = new AbortController();
  state.follow = controller;
  state.current = id;
  $("#run").hidden = false;
  $("#result").hidden = true;
  $("#run-id").textContent = id;
  $("#run-logs").replaceChildren();
  $("#run-progress").value = 0;
  $("#cancel").disabled = false;
  setRunStatus("Submitted.");
  let completed = null;
  try {
    completed = await streamStatus(id, controller.signal);
  } catch (error) {
    if (controller.signal.aborted) return;
    // The stream broke: read the status once more.
    const response = await api("GET", `${STATUS_BASE}/${id}/status?logs=1`);
    if (!response.ok) return showBanner(await failure(response));
    completed = onStatus(await response.json());
    if (!completed) return showBanner(`The status stream broke off: ${error.message}`);
  }
  if (controller.signal.aborted || !completed) return;
  $("#cancel").disabled = true;
  await showResult(id, completed);
}

async function showResult(id, completed) {
  if (completed.error_type === "client_cancelled") {
    setRunStatus("Cancelled.");
    return;
  }
  const response = await api("GET", `${STATUS_BASE}/${id}`);
  if (response.status === 422) {
    setRunStatus("Failed: the input was refused.");
    return showDetails((await response.json()).detail);
  }
  if (!response.ok) {
    setRunStatus("Failed.");
    return showBanner(await failure(response));
  }
  const text = await response.text();
  const output = JSON.parse(text);
  // Seeds go up to 2^63: read the digits as written, not as a JavaScript number.
  const seed = /"seed"\s*:\s*(\d+)/.exec(text)?.[1] ?? String(output.seed);
  $("#run-progress").value = 100;
  setRunStatus("Completed.");
  const video = output.video;
  const player = $("#result-video");
  player.src = video.url;
  $("#result-download").href = video.url;
  $("#result-download").setAttribute("download", video.file_name || "video.mp4");
  const meta = $("#result-meta");
  meta.replaceChildren();
  const rows = [
    ["Size", `${video.width} × ${video.height}`],
    ["Frame rate", `${video.fps} fps`],
    ["Duration", `${video.duration} s`],
    ["Frames", video.num_frames],
    ["Seed", seed],
    ["Prompt used", output.actual_prompt ?? "(as written)"],
    ["File", `${video.file_name} (${(video.file_size / 1e6).toFixed(2)} MB)`],
  ];
  for (const [term, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = String(value ?? "");
    meta.append(dt, dd);
  }
  $("#result").hidden = false;
}

async function cancel() {
  if (!state.current) return;
  const response = await api("PUT", `${STATUS_BASE}/${state.current}/cancel`);
  if (response.ok) setRunStatus("Cancelling…");
  else if (response.status !== 400) showBanner(await failure(response));
}

// --- History ------------------------------------------------------------------------------

function historyKey() {
  return `r2v.history.${keyOwner()}`;
}

function readHistory() {
  try { return JSON.parse(localStorage.getItem(historyKey())) || []; } catch { return []; }
}

function addHistory(entry) {
  const entries = [entry, ...readHistory().filter((e) => e.id !== entry.id)].slice(0, 30);
  localStorage.setItem(historyKey(), JSON.stringify(entries));
  renderHistory();
}

function renderHistory() {
  const list = $("#history-list");
  list.replaceChildren();
  const entries = readHistory();
  if (!entries.length) {
    const empty = document.createElement("li");
    empty.className = "hint";
    empty.textContent = "No requests yet.";
    list.append(empty);
  }
  for (const entry of entries) {
    const item = document.createElement("li");
    const what = document.createElement("span");
    what.className = "what";
    const when = new Date(entry.at).toLocaleString();
    what.textContent = `${when} · ${entry.endpoint.endsWith("flash") ? "flash" : "standard"} · ${entry.prompt}`;
    what.title = entry.prompt;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "secondary";
    open.textContent = "Open";
    open.setAttribute("aria-label", `Open request ${entry.id}`);
    open.addEventListener("click", () => { clearErrors(); follow(entry.id); });
    item.append(what, open);
    list.append(item);
  }
}

// --- Start ---------------------------------------------------------------------------------

async function start() {
  setupKey();
  try {
    await setupForm();
  } catch (error) {
    showBanner(`Could not read this server's /openapi.json: ${error.message}`);
    return;
  }
  setupReferences();
  setupPrompt();
  setupCode();
  $("#request-form").addEventListener("submit", submit);
  $("#cancel").addEventListener("click", cancel);
  renderRefs();
  renderHistory();
  await checkKey();
  document.body.dataset.ready = "true";
}

start();
