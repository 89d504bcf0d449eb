/**
 * The web console end to end in headless Chromium (Debian's `chromium`, driven by
 * playwright-core) against a real `sluice dev`: the page loads without a console error,
 * shows a topic made by the test, shows the lag the CLI reports, renders data as text
 * (never as markup), and shows API errors as their message. Saves a screenshot to
 * test/artifacts/console.png.
 *
 * Without Chromium the file is skipped, except in CI (env CI set), where it fails.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";
import { Sluice } from "../../clients/src/index.js";
import { REPO_ROOT, runCli, startDev, type Cluster } from "../helpers/processes.js";

const CHROMIUM_PATH = "/usr/bin/chromium";
const ARTIFACTS = join(REPO_ROOT, "test", "artifacts");
const SCREENSHOT = join(ARTIFACTS, "console.png");
const PRODUCED = 25;
const CONSUMED = 9;
/** A dead letter's error made of markup: the console must show it as text. */
const HOSTILE_ERROR = `<img src=x onerror="window.__sluicePwned=1"><script>window.__sluicePwned=2</script>`;
const UI_TIMEOUT_MS = 10_000;

const chromiumMissing = !existsSync(CHROMIUM_PATH);
const skip = chromiumMissing && !process.env.CI ? `Chromium is not installed at ${CHROMIUM_PATH} (apt-get install chromium); skipped outside CI` : false;

interface GroupDescription {
  partitions: { topic: string; partition: number; lag: number }[];
}

