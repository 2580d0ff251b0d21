// Browser test of the iomux-pubsub demo page (actors/src/demo.html), in headless Chromium.
//
//   node tests/browser/demo.test.mjs http://127.0.0.1:PORT [screenshot.png]
//
// For each transport (long-poll, then EventSource) it opens the page in two tabs on a fresh
// channel, publishes from the form of one tab and checks that the message shows up in both,
// checks the status pill, named events, HTML escaping, the reaction to a deleted channel and to
// an unreachable server (subscription backoff and resume, failed publish), then saves a
// screenshot. Exits 0 when everything passed, 1 with a clear message otherwise (2: bad usage).
// Bounded: the whole run is cut at 60 s; the browser is always closed.
//
// The browser is the system's Chromium (CHROMIUM overrides /usr/bin/chromium); playwright-core
// only drives it and downloads nothing.

import { chromium } from "playwright-core";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";

const TOTAL_MS = 60_000;
const STEP_MS = 8_000; // one wait (page load, status, a message to arrive)
const DELIVERY_MS = 5_000; // a published message must reach every tab within this
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const [serverArg, screenshotArg] = process.argv.slice(2);
if (!serverArg || !/^https?:\/\//.test(serverArg)) {
  console.error("usage: node demo.test.mjs http://HOST:PORT [screenshot.png]");
  process.exit(2);
}
const base = new URL("/", serverArg).href;
const screenshot = screenshotArg ? resolve(screenshotArg) : null;
const runId = Math.random().toString(36).slice(2, 8);
const started = Date.now();

const log = (...args) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`, ...args);

let context = null;
let userDataDir = null;
const pageErrors = [];

async function cleanup() {
  if (context) {
    const ctx = context;
    context = null;
    await Promise.race([ctx.close().catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
  }
  if (userDataDir) {
    rmSync(userDataDir, { recursive: true, force: true });
    userDataDir = null;
  }
}

async function finish(code, message) {
  clearTimeout(watchdog);
  if (message) console.error(message);
  await cleanup();
  process.exit(code);
}

const watchdog = setTimeout(() => {
  finish(1, `FAIL: the browser test did not finish within ${TOTAL_MS / 1000} s`);
}, TOTAL_MS);

class TestFailure extends Error {}
function check(cond, message) {
  if (!cond) throw new TestFailure(message);
}

// What a tab shows, for failure messages.
async function describe(page, label) {
  try {
    const d = await page.evaluate(() => ({
      status: document.getElementById("status").dataset.state,
      statusText: document.getElementById("status-text").textContent,
      detail: document.getElementById("status-detail").textContent,
      publish: document.getElementById("publish-status").textContent,
      items: [...document.querySelectorAll("#messages li")].slice(-6).map((li) => li.textContent.replace(/\s+/g, " ").trim()),
    }));
    return `${label}: status ${d.status} "${d.statusText}" (${d.detail}); publish status "${d.publish}"; last items:\n` +
      d.items.map((t) => `    - ${t}`).join("\n");
  } catch (e) {
    return `${label}: (could not read the page: ${e.message})`;
  }
}

async function openTab(label, channel, mode) {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 800 });
  page.on("pageerror", (err) => pageErrors.push(`${label}: uncaught ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") log(`  (${label} console: ${msg.text()})`);
  });
  const url = `${base}#channel=${encodeURIComponent(channel)}&mode=${mode}`;
  let res;
  try {
    res = await page.goto(url, { waitUntil: "load", timeout: STEP_MS });
  } catch (err) {
    throw new TestFailure(`${label}: could not open the demo page ${url}: ${err.message.split("\n")[0]}`);
  }
  check(res && res.status() === 200, `${label}: GET ${base} answered ${res && res.status()}, expected 200`);
  check((res.headers()["content-type"] || "").startsWith("text/html"), `${label}: the demo page is not text/html`);
  // The hash chose the channel and the transport.
  const shown = await page.evaluate(() => ({
    channel: document.getElementById("channel").value,
    mode: document.querySelector('input[name="mode"]:checked').value,
  }));
  check(shown.channel === channel, `${label}: #channel shows "${shown.channel}", expected "${channel}" from the URL hash`);
  check(shown.mode === mode, `${label}: the transport selected is "${shown.mode}", expected "${mode}" from the URL hash`);
  return page;
}

