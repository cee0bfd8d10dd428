// The chat page in headless Chromium against a real `parley dev`. The page
// is served from another origin than the API, so CORS runs for real.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { build } from "vite";

import { MessageStatus, createParley, devTokenSource } from "../src/index.js";
import { startParley, type DevServer } from "./harness.js";

const webRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const shots = join(webRoot, "test-output");
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let api: DevServer;
let site: Server;
let otherSite: Server;
let pageOrigin: string;
let otherOrigin: string;
let browser: Browser;
// One browser profile for the page's tests: the sign-in is kept in its localStorage.
let profile: BrowserContext;

/** serve answers GET requests with the files under dir (index.html for /). */
async function serve(dir: string): Promise<[Server, string]> {
  const types: Record<string, string> = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml" };
  const s = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const file = normalize(join(dir, path === "/" ? "index.html" : path));
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "Content-Type": types[extname(file)] ?? "application/octet-stream" }).end(readFileSync(file));
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return [s, `http://127.0.0.1:${(s.address() as AddressInfo).port}`];
}

before(async () => {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `no Chromium at ${chromiumPath}: install Debian's package (apt-get install chromium; .ci/run does) or set CHROMIUM_PATH`,
    );
  }
  mkdirSync(shots, { recursive: true });
  const out = mkdtempSync(join(tmpdir(), "parley-page-"));
  await build({ configFile: join(webRoot, "vite.config.js"), root: join(webRoot, "app"), logLevel: "warn", build: { outDir: out, emptyOutDir: true } });
  [site, pageOrigin] = await serve(out);
  [otherSite, otherOrigin] = await serve(out);
  // Words slow enough that a reload lands mid-answer.
  api = await startParley({ ALLOWED_ORIGINS: pageOrigin, OFFLINE_WORD_DELAY: "150ms" });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  profile = await browser.newContext({ viewport: { width: 1280, height: 860 } });
});

after(async () => {
  await browser?.close();
  site?.close();
  otherSite?.close();
  await api?.stop();
});

