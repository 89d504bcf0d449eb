/**
 * Recent produce throughput per topic, for the console's sparklines and live chart.
 *
 * Every `intervalMs` the sampler reads each topic's end offset (summed over its partitions)
 * and keeps the last `maxSamples` readings; a topic's rate between two readings is
 *
 *   messagesPerSecond = (endOffset[i] - endOffset[i-1]) / ((atMs[i] - atMs[i-1]) / 1000)
 *
 * Sampling costs a name-server lookup and an offsets request per topic, so it only runs while
 * someone watches: the first call to touch() starts it (with a reading at once), and it
 * stops, forgetting its readings, once `idleStopMs` pass without a call. A restart does not
 * average over the gap: rates only ever span one interval.
 */
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { isInternalTopic } from "../../../common/src/protocol.js";

export const DEFAULT_SAMPLE_INTERVAL_MS = 2_000;
export const DEFAULT_IDLE_STOP_MS = 60_000;
export const DEFAULT_MAX_SAMPLES = 60;

/** topic → end offset summed over its partitions. */
export type EndOffsets = ReadonlyMap<string, number>;

export interface IntervalTimers {
  setInterval(callback: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

const realTimers: IntervalTimers = {
  setInterval: (callback, ms) => {
    const handle = setInterval(callback, ms);
    // A console left open must not keep a stopping broker alive.
    handle.unref();
    return handle;
  },
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

export interface ThroughputSamplerOptions {
  /** Reads every topic's end offset; a topic it cannot read is left out of that reading. */
  readEndOffsets: () => Promise<EndOffsets>;
  clock?: Clock;
  timers?: IntervalTimers;
  /** @defaultValue 2000 */
  intervalMs?: number;
  /** @defaultValue 60000 */
  idleStopMs?: number;
  /** @defaultValue 60 */
  maxSamples?: number;
  /** Told when a reading fails (the sampler keeps going). */
  onError?: (err: unknown) => void;
}

export interface RatePoint {
  /** When the later of the two readings started, ms since the epoch. */
  atMs: number;
  /** Time between the two readings: messagesPerSecond × spanMs / 1000 messages were written. */
  spanMs: number;
  messagesPerSecond: number;
}

export interface TopicThroughput {
  topic: string;
  internal: boolean;
  /** The latest rate; 0 until two readings exist. */
  messagesPerSecond: number;
  points: RatePoint[];
}

export interface ThroughputReport {
  intervalMs: number;
  sampling: boolean;
  samples: number;
  /** Sum over user topics (internal `%` topics are listed, not counted: producers do not write them). */
  total: RatePoint[];
  topics: TopicThroughput[];
}

interface Reading {
  atMs: number;
  endOffsets: EndOffsets;
}

export class ThroughputSampler {
  private readonly readEndOffsets: () => Promise<EndOffsets>;
  private readonly clock: Clock;
  private readonly timers: IntervalTimers;
  readonly intervalMs: number;
  private readonly idleStopMs: number;
  private readonly maxSamples: number;
  private readonly onError: (err: unknown) => void;
  private readings: Reading[] = [];
  private handle: unknown = undefined;
  private lastTouchMs = 0;
  private inFlight: Promise<void> | undefined;
  /** Bumped on every stop, so a reading that finishes after its run stopped is dropped. */
  private run = 0;

  constructor(options: ThroughputSamplerOptions) {
    this.readEndOffsets = options.readEndOffsets;
    this.clock = options.clock ?? systemClock;
    this.timers = options.timers ?? realTimers;
    this.intervalMs = positiveInteger("intervalMs", options.intervalMs ?? DEFAULT_SAMPLE_INTERVAL_MS);
    this.idleStopMs = positiveInteger("idleStopMs", options.idleStopMs ?? DEFAULT_IDLE_STOP_MS);
    this.maxSamples = positiveInteger("maxSamples", options.maxSamples ?? DEFAULT_MAX_SAMPLES);
    if (this.maxSamples < 2) throw new InvalidArgumentError(`maxSamples must be at least 2 (a rate needs two readings), got ${this.maxSamples}`);
    this.onError = options.onError ?? (() => undefined);
  }

  get sampling(): boolean {
    return this.handle !== undefined;
  }

  /** Someone is watching: start sampling if stopped, and push the idle stop back. */
  touch(): void {
    this.lastTouchMs = this.clock.now();
    if (this.handle !== undefined) return;
    this.readings = [];
    this.handle = this.timers.setInterval(() => void this.tick(), this.intervalMs);
    void this.sample();
  }

  /** One interval: stop when nobody called for idleStopMs, otherwise take a reading. */
  tick(): Promise<void> {
    if (this.handle === undefined) return Promise.resolve();
    if (this.clock.now() - this.lastTouchMs >= this.idleStopMs) {
      this.stop();
      return Promise.resolve();
    }
    return this.sample();
  }

  stop(): void {
    if (this.handle !== undefined) this.timers.clearInterval(this.handle);
    this.handle = undefined;
    this.readings = [];
    this.run++;
  }

  /** Waits for a reading in progress (tests, and a first call that wants data). */
  async settled(): Promise<void> {
    await this.inFlight;
  }

  report(): ThroughputReport {
    const topics = new Map<string, TopicThroughput>();
    const totals: RatePoint[] = [];
    const latest = this.readings[this.readings.length - 1];
    for (const topic of latest?.endOffsets.keys() ?? []) {
      topics.set(topic, { topic, internal: isInternalTopic(topic), messagesPerSecond: 0, points: [] });
    }
    for (let i = 1; i < this.readings.length; i++) {
      const before = this.readings[i - 1] as Reading;
      const after = this.readings[i] as Reading;
      const spanMs = after.atMs - before.atMs;
      if (spanMs <= 0) continue;
      const seconds = spanMs / 1000;
      let total = 0;
      for (const [topic, endOffset] of after.endOffsets) {
        const previous = before.endOffsets.get(topic);
        const entry = topics.get(topic);
        if (previous === undefined || entry === undefined) continue;
        // Fewer messages than before: the topic was deleted and created again. Not negative traffic.
        const rate = Math.max(0, endOffset - previous) / seconds;
        entry.points.push({ atMs: after.atMs, spanMs, messagesPerSecond: rate });
        if (!entry.internal) total += rate;
      }
      totals.push({ atMs: after.atMs, spanMs, messagesPerSecond: total });
    }
    for (const entry of topics.values()) {
      entry.messagesPerSecond = entry.points[entry.points.length - 1]?.messagesPerSecond ?? 0;
    }
    const sorted = [...topics.values()].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
    return { intervalMs: this.intervalMs, sampling: this.sampling, samples: this.readings.length, total: totals, topics: sorted };
  }

  private sample(): Promise<void> {
    // A slow cluster: skip this interval rather than pile readings up.
    if (this.inFlight !== undefined) return this.inFlight;
    const reading = this.read(this.run).finally(() => {
      if (this.inFlight === reading) this.inFlight = undefined;
    });
    this.inFlight = reading;
    return reading;
  }

  private async read(run: number): Promise<void> {
    // The time the reading was due, not when its answer came: a slow answer (a loaded
    // cluster) then shifts no span, and the interval it made the sampler skip shows as a
    // span of two intervals rather than of two plus however long the answer took.
    const atMs = this.clock.now();
    try {
      const endOffsets = await this.readEndOffsets();
      // Stopped while reading: this reading belongs to a run that is over.
      if (run !== this.run || this.handle === undefined) return;
      this.readings.push({ atMs, endOffsets });
      if (this.readings.length > this.maxSamples) this.readings.splice(0, this.readings.length - this.maxSamples);
    } catch (err) {
      this.onError(err);
    }
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  return value;
}
