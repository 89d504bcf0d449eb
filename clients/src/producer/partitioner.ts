/**
 * Which partition a message goes to (R18, R23). A message's own `partition` always wins;
 * otherwise the producer's partitioner decides:
 *
 *   "default"      key set → key hash (Kafka's murmur2, see murmur2.ts); no key → round robin
 *   "round-robin"  every message to the next partition, keys ignored
 *   "key-hash"     key hash; a message without a key is refused
 *   "random"       a uniformly random partition
 *   a function     `(message, partitionCount, topic) => partition`, e.g. smoothWeightedRoundRobin()
 *
 * Key hashing keeps per-key order (one key, one partition) as long as the partition count
 * does not change.
 */
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { keyHashPartition } from "./murmur2.js";
import type { ProducerMessage } from "./types.js";

export type PartitionerFunction = (message: ProducerMessage, partitionCount: number, topic: string) => number;
export type PartitionerName = "default" | "round-robin" | "key-hash" | "random";
export type PartitionerOption = PartitionerName | PartitionerFunction;

export const PARTITIONER_NAMES: readonly PartitionerName[] = ["default", "round-robin", "key-hash", "random"];

/** Chooses partitions for one topic; holds that topic's round-robin position. */
export interface Partitioner {
  partition(message: ProducerMessage, partitionCount: number): number;
}

class RoundRobin implements Partitioner {
  // Start at a random place so producers started together do not all begin on partition 0.
  private next = Math.floor(Math.random() * 0x10000);

  partition(_message: ProducerMessage, partitionCount: number): number {
    const chosen = this.next % partitionCount;
    this.next = (this.next + 1) % 0x40000000;
    return chosen;
  }
}

class KeyHash implements Partitioner {
  partition(message: ProducerMessage, partitionCount: number): number {
    const key = message.key;
    if (key === null || key === undefined) {
      throw new InvalidArgumentError(`partitioner "key-hash" needs a key on every message; set a key or use partitioner "default"`);
    }
    return keyHashPartition(key, partitionCount);
  }
}

class KeyHashOrRoundRobin implements Partitioner {
  private readonly roundRobin = new RoundRobin();

  partition(message: ProducerMessage, partitionCount: number): number {
    const key = message.key;
    if (key === null || key === undefined) return this.roundRobin.partition(message, partitionCount);
    return keyHashPartition(key, partitionCount);
  }
}

class RandomPartition implements Partitioner {
  partition(_message: ProducerMessage, partitionCount: number): number {
    return Math.floor(Math.random() * partitionCount);
  }
}

class CustomPartitioner implements Partitioner {
  constructor(
    private readonly choose: PartitionerFunction,
    private readonly topic: string,
  ) {}

  partition(message: ProducerMessage, partitionCount: number): number {
    const chosen = this.choose(message, partitionCount, this.topic);
    if (!Number.isInteger(chosen) || chosen < 0 || chosen >= partitionCount) {
      throw new InvalidArgumentError(
        `the partitioner returned ${String(chosen)} for topic "${this.topic}", which has ${partitionCount} partitions (0..${partitionCount - 1})`,
      );
    }
    return chosen;
  }
}

export function checkPartitionerOption(option: unknown): PartitionerOption {
  if (typeof option === "function") return option as PartitionerFunction;
  if (typeof option === "string" && (PARTITIONER_NAMES as readonly string[]).includes(option)) return option as PartitionerName;
  throw new InvalidArgumentError(
    `partitioner must be one of ${PARTITIONER_NAMES.map((n) => `"${n}"`).join(", ")} or a function (message, partitionCount, topic) => partition, got ${JSON.stringify(option)}`,
  );
}

/** A partitioner for one topic (each topic keeps its own round-robin position). */
export function createPartitioner(option: PartitionerOption, topic: string): Partitioner {
  switch (option) {
    case "default":
      return new KeyHashOrRoundRobin();
    case "round-robin":
      return new RoundRobin();
    case "key-hash":
      return new KeyHash();
    case "random":
      return new RandomPartition();
    default:
      return new CustomPartitioner(option, topic);
  }
}

/**
 * Smooth weighted round robin (nginx's): every pick adds each partition's weight to its
 * current weight, picks the largest, and subtracts the total from the winner. Weights
 * {4, 1, 1} give 0, 0, 1, 0, 2, 0 — spread out rather than 0, 0, 0, 0, 1, 2. Weights are
 * per partition index; a partition beyond the list gets weight 1.
 *
 * `lower(partition)` halves a partition's effective weight (down to 1), e.g. after errors;
 * `restore(partition)` moves it one step back toward its configured weight.
 */
export class SmoothWeightedRoundRobin {
  private readonly effective: number[];
  private readonly current: number[];

  constructor(private readonly weights: readonly number[]) {
    for (const weight of weights) {
      if (!Number.isInteger(weight) || weight < 1) {
        throw new InvalidArgumentError(`smooth weighted round robin weights must be integers >= 1, got ${JSON.stringify(weights)}`);
      }
    }
    this.effective = [...weights];
    this.current = weights.map(() => 0);
  }

  pick(partitionCount: number): number {
    let total = 0;
    let best = 0;
    for (let p = 0; p < partitionCount; p++) {
      const weight = (this.effective[p] ??= this.weights[p] ?? 1);
      const current = (this.current[p] = (this.current[p] ?? 0) + weight);
      total += weight;
      if (current > this.current[best]!) best = p;
    }
    this.current[best]! -= total;
    return best;
  }

  lower(partition: number): void {
    this.effective[partition] = Math.max(1, Math.floor((this.effective[partition] ?? 1) / 2));
  }

  restore(partition: number): void {
    const target = this.weights[partition] ?? 1;
    this.effective[partition] = Math.min(target, (this.effective[partition] ?? target) + 1);
  }

  /** As a producer `partitioner` option. */
  asPartitioner(): PartitionerFunction {
    return (_message, partitionCount) => this.pick(partitionCount);
  }
}
