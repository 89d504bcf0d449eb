/**
 * The Produce stream: record batches in, acknowledgements out, matched by correlation id.
 *
 * Per batch the broker checks the CRC and header (never the records), assigns offsets and
 * appends the bytes as they came, through the master's write path (master-append.ts): fence,
 * epoch stamp, and for `acks: "all"` the write gate before and the replication wait after.
 * An idempotent producer's retry of a batch the log already holds is answered with the
 * original offsets and appended nothing. Acks for one partition leave in append order because the
 * log resolves appends in order. A stream whose appends fall behind by more than
 * `maxPendingProduceBytes` is paused, so HTTP/2 flow control pushes back on the producer
 * instead of the broker buffering without bound.
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { validateBatch } from "../../../common/src/batch/layout.js";
import { toWireError } from "../../../common/src/grpc/errors.js";
import { InvalidTopicNameError, toSluiceError } from "../../../common/src/errors.js";
import { isInternalTopic } from "../../../common/src/protocol.js";
import { Acks, type ProduceRequest, type ProduceResponse } from "../../../proto/gen/sluice/v1/broker.js";
import { appendAsMaster } from "../master-append.js";
import type { AppendResult } from "../storage/partition-log.js";
import type { FlowTicket } from "../flow/flow-controller.js";
import type { PartitionLog } from "../storage/partition-log.js";
import { checkHeader, checkWritable, type BrokerContext } from "./context.js";
import { PartitionOrder } from "./partition-order.js";

export function handleProduce(context: BrokerContext) {
  const { metrics, logger, options } = context;
  return (call: ServerDuplexStream<ProduceRequest, ProduceResponse>): void => {
    let headerChecked = false;
    /** From the stream's first request header: what `client:` flow rules match. */
    let clientId = "";
    const order = new PartitionOrder();
    let pendingBytes = 0;
    let pendingAppends = 0;
    let paused = false;
    let ended = false;
    metrics.activeStreams.inc({ kind: "produce" });

    let finished = false;
    const finishIfDrained = (): void => {
      if (!finished && (ended || context.shuttingDown()) && pendingAppends === 0) {
        finished = true;
        context.streamClosers.delete(finishIfDrained);
        call.end();
      }
    };
    // At shutdown the stream ends after its last ack, so no appended batch loses its ack.
    context.streamClosers.add(finishIfDrained);

    const reply = (request: ProduceRequest, response: ProduceResponse): void => {
      if (request.acks === Acks.ACKS_NONE || call.cancelled || call.destroyed) return;
      call.write(response);
    };

    const refuse = (request: ProduceRequest, err: unknown): void => {
      const error = toSluiceError(err);
      metrics.produceRequests.inc({ result: error.code });
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

    /** Releases what a request held once it is answered, refused or failed. */
    const settled = (size: number): void => {
      pendingBytes -= size;
      pendingAppends--;
      if (paused && pendingBytes <= options.maxPendingProduceBytes / 2) {
        paused = false;
        call.resume();
      }
      finishIfDrained();
    };

    const append = (request: ProduceRequest, log: PartitionLog, recordCount: number, startedAt: number, throttleTimeMs: number): Promise<void> => {
      const acksAll = request.acks === Acks.ACKS_ALL;
      let duplicate: AppendResult | null = null;
      let appended: Promise<AppendResult>;
      try {
        // A held request re-checks what may have changed while it waited (role, shutdown).
        if (throttleTimeMs > 0) checkWritable(context);
        if (acksAll) context.replication.checkWriteGate(request.topic, request.partition);
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
      let log: PartitionLog;
      let recordCount: number;
      let ticket: FlowTicket;
      const partitionKey = `${request.topic}\u0000${request.partition}`;
      try {
        if (!headerChecked) {
          checkHeader(request.header);
          headerChecked = true;
          clientId = request.header?.clientId ?? "";
        }
        checkWritable(context);
        // Internal topics (`%groups`, dead letters) are written by the broker alone: a
        // client batch there would corrupt group state.
        if (isInternalTopic(request.topic)) {
          throw new InvalidTopicNameError(`"${request.topic}" is an internal topic: only Sluice writes to it`);
        }
        log = context.topics.log(request.topic, request.partition);
        const maxBytes = context.topics.topic(request.topic)?.settings.maxMessageBytes ?? options.maxMessageBytes;
        recordCount = validateBatch(request.batch, maxBytes);
        order.checkNotRefusing(partitionKey, request.topic, request.partition);
        ticket = context.flow.admit({ topic: request.topic, clientId, messages: recordCount, bytes: request.batch.length });
      } catch (err) {
        order.refused(partitionKey, err);
        refuse(request, err);
        return;
      }
      const size = request.batch.length;
      pendingBytes += size;
      pendingAppends++;
      if (pendingBytes > options.maxPendingProduceBytes && !paused) {
        paused = true;
        call.pause();
      }
      const ready = order.after(partitionKey, ticket);
      if (ready === undefined) {
        void append(request, log, recordCount, startedAt, 0).finally(() => {
          ticket.release();
          settled(size);
        });
        return;
      }
      // Held by flow control, or behind a held batch of the same partition.
      ready
        .then(
          () => append(request, log, recordCount, startedAt, Math.max(1, Math.round(performance.now() - startedAt))),
          (err: unknown) => {
            order.refused(partitionKey, err);
            refuse(request, err);
          },
        )
        .finally(() => {
          ticket.release();
          settled(size);
        });
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
      context.streamClosers.delete(finishIfDrained);
      metrics.activeStreams.dec({ kind: "produce" });
    };
    call.on("close", onClose);
    call.on("cancelled", onClose);
  };
}

/** An idempotent retry of a batch the log holds: its first offsets, once replicated as asked. */
async function settleDuplicate(context: BrokerContext, request: ProduceRequest, duplicate: AppendResult, acksAll: boolean): Promise<AppendResult> {
  if (acksAll) await context.replication.waitReplicated(request.topic, request.partition, duplicate.lastOffset);
  context.replication.checkMaster();
  return duplicate;
}
