/**
 * Dead letters of a queue group: the messages in `%DLQ%<group>` (one partition) from the
 * group's committed offset on that partition to the end, and redrive, which sends them back
 * to their source topics.
 *
 * Redrive is client-side and at-least-once: a chunk of dead letters is produced back (key,
 * value and original headers; the `sluice-dlq-*` headers removed) and, once every message of
 * the chunk is acknowledged, the group's offset on (`%DLQ%<group>`, 0) moves past it with a
 * tool commit (member id ""). A redrive interrupted between the two sends that chunk again
 * next time.
 */
import { forEachRecord } from "../../../common/src/batch/index.js";
import { InvalidArgumentError, NoBrokersAvailableError, SluiceError } from "../../../common/src/errors.js";
import { fromWireError } from "../../../common/src/grpc/errors.js";
import { DLQ_HEADERS, dlqTopicOf } from "../../../common/src/protocol.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { GroupCoordinator } from "../groups/coordinator.js";
import { checkInteger, checkKnownKeys } from "../options.js";
import { Producer } from "../producer/producer.js";
import type { ProducerMessage } from "../producer/types.js";
import { checkGroupName } from "../../../common/src/group-name.js";
import { listOffsets } from "../routing/list-offsets.js";

/** A dead-letter topic has exactly one partition. */
export const DLQ_PARTITION = 0;
/** Bytes read from the dead-letter topic per fetch. */
const DLQ_READ_BYTES = 1024 * 1024;
/** Dead letters produced back, then committed, per step of a redrive without a rate. */
export const REDRIVE_CHUNK_MESSAGES = 500;
/** With a rate, a redrive sends about this many chunks per second. */
const REDRIVE_CHUNKS_PER_SECOND = 10;
const DLQ_HEADER_NAMES: ReadonlySet<string> = new Set(Object.values(DLQ_HEADERS));

export interface DeadLetter {
  /** Its offset in `%DLQ%<group>`. */
  offset: number;
  /** The original message's creation time (the dead letter keeps it), ms since the epoch. */
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  /** The original message's headers (the `sluice-dlq-*` ones are in the fields below). */
  headers: Record<string, Buffer>;
  /** Where the message was before it died. */
  source: { topic: string; partition: number; offset: number };
  /** How many times it was delivered. */
  deliveries: number;
  /** The error of its last nack ("" when its lease expired). */
  error: string;
  /** When the broker gave up on it, ms since the epoch. */
  deadAtMs: number;
}

export interface DeadLettersOptions {
  /** At most this many. @defaultValue all of them */
  max?: number;
}

export interface RedriveOptions {
  /** Send back at most this many. @defaultValue all of them */
  max?: number;
  /** At most this many messages per second. @defaultValue no limit */
  ratePerSecond?: number;
}

export interface RedriveResult {
  /** Messages produced back and committed. */
  redriven: number;
  /** Messages without a source topic header, passed over (committed, not sent). */
  skipped: number;
  /** The group's committed offset on the dead-letter topic afterwards. */
  committedOffset: number;
  /** Dead letters still waiting after this redrive. */
  remaining: number;
}

export async function deadLetters(context: ClientContext, group: string, options: DeadLettersOptions = {}): Promise<DeadLetter[]> {
  checkGroupName(group);
  if (typeof options !== "object" || options === null) throw new InvalidArgumentError(`deadLetters options must be an object like { max: 100 }`);
  checkKnownKeys("deadLetters", options, ["max"]);
  const max = checkInteger("deadLetters max", options.max ?? Number.MAX_SAFE_INTEGER, 1);
  const reader = await DeadLetterReader.open(context, group);
  const letters: DeadLetter[] = [];
  while (letters.length < max) {
    const page = await reader.nextPage();
    if (page.length === 0) break;
    for (const letter of page) if (letters.length < max) letters.push(letter);
  }
  return letters;
}

