/** The README stays true: its SDK example runs as a plain ESM script that imports "sluice". */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO_ROOT, runCli, startDev, tempDir, type Cluster } from "../helpers/processes.js";

describe("README", () => {
  let cluster: Cluster;
  before(async () => {
    cluster = await startDev();
  });
  after(async () => {
    await cluster?.process.stop();
  });

  it("the five-line SDK example prints 0 hello through `import { Sluice } from \"sluice\"`", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Five lines of SDK"));
    const code = /```ts\n([\s\S]*?)```/.exec(section)?.[1];
    assert.ok(code, "the README has the SDK example");
    const app = tempDir("sluice-readme-");
    mkdirSync(join(app, "node_modules"));
    symlinkSync(REPO_ROOT, join(app, "node_modules", "sluice"), "dir");
    writeFileSync(join(app, "hello.mjs"), code.replace("127.0.0.1:9876", cluster.nameserver));
    const run = spawnSync(process.execPath, ["hello.mjs"], { cwd: app, encoding: "utf8", timeout: 30_000 });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), "0 hello");
  });

  it("the flow control config example starts a broker with those four rules", async () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("### Flow control at ingress"));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    assert.ok(yaml, "the README has the flow config example");
    const file = join(tempDir("sluice-readme-flow-"), "sluice.yaml");
    writeFileSync(file, yaml);
    const dev = await startDev({ extra: ["--config", file] });
    try {
      const listed = await runCli(["--json", "flow", "list"], { nameserver: dev.nameserver });
      assert.equal(listed.code, 0, listed.stderr);
      const rules = (JSON.parse(listed.stdout) as { brokers: { rules: { scope: string; limiter: string; source: string }[] }[] }).brokers[0]!.rules;
      assert.deepEqual(
        rules.map((r) => `${r.scope} ${r.limiter} ${r.source}`),
        ["topic:orders token-bucket config", "client:batch-* leaky-bucket config", "broker warm-up config", "broker concurrency config"],
      );
    } finally {
      await dev.process.stop();
    }
  });
});
