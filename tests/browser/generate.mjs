// Drives the page of a running `foley serve` in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium) the way a user would:
//   node generate.mjs URL CLIP SCREENSHOT [--steps N] [--no-video] [--model NAME]
// (URL may also come from FOLEY_URL, the browser from FOLEY_CHROMIUM.)
//  1. waits until the page shows the server ready;
//  2. error paths: a text file is refused in the page, and a file named .mp4 that is not a video
//     comes back from the server as a readable #error;
//  3. cancels a queued job from the page;
//  4. with --model: the model picker lists the server's models with their state, NAME (not
//     loaded yet) is picked for the generation below, which then shows the model loading and
//     leaves it "loaded" in the picker;
//  5. uploads CLIP with a prompt and N steps, clicks Generate, follows the progress, and checks
//     that #result-audio is playable with the clip's duration and that the muxed #result-video
//     plays with an audio track;
//  6. saves a full-page screenshot to SCREENSHOT.
// Exits 0 on success, 1 with the reason otherwise.
import fs from "node:fs";
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const flag = (name) => { const i = args.indexOf(name); return i < 0 ? null : args.splice(i, 2)[1]; };
const steps = Number(flag("--steps") ?? 4);
const model = flag("--model");
const noVideoIdx = args.indexOf("--no-video");
const expectVideo = noVideoIdx < 0;
if (!expectVideo) args.splice(noVideoIdx, 1);
const [url = process.env.FOLEY_URL, clip, screenshot] = args;
if (!url || !clip || !screenshot) {
  console.error("usage: node generate.mjs URL CLIP SCREENSHOT [--steps N] [--no-video] [--model NAME]");
  process.exit(2);
}

const log = (...m) => console.log("[browser]", ...m);
class Failure extends Error {}
const check = (ok, message) => { if (!ok) throw new Failure(message); };