export async function redrive(context: ClientContext, group: string, options: RedriveOptions = {}): Promise<RedriveResult> {
  checkGroupName(group);
  if (typeof options !== "object" || options === null) throw new InvalidArgumentError(`redrive options must be an object like { max: 100, ratePerSecond: 50 }`);
  checkKnownKeys("redrive", options, ["max", "ratePerSecond"]);
  const max = checkInteger("redrive max", options.max ?? Number.MAX_SAFE_INTEGER, 1);
  const rate = options.ratePerSecond === undefined ? undefined : checkInteger("redrive ratePerSecond", options.ratePerSecond, 1);
  const chunkSize = rate === undefined ? REDRIVE_CHUNK_MESSAGES : Math.max(1, Math.min(REDRIVE_CHUNK_MESSAGES, Math.floor(rate / REDRIVE_CHUNKS_PER_SECOND)));
  const reader = await DeadLetterReader.open(context, group);
  const producer = new Producer(context, { acks: "all" });
  const result: RedriveResult = { redriven: 0, skipped: 0, committedOffset: reader.position, remaining: 0 };
  const startedAt = Date.now();
  let handled = 0;
  try {
    let pending: DeadLetter[] = [];
    for (;;) {
      const page = handled + pending.length < max ? await reader.nextPage() : [];
      for (const letter of page) if (handled + pending.length < max) pending.push(letter);
      while (pending.length >= chunkSize || (page.length === 0 && pending.length > 0)) {
        const chunk = pending.slice(0, chunkSize);
        pending = pending.slice(chunk.length);
        // Pacing: message i of the redrive leaves no sooner than i / rate seconds after the start.
        if (rate !== undefined) await sleepUntil(startedAt + (handled * 1000) / rate);
        const sent = await produceBack(producer, chunk);
        result.redriven += sent;
        result.skipped += chunk.length - sent;
        handled += chunk.length;
        result.committedOffset = chunk[chunk.length - 1]!.offset + 1;
        await reader.commit(result.committedOffset);
      }
      if (page.length === 0) break;
    }
  } finally {
    await producer.close();
  }
  result.remaining = Math.max(0, reader.endOffset - result.committedOffset);
  return result;
}

/** Produces each letter back to its source partition; returns how many had a source. */
async function produceBack(producer: Producer, letters: DeadLetter[]): Promise<number> {
  const byTopic = new Map<string, ProducerMessage[]>();
  for (const letter of letters) {
    if (letter.source.topic === "") continue;
    let list = byTopic.get(letter.source.topic);
    if (list === undefined) byTopic.set(letter.source.topic, (list = []));
    const message: ProducerMessage = { key: letter.key, value: letter.value, headers: letter.headers };
    if (letter.source.partition >= 0) message.partition = letter.source.partition;
    list.push(message);
  }
  let sent = 0;
  await Promise.all(
    [...byTopic].map(async ([topic, messages]) => {
      await producer.send(topic, messages);
      sent += messages.length;
    }),
  );
  return sent;
}

/** Reads `%DLQ%<group>` from the group's committed offset to the end seen at open. */
class DeadLetterReader {
  private constructor(
    private readonly context: ClientContext,
    private readonly coordinator: GroupCoordinator,
    readonly topic: string,
    /** The next offset to read. */
    public position: number,
    readonly endOffset: number,
  ) {}

  static async open(context: ClientContext, group: string): Promise<DeadLetterReader> {
    const topic = dlqTopicOf(group);
    try {
      await context.routes.get(topic);
    } catch (err) {
      if (err instanceof SluiceError && err.code === "UNKNOWN_TOPIC" && !err.retriable) {
        throw new SluiceError(
          "UNKNOWN_GROUP",
          `group "${group}" has no dead-letter topic ${topic}: it is not a queue group, or no queue consumer of it ever connected`,
        );
      }
      throw err;
    }
    const coordinator = new GroupCoordinator(context, group);
    const deadlineMs = deadlineFromNow(context);
    const [committed, earliest, latest] = await Promise.all([
      committedOffset(context, coordinator, group, topic, deadlineMs),
      listOffsets(context, topic, "earliest", [DLQ_PARTITION]),
      listOffsets(context, topic, "latest", [DLQ_PARTITION]),
    ]);
    const logStart = earliest.get(DLQ_PARTITION) ?? 0;
    const position = committed < 0 ? logStart : Math.max(committed, logStart);
    return new DeadLetterReader(context, coordinator, topic, position, latest.get(DLQ_PARTITION) ?? 0);
  }

