// The idempotent producer's bookkeeping, without a broker: the producer fields stamped into
// a batch header (and its CRC), sequence wrap-around, epochs after a lost sequence, how
// refusals are explained, the partition queue's ordering rules, and the option checks.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  BASE_SEQUENCE_AT,
  PRODUCER_EPOCH_AT,
  PRODUCER_ID_AT,
  batchProblem,
  decodeRecords,
  encodeBatch,
  validateBatch,
} from "../../common/src/batch/index.js";
import { SluiceError } from "../../common/src/errors.js";
import { Acks } from "../../proto/gen/sluice/v1/broker.js";
import {
  MAX_PRODUCER_EPOCH,
  PartitionSequencer,
  SEQUENCE_MODULUS,
  advanceSequence,
  randomProducerId,
  stampProducerFields,
} from "../../clients/src/producer/idempotence.js";
import { parseProducerOptions } from "../../clients/src/producer/options.js";
import { PartitionQueue } from "../../clients/src/producer/partition-queue.js";
import { ProducerBatch, SendCall } from "../../clients/src/producer/send-call.js";

interface Header {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
}

function header(batch: Buffer): Header {
  return {
    producerId: Number(batch.readBigInt64BE(PRODUCER_ID_AT)),
    producerEpoch: batch.readInt16BE(PRODUCER_EPOCH_AT),
    baseSequence: batch.readInt32BE(BASE_SEQUENCE_AT),
  };
}

let nextPosition = 0;

/** A sealed batch of `count` records, as the accumulator makes them (positions in seal order). */
function batch(count: number, position = nextPosition++): ProducerBatch {
  const values = Array.from({ length: count }, (_, i) => ({ value: `v${position}-${i}` }));
  const call = new SendCall("t", count);
  return new ProducerBatch("t", 0, encodeBatch(values), values.map(() => call), values.map((_, i) => i), position, Date.now() + 30_000);
}

describe("idempotent producer: stamping", () => {
  it("writes producer id, epoch and base sequence into the header; the CRC stays valid", () => {
    const bytes = encodeBatch([{ key: "k", value: "a" }, { value: "b" }], { compression: "gzip" });
    assert.deepEqual(header(bytes), { producerId: -1, producerEpoch: -1, baseSequence: -1 }, "a plain batch has no producer state");
    const id = 2 ** 53 - 1;
    stampProducerFields(bytes, id, 7, 2 ** 31 - 1);
    assert.deepEqual(header(bytes), { producerId: id, producerEpoch: 7, baseSequence: 2 ** 31 - 1 });
    assert.equal(batchProblem(bytes, 0, bytes.length), null, "the CRC covers the new fields");
    assert.equal(validateBatch(bytes, 1 << 20), 2);
    assert.deepEqual(decodeRecords(bytes).map((r) => r.value?.toString()), ["a", "b"], "the records are untouched");
  });

  it("a stale CRC would be caught: changing a field after stamping breaks it", () => {
    const bytes = encodeBatch([{ value: "a" }]);
    stampProducerFields(bytes, 42, 0, 0);
    bytes.writeInt32BE(1, BASE_SEQUENCE_AT);
    assert.match(batchProblem(bytes, 0, bytes.length) ?? "", /CRC32C mismatch/);
  });

  it("random producer ids are positive safe integers and differ", () => {
    const ids = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const id = randomProducerId();
      assert.ok(Number.isSafeInteger(id) && id > 0, `id ${id}`);
      ids.add(id);
    }
    assert.equal(ids.size, 1000);
    assert.ok([...ids].some((id) => id > 2 ** 52), "the high bits are used");
  });

  it("sequences advance by record count and wrap to 0 after 2^31 - 1", () => {
    assert.equal(advanceSequence(0, 5), 5);
    assert.equal(advanceSequence(2 ** 31 - 1, 1), 0);
    assert.equal(advanceSequence(2 ** 31 - 3, 5), 2);
    assert.equal(SEQUENCE_MODULUS, 2 ** 31);
  });

  it("a partition stamps its batches with consecutive sequences, wrapping past the int32 maximum", () => {
    const sequencer = new PartitionSequencer(99);
    sequencer.nextSequence = 2 ** 31 - 4;
    const batches = [batch(3), batch(3), batch(2)];
    for (const b of batches) sequencer.stamp(b);
    assert.deepEqual(batches.map((b) => header(b.bytes)), [
      { producerId: 99, producerEpoch: 0, baseSequence: 2 ** 31 - 4 },
      { producerId: 99, producerEpoch: 0, baseSequence: 2 ** 31 - 1 },
      { producerId: 99, producerEpoch: 0, baseSequence: 2 },
    ]);
    for (const b of batches) assert.equal(batchProblem(b.bytes, 0, b.bytes.length), null);
    assert.equal(sequencer.nextSequence, 4);
  });

  it("a batch keeps its stamp when it is sent again", () => {
    const sequencer = new PartitionSequencer(5);
    const first = batch(2);
    sequencer.stamp(first);
    const before = Buffer.from(first.bytes);
    sequencer.stamp(first);
    assert.deepEqual(first.bytes, before, "same bytes, same sequence");
    assert.equal(sequencer.nextSequence, 2, "no sequence spent on the retry");
  });
});

