/**
 * `sluice bench replication-lag`: how long after a master takes a message it is readable on one
 * of its slaves, under a steady load.
 *
 * One process, two halves sharing one clock:
 * - a producer to the master (through the SDK, `acks: "leader"`, no linger) at a fixed `rate`,
 *   in small sends every TICK_MS; each value carries its sequence number and the
 *   monotonicUs() at which it was handed to send();
 * - a reader subscribed to the slave directly (a BrokerConnection and a SubscribeStream to the
 *   slave's address, from offset 0 of every partition): the SDK's consumers read the master
 *   while it lives, so they cannot be pointed at a slave. A slave serves reads up to the high
 *   watermark its master sent it, so "read on the slave" means: replicated, acknowledged by the
 *   slave, counted into the master's high watermark, and that watermark back on the slave.
 *
 * Per message: lag = read on the slave − sent (an upper bound of replication lag: it includes
 * the master's append), afterAck = read on the slave − the producer saw the master's ack (a
 * lower bound: the ack needs a network hop to reach the producer; may be negative), and the
 * ack latency itself. The first WARM_UP_MS of messages are sent but not counted.
 */
import { silentLogger } from "../../../common/src/logger.js";
import { forEachRecord } from "../../../common/src/batch/reader.js";
import { RequestTimedOutError, type SluiceError } from "../../../common/src/errors.js";
import { fromWireError } from "../../../common/src/grpc/errors.js";
import type { FetchResponse } from "../../../proto/gen/sluice/v1/broker.js";
import { Sluice } from "../../../clients/src/index.js";
import { BrokerConnection } from "../../../clients/src/transport/broker-pool.js";
import { requestHeader } from "../../../clients/src/transport/grpc.js";
import { channelSecurity } from "../../../clients/src/security-options.js";
import { SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { SubscribeStream, type SubscribeStreamListener } from "../../../clients/src/consumer/subscribe-stream.js";
import { monotonicUs } from "./member-result.js";
import type { BenchConnection } from "./runners.js";
import { LatencyRecorder, type BenchResult } from "./stats.js";

export interface ReplicationLagOptions {
  nameservers: string[];
  /** TLS and credentials of its clients: the CLI's connection flags. @defaultValue plain text, anonymous */
  connection?: BenchConnection | undefined;
  topic: string;
  /** Messages counted (sent after the warm-up). */
  messages: number;
  size: number;
  /** Messages per second, over all partitions. */
  rate: number;
  /** gRPC address of the slave to read from. */
  slave: string;
}

/** `sluice bench replication-lag --json`: the contract's bench shape (latencies = lag) plus the split. */
export interface ReplicationLagResult extends BenchResult {
  kind: "replication-lag";
  /** Read on the slave − the producer saw the ack: percentiles and the smallest (negative: read before the ack arrived). */
  afterAckP50Ms: number;
  afterAckP99Ms: number;
  afterAckP999Ms: number;
  afterAckMinMs: number;
  /** Sent − acknowledged, as the producer saw it. */
  ackP50Ms: number;
  ackP99Ms: number;
  ackP999Ms: number;
  maxLagMs: number;
  /** Counted messages never read on the slave within DRAIN_TIMEOUT_MS of the last ack. */
  missingOnSlave: number;
  failedSends: number;
  /** Ticks issued more than TICK_MS late (the producer's process fell behind). */
  lateTicks: number;
  slave: string;
}

const TICK_MS = 1;
const WARM_UP_MS = 1_000;
/** After the last ack, how long the slave may take to show everything. */
const DRAIN_TIMEOUT_MS = 10_000;
/** Bytes the slave may push ahead of what the reader processed. */
const READ_WINDOW_BYTES = 8 * 1024 * 1024;
const PARTITION_MAX_BYTES = 1024 * 1024;
const SLAVE_TOPIC_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
const POLL_MS = 50;
/** Value layout: bytes 0-7 sent-at monotonic µs (uint64 BE), 8-11 sequence number (uint32 BE). */
const SEQUENCE_AT = 8;
const MIN_VALUE_BYTES = 12;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until the slave hosts every partition of the topic (the master tells it of new topics). */
async function waitForTopicOnSlave(connection: BrokerConnection, topic: string, partitions: number): Promise<void> {
  const deadline = Date.now() + SLAVE_TOPIC_TIMEOUT_MS;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const described = await connection.describePartitions({ header: requestHeader("bench-replication-lag"), topic }, Date.now() + REQUEST_TIMEOUT_MS);
      if (described.partitions.length >= partitions) return;
      last = `${described.partitions.length} of ${partitions} partitions there`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(POLL_MS);
  }
  throw new RequestTimedOutError(`slave ${connection.address} did not host topic ${topic} within ${SLAVE_TOPIC_TIMEOUT_MS} ms (${last})`);
}

