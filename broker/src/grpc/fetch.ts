/**
 * Fetch, two ways. Both serve stored batches exactly as they sit in the log.
 *
 * - `Fetch` (unary long-poll): answers once `minBytes` are available across the requested
 *   partitions or `maxWaitMs` has passed.
 * - `Subscribe` (bidi stream with credit): the client names partitions and start offsets
 *   and grants byte credit; the broker streams batches while credit lasts and then waits
 *   for more, and wakes on append so a new batch reaches a caught-up consumer at once.
 */
import type { Metadata, ServerDuplexStream } from "@grpc/grpc-js";
import { fromWireError, toWireError } from "../../../common/src/grpc/errors.js";
import type { Principal } from "../../../common/src/security/types.js";
import { InvalidArgumentError, toSluiceError, type SluiceError } from "../../../common/src/errors.js";
import { requestResultOf } from "../metrics.js";
import type {
  FetchPartition,
  FetchRequest,
  FetchResponse,
  PartitionData,
  SubscribeRequest,
} from "../../../proto/gen/sluice/v1/broker.js";
import type { PartitionLog } from "../storage/partition-log.js";
import { checkHeader, streamPrincipal, type BrokerContext } from "./context.js";
import { recordDelivery } from "./delivery-metrics.js";
import { trackStream } from "./stream-lifecycle.js";

/** Longest a long-poll may wait; a client wanting longer asks again. */
export const MAX_FETCH_WAIT_MS = 30_000;
const EMPTY = Buffer.alloc(0);

/** Reads one partition, turning a failure into a PartitionData error. */
function readPartition(context: BrokerContext, topic: string, wanted: FetchPartition, maxBytes: number): PartitionData {
  try {
    const log = context.topics.log(topic, wanted.partition);
    const result = log.read(wanted.offset, Math.max(1, maxBytes));
    return {
      partition: wanted.partition,
      records: result.records,
      // Consumers read up to the high watermark only: what failover could take away stays unseen.
      highWatermark: log.highWatermark,
      logStartOffset: result.logStartOffset,
      nextOffset: result.nextOffset,
    };
  } catch (err) {
    return emptyPartition(wanted, err);
  }
}

/** A partition answered without records: refused with `err`, or skipped for lack of budget. */
function emptyPartition(wanted: FetchPartition, err?: unknown): PartitionData {
  const data: PartitionData = { partition: wanted.partition, records: EMPTY, highWatermark: -1, logStartOffset: -1, nextOffset: wanted.offset };
  if (err !== undefined) data.error = toWireError(err);
  return data;
}

/**
 * A fetch's outcome for availability: partitions answer their errors inside a successful call,
 * so the worst of them (a failure over a refusal) stands for the request.
 */
function worstError(partitions: readonly PartitionData[]): SluiceError | undefined {
  let worst: SluiceError | undefined;
  for (const p of partitions) {
    if (p.error === undefined) continue;
    const error = fromWireError(p.error);
    if (requestResultOf(error) === "failed") return error;
    worst ??= error;
  }
  return worst;
}

export function handleFetch(context: BrokerContext) {
  const fetch = fetchOnce(context);
  return async (request: FetchRequest, call: { metadata: Metadata }): Promise<FetchResponse> => {
    try {
      context.security.require(context.security.principalOf(call), "consume", "topic", request.topic);
      const response = await fetch(request);
      context.metrics.request("fetch", worstError(response.partitions));
      return response;
    } catch (err) {
      context.metrics.request("fetch", err);
      throw err;
    }
  };
}

