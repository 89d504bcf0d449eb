/**
 * The three benchmarks behind `sluice bench`, run against whatever cluster the client
 * points at. Each returns the contract's JSON shape.
 *
 * - produce: `producers` clients send `messages` values of `size` bytes in arrays of
 *   SEND_CHUNK, pipelined, with the given `acks`; latency is per send() call (append + ack
 *   of its batches). With `startAtUs`, the timed part starts at that instant of the shared
 *   monotonic clock (several writer processes start together) and the result carries its
 *   window and a timeline of acknowledged messages (see WriterWindow).
 * - consume: reads `messages` from the beginning; latency is the gap between deliveries.
 * - e2e: one producer at a fixed `rate` with no linger, one consumer from the end;
 *   latency is receive time minus the send time carried in each value.
 */
import { Sluice, type SluiceOptions } from "../../../clients/src/index.js";
import type { AcksOption } from "../../../clients/src/producer/options.js";
import { monotonicUs } from "./member-result.js";
import { LatencyRecorder, Progress, summarize, type BenchResult } from "./stats.js";

/** How a benchmark's clients connect: TLS and credentials (`sluice --tls-ca F --user U --password-file F bench …`). */
export type BenchConnection = Pick<SluiceOptions, "tls" | "credentials">;

export interface BenchOptions {
  nameservers: string[];
  /** TLS and credentials of its clients: the CLI's connection flags. @defaultValue plain text, anonymous */
  connection?: BenchConnection | undefined;
  topic: string;
  messages: number;
  size: number;
  rate: number;
  producers: number;
  partitions: number;
  /** produce: when a send counts as done. @defaultValue "leader" (the SDK's default) */
  acks?: AcksOption;
  /** produce: start the timed part at this monotonicUs() instant (it starts at once if that has passed). */
  startAtUs?: number;
}

/**
 * What `bench produce --start-at-us` adds to its JSON, so an orchestrator can add several
 * writers up over the window they all ran in: the timed part's start and end, and
 * `[monotonicUs, messages acknowledged so far]` every TIMELINE_STEP_US (plus the last).
 */
export interface WriterWindow {
  startUs: number;
  endUs: number;
  timeline: [number, number][];
}

const SEND_CHUNK = 1000;
const MAX_SENDS_IN_FLIGHT = 16;
const TIMELINE_STEP_US = 50_000;

export async function ensureTopic(sluice: Sluice, topic: string, partitions: number): Promise<void> {
  const topics = await sluice.admin().listTopics();
  if (!topics.some((t) => t.topic === topic)) await sluice.admin().createTopic(topic, { partitions });
}

function sleepUntilUs(atUs: number): Promise<void> {
  const waitMs = (atUs - monotonicUs()) / 1000;
  return waitMs > 0 ? new Promise((resolve) => setTimeout(resolve, waitMs)) : Promise.resolve();
}