/** Percentiles of a LatencyRecorder, rounded as summarize() rounds them. */
function quantiles(recorder: LatencyRecorder): [number, number, number] {
  const [p50, p99, p999] = recorder.percentiles(0.5, 0.99, 0.999).map((n) => Number(n.toFixed(3)));
  return [p50 ?? 0, p99 ?? 0, p999 ?? 0];
}

export async function benchReplicationLag(options: ReplicationLagOptions): Promise<ReplicationLagResult> {
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: `bench-replication-lag-${process.pid}`, ...options.connection });
  const header = requestHeader(`bench-replication-lag-${process.pid}`);
  // The slave is reached as the SDK reaches brokers: with the client's TLS and credentials.
  const channels = new SecureChannels(channelSecurity(sluice.options.tls, sluice.options.credentials));
  const connection = new BrokerConnection(options.slave, { header, requestTimeoutMs: REQUEST_TIMEOUT_MS, logger: silentLogger, channels });
  let stream: SubscribeStream | undefined;
  try {
    const route = await sluice.admin().describeTopic(options.topic);
    const partitions = route.partitions.length;
    await waitForTopicOnSlave(connection, options.topic, partitions);

    const warmUp = Math.max(1, Math.round((options.rate * WARM_UP_MS) / 1000));
    const total = warmUp + options.messages;
    const sentUs = new Float64Array(total);
    const ackedUs = new Float64Array(total);
    const readUs = new Float64Array(total);
    let read = 0;
    let streamError: SluiceError | undefined;
    let allRead: () => void = () => undefined;
    const everythingRead = new Promise<void>((resolve) => (allRead = resolve));

    const listener: SubscribeStreamListener = {
      streamData(from, response: FetchResponse) {
        const now = monotonicUs();
        let bytes = 0;
        for (const data of response.partitions) {
          if (data.error !== undefined) {
            streamError = fromWireError(data.error);
            allRead();
            continue;
          }
          bytes += data.records.length;
          forEachRecord(data.records, 0, (record) => {
            const value = record.value;
            if (value === null || value.length < MIN_VALUE_BYTES) return;
            const sequence = value.readUInt32BE(SEQUENCE_AT);
            if (sequence < total && readUs[sequence] === 0) {
              readUs[sequence] = now;
              if (++read === total) allRead();
            }
          });
        }
        from.consumed(bytes);
      },
      streamClosed(_from, err) {
        streamError = err;
        allRead();
      },
    };
    stream = new SubscribeStream(connection, options.topic, header, READ_WINDOW_BYTES, listener);
    stream.start();
    stream.subscribe(Array.from({ length: partitions }, (_, partition) => ({ partition, offset: 0, maxBytes: PARTITION_MAX_BYTES })));

    const producer = sluice.producer({ lingerMs: 0, acks: "leader" });
    const size = Math.max(options.size, MIN_VALUE_BYTES);
    let sent = 0;
    let failedSends = 0;
    let lateTicks = 0;
    const inFlight = new Set<Promise<unknown>>();
    const started = performance.now();
    while (sent < total && streamError === undefined) {
      const due = Math.min(total, Math.floor(((performance.now() - started) * options.rate) / 1000));
      if (due > sent) {
        const first = sent;
        const batch = [];
        for (; sent < due; sent++) {
          const value = Buffer.allocUnsafe(size).fill(0x61, MIN_VALUE_BYTES);
          value.writeUInt32BE(sent, SEQUENCE_AT);
          const now = monotonicUs();
          value.writeBigUInt64BE(BigInt(now), 0);
          sentUs[sent] = now;
          batch.push({ value, partition: sent % partitions });
        }
        const last = sent;
        const p: Promise<unknown> = producer
          .send(options.topic, batch)
          .then(() => {
            const now = monotonicUs();
            for (let i = first; i < last; i++) ackedUs[i] = now;
          })
          .catch(() => (failedSends += last - first))
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      const next = started + (Math.floor((performance.now() - started) / TICK_MS) + 1) * TICK_MS;
      const wait = next - performance.now();
      if (wait < -TICK_MS) lateTicks++;
      await sleep(Math.max(0, wait));
    }
    await Promise.all(inFlight);
    const sendSeconds = (performance.now() - started) / 1000;
    await producer.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([everythingRead, new Promise((resolve) => (timer = setTimeout(resolve, DRAIN_TIMEOUT_MS)))]);
    clearTimeout(timer);
    if (streamError !== undefined) throw streamError;

    const lag = new LatencyRecorder();
    const afterAck = new LatencyRecorder();
    const ack = new LatencyRecorder();
    let missingOnSlave = 0;
    let afterAckMinMs = Number.POSITIVE_INFINITY;
    let maxLagMs = 0;
    for (let i = warmUp; i < total; i++) {
      const sentAt = sentUs[i] as number;
      const ackedAt = ackedUs[i] as number;
      const readAt = readUs[i] as number;
      if (ackedAt > 0) ack.record((ackedAt - sentAt) / 1000);
      if (readAt === 0) {
        if (ackedAt > 0) missingOnSlave++;
        continue;
      }
      const lagMs = (readAt - sentAt) / 1000;
      lag.record(lagMs);
      maxLagMs = Math.max(maxLagMs, lagMs);
      if (ackedAt > 0) {
        const ms = (readAt - ackedAt) / 1000;
        afterAck.record(ms);
        afterAckMinMs = Math.min(afterAckMinMs, ms);
      }
    }
    const [p50Ms, p99Ms, p999Ms] = quantiles(lag);
    const [afterAckP50Ms, afterAckP99Ms, afterAckP999Ms] = quantiles(afterAck);
    const [ackP50Ms, ackP99Ms, ackP999Ms] = quantiles(ack);
    const counted = lag.size;
    // The rate the producer held over the counted part (warm-up excluded).
    const countedSeconds = sendSeconds - warmUp / options.rate;
    return {
      kind: "replication-lag",
      msgsPerSec: countedSeconds > 0 ? Math.round(counted / countedSeconds) : 0,
      mbPerSec: countedSeconds > 0 ? Number(((counted * size) / countedSeconds / 1e6).toFixed(1)) : 0,
      p50Ms,
      p99Ms,
      p999Ms,
      messages: counted,
      seconds: Number(countedSeconds.toFixed(3)),
      afterAckP50Ms,
      afterAckP99Ms,
      afterAckP999Ms,
      afterAckMinMs: Number.isFinite(afterAckMinMs) ? Number(afterAckMinMs.toFixed(3)) : 0,
      ackP50Ms,
      ackP99Ms,
      ackP999Ms,
      maxLagMs: Number(maxLagMs.toFixed(3)),
      missingOnSlave,
      failedSends,
      lateTicks,
      slave: options.slave,
    };
  } finally {
    stream?.end();
    connection.close();
    await sluice.close();
  }
}

/** Human output of `sluice bench replication-lag`. */
export function renderReplicationLag(result: ReplicationLagResult): string {
  const rows: [string, string][] = [
    ["slave", result.slave],
    ["messages", `${result.messages} at ${result.msgsPerSec.toLocaleString("en-US")} msgs/s (${result.seconds} s)`],
    ["lag", `p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, p99.9 ${result.p999Ms} ms, max ${result.maxLagMs} ms (sent → readable on the slave)`],
    ["after ack", `p50 ${result.afterAckP50Ms} ms, p99 ${result.afterAckP99Ms} ms, p99.9 ${result.afterAckP999Ms} ms, min ${result.afterAckMinMs} ms`],
    ["ack", `p50 ${result.ackP50Ms} ms, p99 ${result.ackP99Ms} ms, p99.9 ${result.ackP999Ms} ms`],
    ["problems", `${result.missingOnSlave} never read on the slave, ${result.failedSends} failed sends, ${result.lateTicks} late ticks`],
  ];
  return "bench replication-lag\n" + rows.map(([k, v]) => `  ${k.padEnd(9)} ${v}`).join("\n") + "\n";
}