async function waitStatus(page, label, states, what) {
  try {
    await page.waitForFunction(
      (ok) => ok.includes(document.getElementById("status").dataset.state),
      states,
      { timeout: STEP_MS, polling: 50 },
    );
  } catch {
    throw new TestFailure(`${label}: the status indicator never showed ${what} (${states.join("/")}) within ${STEP_MS / 1000} s\n` +
      await describe(page, label));
  }
  return page.$eval("#status-text", (e) => e.textContent);
}

// Publish from a tab's form; returns the publish status text.
async function sendFromForm(page, label, name, text, expect = "ok") {
  // The user types in the tab in front (background tabs get no animation frames, which
  // Playwright's actionability checks wait for).
  await page.bringToFront();
  const before = await page.$eval("#publish-status", (e) => e.textContent);
  await page.fill("#name", name);
  await page.fill("#text", text);
  await page.click("#send");
  try {
    await page.waitForFunction(
      (prev) => {
        const p = document.getElementById("publish-status");
        return (p.dataset.state === "ok" || p.dataset.state === "error") && p.textContent !== prev;
      },
      before,
      { timeout: STEP_MS, polling: 50 },
    );
  } catch {
    throw new TestFailure(`${label}: publishing from the form did not finish within ${STEP_MS / 1000} s\n` + await describe(page, label));
  }
  const status = await page.$eval("#publish-status", (e) => ({ state: e.dataset.state, text: e.textContent }));
  check(status.state === expect, `${label}: publish status is ${status.state} "${status.text}", expected ${expect}`);
  return status.text;
}

// Wait until a tab lists a message containing `text`; returns the item's details.
async function expectMessage(page, label, text, timeout = DELIVERY_MS) {
  try {
    const handle = await page.waitForFunction(
      (t) => {
        const li = [...document.querySelectorAll("#messages li.msg")].find((l) => l.textContent.includes(t));
        return li && {
          id: li.dataset.id,
          event: li.dataset.event || null,
          html: li.querySelector(".text").innerHTML,
          elements: li.querySelector(".text").children.length,
          mine: li.classList.contains("mine"),
        };
      },
      text,
      { timeout, polling: 50 },
    );
    return await handle.jsonValue();
  } catch {
    throw new TestFailure(`${label}: the message "${text}" did not appear within ${timeout / 1000} s\n` + await describe(page, label));
  }
}

async function publishDirect(channel, body, headers = {}) {
  const res = await fetch(new URL(`pub/${encodeURIComponent(channel)}`, base), {
    method: "POST",
    headers: { "Content-Type": "text/plain", ...headers },
    body,
  });
  check(res.status === 201 || res.status === 202, `direct publish to ${channel}: HTTP ${res.status}`);
}