function fetchOnce(context: BrokerContext) {
  return async (request: FetchRequest): Promise<FetchResponse> => {
    checkHeader(request.header);
    if (request.partitions.length === 0) throw new InvalidArgumentError("fetch names no partitions");
    const maxBytes = Math.min(request.maxBytes > 0 ? request.maxBytes : context.options.maxFetchBytes, context.options.maxFetchBytes);
    const waitMs = Math.min(Math.max(request.maxWaitMs, 0), MAX_FETCH_WAIT_MS);
    const deadline = Date.now() + waitMs;
    const logs: PartitionLog[] = [];
    for (const p of request.partitions) {
      // Resolve up front so an unknown topic fails the call rather than waiting.
      logs.push(context.topics.log(request.topic, p.partition));
    }
    for (;;) {
      const startedAt = performance.now();
      let remaining = maxBytes;
      const partitions: PartitionData[] = [];
      for (const wanted of request.partitions) {
        if (remaining <= 0) {
          // Budget spent: the partition is reported with no records (the client asks again),
          // so a response never grows past maxBytes plus one batch.
          partitions.push(emptyPartition(wanted));
          continue;
        }
        const perPartition = wanted.maxBytes > 0 ? Math.min(wanted.maxBytes, remaining) : remaining;
        const data = readPartition(context, request.topic, wanted, perPartition);
        remaining -= data.records.length;
        partitions.push(data);
      }
      const total = maxBytes - remaining;
      const failed = partitions.some((p) => p.error !== undefined);
      if (failed || total >= Math.max(request.minBytes, 1) || Date.now() >= deadline || context.shuttingDown()) {
        const { metrics } = context;
        metrics.fetchRequests.inc({ kind: "fetch" });
        metrics.fetchedBytes.inc(total);
        partitions.forEach((data, i) => {
          if (data.records.length > 0) recordDelivery(metrics, logs[i]!, data.records);
        });
        // An empty long-poll answer is not a read: it would pull the percentiles toward 0.
        if (total > 0) metrics.fetchLatency.observe((performance.now() - startedAt) / 1000);
        return { topic: request.topic, partitions };
      }
      await waitForAppend(logs, deadline - Date.now());
    }
  };
}

/** Resolves when any of the logs appends, or after `timeoutMs`. */
function waitForAppend(logs: PartitionLog[], timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      for (const log of logs) log.off("append", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, timeoutMs));
    for (const log of logs) log.on("append", done);
  });
}

interface Subscription {
  log: PartitionLog;
  nextOffset: number;
  maxBytes: number;
  onAppend: () => void;
}

