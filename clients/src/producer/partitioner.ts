/**
 * Which partition a message goes to: the producer's load balancing (R18, R23). A message's
 * own `partition` always wins; otherwise the producer's `partitioner` option decides:
 *
 *   "default"      key set → key hash (Kafka's murmur2, see murmur2.ts); no key → round robin
 *   "round-robin"  every message to the next partition, keys ignored
 *   "key-hash"     key hash; a message without a key is refused
 *   "random"       a uniformly random partition
 *   a function     `(message, partitionCount, topic) => partition`
 *   a Partitioner  any object with `partition(message, partitionCount, topic)` and, optionally,
 *                  `noteFailure(partition, topic)`, e.g. `new SmoothWeightedRoundRobin([4, 1, 1])`
 *
 * Every strategy, built in or not, is used through the one `Partitioner` interface; the
 * producer tells it when a send to a partition fails (`noteFailure`), which the smooth
 * weighted round robin uses to send less there until the partition recovers.
 *
 * Key hashing keeps per-key order (one key, one partition) as long as the partition count
 * does not change.
 */
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { keyHashPartition } from "../../../common/src/murmur2.js";
import type { ProducerMessage } from "./types.js";

export type PartitionerFunction = (message: ProducerMessage, partitionCount: number, topic: string) => number;
export type PartitionerName = "default" | "round-robin" | "key-hash" | "random";

/** The one interface load-balancing strategies plug in through (a producer's `partitioner`). */
export interface Partitioner {
  /** The partition, in [0, partitionCount), for a message that names none. */
  partition(message: ProducerMessage, partitionCount: number, topic: string): number;
  /**
   * A send to `partition` of `topic` failed with a retriable error (broker unreachable, not
   * the leader, throttled, timed out): a balancer may send less there for a while.
   */
  noteFailure?(partition: number, topic: string): void;
}

export type PartitionerOption = PartitionerName | PartitionerFunction | Partitioner;

export const PARTITIONER_NAMES: readonly PartitionerName[] = ["default", "round-robin", "key-hash", "random"];

/** Chooses partitions for one topic (built by `createPartitioner`); holds that topic's position. */
export interface TopicPartitioner {
  partition(message: ProducerMessage, partitionCount: number): number;
  /** A send to `partition` failed with a retriable error. */
  noteFailure(partition: number): void;
}

class RoundRobin implements TopicPartitioner {
  // Unweighted strategies have nothing to lower: every partition keeps its share.
  noteFailure(): void {}

  // Start at a random place so producers started together do not all begin on partition 0.
  private next = Math.floor(Math.random() * 0x10000);

  partition(_message: ProducerMessage, partitionCount: number): number {
    const chosen = this.next % partitionCount;
    this.next = (this.next + 1) % 0x40000000;
    return chosen;
  }
}

class KeyHash implements TopicPartitioner {
  // Unweighted strategies have nothing to lower: every partition keeps its share.
  noteFailure(): void {}

  partition(message: ProducerMessage, partitionCount: number): number {
    const key = message.key;
    if (key === null || key === undefined) {
      throw new InvalidArgumentError(`partitioner "key-hash" needs a key on every message; set a key or use partitioner "default"`);
    }
    return keyHashPartition(key, partitionCount);
  }
}

class KeyHashOrRoundRobin implements TopicPartitioner {
  // Unweighted strategies have nothing to lower: every partition keeps its share.
  noteFailure(): void {}

  private readonly roundRobin = new RoundRobin();

  partition(message: ProducerMessage, partitionCount: number): number {
    const key = message.key;
    if (key === null || key === undefined) return this.roundRobin.partition(message, partitionCount);
    return keyHashPartition(key, partitionCount);
  }
}

class RandomPartition implements TopicPartitioner {
  // Unweighted strategies have nothing to lower: every partition keeps its share.
  noteFailure(): void {}

  partition(_message: ProducerMessage, partitionCount: number): number {
    return Math.floor(Math.random() * partitionCount);
  }
}

