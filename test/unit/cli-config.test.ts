import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { loadConfigFile, mergeOptions } from "../../cli/src/config.js";
import { parseBrokerOptions } from "../../broker/src/options.js";

const dir = mkdtempSync(join(tmpdir(), "sluice-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe("server config files", () => {
  it("loads known keys; flags the user gave win over the file, defaults do not", () => {
    const path = file("ok.yaml", "flush: sync\nport: 12000\nretentionMs: 5000\n");
    const values = loadConfigFile(path, ["flush", "port", "retentionMs", "data"]);
    const flags = { flush: "os", port: 10911, data: "./d" };
    const sources: Record<string, string> = { flush: "cli", port: "default", data: "default" };
    const merged = mergeOptions(flags, (k) => sources[k], values);
    assert.deepEqual(merged, { flush: "os", port: 12000, retentionMs: 5000, data: "./d" });
  });

  it("refuses unknown keys, bad YAML and non-mappings with a message naming the problem", () => {
    assert.throws(() => loadConfigFile(file("typo.yaml", "flsuh: sync\n"), ["flush"]), (e: Error & { code?: string }) =>
      e.code === "INVALID_CONFIG" && /unknown key "flsuh"/.test(e.message));
    assert.throws(() => loadConfigFile(file("bad.yaml", "a: [1\n"), ["a"]), /not valid YAML/);
    assert.throws(() => loadConfigFile(file("list.yaml", "- 1\n"), ["a"]), /must be a YAML mapping/);
    assert.throws(() => loadConfigFile(join(dir, "missing.yaml"), ["a"]), /cannot read config file/);
  });

  it("validates broker options once, with actionable messages", () => {
    assert.throws(() => parseBrokerOptions({ group: "b 1", dataDir: "/tmp/x" }), /broker name "b 1" is invalid/);
    assert.throws(() => parseBrokerOptions({ group: "b1", dataDir: "/tmp/x", flush: "never" as never }), /flush policy "never" is unknown/);
    assert.throws(() => parseBrokerOptions({ group: "b1", dataDir: "/tmp/x", port: 70000 }), /--port must be an integer from 0 to 65535/);
    assert.throws(() => parseBrokerOptions({ group: "b1", dataDir: "/tmp/x", nameservers: ["nohost"] }), /is not host:port/);
    const ok = parseBrokerOptions({ group: "b1", dataDir: "/tmp/x" });
    assert.equal(ok.flush, "interval");
    assert.equal(ok.port, 10911);
  });
});
