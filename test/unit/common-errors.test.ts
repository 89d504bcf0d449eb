import assert from "node:assert/strict";
import { Metadata, status } from "@grpc/grpc-js";
import { describe, it } from "node:test";
import {
  ERROR_CODES,
  OffsetOutOfRangeError,
  SluiceError,
  StorageFullError,
  UnknownPartitionError,
  errorFromWire,
  toSluiceError,
} from "../../common/src/errors.js";
import { fromServiceError, fromWireError, toServiceError, toWireError } from "../../common/src/grpc/errors.js";

describe("errors", () => {
  it("every code maps to a gRPC status and an HTTP status", () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      assert.ok(info.http >= 400 && info.http < 600, code);
      assert.ok(Object.values(status).includes(info.grpc), code);
    }
  });

  it("survives a round trip through gRPC trailers with code, retriable and class", () => {
    const original = new UnknownPartitionError("orders", 7, 3);
    const wire = toServiceError(original);
    assert.equal(wire.code, status.NOT_FOUND);
    const back = fromServiceError({ ...wire, message: "x" });
    assert.equal(back.code, "UNKNOWN_PARTITION");
    assert.equal(back.retriable, false);
    assert.equal(back.message, 'topic "orders" has 3 partitions; partition 7 does not exist');
  });

  it("survives a round trip through a streamed Error message", () => {
    const back = fromWireError(toWireError(new StorageFullError("disk full")));
    assert.ok(back instanceof StorageFullError);
    assert.equal(back.code, "STORAGE_FULL");
    assert.equal(back.retriable, true);
  });

  it("turns transport failures without Sluice trailers into retriable broker errors", () => {
    const e = fromServiceError({ code: status.UNAVAILABLE, details: "connect ECONNREFUSED", metadata: new Metadata() }, "127.0.0.1:1");
    assert.equal(e.code, "BROKER_UNAVAILABLE");
    assert.equal(e.retriable, true);
    assert.match(e.message, /127\.0\.0\.1:1/);
  });

  it("maps ENOSPC to STORAGE_FULL and unknown codes to INTERNAL", () => {
    const enospc = Object.assign(new Error("no space"), { code: "ENOSPC" });
    assert.equal(toSluiceError(enospc).code, "STORAGE_FULL");
    assert.equal(errorFromWire("FROM_THE_FUTURE", "?").code, "INTERNAL");
  });

  it("instanceof works through the brand, and subclasses keep their own checks", () => {
    const e = new OffsetOutOfRangeError("t", 0, 10, 0, 5);
    assert.ok(e instanceof SluiceError);
    assert.ok(e instanceof OffsetOutOfRangeError);
    assert.ok(!(new StorageFullError("x") instanceof OffsetOutOfRangeError));
    const foreign = Object.assign(new Error("x"), { [Symbol.for("sluice.error")]: true });
    assert.ok(foreign instanceof SluiceError, "an error from another copy of the package");
    assert.match(e.message, /valid offsets are 0\.\.5/);
  });
});
