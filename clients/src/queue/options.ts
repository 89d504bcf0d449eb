/** Queue consumer options, their defaults and validation, checked once in `sluice.queue()`. */
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { isInternalTopic } from "../../../common/src/protocol.js";
import { checkBoolean, checkInteger, checkKnownKeys, checkTopicName } from "../options.js";
import { checkGroupName } from "../../../common/src/group-name.js";

export interface QueueOptions {
  /** The queue group: consumers of one group share the topic's messages, each message going to one of them. */
  group: string;
  /** The topic to take jobs from (all its partitions). */
  topic: string;
  /**
   * How long a delivered job stays invisible to the other consumers (its lease), in ms.
   * A job neither acked nor nacked nor extended within it is delivered again.
   * @defaultValue 30000
   */
  invisibleMs?: number;
  /**
   * Deliveries after which a job that is still not acked goes to the dead-letter topic
   * `%DLQ%<group>` instead of coming back.
   * @defaultValue 5
   */
  maxDeliveries?: number;
  /**
   * Jobs with the same key are leased to one consumer at a time, in offset order: the next
   * job of a key is delivered only once the previous one is acked or dead-lettered.
   * @defaultValue false
   */
  keyOrdering?: boolean;
  /** A group without a position starts at the earliest retained message instead of the end of the log. @defaultValue false */
  fromBeginning?: boolean;
  /**
   * Jobs the broker may push ahead of the iterator (message credit kept granted). More
   * rides out processing hiccups; every prefetched job holds a lease, so too many keep
   * work away from the other consumers of the group.
   * @defaultValue 256
   */
  prefetch?: number;
}

export const DEFAULT_INVISIBLE_MS = 30_000;
export const DEFAULT_MAX_DELIVERIES = 5;
export const DEFAULT_KEY_ORDERING = false;
export const DEFAULT_FROM_BEGINNING = false;
export const DEFAULT_PREFETCH = 256;
/** Shorter leases expire while the job is still on the wire. */
export const MIN_INVISIBLE_MS = 100;
/** Twelve hours, as SQS allows: anything longer is a unit mistake or a job that should be split. */
export const MAX_INVISIBLE_MS = 12 * 60 * 60 * 1000;
export const MAX_MAX_DELIVERIES = 1_000;
/** The broker keeps at most 10,000 offsets in flight per partition; more credit could never be used. */
export const MAX_PREFETCH = 10_000;
/** Longest nack delay: the same bound as a lease. */
export const MAX_NACK_DELAY_MS = MAX_INVISIBLE_MS;
/** Longest extension of a lease in one call. */
export const MAX_EXTEND_MS = MAX_INVISIBLE_MS;
/** A nack's error text goes into a dead letter's header; longer text is cut to this many characters. */
export const MAX_NACK_ERROR_CHARS = 1_000;

export interface ParsedQueueOptions {
  readonly group: string;
  readonly topic: string;
  readonly invisibleMs: number;
  readonly maxDeliveries: number;
  readonly keyOrdering: boolean;
  readonly fromBeginning: boolean;
  readonly prefetch: number;
}

const KNOWN_KEYS = ["group", "topic", "invisibleMs", "maxDeliveries", "keyOrdering", "fromBeginning", "prefetch"] as const;


export function parseQueueOptions(options: QueueOptions): ParsedQueueOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`queue options must be an object like { group: "workers", topic: "jobs" }`);
  }
  checkKnownKeys("queue", options, KNOWN_KEYS);
  if (options.group === undefined) throw new InvalidArgumentError(`queue options need a group, e.g. { group: "workers", topic: "jobs" }`);
  if (options.topic === undefined) throw new InvalidArgumentError(`queue options need a topic, e.g. { group: "workers", topic: "jobs" }`);
  const topic = checkTopicName(options.topic);
  if (isInternalTopic(topic)) {
    throw new InvalidArgumentError(`"${topic}" is an internal topic and cannot be consumed as a queue; read dead letters with admin().deadLetters()`);
  }
  return {
    group: checkGroupName(options.group),
    topic,
    invisibleMs: checkInteger("invisibleMs", options.invisibleMs ?? DEFAULT_INVISIBLE_MS, MIN_INVISIBLE_MS, MAX_INVISIBLE_MS),
    maxDeliveries: checkInteger("maxDeliveries", options.maxDeliveries ?? DEFAULT_MAX_DELIVERIES, 1, MAX_MAX_DELIVERIES),
    keyOrdering: checkBoolean("keyOrdering", options.keyOrdering ?? DEFAULT_KEY_ORDERING),
    fromBeginning: checkBoolean("fromBeginning", options.fromBeginning ?? DEFAULT_FROM_BEGINNING),
    prefetch: checkInteger("prefetch", options.prefetch ?? DEFAULT_PREFETCH, 1, MAX_PREFETCH),
  };
}

export interface NackOptions {
  /** Redeliver no sooner than this, in ms. @defaultValue 0 (as soon as a consumer has credit) */
  delayMs?: number;
  /** Why it failed; kept in the dead letter's `sluice-dlq-error` header if it ends there. @defaultValue "" */
  error?: string;
}

export function parseNackOptions(options: NackOptions = {}): { delayMs: number; error: string } {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`nack options must be an object like { delayMs: 1000, error: "timeout" }`);
  }
  checkKnownKeys("nack", options, ["delayMs", "error"]);
  const error = options.error ?? "";
  if (typeof error !== "string") throw new InvalidArgumentError(`nack error must be a string, e.g. String(err), got ${typeof error}`);
  return {
    delayMs: checkInteger("nack delayMs", options.delayMs ?? 0, 0, MAX_NACK_DELAY_MS),
    error: error.length > MAX_NACK_ERROR_CHARS ? error.slice(0, MAX_NACK_ERROR_CHARS) : error,
  };
}