async function runMode(mode) {
  const channel = `${mode === "eventsource" ? "demo" : "lp"}-${runId}`;
  const label = mode === "eventsource" ? "EventSource" : "long-poll";
  log(`${label}: opening two tabs on channel ${channel}`);
  const a = await openTab(`${label} tab A`, channel, mode);
  const b = await openTab(`${label} tab B`, channel, mode);
  const want = mode === "eventsource" ? ["connected"] : ["waiting", "connected"];
  for (const [page, tab] of [[a, "A"], [b, "B"]]) {
    const text = await waitStatus(page, `${label} tab ${tab}`, want, "a live subscription");
    log(`  tab ${tab} status: ${text}`);
  }

  // A -> B (and A itself); the text holds HTML, which must be shown as text.
  const first = `Hi Bob, ${label} works <b>${runId}</b> & "quotes"`;
  let t0 = Date.now();
  const pubStatus = await sendFromForm(a, `${label} tab A`, "alice", first);
  log(`  A published: ${pubStatus}`);
  const inB = await expectMessage(b, `${label} tab B`, first);
  log(`  B got it in ${Date.now() - t0} ms as ${inB.id}`);
  const inA = await expectMessage(a, `${label} tab A`, first);
  check(/^\d+:\d+$/.test(inB.id), `${label}: the message's id "${inB.id}" is not time:tag`);
  check(inA.id === inB.id, `${label}: tabs A and B show different ids (${inA.id} / ${inB.id})`);
  check(inB.elements === 0 && inB.html.includes("&lt;b&gt;"), `${label}: message text was not escaped: ${inB.html}`);
  check(pubStatus.includes(inB.id), `${label}: the publish status "${pubStatus}" does not name the id ${inB.id}`);

  // B -> A.
  const reply = `Hello Alice, got it over ${label} (${runId})`;
  t0 = Date.now();
  await sendFromForm(b, `${label} tab B`, "bob", reply);
  await expectMessage(a, `${label} tab A`, reply);
  log(`  A got B's reply in ${Date.now() - t0} ms`);
  await expectMessage(b, `${label} tab B`, reply);

  // A named event from another publisher (X-EventSource-Event): shown in both tabs; EventSource
  // tabs receive it as the named event.
  const news = `deploy finished, all green (${label} ${runId})`;
  await publishDirect(channel, `newsbot: ${news}`, { "X-EventSource-Event": "news" });
  const newsItem = await expectMessage(b, `${label} tab B`, news);
  await expectMessage(a, `${label} tab A`, news);
  if (mode === "eventsource") {
    check(newsItem.event === "news", `${label}: the named event came as "${newsItem.event}", expected "news"`);
  }
  log(`  named event from curl-like publisher arrived (event ${newsItem.event || "-"})`);

  if (mode === "longpoll") {
    // Deleting the channel: waiting long-polls get 410; the page says so and starts over.
    await a.click("#delete");
    try {
      await b.waitForSelector('#messages li.notice[data-kind="deleted"]', { timeout: DELIVERY_MS });
    } catch {
      throw new TestFailure(`${label} tab B: no "channel deleted" notice after DELETE /pub\n` + await describe(b, "tab B"));
    }
    await waitStatus(b, `${label} tab B`, want, "a live subscription again after the delete");
    const after = `still here after the delete (${runId})`;
    await sendFromForm(a, `${label} tab A`, "alice", after);
    await expectMessage(b, `${label} tab B`, after);
    log("  channel delete: notice shown, subscription restarted, next message delivered");
  }

  if (mode === "longpoll") {
    // Hold timeout: a 408 carries the cursor (Last-Modified + Etag); the page must poll again at
    // once with exactly that cursor. (The server's default hold is unlimited, so the 408 is
    // made here.)
    const last = await b.$$eval("#messages li.msg", (lis) => lis[lis.length - 1].dataset.id);
    const [time, tag] = last.split(":");
    const lastModified = new Date(Number(time) * 1000).toUTCString();
    const polls = [];
    const onRequest = (req) => {
      if (req.url().includes("/sub/")) polls.push({ at: Date.now(), headers: req.headers() });
    };
    let timedOut = 0;
    await b.route("**/sub/**", async (route) => {
      if (timedOut++ === 0) {
        await route.fulfill({
          status: 408,
          headers: { "Last-Modified": lastModified, "Etag": tag, "Vary": "If-None-Match, If-Modified-Since" },
          body: "",
        });
      } else {
        await route.continue();
      }
    });
    b.on("request", onRequest);
    await b.click("#reconnect");
    const deadline = Date.now() + DELIVERY_MS;
    while (polls.length < 2 && Date.now() < deadline) await b.waitForTimeout(50);
    b.off("request", onRequest);
    await b.unroute("**/sub/**");
    check(polls.length >= 2, `${label} tab B: no new poll after a 408 (saw ${polls.length} poll(s))`);
    const again = polls[1];
    check(again.at - polls[0].at < 1_000, `${label} tab B: the poll after a 408 came ${again.at - polls[0].at} ms later, not at once`);
    check(again.headers["if-modified-since"] === lastModified && again.headers["if-none-match"] === tag,
      `${label} tab B: the poll after a 408 sent If-Modified-Since "${again.headers["if-modified-since"]}" / ` +
      `If-None-Match "${again.headers["if-none-match"]}", expected the 408's "${lastModified}" / "${tag}"`);
    await waitStatus(b, `${label} tab B`, want, "a live subscription after a 408");
    const after408 = `after a hold timeout (${runId})`;
    await sendFromForm(a, `${label} tab A`, "alice", after408);
    await expectMessage(b, `${label} tab B`, after408);
    log(`  408: polled again after ${again.at - polls[0].at} ms with the 408's cursor; next message delivered`);
  }

  // Server unreachable for tab B: the subscription backs off, then resumes from its cursor and
  // gets what was published meanwhile.
  await b.route("**/sub/**", (route) => route.abort("connectionrefused"));
  await b.click("#reconnect");
  const down = await waitStatus(b, `${label} tab B`, ["reconnecting"], "reconnecting while the server is unreachable");
  log(`  B with the server unreachable: ${down}`);
  const missed = `sent while B was cut off (${label} ${runId})`;
  await sendFromForm(a, `${label} tab A`, "alice", missed);
  await expectMessage(a, `${label} tab A`, missed);
  await b.unroute("**/sub/**");
  t0 = Date.now();
  await expectMessage(b, `${label} tab B`, missed, 8_000);
  log(`  B reconnected and caught up in ${Date.now() - t0} ms`);
  await waitStatus(b, `${label} tab B`, want, "a live subscription after the outage");

  // A failed publish is reported and keeps the text.
  await a.route("**/pub/**", (route) => route.abort("connectionrefused"));
  const failed = await sendFromForm(a, `${label} tab A`, "alice", "this one cannot be sent", "error");
  check(/Publish failed/.test(failed), `${label}: a failed publish says "${failed}"`);
  check(await a.$eval("#text", (e) => e.value) === "this one cannot be sent", `${label}: a failed publish lost the text`);
  await a.unroute("**/pub/**");
  await a.fill("#text", "");
  log(`  failed publish reported: ${failed}`);

  return { a, b, channel };
}

