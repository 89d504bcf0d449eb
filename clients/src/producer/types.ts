/** What a producer takes and what it gives back. */
import type { RecordInput } from "../../../common/src/batch/index.js";

/** One message to send. Strings are sent as UTF-8. */
export interface ProducerMessage extends RecordInput {
  /** Sends to this partition, bypassing the partitioner. */
  partition?: number;
}

/** Where an acknowledged message was written. */
export interface RecordMetadata {
  topic: string;
  partition: number;
  /** The message's offset; -1 with `acks: "none"`, where the broker does not answer. */
  offset: number;
}
