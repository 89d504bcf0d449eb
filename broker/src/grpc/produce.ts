/**
 * The Produce stream: record batches in, acknowledgements out, matched by correlation id.
 *
 * Per batch the broker checks the CRC and header (never the records), assigns offsets and
 * appends the bytes as they came, through the master's write path (master-append.ts): fence,
 * epoch stamp, and for `acks: "all"` the write gate before and the replication wait after.
 * An idempotent producer's retry of a batch the log already holds is answered with the
 * original offsets and appended nothing. Acks for one partition leave in append order because the
 * log resolves appends in order.
 *
 * Flow control (broker/src/flow/) decides each batch before anything else happens to it: at
 * once, held (answered later, with `throttleTimeMs`), or refused (THROTTLED). Held batches of
 * a partition go on in arrival order (partition-order.ts). They do not count toward the
 * stream's backlog: a stream whose *appends* fall behind by more than `maxPendingProduceBytes`
 * is paused (HTTP/2 flow control then pushes back on the producer), but a throttled topic must
 * not pause the other topics sharing the stream, so held bytes have their own broker-wide
 * budget instead. Held batches of a stream that goes away, or of a broker shutting down or
 * stepping down, are given up at once: never appended, their limits refunded.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { validateBatch } from "../../../common/src/batch/layout.js";
import { toWireError } from "../../../common/src/grpc/errors.js";
import type { Principal } from "../../../common/src/security/types.js";
import {
  BrokerUnavailableError,
  InvalidTopicNameError,
  ShuttingDownError,
  toSluiceError,
  type SluiceError,
} from "../../../common/src/errors.js";
import { isInternalTopic } from "../../../common/src/protocol.js";
import { Acks, type ProduceRequest, type ProduceResponse } from "../../../proto/gen/sluice/v1/broker.js";
import { appendAsMaster } from "../master-append.js";
import type { FlowTicket } from "../flow/flow-controller.js";
import type { AppendResult } from "../storage/partition-log.js";
import { checkHeader, checkWritable, streamPrincipal, type BrokerContext } from "./context.js";
import { PartitionOrder } from "./partition-order.js";

export function handleProduce(context: BrokerContext) {
  const { metrics, logger, options, flow } = context;
  return (call: ServerDuplexStream<ProduceRequest, ProduceResponse>): void => {
    // Authenticated once per stream (by the interceptor); authorized per batch below, from the
    // authorizer's cache, so an ACL change applies to the next batch of a stream already open.
    const authenticated = streamPrincipal(context, call);
    if (authenticated === undefined) return;
    const principal: Principal = authenticated;
    let headerChecked = false;
    /** From the stream's first request header: what `client:` flow rules match. */
    let clientId = "";
    const order = new PartitionOrder();
    /** Tickets of batches still waiting for flow control, to give up if the stream goes. */
    const waiting = new Set<FlowTicket>();
    let pendingBytes = 0;
    let pendingAppends = 0;
    let paused = false;
    let ended = false;
    metrics.activeStreams.inc({ kind: "produce" });

    /** Gives up every batch still held, answering each with `reason` (when anyone listens). */
    const giveUpHeld = (reason: SluiceError): void => {
      // Newest first: each limiter can undo its latest bookings exactly (RateLimiter.refund).
      for (const ticket of [...waiting].reverse()) ticket.cancel(reason);
    };

    let finished = false;
    const finishIfDrained = (): void => {
      if (!finished && (ended || context.shuttingDown()) && pendingAppends === 0) {
        finished = true;
        context.streamClosers.delete(closeAtShutdown);
        call.end();
      }
    };
    // At shutdown or demotion held batches are answered at once (SHUTTING_DOWN / NOT_LEADER:
    // retriable, the producer resends them to whoever serves next), and the stream ends after
    // its last ack, so no appended batch loses its ack.
    const closeAtShutdown = (): void => {
      if (waiting.size > 0) giveUpHeld(notWritableReason(context));
      finishIfDrained();
    };
    context.streamClosers.add(closeAtShutdown);

    const reply = (request: ProduceRequest, response: ProduceResponse): void => {
      if (request.acks === Acks.ACKS_NONE || call.cancelled || call.destroyed) return;
      call.write(response);
    };

    const refuse = (request: ProduceRequest, err: unknown): void => {
      const error = toSluiceError(err);
      metrics.produceRequests.inc({ result: error.code });
      metrics.request("produce", error);
      if (request.acks === Acks.ACKS_NONE) {
        logger.debug({ topic: request.topic, partition: request.partition, code: error.code }, "refused a batch sent without acks");
      }
      reply(request, {
        correlationId: request.correlationId,
        topic: request.topic,
        partition: request.partition,
        baseOffset: -1,
        logAppendTimeMs: -1,
        logStartOffset: -1,
        error: toWireError(error),
        throttleTimeMs: 0,
      });
    };

    /** A batch now counts toward the stream's append backlog. */
    const pending = (size: number): void => {
      pendingBytes += size;
      if (pendingBytes > options.maxPendingProduceBytes && !paused) {
        paused = true;
        call.pause();
      }
    };

    /** A batch is answered, refused or failed. */
    const settled = (size: number, counted: boolean): void => {
      if (counted) pendingBytes -= size;
      pendingAppends--;
      if (paused && pendingBytes <= options.maxPendingProduceBytes / 2) {
        paused = false;
        call.resume();
      }
      finishIfDrained();
    };

    const append = (request: ProduceRequest, recordCount: number, startedAt: number, throttleTimeMs: number): Promise<void> => {
      const acksAll = request.acks === Acks.ACKS_ALL;
      let duplicate: AppendResult | null = null;
      let appended: Promise<AppendResult>;
      try {
        // A held batch re-checks what may have changed while it waited (role, shutdown, the
        // write gate, the topic itself).
        if (throttleTimeMs > 0) {
          checkWritable(context);
          if (acksAll) context.replication.checkWriteGate(request.topic, request.partition);
        }
        const log = context.topics.log(request.topic, request.partition);
        // Sequences are checked here, not on arrival: an earlier held batch of the producer
        // may not be in the log yet.
        duplicate = log.checkProducer(request.batch);
        appended =
          duplicate === null
            ? appendAsMaster(context.replication, log, request.batch, acksAll)
            : // Already in the log: answered as the first time once it is as replicated as asked.
              settleDuplicate(context, request, duplicate, acksAll);
      } catch (err) {
        appended = Promise.reject(err);
      }
      const size = request.batch.length;
      return appended.then(
        (result) => {
          // A retried batch the log already held is answered, not produced again.
          metrics.produceRequests.inc({ result: duplicate === null ? "ok" : "duplicate" });
          metrics.request("produce");
          if (duplicate === null) {
            metrics.producedMessages.inc(recordCount);
            metrics.producedBytes.inc(size);
          }
          metrics.produceLatency.observe((performance.now() - startedAt) / 1000);
          reply(request, {
            correlationId: request.correlationId,
            topic: request.topic,
            partition: request.partition,
            baseOffset: result.baseOffset,
            logAppendTimeMs: result.logAppendTimeMs,
            logStartOffset: result.logStartOffset,
            throttleTimeMs,
          });
        },
        (err: unknown) => refuse(request, err),
      );
    };

    call.on("data", (request: ProduceRequest) => {
      const startedAt = performance.now();
      const size = request.batch.length;
      const partitionKey = `${request.topic}\u0000${request.partition}`;
      let recordCount: number;
      let ticket: FlowTicket;
      let ready: Promise<void> | undefined;
      try {
        if (!headerChecked) {
          checkHeader(request.header);
          headerChecked = true;
          clientId = request.header?.clientId ?? "";
        }
        checkWritable(context);
        context.security.require(principal, "produce", "topic", request.topic);
        // Internal topics (`%groups`, dead letters) are written by the broker alone: a
        // client batch there would corrupt group state.
        if (isInternalTopic(request.topic)) {
          throw new InvalidTopicNameError(`"${request.topic}" is an internal topic: only Sluice writes to it`);
        }
        context.topics.log(request.topic, request.partition);
        const maxBytes = context.topics.topic(request.topic)?.settings.maxMessageBytes ?? options.maxMessageBytes;
        recordCount = validateBatch(request.batch, maxBytes);
        // Refused before flow control, so a batch that cannot be written uses no one's limits.
        if (request.acks === Acks.ACKS_ALL) context.replication.checkWriteGate(request.topic, request.partition);
        order.checkNotRefusing(partitionKey, request.topic, request.partition);
        ticket = flow.admit({ topic: request.topic, clientId, messages: recordCount, bytes: size });
        if (order.wouldWait(partitionKey, ticket) && !flow.reserveHeld(size)) {
          ticket.cancel();
          throw flow.heldBudgetRefusal();
        }
        ready = order.after(partitionKey, ticket);
      } catch (err) {
        order.refused(partitionKey, err);
        refuse(request, err);
        return;
      }
      pendingAppends++;
      if (ready === undefined) {
        pending(size);
        void append(request, recordCount, startedAt, 0).finally(() => {
          ticket.release();
          settled(size, true);
        });
        return;
      }
      // Held by flow control, or behind a held batch of the same partition.
      waiting.add(ticket);
      let counted = false;
      ready
        .then(
          () => {
            waiting.delete(ticket);
            flow.releaseHeld(size);
            pending(size);
            counted = true;
            return append(request, recordCount, startedAt, Math.max(1, Math.round(performance.now() - startedAt))).finally(() => ticket.release());
          },
          (err: unknown) => {
            waiting.delete(ticket);
            flow.releaseHeld(size);
            ticket.cancel();
            order.refused(partitionKey, err);
            refuse(request, err);
          },
        )
        .finally(() => settled(size, counted));
    });

    call.on("end", () => {
      ended = true;
      finishIfDrained();
    });
    call.on("error", (err) => logger.debug({ err }, "produce stream failed"));
    let closed = false;
    const onClose = (): void => {
      if (closed) return;
      closed = true;
      context.streamClosers.delete(closeAtShutdown);
      metrics.activeStreams.dec({ kind: "produce" });
      // Nobody will read the answers: held batches are given up, not appended later behind
      // the producer's back (it resends them on a new stream).
      giveUpHeld(new BrokerUnavailableError("the produce stream closed while its batch was held by flow control"));
    };
    call.on("close", onClose);
    call.on("cancelled", onClose);
  };
}

/** Why a held batch is given up at shutdown or demotion: what checkWritable says now. */
function notWritableReason(context: BrokerContext): SluiceError {
  try {
    checkWritable(context);
  } catch (err) {
    return toSluiceError(err);
  }
  return new ShuttingDownError();
}

/** An idempotent retry of a batch the log holds: its first offsets, once replicated as asked. */
async function settleDuplicate(context: BrokerContext, request: ProduceRequest, duplicate: AppendResult, acksAll: boolean): Promise<AppendResult> {
  if (acksAll) await context.replication.waitReplicated(request.topic, request.partition, duplicate.lastOffset);
  context.replication.checkMaster();
  return duplicate;
}
