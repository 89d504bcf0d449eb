/** Consumer and subscription options, their defaults and validation; the message type. */
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { checkBoolean, checkInteger, checkKnownKeys } from "../options.js";
import { checkGroupName } from "../../../common/src/group-name.js";

/** How a consumer group spreads partitions over its members (the coordinator runs it). */
export type GroupAssignor = "sticky" | "range" | "roundrobin";

export const GROUP_ASSIGNORS: readonly GroupAssignor[] = ["sticky", "range", "roundrobin"];

export interface ConsumerOptions {
  /**
   * A consumer group: the group's members share the topic's partitions and the group keeps
   * its committed offsets, so each group sees every message once (pub/sub across groups).
   * Without it the consumer is an ephemeral reader of every partition, with no offsets kept.
   */
  group?: string;
  /**
   * Static membership: a member restarted with the same id within `sessionTimeoutMs` gets
   * its partitions back and nothing else moves. Unique per member of the group.
   */
  groupInstanceId?: string;
  /** How the group's partitions are spread (only the first member's choice counts). @defaultValue "sticky" */
  assignor?: GroupAssignor;
  /**
   * How long the coordinator waits for a heartbeat of this member before it gives the
   * member's partitions to the others.
   * @defaultValue 10000
   */
  sessionTimeoutMs?: number;
  /**
   * Commit positions on a timer, when partitions are revoked and on close(). Off: commits
   * happen only when the application calls commit().
   * @defaultValue true
   */
  autoCommit?: boolean;
  /** How often auto-commit runs, in ms. @defaultValue 1000 */
  autoCommitIntervalMs?: number;
  /**
   * Where reading starts on a partition with no explicit (or, in a group, no committed)
   * offset, and where it resumes when its position falls outside the log
   * (OFFSET_OUT_OF_RANGE): the earliest retained message when true, the end of the log
   * (only new messages) when false.
   * @defaultValue false
   */
  fromBeginning?: boolean;
  /**
   * Bytes each broker stream may push ahead of the iterator (its credit). Larger values
   * ride out consumer hiccups at the cost of memory; the broker pauses, never drops, when
   * the credit runs out.
   * @defaultValue 8388608 (8 MiB)
   */
  maxBytesInFlight?: number;
}

export interface SubscribeOptions {
  /** Partitions to read (not with a group: the group assigns them). @defaultValue every partition of the topic */
  partitions?: number[];
  /** Start offset per partition; the others start per `fromBeginning` (not with a group). */
  offsets?: Record<number, number>;
}

/** One message as the consumer yields it. Key, value and header values are views, not copies. */
export interface ConsumerMessage {
  offset: number;
  /** Creation time, ms since the epoch. */
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, Buffer>;
  topic: string;
  partition: number;
}

export const DEFAULT_FROM_BEGINNING = false;
export const DEFAULT_MAX_BYTES_IN_FLIGHT = 8 * 1024 * 1024;
/** A batch can be 1 MiB; credit below a couple of batches would stall the stream. */
export const MIN_MAX_BYTES_IN_FLIGHT = 64 * 1024;
export const MAX_MAX_BYTES_IN_FLIGHT = 1024 * 1024 * 1024;

export const DEFAULT_ASSIGNOR: GroupAssignor = "sticky";
export const DEFAULT_SESSION_TIMEOUT_MS = 10_000;
/** Below this a GC pause or a slow disk on the coordinator would evict healthy members. */
export const MIN_SESSION_TIMEOUT_MS = 1_000;
export const MAX_SESSION_TIMEOUT_MS = 300_000;
export const DEFAULT_AUTO_COMMIT = true;
export const DEFAULT_AUTO_COMMIT_INTERVAL_MS = 1_000;
export const MIN_AUTO_COMMIT_INTERVAL_MS = 10;
export const MAX_AUTO_COMMIT_INTERVAL_MS = 3_600_000;
/** Static member ids are stored with the group; keep them short. */
export const MAX_GROUP_INSTANCE_ID_LENGTH = 200;

/** The group part of the options; absent for an ephemeral reader. */
export interface ParsedGroupOptions {
  readonly group: string;
  readonly groupInstanceId: string | undefined;
  readonly assignor: GroupAssignor;
  readonly sessionTimeoutMs: number;
  readonly autoCommit: boolean;
  readonly autoCommitIntervalMs: number;
}

export interface ParsedConsumerOptions {
  readonly fromBeginning: boolean;
  readonly maxBytesInFlight: number;
  /** Present only when the consumer is a group member. */
  readonly group?: ParsedGroupOptions;
}