describe("idempotent producer: lost sequences and refusals", () => {
  it("a stamped batch failing for good starts a new epoch at sequence 0", () => {
    const sequencer = new PartitionSequencer(5);
    const [a, b, c] = [batch(2), batch(2), batch(2)];
    sequencer.stamp(a);
    sequencer.stamp(b);
    sequencer.acknowledged(a);
    sequencer.failed(b);
    assert.equal(sequencer.epoch, 1);
    assert.equal(sequencer.nextSequence, 0);
    sequencer.stamp(c);
    assert.deepEqual(header(c.bytes), { producerId: 5, producerEpoch: 1, baseSequence: 0 });
    sequencer.failed(batch(1));
    assert.equal(sequencer.epoch, 1, "an unstamped batch failing loses no sequence");
  });

  it("past the largest epoch a partition takes a fresh producer id", () => {
    const sequencer = new PartitionSequencer(5);
    sequencer.epoch = MAX_PRODUCER_EPOCH;
    const a = batch(1);
    sequencer.stamp(a);
    sequencer.failed(a);
    assert.equal(sequencer.epoch, 0);
    assert.notEqual(sequencer.producerId, 5);
  });

  it("out of order behind an unsettled earlier batch: wait; alone: fatal; from an older epoch: restamp", () => {
    const sequencer = new PartitionSequencer(5);
    const [a, b, c] = [batch(1), batch(1), batch(1)];
    sequencer.stamp(a);
    sequencer.stamp(b);
    sequencer.stamp(c);
    assert.equal(sequencer.refused(b), "wait", "a, earlier, is not settled: b goes again after it");
    sequencer.acknowledged(a);
    assert.equal(sequencer.refused(b), "fatal", "nothing earlier explains it");
    sequencer.failed(b);
    assert.equal(sequencer.epoch, 1);
    assert.equal(sequencer.refused(c), "restamp", "c was stamped in epoch 0: the master did not take it");
    assert.equal(c.baseSequence, -1);
    sequencer.stamp(c);
    assert.deepEqual(header(c.bytes), { producerId: 5, producerEpoch: 1, baseSequence: 0 });
  });
});

describe("partition queue ordering", () => {
  it("a retried batch goes back in front of later ones; recovery sends one at a time until every failed batch is acknowledged", () => {
    const queue = new PartitionQueue("t", 0, 5, undefined);
    const [a, b, c, d] = [batch(1, 0), batch(1, 1), batch(1, 2), batch(1, 3)];
    queue.batches.push(a, b, c, d);
    const sent = [queue.takeForSending("x", true), queue.takeForSending("x", true), queue.takeForSending("x", true)];
    assert.deepEqual(sent, [a, b, c]);
    assert.equal(queue.canSend, true, "pipelining: up to 5 in flight");
    // b fails while a and c are still in flight
    queue.returned();
    b.attempts++;
    queue.retry(b);
    assert.deepEqual(queue.batches, [b, d]);
    assert.equal(queue.canSend, false, "recovery waits for a and c to come back");
    queue.returned(); // a acknowledged
    queue.settleRecovery();
    queue.returned(); // c acknowledged
    queue.settleRecovery();
    assert.equal(queue.recovering, true, "b has not been acknowledged yet");
    assert.equal(queue.canSend, true);
    assert.equal(queue.takeForSending("x", true), b);
    assert.equal(queue.canSend, false, "one at a time while recovering");
    queue.returned();
    queue.settleRecovery();
    assert.equal(queue.recovering, false, "nothing that failed is left");
    assert.equal(queue.canSend, true);
  });

  it("an idempotent queue caps batches in flight at 5 and stamps them as they leave", () => {
    const queue = new PartitionQueue("t", 0, 5, new PartitionSequencer(8));
    for (let i = 0; i < 7; i++) queue.batches.push(batch(2, i));
    const sent: ProducerBatch[] = [];
    while (queue.canSend) sent.push(queue.takeForSending("x", true));
    assert.equal(sent.length, 5);
    assert.deepEqual(sent.map((b) => b.baseSequence), [0, 2, 4, 6, 8]);
    assert.equal(queue.batches[0]!.baseSequence, -1, "not stamped until sent");
  });

  it("batches on their way to one broker come back before any goes to another", () => {
    const queue = new PartitionQueue("t", 0, 5, undefined);
    queue.batches.push(batch(1, 0), batch(1, 1));
    queue.takeForSending("old", true);
    assert.equal(queue.mayGoTo("old"), true);
    assert.equal(queue.mayGoTo("new"), false);
    queue.returned();
    assert.equal(queue.mayGoTo("new"), true);
  });
});

describe("idempotent producer options", () => {
  const invalid = (pattern: RegExp) => (e: unknown) => e instanceof SluiceError && e.code === "INVALID_ARGUMENT" && pattern.test(e.message);

  it("idempotent implies acks all and refuses any other acks, naming both options", () => {
    assert.equal(parseProducerOptions({ idempotent: true }).acks, Acks.ACKS_ALL);
    assert.equal(parseProducerOptions({ idempotent: true, acks: "all" }).idempotent, true);
    assert.equal(parseProducerOptions().idempotent, false);
    assert.throws(() => parseProducerOptions({ idempotent: true, acks: "leader" }), invalid(/idempotent: true needs acks: "all", got acks: "leader"/));
    assert.throws(() => parseProducerOptions({ idempotent: true, acks: "none" }), invalid(/idempotent.*acks/));
    assert.throws(() => parseProducerOptions({ idempotent: "yes" as never }), invalid(/idempotent must be true or false/));
  });
});
