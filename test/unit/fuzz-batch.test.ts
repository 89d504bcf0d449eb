/**
 * Fuzzing the record batch decoders with malformed, truncated and oversized input: each must
 * refuse with a typed error (CorruptBatchError, MessageTooLargeError, InvalidArgumentError)
 * or return an answer consistent with the bytes — never a RangeError, a hang or a crash.
 *
 *   batch  (one batch, as produced)   validateBatch (broker, per produce), decodeRecords (SDK)
 *   log    (batches end to end)       scanBatches with and without CRCs (recovery, index
 *                                     rebuild), walkBatchHeaders, highestClaimedOffset,
 *                                     parseReplicatedBatches (slave), forEachRecord (fetch)
 *   gzip   ([attributes][section])    decompressRecords
 *
 * Half of the damaged batches are "resealed" (length field and CRC32C rewritten) so the damage
 * reaches the record parser instead of stopping at the CRC check.
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  ATTRIBUTES_AT,
  BASE_SEQUENCE_AT,
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_AT,
  CRC_AT,
  LAST_OFFSET_DELTA_AT,
  LEADER_EPOCH_AT,
  LOG_OVERHEAD_BYTES,
  MAGIC_AT,
  RECORDS_AT,
  RECORD_COUNT_AT,
  batchProblem,
  batchSizeAt,
  computeBatchCrc,
  decompressRecords,
  decodeRecords,
  forEachRecord,
  validateBatch,
} from "../../common/src/batch/index.js";
import { SluiceError } from "../../common/src/errors.js";
import { highestClaimedOffset, scanBatches, walkBatchHeaders, type ScannedBatch } from "../../broker/src/storage/batch-scanner.js";
import { parseReplicatedBatches } from "../../broker/src/storage/replicated-batches.js";
import { FILE_BUDGET_MS, MIN_FUZZ_ITERATIONS, describeReport, fileBudget, fuzz, fuzzTempDir } from "../fuzz/driver.js";
import { BYTE_MUTATORS, int32At, overwriteVarint, type Mutator, type Rng } from "../fuzz/mutate.js";

const MAX_BATCH_BYTES = 64 * 1024;

/** The error codes a batch decoder may refuse with; anything else escaping is a bug. */
const BATCH_CODES = new Set(["CORRUPT_BATCH", "MESSAGE_TOO_LARGE", "INVALID_ARGUMENT"]);

function refusal(err: unknown, codes = BATCH_CODES): string {
  if (!(err instanceof SluiceError)) throw new Error(`untyped error escaped: ${(err as Error)?.stack ?? String(err)}`);
  assert.ok(codes.has(err.code), `unexpected code ${err.code}: ${err.message}`);
  assert.equal(typeof err.message, "string");
  assert.equal(err.retriable, false, `${err.code} must not be retriable: the same bytes fail again`);
  return err.code;
}

/** Sets codec and flag bits of the attributes to anything (unsupported codecs, control, log-append time). */
const tamperAttributes: Mutator = (input, rng) => {
  if (input.length < ATTRIBUTES_AT + 2) return Buffer.from(input);
  const out = Buffer.from(input);
  out.writeInt16BE(rng.chance(0.5) ? rng.int(0x40) : rng.int(0x10000) - 0x8000, ATTRIBUTES_AT);
  return out;
};

/** An oversized or negative varint somewhere in the records, where lengths live. */
const varintInRecords: Mutator = (input, rng, context) => {
  if (input.length <= RECORDS_AT) return overwriteVarint(input, rng, context);
  const head = input.subarray(0, RECORDS_AT);
  return Buffer.concat([head, overwriteVarint(input.subarray(RECORDS_AT), rng, context)]);
};

const BATCH_MUTATORS: readonly Mutator[] = [
  ...BYTE_MUTATORS,
  int32At([BATCH_LENGTH_AT, LEADER_EPOCH_AT, LAST_OFFSET_DELTA_AT, BASE_SEQUENCE_AT, RECORD_COUNT_AT, CRC_AT]),
  int32At([BATCH_LENGTH_AT, RECORD_COUNT_AT]),
  tamperAttributes,
  varintInRecords,
  varintInRecords,
];

