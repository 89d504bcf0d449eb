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
import { checkHeader, checkWritable, type BrokerContext } from "./context.js";

export function handleProduce(context: BrokerContext) {
  const { metrics, logger, options } = context;
  return (call: ServerDuplexStream<ProduceRequest, ProduceResponse>): void => {
    let headerChecked = false;
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

    call.on("data", (request: ProduceRequest) => {
      const startedAt = performance.now();
      try {
        if (!headerChecked) {
          checkHeader(request.header);
          headerChecked = true;
        }
        checkWritable(context);
        // Internal topics (`%groups`, dead letters) are written by the broker alone: a
        // client batch there would corrupt group state.
        if (isInternalTopic(request.topic)) {
          throw new InvalidTopicNameError(`"${request.topic}" is an internal topic: only Sluice writes to it`);
        }
        const log = context.topics.log(request.topic, request.partition);
        const maxBytes = context.topics.topic(request.topic)?.settings.maxMessageBytes ?? options.maxMessageBytes;
        const recordCount = validateBatch(request.batch, maxBytes);
        const acksAll = request.acks === Acks.ACKS_ALL;
        if (acksAll) context.replication.checkWriteGate(request.topic, request.partition);
        const size = request.batch.length;
        pendingBytes += size;
        pendingAppends++;
        if (pendingBytes > options.maxPendingProduceBytes && !paused) {
          paused = true;
          call.pause();
        }
        const duplicate = log.checkProducer(request.batch);
        const appended: Promise<AppendResult> =
          duplicate === null
            ? appendAsMaster(context.replication, log, request.batch, acksAll)
            : // Already in the log: answered as the first time once it is as replicated as asked.
              (acksAll ? context.replication.waitReplicated(request.topic, request.partition, duplicate.lastOffset) : Promise.resolve()).then(() => {
                context.replication.checkMaster();
                return duplicate;
              });
        appended.then(
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
              throttleTimeMs: 0,
            });
          },
          (err: unknown) => refuse(request, err),
        ).finally(() => {
          pendingBytes -= size;
          pendingAppends--;
          if (paused && pendingBytes <= options.maxPendingProduceBytes / 2) {
            paused = false;
            call.resume();
          }
          finishIfDrained();
        });
      } catch (err) {
        refuse(request, err);
      }
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
