/**
 * What the broker records about batches it serves to consumers: how many messages they hold
 * and, per batch, how long after its append it was delivered. Both come from batch headers
 * (record count, base offset, last offset delta): records are never decoded.
 */
import { BATCH_HEADER_BYTES, baseOffsetOf, batchSizeAt, lastOffsetDeltaOf, recordCountOf } from "../../../common/src/batch/layout.js";
import type { BrokerMetrics } from "../metrics.js";
import type { PartitionLog } from "../storage/partition-log.js";

export function recordDelivery(metrics: BrokerMetrics, log: PartitionLog, records: Buffer): void {
  let messages = 0;
  let untimed = 0;
  for (let at = 0; at + BATCH_HEADER_BYTES <= records.length; ) {
    const size = batchSizeAt(records, at);
    // A length no batch can have (a corrupt file): stop counting rather than loop for ever;
    // the consumer's CRC check reports the batch.
    if (size < BATCH_HEADER_BYTES) break;
    messages += recordCountOf(records, at);
    const ageMs = log.appendAgeMs(baseOffsetOf(records, at) + lastOffsetDeltaOf(records, at));
    if (ageMs === undefined) untimed++;
    else metrics.endToEndLatency.observe(ageMs / 1000);
    at += size;
  }
  if (messages > 0) metrics.fetchedMessages.inc(messages);
  if (untimed > 0) metrics.endToEndUntimed.inc(untimed);
}