describe("web console in headless Chromium", { skip }, () => {
  let cluster: Cluster;
  let sluice: Sluice;
  let browser: Browser;
  let expected: GroupDescription;
  const consoleErrors: string[] = [];
  const pageErrors: string[] = [];
  const cli = (...args: string[]) => runCli(args, { nameserver: cluster.nameserver });

  before(async () => {
    // Reached without Chromium only in CI, where a missing browser is a failure.
    if (chromiumMissing) throw new Error(`CI needs Chromium at ${CHROMIUM_PATH} for the console test (Debian package "chromium")`);
    cluster = await startDev();
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "console-browser-test" });

    const created = await cli("topic", "create", "web-orders", "--partitions", "2");
    assert.equal(created.code, 0, created.stderr);
    const lines = Array.from({ length: PRODUCED }, (_, i) => `order-${i}`).join("\n") + "\n";
    const produced = await runCli(["produce", "web-orders"], { nameserver: cluster.nameserver, input: lines });
    assert.equal(produced.code, 0, produced.stderr);
    const consumed = await cli("consume", "web-orders", "--group", "web-billing", "--from-beginning", "--max-messages", String(CONSUMED), "--timeout-ms", "15000");
    assert.equal(consumed.code, 0, consumed.stderr);
    const described = await cli("--json", "group", "describe", "web-billing");
    assert.equal(described.code, 0, described.stderr);
    expected = JSON.parse(described.stdout) as GroupDescription;

    // A queue group with a dead letter whose error is markup.
    await sluice.admin().createTopic("web-jobs");
    await sluice.producer().send("web-jobs", [{ value: Buffer.from("<b>job</b>") }, { value: Buffer.from("job-2") }]);
    const queue = sluice.queue({ group: "web-workers", topic: "web-jobs", maxDeliveries: 1, fromBeginning: true });
    let seen = 0;
    for await (const job of queue) {
      if (seen === 0) await job.nack({ error: HOSTILE_ERROR });
      else await job.ack();
      if (++seen === 2) break;
    }

    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true });
  });

  after(async () => {
    await browser?.close();
    await sluice?.close();
    await cluster?.process.stop();
  });

  async function openConsole(): Promise<Page> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text());
    });
    page.on("pageerror", (err) => pageErrors.push(err.message));
    await page.goto(`http://${cluster.http}/console`);
    return page;
  }

  it("shows the cluster, the test's topic, and the group's lag as the CLI reports it", async () => {
    const page = await openConsole();
    const expectedLag = expected.partitions.reduce((sum, p) => sum + p.lag, 0);
    assert.equal(expectedLag, PRODUCED - CONSUMED, "the CLI's lag");

    const topicRow = page.locator('[data-testid="topic-row"][data-topic="web-orders"]');
    await topicRow.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(await topicRow.locator('[data-testid="topic-messages"]').getAttribute("data-value"), String(PRODUCED));
    assert.equal(await topicRow.locator("td").nth(1).textContent(), "2", "two partitions");

    const broker = page.locator('[data-testid="broker-row"][data-broker="local/0"]');
    await broker.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.match((await broker.textContent()) ?? "", /master.*alive/);
    assert.equal(await page.locator('[data-testid="served-by"]').textContent(), "local/0");

    const group = page.locator('[data-testid="group"][data-group="web-billing"]');
    const lag = group.locator('[data-testid="group-lag"]');
    await lag.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(((await lag.textContent()) ?? "").replace(/,/g, ""), String(expectedLag), "the lag number shown");
    assert.equal(await lag.getAttribute("data-value"), String(expectedLag));
    const bars = await group.locator('[data-testid="lag-bar"]').evaluateAll((nodes) =>
      nodes.map((n) => ({ topic: n.getAttribute("data-topic"), partition: Number(n.getAttribute("data-partition")), lag: Number(n.getAttribute("data-lag")) })),
    );
    assert.deepEqual(bars, expected.partitions.map((p) => ({ topic: p.topic, partition: p.partition, lag: p.lag })), "one bar per partition");

    // The partition table of a topic opens on a click and stays open across refreshes.
    await topicRow.locator("button").click();
    const partitionRows = page.locator('[data-testid="partition-row"]');
    await partitionRows.nth(1).waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(await partitionRows.count(), 2);

    // Traffic while the page watches, rising then steady: the live chart draws once two
    // readings exist, and the screenshot shows traffic in flight.
    await sluice.admin().createTopic("web-clicks");
    const producer = sluice.producer();
    let producing = true;
    const traffic = (async () => {
      for (let round = 1; producing; round++) {
        await producer.send("web-clicks", Array.from({ length: Math.min(round, 8) * 25 }, (_, i) => ({ value: Buffer.from(`click-${round}-${i}`) })));
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    })();
    try {
      // "attached", not "visible": a steady rate draws a flat line, whose box has no height.
      await page.locator('[data-testid="throughput-line"]').waitFor({ state: "attached", timeout: UI_TIMEOUT_MS });
      await page.locator('[data-testid="topic-row"][data-topic="web-clicks"] [data-testid="sparkline"] polyline').waitFor({ state: "attached", timeout: UI_TIMEOUT_MS });
      const rate = page.locator('[data-testid="topic-row"][data-topic="web-clicks"] [data-testid="topic-rate"]');
      await waitUntil(async () => Number(((await rate.textContent()) ?? "").replace(/,/g, "")) > 0, "web-clicks shows a rate above 0");
      await page.waitForTimeout(2_500);
      assert.equal(await partitionRows.count(), 2, "the open partition table survived the refreshes");
    } finally {
      producing = false;
      await traffic;
    }

    assert.equal(await page.locator('[data-testid="error-banner"]').isHidden(), true, "no API error shown");
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok(existsSync(SCREENSHOT));
    await page.close();
    assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
    assert.deepEqual(consoleErrors, [], "no errors in the browser console");
  });

  it("renders data as text: a dead letter's markup shows literally and never runs", async () => {
    const page = await openConsole();
    const queue = page.locator('[data-testid="queue-group"][data-group="web-workers"]');
    const row = queue.locator('[data-testid="dead-letter-row"]').first();
    await row.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal(await queue.locator('[data-testid="dlq-count"]').textContent(), "1");
    const text = (await row.textContent()) ?? "";
    assert.ok(text.includes(HOSTILE_ERROR), `the error shows as written: ${text}`);
    assert.ok(text.includes("<b>job</b>"), "the value shows as written");
    assert.equal(await queue.locator("img, script, b").count(), 0, "no element made from data");
    assert.equal(await page.evaluate(() => (globalThis as { __sluicePwned?: number }).__sluicePwned), undefined);
    await page.close();
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  });

  it("shows an API error as its message, never a stack trace", async () => {
    const page = await browser.newPage();
    page.on("pageerror", (err) => pageErrors.push(err.message));
    await page.route("**/api/v1/groups", (route) =>
      route.fulfill({
        status: 503,
        contentType: "application/json",
        body: JSON.stringify({ code: "NO_BROKERS_AVAILABLE", message: "partition %groups/3 has no live master", retriable: true, stack: "Error: x\n    at secret (/srv/app.js:1:1)" }),
      }),
    );
    await page.route("**/api/v1/throughput", (route) => route.fulfill({ status: 500, contentType: "text/html", body: "<h1>proxy error</h1>\n    at Proxy.handle (proxy.js:9:9)" }));
    await page.goto(`http://${cluster.http}/console`);
    const banner = page.locator('[data-testid="error-banner"]');
    await banner.waitFor({ timeout: UI_TIMEOUT_MS });
    const text = (await banner.textContent()) ?? "";
    assert.match(text, /groups: NO_BROKERS_AVAILABLE: partition %groups\/3 has no live master/);
    assert.match(text, /throughput: \/api\/v1\/throughput answered 500 without a JSON body/);
    assert.doesNotMatch(text, /\bat \S+ \(|secret|proxy\.js/, "no stack trace");
    // The sections that did answer still show.
    await page.locator('[data-testid="topic-row"][data-topic="web-orders"]').waitFor({ timeout: UI_TIMEOUT_MS });
    await page.close();
    assert.deepEqual(pageErrors, []);
  });
});

async function waitUntil(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + UI_TIMEOUT_MS;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
