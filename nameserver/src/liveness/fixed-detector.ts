/**
 * Fixed-window failure detection: a broker is judged by the age of its last heartbeat.
 *
 *   age ≤ 1.5 × interval          alive    (one late heartbeat is normal jitter)
 *   1.5 × interval < age ≤ expiry suspect  (still routed: removing it would move traffic on a
 *                                           hiccup, but `sluice cluster` shows it)
 *   age > expiry                  dead     (removed by `sweep`; routes are recomputed)
 *
 * Expiry is k × interval (k missed heartbeats; k = 3 and interval = 1 s by default).
 */
import type { Clock } from "../../../common/src/clock.js";
import type { BrokerState, ExpiredBroker, FailureDetector } from "./detector.js";

/** A heartbeat older than this many intervals makes a broker suspect. */
export const SUSPECT_AFTER_INTERVALS = 1.5;

export interface FixedWindowDetectorOptions {
  clock: Clock;
  heartbeatIntervalMs: number;
  /** Silence after which a broker is dead; must exceed the suspect threshold to be useful. */
  expiryMs: number;
}

export class FixedWindowDetector implements FailureDetector {
  readonly kind = "fixed";
  private readonly lastHeartbeatMs = new Map<string, number>();
  private readonly clock: Clock;
  private readonly heartbeatIntervalMs: number;
  readonly suspectAfterMs: number;
  readonly expiryMs: number;

  constructor(options: FixedWindowDetectorOptions) {
    this.clock = options.clock;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.expiryMs = options.expiryMs;
    // With an expiry shorter than the suspect threshold a broker goes straight from alive to dead.
    this.suspectAfterMs = Math.min(options.heartbeatIntervalMs * SUSPECT_AFTER_INTERVALS, options.expiryMs);
  }

  heartbeat(key: string): void {
    this.lastHeartbeatMs.set(key, this.clock.now());
  }

  forget(key: string): void {
    this.lastHeartbeatMs.delete(key);
  }

  isTracked(key: string): boolean {
    return this.lastHeartbeatMs.has(key);
  }

  heartbeatAgeMs(key: string): number | undefined {
    const last = this.lastHeartbeatMs.get(key);
    return last === undefined ? undefined : Math.max(0, this.clock.now() - last);
  }

  state(key: string): BrokerState {
    const age = this.heartbeatAgeMs(key);
    if (age === undefined || age > this.expiryMs) return "dead";
    return age > this.suspectAfterMs ? "suspect" : "alive";
  }

  /** Heartbeat intervals of silence: 3.2 means the broker has missed three heartbeats. */
  suspicion(key: string): number | undefined {
    const age = this.heartbeatAgeMs(key);
    return age === undefined ? undefined : age / this.heartbeatIntervalMs;
  }

  sweep(): ExpiredBroker[] {
    const now = this.clock.now();
    const dead: ExpiredBroker[] = [];
    for (const [key, last] of this.lastHeartbeatMs) {
      const heartbeatAgeMs = now - last;
      if (heartbeatAgeMs > this.expiryMs) dead.push({ key, heartbeatAgeMs, suspicion: heartbeatAgeMs / this.heartbeatIntervalMs });
    }
    for (const { key } of dead) this.lastHeartbeatMs.delete(key);
    return dead;
  }
}