async function main() {
  check(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
  userDataDir = mkdtempSync(join(tmpdir(), "iomux-browser-"));
  log(`launching ${CHROMIUM}`);
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20_000,
    viewport: { width: 1280, height: 800 },
  });
  context.setDefaultTimeout(STEP_MS);
  for (const p of context.pages()) await p.close(); // the persistent context's blank tab

  const lp = await runMode("longpoll");
  await lp.a.close();
  await lp.b.close();
  const es = await runMode("eventsource");

  // A few more lines so that the screenshot shows a conversation.
  await sendFromForm(es.b, "EventSource tab B", "bob", "Both tabs update live, no reload needed.");
  await expectMessage(es.a, "EventSource tab A", "Both tabs update live");
  await sendFromForm(es.a, "EventSource tab A", "alice", "Nice. Switching transports keeps the cursor, too.");
  await expectMessage(es.a, "EventSource tab A", "Switching transports keeps");
  await waitStatus(es.a, "EventSource tab A", ["connected"], "connected");

  check(pageErrors.length === 0, `uncaught errors in the page:\n  ${pageErrors.join("\n  ")}`);

  if (screenshot) {
    mkdirSync(dirname(screenshot), { recursive: true });
    await es.a.evaluate(() => document.activeElement && document.activeElement.blur());
    await es.a.waitForTimeout(1_800); // the "new message" highlight fades
    await es.a.screenshot({ path: screenshot });
    log(`screenshot saved to ${screenshot}`);
  }
}

try {
  await main();
  log("PASS: the demo page delivers messages between tabs over long-poll and EventSource");
  await finish(0);
} catch (err) {
  const message = err instanceof TestFailure ? err.message : (err && err.stack) || String(err);
  await finish(1, `FAIL: ${message}`);
}
