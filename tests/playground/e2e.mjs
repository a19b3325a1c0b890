// The playground of a running `r2v serve`, driven in Debian's Chromium by playwright-core:
// key, references and their badges, a two-shot request with its queue position, logs and
// result, a dangling Character tag, a cancel, the history, keyboard use and a narrow screen.
// Environment: R2V_BASE, R2V_KEY (empty for a --no-auth server), R2V_EXAMPLES (the repository's examples/), R2V_SCREENSHOTS
// (where each stage's screenshot goes), CHROMIUM (default /usr/bin/chromium).

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const base = process.env.R2V_BASE;
const key = process.env.R2V_KEY;
const examples = process.env.R2V_EXAMPLES;
const shots = process.env.R2V_SCREENSHOTS;
mkdirSync(shots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 1100 } });
const page = await context.newPage();
const pageErrors = [];
page.on("pageerror", (error) => pageErrors.push(error.message));
// Responses the page expects and shows (the key probe's 401, a 422) are logged by Chromium as
// failed loads; anything else logged as an error counts.
page.on("console", (message) => {
  if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) pageErrors.push(message.text());
});
page.setDefaultTimeout(60_000);

async function stage(name, body) {
  const started = Date.now();
  await body();
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  console.log(`ok ${name} (${Date.now() - started} ms)`);
}

const badges = () => page.$$eval("#refs li", (items) => items.map((li) =>
  `${li.querySelector(".badge").textContent} ${li.dataset.kind} ${li.querySelector(".name").textContent.split(": ")[1]}`));

async function waitForEnd(text) {
  await page.waitForFunction((t) => document.querySelector("#run-status").textContent.includes(t), text, { timeout: 180_000 });
}