const browser = await chromium.launch({
  executablePath: process.env.FOLEY_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // CI runs as root, where Chromium's sandbox cannot start; media must play without a gesture.
  args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
});
const pageErrors = [];
let page;
try {
  page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // Failed loads are expected here (503 while the model loads, the refused uploads).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) log("console:", m.text());
  });

  await page.goto(url);
  check((await page.title()) === "foley", "the page title is not 'foley'");
  await page.waitForSelector("body[data-server=ready]", { timeout: 60000 })
    .catch(() => { throw new Failure("the page never showed the server ready"); });
  log("server ready");

  // A text file: refused in the page before any upload.
  await page.setInputFiles("#video-input", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("hello") });
  const textError = await visibleError(page, 5000);
  check(/not a video/i.test(textError), `text file: unexpected #error "${textError}"`);
  check(await page.isDisabled("#generate"), "Generate is enabled with a text file chosen");
  log("text file refused:", textError);

  // Bytes that are no video, named like one: the server must refuse them readably.
  await page.setInputFiles("#video-input", { name: "broken.mp4", mimeType: "video/mp4", buffer: Buffer.alloc(4096, 0x5a) });
  check(!(await page.isVisible("#error")), "#error still shown after choosing another file");
  await page.fill("#prompt", "rain on a tin roof");
  await page.click("#generate");
  await page.waitForSelector("body[data-job=failed]", { timeout: 60000 })
    .catch(() => { throw new Failure("a broken upload did not end in a failure"); });
  const brokenError = await visibleError(page, 1000);
  check(brokenError.length > 10 && !/undefined|\[object|NaN/.test(brokenError),
        `broken upload: unreadable #error "${brokenError}"`);
  log("broken upload refused:", brokenError);

  // The real clip.
  await page.setInputFiles("#video-input", clip);
  const clipSeconds = await page.evaluate(() => new Promise((resolve, reject) => {
    const v = document.getElementById("preview");
    if (v.readyState >= 1) return resolve(v.duration);
    v.addEventListener("loadedmetadata", () => resolve(v.duration), { once: true });
    v.addEventListener("error", () => reject(new Error("the preview cannot load the clip")), { once: true });
  }));
  log(`clip: ${clipSeconds.toFixed(3)} s`);
  await page.fill("#prompt", "footsteps on gravel");
  await page.click("#advanced summary");
  await page.fill("#steps", String(steps));
  await page.fill("#seed", "7");
  // The page's jobs wait behind a long "blocker" job posted straight to the API (the CPU server
  // runs one job at a time), so the page is connected to the event stream before its job starts
  // however fast the model is: its progress is then seen step by step, and Cancel meets a job
  // that is certainly still in the queue.
  let blocker = await submitBlocker();
  await page.click("#generate");
  await page.waitForSelector("body[data-events=open][data-job=queued]", { timeout: 30000 })
    .catch(() => { throw new Failure("the page's job was not shown queued behind the blocker"); });
  check(await page.isVisible("#cancel"), "no Cancel button while a job is queued");
  check(await page.isDisabled("#generate"), "Generate stays enabled while a job is queued");
  await page.click("#cancel");
  await page.waitForSelector("body[data-job=cancelled]", { timeout: 30000 })
    .catch(() => { throw new Failure("Cancel did not end the queued job"); });
  check(/cancelled/i.test(await page.textContent("#status")), "the status line does not say cancelled");
  check(!(await page.isVisible("#error")), `#error shown after a cancel: ${await page.textContent("#error")}`);
  await cancelJob(blocker);
  log("cancel of a queued job: ok");

  // Every text the status line shows, to check that progress arrived step by step. Events that
  // arrive in one network read are handled in one task, and a MutationObserver callback comes
  // once per task: read every record's text, not the line's final text.
  await page.evaluate(() => {
    window.statusLog = [];
    const s = document.getElementById("status");
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === "characterData") window.statusLog.push(r.target.data);
        else for (const n of r.addedNodes) window.statusLog.push(n.textContent);
      }
    }).observe(s, { childList: true, characterData: true, subtree: true });
  });
  if (model) {
    // The picker: every model with its state, the default preselected; pick the one not loaded.
    await page.waitForSelector("#model-box:not([hidden])", { timeout: 10000 })
      .catch(() => { throw new Failure("no model picker although the server has several models"); });
    const options = await page.$$eval("#model option", (os) => os.map((o) => [o.value, o.textContent]));
    const picked = options.find(([v]) => v === model);
    check(picked, `the picker does not list "${model}": ${JSON.stringify(options)}`);
    check(/\(unloaded\)/.test(picked[1]), `"${model}" is not shown unloaded: ${picked[1]}`);
    check(options.some(([, t]) => /\(loaded, default\)/.test(t)) &&
          (await page.inputValue("#model")) !== model, `the default is not preselected: ${JSON.stringify(options)}`);
    await page.selectOption("#model", model);
    log("model picker:", options.map(([, t]) => t).join(", "), "-> picked", model);
  }
  blocker = await submitBlocker();
  const started = Date.now();
  check(!(await page.isDisabled("#generate")), "Generate is disabled with a video chosen");
  await page.click("#generate");
  await page.waitForSelector("body[data-events=open][data-job=queued]", { timeout: 30000 })
    .catch(() => { throw new Failure("the page's job was not shown queued behind the blocker"); });
  await cancelJob(blocker);
  await page.waitForSelector("body[data-job=done], body[data-job=failed], body[data-job=cancelled]", { timeout: 120000 });
  const state = await page.getAttribute("body", "data-job");
  check(state === "done", `generation ended "${state}": ${await page.textContent("#error")}`);
  log(`generation done in ${((Date.now() - started) / 1000).toFixed(1)} s (page: "${await page.textContent("#status")}")`);

  const statusLog = await page.evaluate(() => window.statusLog);
  const stepRe = new RegExp(`step \\d+/${steps}\\b`);
  check(statusLog.some((t) => stepRe.test(t)), `no "step k/${steps}" in the status texts: ${JSON.stringify(statusLog)}`);
  const timingRows = await page.locator("#timings tr").count();
  check(timingRows > 0, "no per-stage timings shown");
  if (model) {
    check(statusLog.some((t) => /Loading the model/.test(t)), `the model's load was not shown: ${JSON.stringify(statusLog)}`);
    await page.waitForFunction((m) => [...document.querySelectorAll("#model option")]
      .some((o) => o.value === m && /\(loaded\)/.test(o.textContent)), model, { timeout: 10000 })
      .catch(() => { throw new Failure(`the picker does not show "${model}" loaded after the job`); });
    log(`model "${model}": loaded while the job waited, now shown loaded`);
  }

  const audio = await playable(page, "#result-audio");
  check(Math.abs(audio.duration - clipSeconds) <= 0.1 + 0.03 * clipSeconds,
        `audio lasts ${audio.duration} s, the clip ${clipSeconds} s`);
  log(`audio: playable, ${audio.duration.toFixed(3)} s, played to ${audio.played.toFixed(2)} s`);
  await checkDownload(page, "#download-audio");

  if (expectVideo) {
    check(await page.isVisible("#result-video"), "no muxed video shown");
    const video = await playable(page, "#result-video");
    check(video.width > 0 && video.height > 0, "the muxed video has no picture");
    check(video.audioBytes > 0, "the muxed video played no audio track");
    check(Math.abs(video.duration - clipSeconds) <= 0.1 + 0.03 * clipSeconds,
          `muxed video lasts ${video.duration} s, the clip ${clipSeconds} s`);
    log(`video: playable, ${video.width}x${video.height}, ${video.duration.toFixed(3)} s, audio bytes ${video.audioBytes}`);
    await checkDownload(page, "#download-video");
  }
  // Show the finished state (players back at the start) in the screenshot.
  await page.evaluate(() => document.querySelectorAll("#results audio, #results video").forEach((m) => { m.pause(); m.currentTime = 0; }));
  check(pageErrors.length === 0, `script errors in the page: ${pageErrors.join("; ")}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  log("screenshot:", screenshot);
  log("PASS");
} catch (e) {
  console.error("[browser] FAIL:", e instanceof Failure ? e.message : e.stack || String(e));
  if (pageErrors.length) console.error("[browser] page errors:", pageErrors.join("; "));
  if (page) await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();

async function submitBlocker() {
  const form = new FormData();
  form.append("video", new Blob([fs.readFileSync(clip)], { type: "video/mp4" }), "blocker.mp4");
  form.append("prompt", "blocker");
  form.append("steps", "200");
  const res = await fetch(new URL("v1/generations", url), { method: "POST", body: form });
  const body = await res.text();
  check(res.status === 202, `blocker job: HTTP ${res.status} ${body}`);
  return JSON.parse(body).id;
}

async function cancelJob(id) {
  const res = await fetch(new URL(`v1/generations/${id}`, url), { method: "DELETE" });
  const body = await res.text();
  check(res.ok, `DELETE of the blocker job: HTTP ${res.status} ${body}`);
}

async function visibleError(page, timeout) {
  await page.waitForSelector("#error:not([hidden])", { timeout })
    .catch(() => { throw new Failure("#error did not appear"); });
  return (await page.textContent("#error")).trim();
}

// Waits for media that can play (readyState >= 2), plays it muted for a moment and reports
// what the element saw.
async function playable(page, selector) {
  return page.evaluate(async (sel) => {
    const m = document.querySelector(sel);
    const wait = (ok, what, ms) => new Promise((resolve, reject) => {
      const t0 = performance.now();
      const tick = () => ok() ? resolve() : performance.now() - t0 > ms
        ? reject(new Error(`${sel}: ${what} (readyState ${m.readyState}, error ${m.error && m.error.message})`))
        : setTimeout(tick, 50);
      tick();
    });
    await wait(() => m.readyState >= 2, "never became playable", 20000);
    m.muted = true;
    await m.play();
    await wait(() => m.currentTime > 0.2 || m.ended, "did not advance while playing", 10000);
    m.pause();
    return { duration: m.duration, played: m.currentTime, width: m.videoWidth || 0, height: m.videoHeight || 0,
             audioBytes: m.webkitAudioDecodedByteCount || 0 };
  }, selector).catch((e) => { throw new Failure(e.message); });
}

async function checkDownload(page, selector) {
  const [href, name] = await Promise.all([page.getAttribute(selector, "href"), page.getAttribute(selector, "download")]);
  check(href && href !== "#" && name, `${selector} has no file (href ${href}, download ${name})`);
}
