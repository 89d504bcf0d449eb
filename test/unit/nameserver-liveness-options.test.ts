import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SluiceError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { parseDetectorOptions } from "../../nameserver/src/liveness/detector-options.js";
import { parseNameServerOptions } from "../../nameserver/src/options.js";

function invalidConfig(pattern: RegExp): (err: unknown) => boolean {
  return (err) => err instanceof SluiceError && err.code === "INVALID_CONFIG" && pattern.test(err.message);
}

describe("failure detector options", () => {
  it("default to the fixed detector with 3 missed heartbeats of 1 s", () => {
    const options = parseNameServerOptions({ logger: silentLogger });
    assert.equal(options.heartbeatIntervalMs, 1000);
    assert.equal(options.expiryMs, 3000);
    assert.deepEqual(options.detector, { kind: "fixed" });
  });

  it("derive the expiry window from k and T, or take it in milliseconds", () => {
    assert.equal(parseNameServerOptions({ heartbeatIntervalMs: 250, expiryHeartbeats: 4, logger: silentLogger }).expiryMs, 1000);
    assert.equal(parseNameServerOptions({ heartbeatIntervalMs: 250, logger: silentLogger }).expiryMs, 750);
    assert.equal(parseNameServerOptions({ heartbeatIntervalMs: 250, expiryMs: 900, logger: silentLogger }).expiryMs, 900);
  });

  it("choose the phi detector with its default threshold of 8, or the one given", () => {
    assert.deepEqual(parseNameServerOptions({ detector: "phi", logger: silentLogger }).detector, { kind: "phi", phiThreshold: 8 });
    assert.deepEqual(parseDetectorOptions({ heartbeatIntervalMs: 1000, detector: "phi", phiThreshold: 12.5 }), {
      expiryMs: 3000,
      detector: { kind: "phi", phiThreshold: 12.5 },
    });
  });

  it("refuse what they cannot work with, saying what to do instead", () => {
    const parse = (input: Partial<Parameters<typeof parseDetectorOptions>[0]>) =>
      () => parseDetectorOptions({ heartbeatIntervalMs: 1000, ...input });
    assert.throws(parse({ detector: "gossip" }), invalidConfig(/detector must be one of fixed, phi, got "gossip"/));
    assert.throws(parse({ phiThreshold: 8 }), invalidConfig(/only applies to the phi detector; add --detector phi/));
    assert.throws(parse({ detector: "phi", phiThreshold: 0.5 }), invalidConfig(/phiThreshold must be a number of at least 1/));
    assert.throws(parse({ detector: "phi", phiThreshold: Number.NaN }), invalidConfig(/phiThreshold/));
    assert.throws(parse({ expiryHeartbeats: 1 }), invalidConfig(/expiryHeartbeats must be an integer of at least 2/));
    assert.throws(parse({ expiryHeartbeats: 2.5 }), invalidConfig(/expiryHeartbeats must be an integer/));
    assert.throws(parse({ expiryHeartbeats: 3, expiryMs: 3000 }), invalidConfig(/either expiryHeartbeats \(3\) or expiryMs \(3000\), not both/));
    assert.throws(parse({ expiryMs: 1000 }), invalidConfig(/must be longer than heartbeatIntervalMs/));
    assert.throws(parse({ expiryMs: 0 }), invalidConfig(/expiryMs must be a positive integer/));
  });
});