export function handleSubscribe(context: BrokerContext) {
  const { metrics, logger } = context;
  return (call: ServerDuplexStream<SubscribeRequest, FetchResponse>): void => {
    const authenticated = streamPrincipal(context, call);
    if (authenticated === undefined) return;
    const principal: Principal = authenticated;
    const subscriptions = new Map<number, Subscription>();
    let topic = "";
    let credit = 0;
    let pumpScheduled = false;
    let waitingForDrain = false;
    const stream = trackStream(context, call, "subscribe", () => {
      for (const partition of [...subscriptions.keys()]) unsubscribe(partition);
    });

    const schedulePump = (): void => {
      if (pumpScheduled || stream.closed) return;
      pumpScheduled = true;
      process.nextTick(pump);
    };

    const unsubscribe = (partition: number): void => {
      const sub = subscriptions.get(partition);
      if (!sub) return;
      sub.log.off("append", sub.onAppend);
      subscriptions.delete(partition);
    };

    // Sends what credit allows, one response per round across partitions with data. Each
    // round starts after the partition the last one ended on, so when credit runs out
    // mid-round no partition is starved by those listed before it.
    let startAfter = -1;
    function pump(): void {
      pumpScheduled = false;
      if (stream.closed || waitingForDrain) return;
      // Every round asks the authorizer (a cached lookup): an ACL removed at run time stops a
      // live subscription at its next delivery, NOT_AUTHORIZED on each of its partitions.
      let denied: unknown;
      try {
        if (subscriptions.size > 0) context.security.require(principal, "consume", "topic", topic);
      } catch (err) {
        denied = err;
      }
      if (denied !== undefined) {
        const partitions = [...subscriptions.values()].map((sub) => emptyPartition({ partition: sub.log.partition, offset: sub.nextOffset, maxBytes: 0 }, denied));
        for (const partition of [...subscriptions.keys()]) unsubscribe(partition);
        metrics.request("subscribe", denied);
        call.write({ topic, partitions });
        return;
      }
      while (credit > 0 && subscriptions.size > 0) {
        const startedAt = performance.now();
        const partitions: PartitionData[] = [];
        let sent = 0;
        const order = [...subscriptions.keys()];
        const from = order.findIndex((p) => p > startAfter);
        const rotated = from <= 0 ? order : [...order.slice(from), ...order.slice(0, from)];
        for (const partition of rotated) {
          const sub = subscriptions.get(partition) as Subscription;
          if (credit - sent <= 0) break;
          startAfter = partition;
          if (sub.nextOffset >= sub.log.highWatermark) continue;
          const data = readPartition(context, topic, { partition, offset: sub.nextOffset, maxBytes: 0 }, Math.min(sub.maxBytes, credit - sent));
          if (data.error) {
            // A read that failed ends that partition's subscription: counted like a refusal.
            metrics.request("subscribe", fromWireError(data.error));
            unsubscribe(partition);
          } else {
            sub.nextOffset = data.nextOffset;
            if (data.records.length > 0) recordDelivery(metrics, sub.log, data.records);
          }
          sent += data.records.length;
          partitions.push(data);
        }
        if (partitions.length === 0) return;
        credit -= sent;
        metrics.fetchRequests.inc({ kind: "subscribe" });
        metrics.fetchedBytes.inc(sent);
        const written = call.write({ topic, partitions });
        metrics.fetchLatency.observe((performance.now() - startedAt) / 1000);
        if (!written) {
          waitingForDrain = true;
          call.once("drain", () => {
            waitingForDrain = false;
            schedulePump();
          });
          return;
        }
      }
    }

    call.on("data", (request: SubscribeRequest) => {
      // Credit first: a refused partition must never swallow the client's whole window.
      if (request.creditBytes > 0) credit += request.creditBytes;
      try {
        checkHeader(request.header);
        if (request.partitions.length > 0 && topic !== "" && request.topic !== topic) {
          throw new InvalidArgumentError(`this stream reads topic "${topic}"; open another stream for "${request.topic}"`);
        }
        if (request.partitions.length > 0) context.security.require(principal, "consume", "topic", request.topic);
      } catch (err) {
        metrics.request("subscribe", err);
        logger.debug({ code: toSluiceError(err).code }, "subscribe request refused");
        call.write({ topic: request.topic, partitions: request.partitions.map((p) => emptyPartition(p, err)) });
        return;
      }
      for (const partition of request.unsubscribe) unsubscribe(partition);
      if (request.partitions.length > 0) topic = request.topic;
      const refused: PartitionData[] = [];
      for (const wanted of request.partitions) {
        unsubscribe(wanted.partition);
        try {
          const log = context.topics.log(request.topic, wanted.partition);
          if (wanted.offset < log.logStartOffset || wanted.offset > log.logEndOffset) {
            // Let the read report OFFSET_OUT_OF_RANGE with the valid range.
            refused.push(readPartition(context, topic, wanted, 1));
            continue;
          }
          const maxBytes = Math.min(wanted.maxBytes > 0 ? wanted.maxBytes : context.options.maxFetchBytes, context.options.maxFetchBytes);
          const sub: Subscription = { log, nextOffset: wanted.offset, maxBytes, onAppend: schedulePump };
          log.on("append", sub.onAppend);
          subscriptions.set(wanted.partition, sub);
        } catch (err) {
          // One partition's problem (e.g. NOT_LEADER after a move) leaves the others streaming.
          refused.push(emptyPartition(wanted, err));
        }
      }
      if (refused.length > 0) call.write({ topic, partitions: refused });
      // One request, one outcome: refused when any partition it named was.
      const refusal = refused.find((p) => p.error !== undefined)?.error;
      metrics.request("subscribe", refusal === undefined ? undefined : fromWireError(refusal));
      schedulePump();
    });

  };
}