try {
  if (!key) {
    // A server started with --no-auth: no key is asked for, and a request runs without one.
    await stage("no-auth", async () => {
      await page.goto(`${base}/playground`);
      await page.waitForSelector("body[data-ready=true]");
      check((await page.textContent("#key-status")).includes("none is needed"), await page.textContent("#key-status"));
      await page.getByLabel("Prompt", { exact: true }).fill("A lighthouse at dusk.");
      await page.getByLabel("Resolution").selectOption("720p");
      await page.getByRole("button", { name: "Generate" }).click();
      await waitForEnd("Completed.");
    });
    check(pageErrors.length === 0, `errors in the page: ${pageErrors.join(" | ")}`);
    console.log("playground without keys: passed");
    process.exit(0);
  }
  await stage("1-key", async () => {
    await page.goto(`${base}/`);
    check(page.url() === `${base}/playground`, `/ leads to ${page.url()}`);
    await page.waitForSelector("body[data-ready=true]");
    check((await page.textContent("#key-status")).includes("needs a key"), "the page asks for a key");
    await page.getByLabel("Key (id:secret), kept in this browser only").fill(key);
    await page.getByRole("button", { name: "Save key" }).click();
    await page.waitForFunction(() => document.querySelector("#key-status").textContent.includes("saved"));
    check(await page.evaluate(() => localStorage.getItem("r2v.key")) === key, "the key is in the browser's storage");
  });

  await stage("2-references", async () => {
    // Images first, then the video: the video still becomes Character1.
    await page.setInputFiles("#ref-files", [join(examples, "character-warm.png"), join(examples, "character-cool.jpg")]);
    await page.setInputFiles("#ref-files", [join(examples, "scene.mp4")]);
    await page.waitForFunction(() => {
      const states = [...document.querySelectorAll("#refs li .state")].map((s) => s.textContent);
      return states.length === 3 && states.every((s) => s === "Uploaded");
    });
    const expected = ["Character1 video scene.mp4", "Character2 image character-warm.png", "Character3 image character-cool.jpg"];
    check(JSON.stringify(await badges()) === JSON.stringify(expected), `badges: ${await badges()}`);
    // Reordering renumbers: the second image moves before the first, and back.
    await page.getByRole("button", { name: "Move earlier: Character3" }).click();
    const swapped = await badges();
    check(swapped[1] === "Character2 image character-cool.jpg" && swapped[2] === "Character3 image character-warm.png", `after moving: ${swapped}`);
    await page.getByRole("button", { name: "Move later: Character2" }).click();
    check(JSON.stringify(await badges()) === JSON.stringify(expected), `moved back: ${await badges()}`);
  });

  let firstId;
  await stage("3-running", async () => {
    await page.getByLabel("Prompt", { exact: true }).fill("[0-2s] Character1 walks along the shore. [2-5s] Character2 and Character3 wave at the camera.");
    check((await page.textContent("#prompt-tags")) === "", "every tag has a reference");
    await page.getByLabel("Resolution").selectOption("720p");
    await page.getByLabel("Aspect ratio").selectOption("16:9");
    await page.getByLabel("Duration").selectOption("5");
    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForFunction(() => /position|progress/i.test(document.querySelector("#run-status").textContent));
    await page.waitForSelector("#run-logs li");
    firstId = await page.textContent("#run-id");
  });

  await stage("4-result", async () => {
    await waitForEnd("Completed.");
    await page.waitForFunction(() => {
      const video = document.querySelector("#result-video");
      return video.readyState >= 1 && video.duration > 0;
    });
    const media = await page.$eval("#result-video", (v) => ({ width: v.videoWidth, height: v.videoHeight, duration: v.duration }));
    check(media.width === 1280 && media.height === 720, `the video is ${media.width}x${media.height}`);
    check(Math.abs(media.duration - 5) < 0.1, `the video lasts ${media.duration} s`);
    const meta = await page.textContent("#result-meta");
    check(meta.includes("1280 × 720") && meta.includes("30 fps") && meta.includes("150"), `metadata: ${meta}`);
    // The seed as the server wrote it (up to 2^63, beyond a JavaScript number's precision).
    const result = await page.evaluate(async ([id, key]) => (await fetch(`/wan/v2.6/requests/${id}`,
      { headers: { authorization: `Key ${key}` } })).text(), [await page.textContent("#run-id"), key]);
    const seed = /"seed"\s*:\s*(\d+)/.exec(result)[1];
    check(meta.includes(`Seed${seed}`), `seed ${seed} in ${meta}`);
    const download = await page.getAttribute("#result-download", "href");
    check(download && (await page.$eval("#result-video", (v) => v.currentSrc)) === download, "download link");
    const played = await page.$eval("#result-video", async (v) => { v.muted = true; await v.play(); return !v.paused; });
    check(played, "the video plays");
  });

  await stage("5-dangling-tag", async () => {
    await page.getByLabel("Prompt", { exact: true }).fill("Character4 dances in the rain.");
    check((await page.textContent("#prompt-tags")).includes("Character4 has no reference"), "the tag is highlighted");
    check((await page.$$eval("#prompt-backdrop mark", (m) => m.map((x) => x.textContent))).join() === "Character4", "marked in the prompt box");
    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForFunction(() => document.querySelector("#error-prompt").textContent.includes("value_error"));
    check((await page.textContent("#error-prompt")).includes("Character4"), await page.textContent("#error-prompt"));
  });

  await stage("6-cancelled", async () => {
    await page.getByLabel("Prompt", { exact: true }).fill("Character1 walks for ten seconds.");
    await page.getByLabel("Duration").selectOption("10");
    await page.getByLabel("Resolution").selectOption("1080p");
    await page.getByRole("button", { name: "Generate" }).click();
    await page.waitForFunction((first) => {
      const id = document.querySelector("#run-id").textContent;
      return id && id !== first;
    }, firstId);
    // Running, not only queued: a worker has it (a 10 s 1080p render takes a while).
    await waitForEnd("In progress.");
    await page.getByRole("button", { name: "Cancel" }).click();
    await waitForEnd("Cancelled.");
  });

  await stage("7-history", async () => {
    const entries = await page.$$eval("#history-list li .what", (items) => items.map((i) => i.textContent));
    check(entries.length === 2, `history: ${entries}`);
    await page.getByRole("button", { name: `Open request ${firstId}` }).click();
    await waitForEnd("Completed.");
    await page.waitForSelector("#result:not([hidden])");
    const code = await page.textContent("#code-text");
    check(JSON.parse(code).prompt.startsWith("Character1 walks"), "the code shows the form as JSON");
    for (const lang of ["curl", "JavaScript", "Python"]) {
      await page.getByRole("tab", { name: lang }).click();
      check((await page.textContent("#code-text")).includes("wan/v2.6/reference-to-video"), `${lang} snippet`);
    }
  });

  await stage("8-keyboard-and-labels", async () => {
    const unlabelled = await page.$$eval("input, select, textarea, button", (controls) => controls
      .filter((c) => !(c.labels?.length || c.getAttribute("aria-label") || c.getAttribute("aria-labelledby") || (c.tagName === "BUTTON" && c.textContent.trim())))
      .map((c) => c.outerHTML.slice(0, 80)));
    check(unlabelled.length === 0, `controls without a label: ${unlabelled}`);
    // The file chooser opens from the keyboard.
    const [chooser] = await Promise.all([
      page.waitForEvent("filechooser", { timeout: 10_000 }),
      page.locator("#dropzone").press("Enter"),
    ]);
    check(chooser.isMultiple(), "the chooser takes several files");
    // Tab reaches the prompt, and typing there works.
    await page.focus("#dropzone");
    await page.keyboard.press("Shift+Tab");
    check(await page.evaluate(() => document.activeElement.id) === "prompt", "Shift+Tab from the drop zone reaches the prompt");
  });

  await stage("9-narrow", async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    const wide = await page.$$eval("body *", (all) => all
      .filter((e) => e.getBoundingClientRect().right > 376 && !e.closest("pre"))
      .slice(0, 5).map((e) => `${e.tagName}#${e.id}.${e.className}`));
    check(width <= 375, `the page is ${width} px wide at 375 px: ${wide}`);
  });

  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join(" | ")}`);
  console.log("playground: all stages passed");
} finally {
  await browser.close();
}
