/**
 * What fuzzing a generated protobuf decoder checks, and the suite each fuzz-proto*.test.ts
 * file builds from it for one service.
 *
 * A decoder may throw: grpc-js runs it inside a try (server-interceptors.js,
 * decompressAndMaybePush) and answers INTERNAL "Error deserializing request", ending that
 * call and nothing else; test/integration/fuzz-broker.test.ts checks this on a real broker.
 * What a decoder may not do: throw a non-Error, hang, allocate from a length field, or return
 * values a handler cannot take — a number that is not finite (outside the two double
 * fields), an object that is not plain data, or a message that does not encode back to
 * stable bytes (the broker echoes fields such as correlationId and topic in its answers).
 * Whatever decodes then meets the handlers' first checks: the header's protocol version, and
 * for Produce the batch validation, which refuse it with typed errors.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { validateBatch } from "../../common/src/batch/index.js";
import { SluiceError } from "../../common/src/errors.js";
import { checkHeader } from "../../broker/src/grpc/context.js";
import { FILE_BUDGET_MS, MIN_FUZZ_ITERATIONS, describeReport, fileBudget, fuzz, type FuzzReport } from "./driver.js";
import { BYTE_MUTATORS } from "./mutate.js";
import { PROTO_MUTATORS } from "./proto-wire.js";
import { serverDecoders, type ServerDecoder } from "./seeds-proto.js";

/** The only `double` fields of the request messages: any float64 is a valid value there. */
const DOUBLE_FIELDS = new Set(["produceBytesPerSecond", "suspicion"]);
const MAX_BATCH_BYTES = 1024 * 1024;
const MUTATORS = [...BYTE_MUTATORS, ...PROTO_MUTATORS];

/** Every value of a decoded message is of a type its field can hold. */
function checkValues(value: unknown, key: string): void {
  if (value === undefined || typeof value === "string" || typeof value === "boolean" || Buffer.isBuffer(value)) return;
  if (typeof value === "number") {
    if (!DOUBLE_FIELDS.has(key)) assert.ok(Number.isFinite(value), `field ${key} decoded to ${value}`);
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) checkValues(item, key);
    return;
  }
  assert.ok(typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype, `field ${key} decoded to ${String(value)}`);
  for (const [name, inner] of Object.entries(value)) checkValues(inner, name);
}

function typed(err: unknown): string {
  assert.ok(err instanceof SluiceError, `untyped error: ${(err as Error)?.stack ?? String(err)}`);
  return err.code;
}

/** Runs one decoder on MIN_FUZZ_ITERATIONS damaged messages, within `maxMs`. */
function fuzzDecoder(decoder: ServerDecoder, maxMs: number): Promise<FuzzReport> {
  return fuzz({
    name: `proto ${decoder.name}`,
    corpusDir: `proto/${decoder.name}`,
    iterations: MIN_FUZZ_ITERATIONS,
    maxMs,
    mutators: MUTATORS,
    run: (input) => {
      let message: Record<string, unknown>;
      try {
        message = decoder.decode(input) as Record<string, unknown>;
      } catch (err) {
        assert.ok(err instanceof Error, `decode threw a non-Error: ${String(err)}`);
        return "decode refused";
      }
      checkValues(message, "message");
      const encoded = decoder.encode(message);
      assert.ok(encoded.equals(decoder.encode(decoder.decode(encoded))), "a decoded message encodes back to stable bytes");
      if ("header" in message) {
        try {
          checkHeader(message.header as Parameters<typeof checkHeader>[0]);
        } catch (err) {
          return typed(err);
        }
      }
      if (decoder.name === "Broker.produce") {
        try {
          validateBatch(message.batch as Buffer, MAX_BATCH_BYTES);
        } catch (err) {
          return typed(err);
        }
      }
      return "decoded";
    },
  });
}

/** The report's outcomes show both sides: refused by the decoder, and decoded (then checked). */
function assertBothSides(report: FuzzReport): void {
  assert.ok(report.iterations >= MIN_FUZZ_ITERATIONS);
  assert.ok((report.outcomes["decode refused"] ?? 0) > 0, "some inputs are refused by the decoder");
  const decoded = (report.outcomes.decoded ?? 0) + (report.outcomes.UNSUPPORTED_VERSION ?? 0) + (report.outcomes.CORRUPT_BATCH ?? 0);
  assert.ok(decoded > 0, "some inputs decode");
}

/**
 * The test suite of one service's decoders (one file per service: about forty decoders at
 * ~0.8 s each would not fit one file's 30 s). `expected` names decoders that must be found,
 * so a renamed RPC cannot silently drop out.
 */
export function describeServiceDecoders(service: string, expected: readonly string[]): void {
  const decoders = serverDecoders().filter((d) => d.name.split(".")[0] === service);
  describe(`fuzz: gRPC decoders of the ${service} service`, () => {
    const reports: string[] = [];
    const remainingMs = fileBudget(FILE_BUDGET_MS);
    after(() => {
      for (const line of reports) console.log(line);
    });

    it("finds the decoders from the service definition", () => {
      const names = decoders.map((d) => d.name);
      for (const name of expected) assert.ok(names.includes(name), `${name} is fuzzed`);
    });

    for (const decoder of decoders) {
      it(`${decoder.name}: every damaged message is refused or decodes to values its handler checks`, async () => {
        const report = await fuzzDecoder(decoder, remainingMs());
        reports.push(describeReport(report));
        assertBothSides(report);
      });
    }
  });
}
