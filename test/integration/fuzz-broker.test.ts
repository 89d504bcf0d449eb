/**
 * A real `sluice dev` under malformed Produce traffic: raw bytes that are not a ProduceRequest
 * (sent through a grpc-js client whose serializer is the identity), ProduceRequests whose
 * bytes are damaged, and well-formed ProduceRequests carrying corrupt batches. Every answer
 * must be a typed refusal — a ProduceResponse with an error code, or for bytes that do not
 * decode the INTERNAL status grpc-js gives a failed deserialization, which the SDK reads as an
 * InternalError — the topic's end offset must not move, and afterwards the broker still
 * serves: /healthz, and a valid batch lands at offset 0.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Client, credentials, status as GrpcStatus, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { encodeBatch, validateBatch } from "../../common/src/batch/index.js";
import { ERROR_CODES, SluiceError, isErrorCode } from "../../common/src/errors.js";
import { fromServiceError } from "../../common/src/grpc/errors.js";
import { Sluice } from "../../clients/src/index.js";
import { Acks, BrokerClient, OffsetSpec, ProduceRequest, ProduceResponse } from "../../proto/gen/sluice/v1/broker.js";
import { describeReport, fuzz } from "../fuzz/driver.js";
import { BYTE_MUTATORS, Rng, int32At, mutate } from "../fuzz/mutate.js";
import { PROTO_MUTATORS } from "../fuzz/proto-wire.js";
import { startDev, type Cluster } from "../helpers/processes.js";

const TOPIC = "fuzzed";
const PRODUCE_PATH = "/sluice.v1.Broker/Produce";
const header = { clientId: "fuzz-broker", protocolVersion: 1 };
/** Raw messages, one stream each (a message that does not decode ends its stream). */
const RAW_MESSAGES = 4000;
/** Well-formed requests with corrupt batches, on one stream. */
const CORRUPT_BATCHES = 2000;
const ANSWER_TIMEOUT_MS = 10_000;
const MAX_MESSAGE_BYTES = 1024 * 1024;
/** What the broker may refuse a batch with. */
const REFUSAL_CODES = new Set(["CORRUPT_BATCH", "MESSAGE_TOO_LARGE", "INVALID_ARGUMENT", "UNKNOWN_TOPIC", "UNKNOWN_PARTITION", "UNSUPPORTED_VERSION", "INVALID_TOPIC_NAME", "NOT_ENOUGH_REPLICAS"]);

/** A batch whose CRC no longer matches: damaged request bytes cannot turn it into a valid one. */
function corruptBatch(): Buffer {
  const batch = encodeBatch([{ key: "k", value: "a value that is never appended", timestamp: 1_700_000_000_000 }]);
  batch[batch.length - 1]! ^= 0xff;
  return batch;
}

function endOffset(client: BrokerClient): Promise<number> {
  return new Promise((resolve, reject) =>
    client.listOffsets({ header, topic: TOPIC, partitions: [{ partition: 0, spec: OffsetSpec.OFFSET_SPEC_LATEST, timestampMs: 0 }] }, (err, res) =>
      err ? reject(err) : resolve(res.partitions[0]?.offset ?? -1),
    ),
  );
}

type RawAnswer = { kind: "response"; response: ProduceResponse } | { kind: "status"; error: ServiceError | null };

/** Sends one raw message on a new Produce stream, half-closes it, and returns the first answer. */
function sendRaw(client: Client, bytes: Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const stream: ClientDuplexStream<Buffer, Buffer> = client.makeBidiStreamRequest(PRODUCE_PATH, (b: Buffer) => b, (b: Buffer) => b);
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`no answer in ${ANSWER_TIMEOUT_MS} ms`));
    }, ANSWER_TIMEOUT_MS);
    let answered = false;
    const answer = (value: RawAnswer): void => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      resolve(value);
    };
    stream.on("data", (data: Buffer) => answer({ kind: "response", response: ProduceResponse.decode(data) }));
    stream.on("error", (error: ServiceError) => answer({ kind: "status", error }));
    stream.on("status", () => answer({ kind: "status", error: null }));
    stream.write(bytes);
    stream.end();
  });
}

function checkRefusal(response: ProduceResponse): string {
  assert.ok(response.error, `a batch was accepted at offset ${response.baseOffset}`);
  const code = response.error.code;
  assert.ok(REFUSAL_CODES.has(code) && isErrorCode(code), `refused with ${code}: ${response.error.message}`);
  assert.equal(response.error.retriable, ERROR_CODES[code].retriable, `${code} is retriable only as the code table says`);
  assert.equal(response.baseOffset, -1);
  return code;
}