/** A user's function or Partitioner, with its answer checked (a bad index would fail far from its cause). */
class CustomPartitioner implements TopicPartitioner {
  constructor(
    private readonly chooser: Partitioner,
    private readonly topic: string,
  ) {}

  partition(message: ProducerMessage, partitionCount: number): number {
    const chosen = this.chooser.partition(message, partitionCount, this.topic);
    if (!Number.isInteger(chosen) || chosen < 0 || chosen >= partitionCount) {
      throw new InvalidArgumentError(
        `the partitioner returned ${String(chosen)} for topic "${this.topic}", which has ${partitionCount} partitions (0..${partitionCount - 1})`,
      );
    }
    return chosen;
  }

  noteFailure(partition: number): void {
    this.chooser.noteFailure?.(partition, this.topic);
  }
}

export function checkPartitionerOption(option: unknown): PartitionerOption {
  if (typeof option === "function") return option as PartitionerFunction;
  if (typeof option === "object" && option !== null && typeof (option as Partitioner).partition === "function") {
    const noteFailure = (option as Partitioner).noteFailure;
    if (noteFailure === undefined || typeof noteFailure === "function") return option as Partitioner;
  }
  if (typeof option === "string" && (PARTITIONER_NAMES as readonly string[]).includes(option)) return option as PartitionerName;
  throw new InvalidArgumentError(
    `partitioner must be one of ${PARTITIONER_NAMES.map((n) => `"${n}"`).join(", ")} or a function (message, partitionCount, topic) => partition, or a Partitioner object with partition(message, partitionCount, topic) (e.g. new SmoothWeightedRoundRobin([4, 1, 1])), got ${JSON.stringify(option)}`,
  );
}

/** A partitioner for one topic (each topic keeps its own round-robin position). */
export function createPartitioner(option: PartitionerOption, topic: string): TopicPartitioner {
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
      return new CustomPartitioner(typeof option === "function" ? { partition: option } : option, topic);
  }
}


/** How often a lowered effective weight climbs one step back toward its configured weight. */
export const DEFAULT_WEIGHT_RESTORE_EVERY_MS = 1_000;

export interface SmoothWeightedRoundRobinOptions {
  /**
   * A lowered partition regains `max(1, ceil(weight / 10))` of effective weight per this many
   * ms without a new failure, until it is back at its configured weight.
   * @defaultValue 1000
   */
  restoreEveryMs?: number;
  /** Time source (ms), for tests. @defaultValue Date.now */
  now?: () => number;
}

/** One topic's weights as they move: nginx's `effective_weight` and `current_weight`. */
interface WeightState {
  readonly effective: number[];
  readonly current: number[];
  /** When the last restore step was taken (or the last failure lowered a weight). */
  restoredAtMs: number;
}

/**
 * Smooth weighted round robin (nginx's): every pick adds each partition's effective weight to
 * its current weight, picks the largest current weight, and subtracts the total from the
 * winner. Weights {4, 1, 1} give 0, 0, 1, 0, 2, 0 — spread out rather than 0, 0, 0, 0, 1, 2.
 * Weights are per partition index; a partition beyond the list gets weight 1.
 *
 * A failed send halves the partition's effective weight (never below 1, so it is still
 * probed); the weight then climbs back over time (`restoreEveryMs`), so a partition whose
 * broker struggles gets less traffic until it recovers. Each topic keeps its own state, so
 * one instance may serve a producer writing to several topics.
 *
 * ```ts
 * const producer = sluice.producer({ partitioner: new SmoothWeightedRoundRobin([4, 1, 1]) });
 * ```
 */
export class SmoothWeightedRoundRobin implements Partitioner {
  private readonly topics = new Map<string, WeightState>();
  private readonly restoreEveryMs: number;
  private readonly now: () => number;