/** Rewrites length field (usually), lastOffsetDelta (sometimes) and CRC of the batch at `at` of `size` bytes. */
function resealAt(buf: Buffer, at: number, size: number, rng: Rng): void {
  if (rng.chance(0.9)) buf.writeInt32BE(size - LOG_OVERHEAD_BYTES, at + BATCH_LENGTH_AT);
  if (rng.chance(0.4)) buf.writeInt32BE((buf.readInt32BE(at + RECORD_COUNT_AT) - 1) | 0, at + LAST_OFFSET_DELTA_AT);
  if (rng.chance(0.3)) buf[at + MAGIC_AT] = 2;
  buf.writeUInt32BE(computeBatchCrc(buf, at, size), at + CRC_AT);
}

function resealBatch(input: Buffer, rng: Rng): Buffer {
  if (input.length >= BATCH_HEADER_BYTES && rng.chance(0.5)) resealAt(input, 0, input.length, rng);
  return input;
}

/** Reseals each batch the length fields walk to, up to the first that does not fit. */
function resealSpan(input: Buffer, rng: Rng): Buffer {
  if (rng.chance(0.5)) return input;
  for (let at = 0; input.length - at >= BATCH_HEADER_BYTES; ) {
    const size = batchSizeAt(input, at);
    if (size < BATCH_HEADER_BYTES || size > input.length - at) break;
    resealAt(input, at, size, rng);
    at += size;
  }
  return input;
}

function checkRecords(data: Buffer, fromOffset: number): string {
  let count = 0;
  try {
    forEachRecord(data, fromOffset, (record) => {
      count++;
      assert.equal(typeof record.offset, "number");
      assert.ok(record.offset >= fromOffset, "records before fromOffset are skipped");
      assert.equal(typeof record.timestamp, "number");
      for (const part of [record.key, record.value]) assert.ok(part === null || (Buffer.isBuffer(part) && part.length <= data.length * 1100));
      for (const value of Object.values(record.headers)) assert.ok(Buffer.isBuffer(value));
    });
  } catch (err) {
    return refusal(err);
  }
  return count === 0 ? "no records" : "records";
}

