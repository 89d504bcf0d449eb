/**
 * Fixed-window failure detection (R2): a broker is judged by the age of its last heartbeat.
 *
 *   age ≤ 1.5 × interval          alive    (one late heartbeat is normal jitter)
 *   1.5 × interval < age ≤ expiry suspect  (still routed: removing it would move traffic on a
 *                                           hiccup, but `sluice cluster` shows it)
 *   age > expiry                  dead     (removed by `sweep`; routes are recomputed)
 *
 * Expiry defaults to 3 × interval, i.e. three missed heartbeats. Time comes from an injected
 * Clock, so the boundaries are tested exactly with FakeClock. Pure bookkeeping: no timers
 * and no I/O; the server calls `sweep` on its own timer.
 */
import type { Clock } from "../../../common/src/clock.js";

export type BrokerState = "alive" | "suspect" | "dead";

/** A heartbeat older than this many intervals makes a broker suspect. */
export const SUSPECT_AFTER_INTERVALS = 1.5;

export interface LivenessDetectorOptions {
  clock: Clock;
  heartbeatIntervalMs: number;
  /** Silence after which a broker is dead; must exceed the suspect threshold to be useful. */
  expiryMs: number;
}

export class LivenessDetector {
  private readonly lastHeartbeatMs = new Map<string, number>();
  private readonly clock: Clock;
  readonly suspectAfterMs: number;
  readonly expiryMs: number;

  constructor(options: LivenessDetectorOptions) {
    this.clock = options.clock;
    this.expiryMs = options.expiryMs;
    // With an expiry shorter than the suspect threshold a broker goes straight from alive to dead.
    this.suspectAfterMs = Math.min(options.heartbeatIntervalMs * SUSPECT_AFTER_INTERVALS, options.expiryMs);
  }

  /** Records a heartbeat (or a registration) from `key` now; this also revives a suspect. */
  heartbeat(key: string): void {
    this.lastHeartbeatMs.set(key, this.clock.now());
  }

  /** Stops tracking `key` (it unregistered or was swept). */
  forget(key: string): void {
    this.lastHeartbeatMs.delete(key);
  }

  isTracked(key: string): boolean {
    return this.lastHeartbeatMs.has(key);
  }

  /** Milliseconds since the last heartbeat, or undefined for a key never seen. */
  heartbeatAgeMs(key: string): number | undefined {
    const last = this.lastHeartbeatMs.get(key);
    return last === undefined ? undefined : Math.max(0, this.clock.now() - last);
  }

  /** The broker's state now; an untracked key is dead (nothing vouches for it). */
  state(key: string): BrokerState {
    const age = this.heartbeatAgeMs(key);
    if (age === undefined || age > this.expiryMs) return "dead";
    return age > this.suspectAfterMs ? "suspect" : "alive";
  }

  /** Forgets every dead broker and returns them with the age of their last heartbeat. */
  sweep(): Array<{ key: string; heartbeatAgeMs: number }> {
    const now = this.clock.now();
    const dead: Array<{ key: string; heartbeatAgeMs: number }> = [];
    for (const [key, last] of this.lastHeartbeatMs) {
      const heartbeatAgeMs = now - last;
      if (heartbeatAgeMs > this.expiryMs) dead.push({ key, heartbeatAgeMs });
    }
    for (const { key } of dead) this.lastHeartbeatMs.delete(key);
    return dead;
  }
}
