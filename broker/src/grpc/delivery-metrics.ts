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
  for (let at = 0; at + BATCH_HEADER_BYTES <= records.length; at += batchSizeAt(records, at)) {
    messages += recordCountOf(records, at);
    const ageMs = log.appendAgeMs(baseOffsetOf(records, at) + lastOffsetDeltaOf(records, at));
    if (ageMs !== undefined) metrics.endToEndLatency.observe(ageMs / 1000);
  }
  if (messages > 0) metrics.fetchedMessages.inc(messages);
}