  constructor(
    private readonly weights: readonly number[],
    options: SmoothWeightedRoundRobinOptions = {},
  ) {
    if (!Array.isArray(weights)) throw new InvalidArgumentError(`smooth weighted round robin takes an array of weights, e.g. [4, 1, 1]`);
    for (const weight of weights) {
      if (!Number.isInteger(weight) || weight < 1) {
        throw new InvalidArgumentError(`smooth weighted round robin weights must be integers >= 1, got ${JSON.stringify(weights)}`);
      }
    }
    const restoreEveryMs = options.restoreEveryMs ?? DEFAULT_WEIGHT_RESTORE_EVERY_MS;
    if (!Number.isInteger(restoreEveryMs) || restoreEveryMs < 1) {
      throw new InvalidArgumentError(`restoreEveryMs must be an integer >= 1, got ${String(restoreEveryMs)}`);
    }
    this.restoreEveryMs = restoreEveryMs;
    this.now = options.now ?? Date.now;
  }

  partition(_message: ProducerMessage, partitionCount: number, topic: string): number {
    return this.pick(partitionCount, topic);
  }

  noteFailure(partition: number, topic: string): void {
    this.lower(partition, topic);
  }

  pick(partitionCount: number, topic = ""): number {
    const state = this.stateOf(topic);
    this.restoreDue(state);
    const { effective, current } = state;
    let total = 0;
    let best = 0;
    for (let p = 0; p < partitionCount; p++) {
      const weight = (effective[p] ??= this.weights[p] ?? 1);
      const value = (current[p] = (current[p] ?? 0) + weight);
      total += weight;
      if (value > current[best]!) best = p;
    }
    current[best]! -= total;
    return best;
  }

  /** Halves a partition's effective weight (down to 1) and restarts the restore clock. */
  lower(partition: number, topic = ""): void {
    const state = this.stateOf(topic);
    this.restoreDue(state);
    state.effective[partition] = Math.max(1, Math.floor((state.effective[partition] ?? this.weightOf(partition)) / 2));
    state.restoredAtMs = this.now();
  }

  /** One restore step now: the effective weight climbs toward the configured weight. */
  restore(partition: number, topic = ""): void {
    const state = this.stateOf(topic);
    const weight = this.weightOf(partition);
    state.effective[partition] = Math.min(weight, (state.effective[partition] ?? weight) + restoreStep(weight));
  }

  /** The effective weight the next pick uses (for tests and diagnostics). */
  effectiveWeight(partition: number, topic = ""): number {
    const state = this.stateOf(topic);
    this.restoreDue(state);
    return state.effective[partition] ?? this.weightOf(partition);
  }

  /** As a producer `partitioner` function (without failure feedback; pass the object itself for that). */
  asPartitioner(): PartitionerFunction {
    return (_message, partitionCount, topic) => this.pick(partitionCount, topic);
  }

  private weightOf(partition: number): number {
    return this.weights[partition] ?? 1;
  }

  private stateOf(topic: string): WeightState {
    let state = this.topics.get(topic);
    if (state === undefined) {
      state = { effective: [...this.weights], current: this.weights.map(() => 0), restoredAtMs: this.now() };
      this.topics.set(topic, state);
    }
    return state;
  }

  /** Takes the restore steps due since the last one, for every lowered partition. */
  private restoreDue(state: WeightState): void {
    const steps = Math.floor((this.now() - state.restoredAtMs) / this.restoreEveryMs);
    if (steps <= 0) return;
    state.restoredAtMs += steps * this.restoreEveryMs;
    const { effective } = state;
    for (let p = 0; p < effective.length; p++) {
      const weight = this.weightOf(p);
      const value = effective[p];
      if (value !== undefined && value < weight) effective[p] = Math.min(weight, value + steps * restoreStep(weight));
    }
  }
}

/** Nginx lowers by a tenth of the weight per failure; restoring by a tenth per step mirrors it. */
function restoreStep(weight: number): number {
  return Math.max(1, Math.ceil(weight / 10));
}
