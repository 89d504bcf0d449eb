import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Gauge, Registry } from "prom-client";
import { perScrape } from "../../common/src/per-scrape.js";

describe("perScrape", () => {
  it("computes once for all the gauges of a scrape, and again for the next scrape", async () => {
    let computed = 0;
    const read = perScrape(async () => ++computed);
    const registry = new Registry();
    for (const name of ["a", "b", "c"]) {
      new Gauge({ name: `test_${name}`, help: name, registers: [registry], async collect() { this.set(await read()); } });
    }
    const first = await registry.metrics();
    assert.equal(computed, 1);
    assert.match(first, /^test_c 1$/m);
    await new Promise((resolve) => setImmediate(resolve));
    const second = await registry.metrics();
    assert.equal(computed, 2);
    assert.match(second, /^test_a 2$/m);
  });
});
