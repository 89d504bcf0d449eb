/**
 * Fuzzing the WebSocket consume endpoint's client frames (parseClientFrame, ws-frames.ts) with
 * damaged JSON: wrong types, missing and unknown fields, edge numbers, huge strings, deep
 * nesting, invalid UTF-8, truncated text. Each frame is refused with an InvalidArgumentError
 * whose message stays short, or parsed into a frame whose every field is in range.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { InvalidArgumentError } from "../../common/src/errors.js";
import { MAX_INVISIBLE_MS } from "../../broker/src/groups/queue-groups.js";
import { MAX_CLIENT_FRAME_BYTES } from "../../broker/src/http/ws-consume.js";
import { MAX_CREDIT_PER_FRAME, parseClientFrame, type ClientFrame } from "../../broker/src/http/ws-frames.js";
import { FILE_BUDGET_MS, MIN_FUZZ_ITERATIONS, describeReport, fuzz } from "../fuzz/driver.js";
import { jsonMutators } from "../fuzz/json-mutate.js";

/** An error message may quote the client, but not at any length. */
const MAX_ERROR_MESSAGE_CHARS = 1000;
const MUTATORS = jsonMutators(0.6);

function isInteger(value: unknown, min: number, max: number): boolean {
  return Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max;
}

function checkFrame(frame: ClientFrame): string {
  if (frame.op === "credit") {
    assert.ok(isInteger(frame.messages, 1, MAX_CREDIT_PER_FRAME));
    return "credit";
  }
  if (frame.op === "settle") {
    const s = frame.settle;
    assert.ok(["ack", "nack", "extend"].includes(s.verb));
    assert.ok(isInteger(s.partition, 0, 0x7fffffff) && isInteger(s.offset, 0, Number.MAX_SAFE_INTEGER) && isInteger(s.leaseId, 0, Number.MAX_SAFE_INTEGER));
    assert.ok(isInteger(s.delayMs, 0, MAX_INVISIBLE_MS));
    assert.ok(typeof s.error === "string" && s.error.length <= 1000);
    assert.ok(s.extendMs === undefined || isInteger(s.extendMs, 1, MAX_INVISIBLE_MS));
    assert.ok(s.id === undefined || isInteger(s.id, 0, Number.MAX_SAFE_INTEGER));
    return s.verb;
  }
  const open = frame.open;
  assert.ok(typeof open.topic === "string" && open.topic !== "");
  assert.ok(typeof open.clientId === "string" && open.clientId.length <= 200);
  if (open.mode === "queue") {
    assert.ok(typeof open.group === "string" && open.group !== "");
    assert.ok(isInteger(open.invisibleMs, 0, MAX_INVISIBLE_MS) && isInteger(open.maxDeliveries, 0, Number.MAX_SAFE_INTEGER));
    assert.equal(typeof open.keyOrdering, "boolean");
    assert.equal(typeof open.fromBeginning, "boolean");
    return "open queue";
  }
  if (open.partitions !== undefined) {
    assert.ok(open.partitions.length > 0 && open.partitions.every((p, i, all) => isInteger(p, 0, 0x7fffffff) && (i === 0 || p > all[i - 1]!)));
  }
  if (open.from instanceof Map) {
    for (const [partition, offset] of open.from) assert.ok(isInteger(partition, 0, 0x7fffffff) && isInteger(offset, 0, Number.MAX_SAFE_INTEGER));
  } else {
    assert.ok(open.from === "latest" || open.from === "earliest");
  }
  return "open tail";
}

describe("fuzz: WebSocket client frames", () => {
  const reports: string[] = [];
  after(() => {
    for (const line of reports) console.log(line);
  });

  it("parseClientFrame refuses every damaged frame with a short InvalidArgumentError or parses it into fields in range", async () => {
    const report = await fuzz({
      name: "ws-frames",
      corpusDir: "ws-frames",
      iterations: MIN_FUZZ_ITERATIONS,
      maxMs: FILE_BUDGET_MS,
      mutators: MUTATORS,
      run: (input) => {
        // What ws-consume.ts does with a text frame: refuse big ones unread, decode the rest as UTF-8.
        if (input.length > MAX_CLIENT_FRAME_BYTES) return "too large";
        let frame: ClientFrame;
        try {
          frame = parseClientFrame(input.toString("utf8"));
        } catch (err) {
          assert.ok(err instanceof InvalidArgumentError, `expected InvalidArgumentError, got ${(err as Error)?.stack ?? String(err)}`);
          assert.ok(err.message.length <= MAX_ERROR_MESSAGE_CHARS, `error message of ${err.message.length} characters`);
          return "refused";
        }
        return checkFrame(frame);
      },
    });
    reports.push(describeReport(report));
    assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS);
    for (const outcome of ["refused", "credit", "ack", "nack", "extend", "open queue", "open tail"]) {
      assert.ok((report.outcomes[outcome] ?? 0) > 0, `some inputs end as "${outcome}"`);
    }
  });
});