  /** The next dead letters up to the end offset seen at open; empty when done. */
  async nextPage(): Promise<DeadLetter[]> {
    const letters: DeadLetter[] = [];
    while (letters.length === 0 && this.position < this.endOffset) {
      const from = this.position;
      const data = await this.fetch(from);
      forEachRecord(data.records, from, (record) => {
        if (record.offset < this.endOffset) letters.push(toDeadLetter(record));
      });
      const next = Math.max(data.nextOffset, letters.length > 0 ? letters[letters.length - 1]!.offset + 1 : from);
      // Nothing readable past `from` (the high watermark is behind): stop rather than spin.
      if (next <= from) break;
      this.position = Math.min(next, this.endOffset);
    }
    return letters;
  }

  /** Moves the group's committed offset on the dead-letter partition (a tool commit). */
  async commit(offset: number): Promise<void> {
    const { context, topic } = this;
    const group = this.coordinator.group;
    const deadlineMs = deadlineFromNow(context);
    const response = await this.coordinator.run(
      (c) =>
        c.commitOffsets(
          { header: context.header, group, memberId: "", memberEpoch: 0, offsets: [{ topic, partition: DLQ_PARTITION, offset, metadata: "" }] },
          deadlineMs,
        ),
      deadlineMs,
    );
    for (const result of response.results) if (result.error !== undefined) throw fromWireError(result.error);
  }

  private async fetch(offset: number): Promise<{ records: Buffer; nextOffset: number }> {
    const { context, topic } = this;
    const deadlineMs = deadlineFromNow(context);
    return context.retry.run(
      async (attempt) => {
        const route = attempt === 0 ? await context.routes.get(topic) : await context.routes.refresh(topic);
        const address = route.leaders[DLQ_PARTITION];
        if (address === undefined) throw new NoBrokersAvailableError(`${topic}/${DLQ_PARTITION} has no live master; retry shortly`);
        const response = await context.brokers.get(address).fetch(
          {
            header: context.header,
            topic,
            partitions: [{ partition: DLQ_PARTITION, offset, maxBytes: DLQ_READ_BYTES }],
            maxWaitMs: 0,
            minBytes: 0,
            maxBytes: DLQ_READ_BYTES,
          },
          deadlineMs,
        );
        const data = response.partitions.find((p) => p.partition === DLQ_PARTITION);
        if (data === undefined) return { records: Buffer.alloc(0), nextOffset: offset };
        if (data.error !== undefined) throw fromWireError(data.error);
        return { records: data.records, nextOffset: data.nextOffset };
      },
      { deadlineMs },
    );
  }
}

async function committedOffset(
  context: ClientContext,
  coordinator: GroupCoordinator,
  group: string,
  topic: string,
  deadlineMs: number,
): Promise<number> {
  try {
    const response = await coordinator.run(
      (c) => c.fetchOffsets({ header: context.header, group, partitions: [{ topic, partitions: [DLQ_PARTITION] }] }, deadlineMs),
      deadlineMs,
    );
    const found = response.offsets.find((o) => o.topic === topic && o.partition === DLQ_PARTITION);
    return found?.offset ?? -1;
  } catch (err) {
    if (err instanceof SluiceError && err.code === "UNKNOWN_GROUP") return -1;
    throw err;
  }
}

function toDeadLetter(record: { offset: number; timestamp: number; key: Buffer | null; value: Buffer | null; headers: Record<string, Buffer> }): DeadLetter {
  const headers: Record<string, Buffer> = {};
  for (const name of Object.keys(record.headers)) if (!DLQ_HEADER_NAMES.has(name)) headers[name] = record.headers[name]!;
  const text = (name: string): string => record.headers[name]?.toString("utf8") ?? "";
  const integer = (name: string): number => {
    const value = Number(text(name));
    return text(name) !== "" && Number.isSafeInteger(value) ? value : -1;
  };
  return {
    offset: record.offset,
    timestamp: record.timestamp,
    key: record.key,
    value: record.value,
    headers,
    source: { topic: text(DLQ_HEADERS.topic), partition: integer(DLQ_HEADERS.partition), offset: integer(DLQ_HEADERS.offset) },
    deliveries: integer(DLQ_HEADERS.deliveries),
    error: text(DLQ_HEADERS.error),
    deadAtMs: integer(DLQ_HEADERS.deadAtMs),
  };
}

function sleepUntil(timeMs: number): Promise<void> {
  const delay = timeMs - Date.now();
  return delay > 0 ? new Promise((resolve) => setTimeout(resolve, delay)) : Promise.resolve();
}