/** open loads the page from origin against the dev API and records what goes wrong. */
async function open(
  origin: string,
  context: BrowserContext = profile,
  protocol: "connect" | "grpc-web" = "connect",
): Promise<{ page: Page; problems: string[]; contentTypes: Set<string> }> {
  const page = await context.newPage();
  const problems: string[] = [];
  const contentTypes = new Set<string>();
  page.on("request", (r) => {
    const t = r.headers()["content-type"];
    if (t && r.url().startsWith(api.url)) contentTypes.add(t);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  const query = `?api=${encodeURIComponent(api.url)}${protocol === "grpc-web" ? "&protocol=grpc-web" : ""}`;
  await page.goto(`${origin}/${query}`);
  return { page, problems, contentTypes };
}

const lastAnswer = `#messages li[data-role="assistant"]:last-child`;

async function answerText(page: Page): Promise<string> {
  return (await page.locator(`${lastAnswer} .content`).textContent()) ?? "";
}

for (const protocol of ["connect", "grpc-web"] as const) {
  test(`over ${protocol}, the page signs in, streams an answer, resumes it after a reload, and opens the artifact it wrote`, async () => {
    // Connect signs in the profile the next test goes on with; gRPC-Web gets its own.
    const context = protocol === "connect" ? profile : await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const { page, problems, contentTypes } = await open(pageOrigin, context, protocol);
    const shot = (name: string) => join(shots, `${protocol}-${name}`);
    try {
      await page.locator("#signin").waitFor();
      await page.locator("#dev-token").click();
      await page.locator("#app").waitFor();
      await page.locator("#usage").filter({ hasText: "tokens this month" }).waitFor();
      // The rate-limit headers crossed origins: CORS exposes them.
      const remaining = await page.evaluate(() => document.body.dataset.rateRemaining);
      assert.match(remaining ?? "", /^\d+$/, "the page could not read RateLimit-Remaining across origins");

      // Send, and watch the answer grow in the DOM.
      await page.locator("#input").fill("I keep putting off my work and I feel guilty about it");
      await page.locator("#input").press("Enter");
      await page.locator(`${lastAnswer}[data-status="streaming"]`).waitFor();
      await page.waitForFunction((sel) => (document.querySelector(sel)?.textContent ?? "").length > 0, `${lastAnswer} .content`);
      const early = await answerText(page);
      await page.waitForFunction(([sel, n]) => (document.querySelector(sel as string)?.textContent ?? "").length > (n as number), [`${lastAnswer} .content`, early.length] as const);
      const before = await answerText(page);
      assert.ok(before.startsWith(early), "the streamed text was rewritten instead of growing");
      await page.screenshot({ path: shot("1-streaming.png") });

      // Reload mid-answer: the page follows the same answer from the start.
      await page.reload();
      await page.locator("#app").waitFor();
      await page.locator(`${lastAnswer}[data-status="streaming"]`).waitFor({ timeout: 5_000 }).catch(() => {
        assert.fail("the answer had ended before the reload; the test proves nothing (slow OFFLINE_WORD_DELAY down)");
      });
      await page.waitForFunction((sel) => (document.querySelector(sel)?.textContent ?? "").length > 0, `${lastAnswer} .content`);
      await page.screenshot({ path: shot("2-resumed.png") });
      await page.locator(`${lastAnswer}[data-status="completed"]`).waitFor({ timeout: 20_000 });
      const after = await answerText(page);
      assert.ok(after.startsWith(before), `after the reload the answer does not go on from "${before}": "${after}"`);
      assert.ok(after.length > before.length);

      // What the page shows is what was saved.
      const conversationId = new URL(page.url()).hash.slice(3);
      const parley = createParley({ baseUrl: api.url, getToken: devTokenSource(api.url) });
      const { messages } = await parley.chat.listMessages({ conversationId });
      assert.equal(messages.at(-1)?.content, after);
      assert.equal(messages.at(-1)?.status, MessageStatus.COMPLETED);

      // An answer that writes a document: open it and its versions.
      await page.locator("#input").fill("Write a packing list for Lisbon");
      await page.locator("#input").press("Enter");
      const chip = page.locator(`${lastAnswer} .chip[data-artifact-id]`);
      await chip.waitFor({ timeout: 20_000 });
      await page.locator(`${lastAnswer}[data-status="completed"]`).waitFor({ timeout: 20_000 });
      await chip.click();
      await page.locator("#panel pre.document[data-version='1']").filter({ hasText: "Packing list for Lisbon" }).waitFor();
      assert.equal(await page.locator("#panel .versions .chip").count(), 1);
      await page.screenshot({ path: shot("3-artifact.png") });
      assert.deepEqual(problems, []);
      // The page spoke the protocol asked for.
      const wire = protocol === "grpc-web" ? "application/grpc-web+proto" : "application/connect+json";
      assert.ok(contentTypes.has(wire), `no ${wire} request; saw ${[...contentTypes].join(", ")}`);
    } finally {
      await page.screenshot({ path: shot("last.png") }).catch(() => {});
      await page.close();
    }
  });
}

test("stop, edit and switch branches, and an agent run watched to its end", async () => {
  const { page, problems } = await open(pageOrigin);
  try {
    await page.locator("#app").waitFor(); // signed in from the first test's storage
    await page.locator("#new-chat").click();
    await page.locator("#input").fill("Tell me why people are afraid of changing their plans");
    await page.locator("#input").press("Enter");
    await page.locator(`${lastAnswer}[data-status="streaming"]`).waitFor();
    await page.waitForFunction((sel) => (document.querySelector(sel)?.textContent ?? "").length > 0, `${lastAnswer} .content`);
    await page.locator("#stop").click();
    await page.locator(`${lastAnswer}[data-status="stopped"] .badge`).filter({ hasText: "Stopped" }).waitFor();

    // Edit the question: a second branch, then back to the first.
    await page.locator(`#messages li[data-role="user"] button`, { hasText: "Edit" }).first().click();
    await page.locator(".edit-box").fill("Tell me why people love routines");
    await page.locator("button", { hasText: "Save and answer" }).click();
    await page.locator(`${lastAnswer}[data-status="completed"]`).waitFor({ timeout: 20_000 });
    const user = page.locator(`#messages li[data-role="user"]`).first();
    await user.locator(".branch-label", { hasText: "2 / 2" }).waitFor();
    await user.locator('button[aria-label="Previous version"]').click();
    await page.locator(`#messages li[data-role="user"] .branch-label`, { hasText: "1 / 2" }).waitFor();
    assert.equal(await page.locator(`#messages li[data-role="user"] .content`).first().textContent(), "Tell me why people are afraid of changing their plans");
    assert.equal(await page.locator(`${lastAnswer}`).getAttribute("data-status"), "stopped");

    // An agent run: every step, live, to the summary.
    await page.locator("#agent-goal").fill("Write a short guide to Lisbon's trams");
    await page.locator("#agent-form button[type=submit]").click();
    await page.locator(`#panel .run-status[data-status="running"], #panel .run-status[data-status="queued"]`).first().waitFor();
    await page.locator(`#panel .run-status[data-status="succeeded"]`).waitFor({ timeout: 60_000 });
    assert.equal(await page.locator(`#panel .steps li[data-status="succeeded"]`).count(), 5);
    await page.screenshot({ path: join(shots, "4-agent.png") });
    assert.deepEqual(problems, []);
  } finally {
    await page.screenshot({ path: join(shots, "last-more.png") }).catch(() => {});
    await page.close();
  }
});

test("a page from an origin the API does not allow is refused by CORS, and says so in words", async () => {
  const { page, problems } = await open(otherOrigin, await browser.newContext());
  try {
    const health = await fetch(`${api.url}/health`);
    assert.equal(health.status, 200, "the API is down: a refusal would prove nothing");
    await page.locator("#dev-token").click();
    await page.locator("#toast").filter({ hasText: /Cannot reach Parley|Failed to fetch/ }).waitFor();
    assert.ok(
      problems.some((p) => p.includes("blocked by CORS policy") && p.includes(otherOrigin)),
      `Chromium did not report a CORS refusal:\n${problems.join("\n")}`,
    );
    await page.screenshot({ path: join(shots, "5-cors-refused.png") });
  } finally {
    await page.close();
  }
});
