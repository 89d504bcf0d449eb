/**
 * The three benchmarks behind `sluice bench`, run against whatever cluster the client
 * points at. Each returns the contract's JSON shape.
 *
 * - produce: `producers` clients send `messages` values of `size` bytes in arrays of
 *   SEND_CHUNK, pipelined; latency is per send() call (append + ack of its batches).
 * - consume: reads `messages` from the beginning; latency is the gap between deliveries.
 * - e2e: one producer at a fixed `rate` with no linger, one consumer from the end;
 *   latency is receive time minus the send time carried in each value.
 */
import { Sluice } from "../../../clients/src/index.js";
import { LatencyRecorder, Progress, summarize, type BenchResult } from "./stats.js";

export interface BenchOptions {
  nameservers: string[];
  topic: string;
  messages: number;
  size: number;
  rate: number;
  producers: number;
  partitions: number;
}

const SEND_CHUNK = 1000;
const MAX_SENDS_IN_FLIGHT = 16;

export async function ensureTopic(sluice: Sluice, topic: string, partitions: number): Promise<void> {
  const topics = await sluice.admin().listTopics();
  if (!topics.some((t) => t.topic === topic)) await sluice.admin().createTopic(topic, { partitions });
}

export async function benchProduce(options: BenchOptions): Promise<BenchResult> {
  const clients = Array.from({ length: options.producers }, (_, i) => new Sluice({ nameservers: options.nameservers, clientId: `bench-producer-${i}` }));
  try {
    await ensureTopic(clients[0] as Sluice, options.topic, options.partitions);
    const value = Buffer.alloc(options.size, 0x61);
    const chunk = Array.from({ length: SEND_CHUNK }, () => ({ value }));
    const latency = new LatencyRecorder();
    const progress = new Progress("produce", options.messages);
    const perProducer = Math.ceil(options.messages / options.producers);
    let done = 0;
    // Warm routes and connections outside the timed part.
    await Promise.all(clients.map((c) => c.producer({ lingerMs: 5 }).send(options.topic, [{ value }])));
    const started = performance.now();
    await Promise.all(
      clients.map(async (client) => {
        const producer = client.producer({ lingerMs: 2, maxBatchBytes: 1 << 20 });
        const inFlight = new Set<Promise<void>>();
        for (let sent = 0; sent < perProducer; sent += SEND_CHUNK) {
          const n = Math.min(SEND_CHUNK, perProducer - sent);
          const t0 = performance.now();
          const p: Promise<void> = producer.send(options.topic, n === SEND_CHUNK ? chunk : chunk.slice(0, n)).then(() => {
            latency.record(performance.now() - t0);
            done += n;
            progress.update(done);
          }).finally(() => inFlight.delete(p));
          inFlight.add(p);
          if (inFlight.size >= MAX_SENDS_IN_FLIGHT) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
        await producer.close();
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    progress.done();
    return summarize(perProducer * options.producers, perProducer * options.producers * options.size, seconds, latency);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

export async function benchConsume(options: BenchOptions): Promise<BenchResult> {
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: "bench-consumer" });
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
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: "bench-e2e" });
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