describe("a broker under malformed Produce traffic", () => {
  let cluster: Cluster;
  let client: BrokerClient;
  let raw: Client;
  const reports: string[] = [];
  before(async () => {
    cluster = await startDev();
    const sluice = new Sluice({ nameservers: [cluster.nameserver] });
    await sluice.admin().createTopic(TOPIC, { partitions: 1 });
    await sluice.close();
    client = new BrokerClient(cluster.broker, credentials.createInsecure());
    raw = new Client(cluster.broker, credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    raw?.close();
    await cluster?.process.stop();
    for (const line of reports) console.log(line);
  });

  it("raw bytes on the Produce stream: an INTERNAL deserialization status or a typed refusal, nothing appended", async () => {
    const seed = Buffer.from(ProduceRequest.encode({ header, correlationId: 1, topic: TOPIC, partition: 0, acks: Acks.ACKS_LEADER, batch: corruptBatch() }).finish());
    const report = await fuzz({
      name: "produce-stream",
      corpusDir: "produce-stream",
      seeds: [seed],
      iterations: RAW_MESSAGES,
      maxMs: 60_000,
      maxInputMs: ANSWER_TIMEOUT_MS,
      mutators: [...BYTE_MUTATORS, ...PROTO_MUTATORS],
      run: async (input) => {
        let decoded: ProduceRequest | null = null;
        try {
          decoded = ProduceRequest.decode(input);
        } catch {
          // the broker cannot decode it either
        }
        const answer = await sendRaw(raw, input);
        if (answer.kind === "response") return checkRefusal(answer.response);
        if (answer.error === null) {
          assert.ok(decoded !== null && decoded.acks === Acks.ACKS_NONE, "only a request sent without acks goes unanswered");
          return "no ack asked";
        }
        const typed = fromServiceError(answer.error);
        assert.ok(typed instanceof SluiceError);
        if (decoded === null) {
          assert.equal(answer.error.code, GrpcStatus.INTERNAL, `status ${answer.error.code}: ${answer.error.details}`);
          assert.match(answer.error.details, /deserializ/i);
          assert.equal(typed.code, "INTERNAL");
          return "undecodable: INTERNAL";
        }
        assert.ok(REFUSAL_CODES.has(typed.code), `stream failed with ${typed.code}: ${typed.message}`);
        return `stream ${typed.code}`;
      },
    });
    reports.push(describeReport(report));
    assert.ok(report.iterations >= RAW_MESSAGES);
    assert.ok((report.outcomes["undecodable: INTERNAL"] ?? 0) > 0, "some messages do not decode");
    assert.ok(Object.keys(report.outcomes).some((k) => REFUSAL_CODES.has(k)), "some decode and are refused by the handler");
    assert.equal(await endOffset(client), 0, "nothing was appended");
  });

  it("well-formed requests with corrupt batches: each refused with the code validateBatch gives, nothing appended", async () => {
    const valid = encodeBatch([{ key: "k", value: "v", timestamp: 1_700_000_000_000 }, { value: "w", timestamp: 1_700_000_000_001 }]);
    const batchMutators = [...BYTE_MUTATORS, int32At([8, 23, 57])];
    const sent = new Map<number, string>();
    const stream = client.produce();
    const answers = new Map<number, ProduceResponse>();
    const allAnswered = new Promise<void>((resolve, reject) => {
      stream.on("data", (response: ProduceResponse) => {
        answers.set(response.correlationId, response);
        if (answers.size === CORRUPT_BATCHES) resolve();
      });
      stream.on("error", reject);
      setTimeout(() => reject(new Error(`only ${answers.size} of ${CORRUPT_BATCHES} answers`)), 60_000).unref();
    });
    for (let i = 0, correlationId = 1; correlationId <= CORRUPT_BATCHES; i++) {
      const batch = mutate(valid, new Rng(i), { corpus: [valid] }, batchMutators);
      let expected: string;
      try {
        validateBatch(batch, MAX_MESSAGE_BYTES);
        continue; // still a valid batch (a flip in the broker-owned prefix): it would be appended
      } catch (err) {
        expected = (err as SluiceError).code;
      }
      sent.set(correlationId, expected);
      stream.write({ header, correlationId, topic: TOPIC, partition: 0, acks: Acks.ACKS_LEADER, batch });
      correlationId++;
    }
    await allAnswered;
    stream.end();
    const codes: Record<string, number> = {};
    for (const [correlationId, expected] of sent) {
      const code = checkRefusal(answers.get(correlationId)!);
      assert.equal(code, expected, `batch ${correlationId}`);
      codes[code] = (codes[code] ?? 0) + 1;
    }
    reports.push(`corrupt batches on one stream: ${CORRUPT_BATCHES} refused — ${JSON.stringify(codes)}`);
    assert.equal(await endOffset(client), 0, "nothing was appended");
  });

  it("is still up and serving afterwards: /healthz answers and a valid batch lands at offset 0", async () => {
    assert.equal(cluster.process.child.exitCode, null, "the process is alive");
    const health = await fetch(`http://${cluster.http}/healthz`);
    assert.equal(health.status, 200);
    const response = await new Promise<ProduceResponse>((resolve, reject) => {
      const stream = client.produce();
      stream.once("data", (r: ProduceResponse) => {
        resolve(r);
        stream.end();
      });
      stream.once("error", reject);
      stream.write({ header, correlationId: 99, topic: TOPIC, partition: 0, acks: Acks.ACKS_LEADER, batch: encodeBatch([{ value: "after the storm" }]) });
    });
    assert.equal(response.error, undefined);
    assert.equal(response.baseOffset, 0, "the first batch ever appended");
    assert.equal(await endOffset(client), 1);
  });
});
