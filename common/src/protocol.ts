/** Protocol versions and metadata keys shared by every Sluice process and the SDK. */
import { keyHashPartition } from "./murmur2.js";

/** The protocol version this build speaks. Bump when a client must know about a change. */
export const PROTOCOL_VERSION = 1;
/** The oldest protocol version this build still accepts. */
export const MIN_PROTOCOL_VERSION = 1;

/** gRPC trailer keys that carry a SluiceError across a unary call. */
export const ERROR_CODE_METADATA = "sluice-error-code";
export const ERROR_RETRIABLE_METADATA = "sluice-retriable";
export const ERROR_RETRY_AFTER_METADATA = "sluice-retry-after-ms";

/** Largest gRPC message either side accepts; a batch is capped well below it. */
export const MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Topic names: what Kafka allows, so names travel between the two. */
export const TOPIC_NAME_PATTERN = /^[a-zA-Z0-9._-]{1,249}$/;

/**
 * Internal topics start with `%` (a character user topics cannot contain, as in RocketMQ's
 * `%RETRY%` / `%DLQ%` names), so they never collide with a user's topic.
 */
export const INTERNAL_TOPIC_PREFIX = "%";
export const INTERNAL_TOPIC_PATTERN = /^%[a-zA-Z0-9._%-]{1,248}$/;
/** Consumer-group state: membership, committed offsets, queue windows. */
export const GROUP_STATE_TOPIC = "%groups";
/**
 * Partitions of `%groups` when a name server first creates it (fixed afterwards): group
 * coordination spreads over the masters holding them. Kafka uses 50 for __consumer_offsets;
 * Sluice clusters are smaller, and every partition is a directory and a log per broker.
 */
export const DEFAULT_GROUP_STATE_PARTITIONS = 8;
/** A queue group's dead letters go to `%DLQ%<group>`. */
export const DLQ_TOPIC_PREFIX = "%DLQ%";
/** Group names: the characters of topic names, short enough that `%DLQ%<group>` is a valid name. */
export const GROUP_NAME_PATTERN = /^[a-zA-Z0-9._-]{1,200}$/;

export function dlqTopicOf(group: string): string {
  return DLQ_TOPIC_PREFIX + group;
}

export function isInternalTopic(topic: string): boolean {
  return topic.startsWith(INTERNAL_TOPIC_PREFIX);
}

/** A name a topic may have: a user name, or (when `internal`) an internal `%` name. */
export function isValidTopicName(topic: string, internal = false): boolean {
  if (topic === "." || topic === "..") return false;
  return TOPIC_NAME_PATTERN.test(topic) || (internal && INTERNAL_TOPIC_PATTERN.test(topic));
}

/** Headers a dead letter carries, naming where it came from. */
export const DLQ_HEADERS = {
  topic: "sluice-dlq-topic",
  partition: "sluice-dlq-partition",
  offset: "sluice-dlq-offset",
  deliveries: "sluice-dlq-deliveries",
  error: "sluice-dlq-error",
  deadAtMs: "sluice-dlq-dead-at-ms",
} as const;

/** The `%groups` partition that holds a group's state; its master coordinates the group. */
export function groupStatePartition(group: string, partitionCount: number): number {
  return keyHashPartition(group, partitionCount);
}