describe("fuzz: record batch decoders", () => {
  const reports: string[] = [];
  const remainingMs = fileBudget(FILE_BUDGET_MS);
  let dir: string;
  let fd: number;
  before(() => {
    dir = fuzzTempDir("sluice-fuzz-");
    fd = fs.openSync(path.join(dir, "00000000000000000000.log"), "w+");
  });
  after(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
    for (const line of reports) console.log(line);
  });

  it("validateBatch and decodeRecords: one damaged batch at a time", async () => {
    const report = await fuzz({
      name: "batch",
      corpusDir: "batch",
      iterations: MIN_FUZZ_ITERATIONS,
      maxMs: remainingMs(),
      mutators: BATCH_MUTATORS,
      finish: resealBatch,
      run: (input) => {
        let validated: string;
        try {
          const count = validateBatch(input, MAX_BATCH_BYTES);
          assert.ok(Number.isInteger(count) && count > 0, `record count ${count}`);
          assert.equal(batchProblem(input, 0, input.length), null);
          assert.equal(batchSizeAt(input), input.length);
          validated = "valid";
        } catch (err) {
          validated = refusal(err);
        }
        return `${validated}/${checkRecords(input, 0)}`;
      },
    });
    reports.push(describeReport(report));
    assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS);
    assert.ok((report.outcomes["valid/records"] ?? 0) > 0, "some mutants stay valid batches");
    assert.ok(Object.keys(report.outcomes).some((k) => k.startsWith("CORRUPT_BATCH")), "some are refused");
    assert.ok(Object.keys(report.outcomes).some((k) => k.endsWith("/CORRUPT_BATCH")), "some reach the record parser and are refused there");
  });

  it("scanBatches, walkBatchHeaders, highestClaimedOffset, parseReplicatedBatches and forEachRecord: damaged log bytes", async () => {
    const report = await fuzz({
      name: "log",
      corpusDir: "log",
      iterations: MIN_FUZZ_ITERATIONS,
      maxMs: remainingMs(),
      mutators: BATCH_MUTATORS,
      finish: resealSpan,
      run: (input) => {
        fs.ftruncateSync(fd, 0);
        if (input.length > 0) fs.writeSync(fd, input, 0, input.length, 0);
        const scan = (verifyCrc: boolean) => {
          const batches: ScannedBatch[] = [];
          const result = scanBatches({ fd, fileSize: input.length, fromPosition: 0, expectedBaseOffset: 0, segmentBaseOffset: 0, verifyCrc, onBatch: (b) => batches.push(b) });
          let position = 0;
          let next = 0;
          for (const batch of batches) {
            assert.equal(batch.position, position, "batches are contiguous");
            assert.ok(batch.size >= BATCH_HEADER_BYTES && batch.position + batch.size <= input.length, "a batch lies inside the file");
            assert.equal(batch.baseOffset, next, "offsets are dense");
            assert.ok(batch.lastOffset >= batch.baseOffset);
            if (verifyCrc) assert.equal(batchProblem(input, batch.position, batch.size), null, "a CRC-checked batch is valid");
            position += batch.size;
            next = batch.lastOffset + 1;
          }
          assert.equal(result.endPosition, position);
          assert.equal(result.nextOffset, next);
          assert.equal(result.problem === null, position === input.length, `problem iff the scan stopped early: ${result.problem}`);
          return { result, batches };
        };
        const checked = scan(true);
        const headersOnly = scan(false);
        assert.ok(checked.result.endPosition <= headersOnly.result.endPosition, "CRC checks only stop a scan earlier");
        const walked: number[] = [];
        walkBatchHeaders(fd, 0, checked.result.endPosition, (_header, _at, position) => walked.push(position));
        assert.deepEqual(walked, checked.batches.map((b) => b.position), "a header walk of the good prefix sees the same batches");
        const highest = highestClaimedOffset(fd, 0, input.length);
        assert.ok(highest === null || Number.isSafeInteger(highest));

        let replicated: string;
        try {
          const batches = parseReplicatedBatches(input, 0, "fuzz-0");
          assert.equal(checked.result.problem, null, "the slave accepts only what recovery would keep");
          assert.deepEqual(batches.map((b) => [b.at, b.size, b.baseOffset, b.lastOffset]), checked.batches.map((b) => [b.position, b.size, b.baseOffset, b.lastOffset]));
          replicated = "replicated";
        } catch (err) {
          replicated = refusal(err);
          if (input.length > 0) assert.notEqual(checked.result.problem, null, "recovery keeps what the slave refuses");
        }
        const records = checkRecords(input, 0);
        return `${checked.batches.length > 0 ? "scanned" : "empty"}/${replicated}/${records}`;
      },
    });
    reports.push(describeReport(report));
    assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS);
    assert.ok(Object.keys(report.outcomes).some((k) => k.startsWith("scanned/replicated/records")), "some spans stay whole");
    assert.ok(Object.keys(report.outcomes).some((k) => k.includes("CORRUPT_BATCH")), "some are refused");
  });

  it("decompressRecords: damaged records sections under every codec", async () => {
    const report = await fuzz({
      name: "gzip",
      corpusDir: "gzip",
      iterations: MIN_FUZZ_ITERATIONS,
      maxMs: remainingMs(),
      mutators: [...BYTE_MUTATORS, tamperAttributes],
      run: (input) => {
        if (input.length < 2) return "too short";
        const attributes = input.readInt16BE(0);
        const section = input.subarray(2);
        try {
          const plain = decompressRecords(attributes, section);
          assert.ok(Buffer.isBuffer(plain));
          return (attributes & 7) === 0 ? "plain" : "inflated";
        } catch (err) {
          return refusal(err);
        }
      },
    });
    reports.push(describeReport(report));
    assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS);
    assert.ok((report.outcomes.inflated ?? 0) > 0 && (report.outcomes.CORRUPT_BATCH ?? 0) > 0);
  });
});