const KNOWN_KEYS = [
  "group",
  "groupInstanceId",
  "assignor",
  "sessionTimeoutMs",
  "autoCommit",
  "autoCommitIntervalMs",
  "fromBeginning",
  "maxBytesInFlight",
] as const;
const GROUP_ONLY_KEYS = ["groupInstanceId", "assignor", "sessionTimeoutMs", "autoCommit", "autoCommitIntervalMs"] as const;

export function parseConsumerOptions(options: ConsumerOptions = {}): ParsedConsumerOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`consumer options must be an object like { group: "billing", fromBeginning: true }`);
  }
  checkKnownKeys("consumer", options, KNOWN_KEYS);
  const parsed: { fromBeginning: boolean; maxBytesInFlight: number; group?: ParsedGroupOptions } = {
    fromBeginning: checkBoolean("fromBeginning", options.fromBeginning ?? DEFAULT_FROM_BEGINNING),
    maxBytesInFlight: checkInteger(
      "maxBytesInFlight",
      options.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT,
      MIN_MAX_BYTES_IN_FLIGHT,
      MAX_MAX_BYTES_IN_FLIGHT,
    ),
  };
  if (options.group === undefined) {
    const misplaced = GROUP_ONLY_KEYS.filter((key) => options[key] !== undefined);
    if (misplaced.length > 0) {
      throw new InvalidArgumentError(`${misplaced.join(", ")} only apply to a group member: add group, e.g. { group: "billing" }`);
    }
    return parsed;
  }
  parsed.group = parseGroupOptions(options);
  return parsed;
}

function parseGroupOptions(options: ConsumerOptions): ParsedGroupOptions {
  const group = checkGroupName(options.group);
  const instanceId = options.groupInstanceId;
  if (
    instanceId !== undefined &&
    (typeof instanceId !== "string" || instanceId.trim() === "" || instanceId.length > MAX_GROUP_INSTANCE_ID_LENGTH)
  ) {
    throw new InvalidArgumentError(
      `groupInstanceId must be a non-empty string of at most ${MAX_GROUP_INSTANCE_ID_LENGTH} characters, got ${JSON.stringify(instanceId)}`,
    );
  }
  const assignor = options.assignor ?? DEFAULT_ASSIGNOR;
  if (!GROUP_ASSIGNORS.includes(assignor)) {
    throw new InvalidArgumentError(`assignor must be one of ${GROUP_ASSIGNORS.map((a) => `"${a}"`).join(", ")}, got ${JSON.stringify(assignor)}`);
  }
  return {
    group,
    groupInstanceId: instanceId,
    assignor,
    sessionTimeoutMs: checkInteger(
      "sessionTimeoutMs",
      options.sessionTimeoutMs ?? DEFAULT_SESSION_TIMEOUT_MS,
      MIN_SESSION_TIMEOUT_MS,
      MAX_SESSION_TIMEOUT_MS,
    ),
    autoCommit: checkBoolean("autoCommit", options.autoCommit ?? DEFAULT_AUTO_COMMIT),
    autoCommitIntervalMs: checkInteger(
      "autoCommitIntervalMs",
      options.autoCommitIntervalMs ?? DEFAULT_AUTO_COMMIT_INTERVAL_MS,
      MIN_AUTO_COMMIT_INTERVAL_MS,
      MAX_AUTO_COMMIT_INTERVAL_MS,
    ),
  };
}


export interface ParsedSubscribeOptions {
  readonly partitions: number[] | undefined;
  readonly offsets: ReadonlyMap<number, number>;
}

export function parseSubscribeOptions(options: SubscribeOptions = {}): ParsedSubscribeOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`subscribe options must be an object like { partitions: [0, 1], offsets: { 0: 42 } }`);
  }
  checkKnownKeys("subscribe", options, ["partitions", "offsets"]);
  let partitions: number[] | undefined;
  if (options.partitions !== undefined) {
    if (!Array.isArray(options.partitions) || options.partitions.length === 0) {
      throw new InvalidArgumentError(`subscribe partitions must be a non-empty array of partition numbers`);
    }
    partitions = [...new Set(options.partitions.map((p) => checkInteger("subscribe partition", p, 0)))];
  }
  const offsets = new Map<number, number>();
  for (const [key, offset] of Object.entries(options.offsets ?? {})) {
    const partition = checkInteger("subscribe offsets key (a partition)", Number(key), 0);
    offsets.set(partition, checkInteger(`subscribe offset of partition ${partition}`, offset, 0));
    if (partitions !== undefined && !partitions.includes(partition)) {
      throw new InvalidArgumentError(`subscribe offsets name partition ${partition}, which is not in partitions [${partitions.join(", ")}]`);
    }
  }
  return { partitions, offsets };
}
