import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import { BrokerMetrics, requestResultOf } from "../../broker/src/metrics.js";
import { InvalidArgumentError, NotEnoughReplicasError, NotLeaderError, StorageError, ThrottledError } from "../../common/src/errors.js";

describe("broker metrics", () => {
  it("a data directory that cannot be read gives NaN disk gauges, not a failed /metrics", async () => {
    const registry = new Registry();
    new BrokerMetrics(registry, () => undefined, { dataDir: "/nonexistent/sluice-data", perPartition: false });
    const text = await registry.metrics();
    // prom-client writes "Nan"; Prometheus parses special floats case-insensitively.
    assert.match(text, /^sluice_data_disk_free_bytes NaN$/im);
    assert.match(text, /^sluice_data_disk_total_bytes NaN$/im);
    assert.match(text, /^sluice_partitions 0$/m, "the other series are still there");
  });

  it("classifies outcomes for availability: 4xx rejected, 5xx failed", () => {
    assert.equal(requestResultOf(undefined), "ok");
    assert.equal(requestResultOf(new InvalidArgumentError("bad")), "rejected");
    assert.equal(requestResultOf(new ThrottledError("slow down")), "rejected");
    assert.equal(requestResultOf(new NotLeaderError("elsewhere")), "rejected");
    assert.equal(requestResultOf(new NotEnoughReplicasError("short")), "failed");
    assert.equal(requestResultOf(new StorageError("disk")), "failed");
    assert.equal(requestResultOf(new Error("boom")), "failed");
  });
});