export async function benchProduce(options: BenchOptions): Promise<BenchResult | (BenchResult & WriterWindow)> {
  const clients = Array.from({ length: options.producers }, (_, i) => new Sluice({ nameservers: options.nameservers, clientId: `bench-producer-${i}`, ...options.connection }));
  try {
    await ensureTopic(clients[0] as Sluice, options.topic, options.partitions);
    const value = Buffer.alloc(options.size, 0x61);
    const chunk = Array.from({ length: SEND_CHUNK }, () => ({ value }));
    const latency = new LatencyRecorder();
    const progress = new Progress("produce", options.messages);
    const perProducer = Math.ceil(options.messages / options.producers);
    let done = 0;
    // Warm routes and connections outside the timed part.
    const acks = options.acks ?? "leader";
    await Promise.all(clients.map((c) => c.producer({ lingerMs: 5, acks }).send(options.topic, [{ value }])));
    if (options.startAtUs !== undefined) await sleepUntilUs(options.startAtUs);
    const timeline: [number, number][] = [];
    const startUs = monotonicUs();
    let nextSampleUs = startUs;
    const started = performance.now();
    await Promise.all(
      clients.map(async (client) => {
        const producer = client.producer({ lingerMs: 2, maxBatchBytes: 1 << 20, acks });
        const inFlight = new Set<Promise<void>>();
        for (let sent = 0; sent < perProducer; sent += SEND_CHUNK) {
          const n = Math.min(SEND_CHUNK, perProducer - sent);
          const t0 = performance.now();
          const p: Promise<void> = producer.send(options.topic, n === SEND_CHUNK ? chunk : chunk.slice(0, n)).then(() => {
            latency.record(performance.now() - t0);
            done += n;
            progress.update(done);
            if (options.startAtUs !== undefined) {
              const now = monotonicUs();
              if (now >= nextSampleUs) {
                timeline.push([now, done]);
                nextSampleUs = now + TIMELINE_STEP_US;
              }
            }
          }).finally(() => inFlight.delete(p));
          inFlight.add(p);
          if (inFlight.size >= MAX_SENDS_IN_FLIGHT) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
        await producer.close();
      }),
    );
    const endUs = monotonicUs();
    const seconds = (performance.now() - started) / 1000;
    progress.done();
    const result = summarize(perProducer * options.producers, perProducer * options.producers * options.size, seconds, latency);
    if (options.startAtUs === undefined) return result;
    timeline.unshift([startUs, 0]);
    timeline.push([endUs, done]);
    return { ...result, startUs, endUs, timeline };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

export async function benchConsume(options: BenchOptions): Promise<BenchResult> {
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: "bench-consumer", ...options.connection });
  try {
    const ends = await sluice.admin().listOffsets(options.topic, "latest");
    let available = 0;
    for (const end of ends.values()) available += end;
    if (available < options.messages) {
      // Fill the topic first so the consume run measures reading, not waiting.
      await benchProduce({ ...options, messages: options.messages - available, producers: 1 });
    }
    const consumer = sluice.consumer({ fromBeginning: true });
    const latency = new LatencyRecorder();
    const progress = new Progress("consume", options.messages);
    let count = 0;
    let bytes = 0;
    const started = performance.now();
    let last = started;
    for await (const message of consumer.subscribe(options.topic)) {
      count++;
      bytes += message.value?.length ?? 0;
      if ((count & 1023) === 0) {
        const now = performance.now();
        latency.record(now - last);
        last = now;
        progress.update(count);
      }
      if (count >= options.messages) break;
    }
    const seconds = (performance.now() - started) / 1000;
    progress.done();
    await consumer.close();
    return summarize(count, bytes, seconds, latency);
  } finally {
    await sluice.close();
  }
}

export async function benchEndToEnd(options: BenchOptions): Promise<BenchResult> {
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: "bench-e2e", ...options.connection });
  try {
    await ensureTopic(sluice, options.topic, options.partitions);
    const consumer = sluice.consumer({ fromBeginning: false });
    const producer = sluice.producer({ lingerMs: 0 });
    const latency = new LatencyRecorder();
    const progress = new Progress("e2e", options.messages);
    const size = Math.max(options.size, 9);
    // One second at the target rate first, not measured: JIT, connections and buffers warm up.
    const warmUp = Math.min(options.rate, 20_000);
    const total = warmUp + options.messages;
    let received = 0;
    let measured = 0;
    let bytes = 0;
    let allReceived: () => void = () => undefined;
    const done = new Promise<void>((resolve) => (allReceived = resolve));
    const consumed = (async () => {
      for await (const message of consumer.subscribe(options.topic)) {
        const value = message.value as Buffer;
        // Bytes 0-7 carry the send time (performance.now() in µs); byte 8 marks measured messages.
        if (value[8] === 1) {
          const sentAtUs = Number(value.readBigUInt64BE(0));
          latency.record(performance.now() - sentAtUs / 1000);
          measured++;
          bytes += value.length;
          progress.update(measured);
        }
        if (++received >= total) break;
      }
      allReceived();
    })();
    // Let the consumer's subscription reach the broker before the first send.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const intervalMs = 1000 / options.rate;
    let started = performance.now();
    let measuredFrom = 0;
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < total; i++) {
      if (i === warmUp) {
        started = performance.now();
        measuredFrom = i;
      }
      const due = started + (i - measuredFrom) * intervalMs;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      else if (wait > 0) await new Promise((resolve) => setImmediate(resolve));
      const value = Buffer.alloc(size);
      value[8] = i >= warmUp ? 1 : 0;
      value.writeBigUInt64BE(BigInt(Math.round(performance.now() * 1000)), 0);
      sends.push(producer.send(options.topic, [{ value }]));
      if (sends.length >= 10_000) await Promise.all(sends.splice(0));
    }
    await Promise.all(sends);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise((resolve) => (timer = setTimeout(resolve, 30_000)))]);
    clearTimeout(timer);
    const seconds = (performance.now() - started) / 1000;
    progress.done();
    await producer.close();
    await consumer.close();
    await Promise.race([consumed, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    return summarize(measured, bytes, seconds, latency);
  } finally {
    await sluice.close();
  }
}
