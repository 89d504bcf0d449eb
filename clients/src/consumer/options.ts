/** Consumer and subscription options, their defaults and validation; the message type. */
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { checkInteger, checkKnownKeys } from "../options.js";

export interface ConsumerOptions {
  /**
   * Where reading starts on a partition with no explicit offset, and where it resumes when
   * its position falls outside the log (OFFSET_OUT_OF_RANGE): the earliest retained
   * message when true, the end of the log (only new messages) when false.
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
  /** Partitions to read. @defaultValue every partition of the topic */
  partitions?: number[];
  /** Start offset per partition; the others start per `fromBeginning`. */
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

export interface ParsedConsumerOptions {
  readonly fromBeginning: boolean;
  readonly maxBytesInFlight: number;
}

const KNOWN_KEYS = ["fromBeginning", "maxBytesInFlight"] as const;

export function parseConsumerOptions(options: ConsumerOptions = {}): ParsedConsumerOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`consumer options must be an object like { fromBeginning: true }`);
  }
  checkKnownKeys("consumer", options, KNOWN_KEYS);
  const fromBeginning = options.fromBeginning ?? DEFAULT_FROM_BEGINNING;
  if (typeof fromBeginning !== "boolean") {
    throw new InvalidArgumentError(`fromBeginning must be true or false, got ${JSON.stringify(fromBeginning)}`);
  }
  return {
    fromBeginning,
    maxBytesInFlight: checkInteger(
      "maxBytesInFlight",
      options.maxBytesInFlight ?? DEFAULT_MAX_BYTES_IN_FLIGHT,
      MIN_MAX_BYTES_IN_FLIGHT,
      MAX_MAX_BYTES_IN_FLIGHT,
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
