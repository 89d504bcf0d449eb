/** Producer options, their defaults, and their validation. */
import { InvalidArgumentError } from "../../../common/src/errors.js";
import type { CompressionName } from "../../../common/src/batch/index.js";
import { Acks } from "../../../proto/gen/sluice/v1/broker.js";
import { checkBoolean, checkInteger, checkKnownKeys } from "../options.js";
import { checkPartitionerOption, type PartitionerOption } from "./partitioner.js";

export type AcksOption = "none" | "leader" | "all";

export interface ProducerOptions {
  /**
   * How long a batch waits for more messages before it is sent, in ms. `0` sends on the
   * next turn of the event loop (setImmediate), so messages sent in the same tick still
   * share a batch while latency stays minimal.
   * @defaultValue 0
   */
  lingerMs?: number;
  /**
   * A partition's batch is sent as soon as it reaches this size (uncompressed, estimated
   * from key and value sizes). A single larger message travels alone in its batch and may
   * be refused by the broker's `maxMessageBytes`.
   * @defaultValue 1048576 (1 MiB)
   */
  maxBatchBytes?: number;
  /**
   * When a send counts as done: `"none"` once written to the connection (offsets come back
   * as -1), `"leader"` once the partition's master appended it, `"all"` once the
   * replication requirement of its broker group is met.
   * @defaultValue "leader", or "all" when `idempotent` is true
   */
  acks?: AcksOption;
  /**
   * Idempotent delivery (Kafka's `enable.idempotence`): retries — after a failover, a broken
   * stream, a timeout — never write a batch twice, and a partition keeps the order of its
   * sends. Each batch carries this producer's id, its epoch and the sequence number of its
   * first record; the partition's master answers a batch it already holds with the offsets it
   * got the first time, and refuses one that does not follow the last it appended
   * (OUT_OF_ORDER_SEQUENCE). Needs `acks: "all"` (set when `acks` is left out; any other
   * `acks` is refused): with less, a batch acknowledged by a master that then fails may be
   * missing from the new master, and its retry would no longer be recognised.
   *
   * The producer id is drawn at random (53 bits from `crypto.randomBytes`), with no round trip
   * to the cluster. Two producers sharing an id and writing the same partition at the same
   * time could have one's batch taken for the other's retry (acknowledged, not written) or
   * refused as out of order. With n producers alive at once the odds of any shared id are
   * about n² / 2^54: 5.6e-9 for ten thousand producers, 5.6e-5 for a million.
   *
   * While a partition recovers from a failed attempt its batches go one at a time, in order;
   * otherwise at most 5 are in flight per partition (the broker remembers a producer's last
   * 5 batches per partition, which bounds what a retry can be recognised against).
   * @defaultValue false
   */
  idempotent?: boolean;
  /** Compression of each batch. @defaultValue "none" */
  compression?: CompressionName;
  /**
   * Load balancing: how messages without an explicit `partition` are spread (R23).
   * - `"default"`: murmur2 key hash as Kafka's when a key is set, else round robin;
   * - `"round-robin"`: every message to the next partition, keys ignored;
   * - `"key-hash"`: murmur2 key hash; a message without a key is refused;
   * - `"random"`: a uniformly random partition;
   * - a function `(message, partitionCount, topic) => partition`;
   * - any `Partitioner` object: `partition(message, partitionCount, topic)` and optionally
   *   `noteFailure(partition, topic)`, which the producer calls after every retriable send
   *   failure. `new SmoothWeightedRoundRobin([4, 1, 1])` is nginx's smooth weighted round
   *   robin (picks 0, 0, 1, 0, 2, 0): a failing partition's effective weight is halved and
   *   climbs back over time (`restoreEveryMs`, default 1 s).
   * @defaultValue "default"
   */
  partitioner?: PartitionerOption;
}

export const DEFAULT_LINGER_MS = 0;
export const DEFAULT_MAX_BATCH_BYTES = 1024 * 1024;
export const DEFAULT_ACKS: AcksOption = "leader";
export const DEFAULT_COMPRESSION: CompressionName = "none";
/** A linger longer than this is a unit mistake (seconds for ms), not a tuning choice. */
export const MAX_LINGER_MS = 60_000;
export const MIN_MAX_BATCH_BYTES = 1024;
/** Brokers accept batches up to their `maxMessageBytes` (8 MiB by default, 64 MiB at most). */
export const MAX_MAX_BATCH_BYTES = 32 * 1024 * 1024;

export const DEFAULT_IDEMPOTENT = false;

export interface ParsedProducerOptions {
  readonly lingerMs: number;
  readonly maxBatchBytes: number;
  readonly acks: Acks;
  readonly idempotent: boolean;
  readonly compression: CompressionName;
  readonly partitioner: PartitionerOption;
}

const ACKS_BY_NAME: Record<AcksOption, Acks> = { none: Acks.ACKS_NONE, leader: Acks.ACKS_LEADER, all: Acks.ACKS_ALL };
const KNOWN_KEYS = ["lingerMs", "maxBatchBytes", "acks", "idempotent", "compression", "partitioner"] as const;

export function parseProducerOptions(options: ProducerOptions = {}): ParsedProducerOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`producer options must be an object like { lingerMs: 5, acks: "leader" }`);
  }
  checkKnownKeys("producer", options, KNOWN_KEYS);
  const idempotent = checkBoolean("idempotent", options.idempotent ?? DEFAULT_IDEMPOTENT);
  const acks = options.acks ?? (idempotent ? "all" : DEFAULT_ACKS);
  if (!Object.prototype.hasOwnProperty.call(ACKS_BY_NAME, acks)) {
    throw new InvalidArgumentError(`acks must be "none", "leader" or "all", got ${JSON.stringify(acks)}`);
  }
  if (idempotent && acks !== "all") {
    throw new InvalidArgumentError(
      `idempotent: true needs acks: "all", got acks: ${JSON.stringify(acks)}; use acks: "all" (or leave it out), or idempotent: false`,
    );
  }
  const compression = options.compression ?? DEFAULT_COMPRESSION;
  if (compression !== "none" && compression !== "gzip") {
    throw new InvalidArgumentError(`compression must be "none" or "gzip", got ${JSON.stringify(compression)}`);
  }
  return {
    lingerMs: checkInteger("lingerMs", options.lingerMs ?? DEFAULT_LINGER_MS, 0, MAX_LINGER_MS),
    maxBatchBytes: checkInteger("maxBatchBytes", options.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES, MIN_MAX_BATCH_BYTES, MAX_MAX_BATCH_BYTES),
    acks: ACKS_BY_NAME[acks],
    idempotent,
    compression,
    partitioner: checkPartitionerOption(options.partitioner ?? "default"),
  };
}
