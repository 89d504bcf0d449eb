/**
 * φ-accrual failure detection (Hayashibara et al., 2004; as in Akka and Cassandra).
 *
 * Per broker we keep the last WINDOW_SIZE heartbeat inter-arrival times and model the next
 * one as normally distributed with their mean μ and standard deviation σ. After a silence of
 * t ms, φ(t) = −log10(P[the next heartbeat comes later than t]) = −log10(1 − CDF((t − μ) / σ)):
 * φ = 1 means a 10 % chance that a live broker is this late, φ = 8 one in 10⁸. φ rises
 * continuously with the silence and falls back to ~0 at the next heartbeat, and because μ
 * and σ follow the broker's recent rhythm, a broker that slows down gradually moves the
 * distribution with it instead of crossing a fixed line.
 *
 * States, with θ = phiThreshold (default 8, `--phi-threshold`):
 *   φ < θ                              alive
 *   θ ≤ φ < 2θ                         suspect  (still routed, shown by `sluice cluster`)
 *   φ ≥ 2θ, or age > expiryMs          dead     (removed by `sweep`)
 * The expiry window (k × T) is a safety net: a broker whose history is so irregular that φ
 * rises slowly is still removed within the same window as with the fixed detector, so "a dead
 * broker is gone within the expiry window" holds whichever detector runs.
 * For a perfectly regular 1 s sender (σ at its floor, 250 ms): suspect from ≈ 2.31 s of
 * silence, dead from ≈ 2.78 s, against 1.5 s and 3 s for the fixed detector.
 *
 * Two guards keep φ sane:
 *  - σ never drops below MIN_STD_DEVIATION_INTERVALS × T: with perfectly regular heartbeats
 *    σ would be 0 and a heartbeat 1 ms late would give φ = ∞;
 *  - a new rhythm starts with two seed samples T ± T/4 (Akka's first-heartbeat estimate), so
 *    the first real interval does not make the mean alone, and the window holds them until
 *    real samples push them out.
 *
 * The normal CDF uses the logistic approximation of Bowling et al. (2009),
 * CDF(y) ≈ 1 / (1 + e^(−z)) with z = y · (1.5976 + 0.070566 · y²), absolute error < 1.4 · 10⁻⁴,
 * the one Akka uses; far in the tail it errs towards suspicion (at 5σ it gives φ = 7.3 where
 * the exact value is 6.5); the timings above are those of the approximation. Then 1 − CDF(y) = 1 / (1 + e^z) and φ = log10(1 + e^z) exactly, which we
 * evaluate as a stable softplus so φ stays finite (no 1 − 1 cancellation, no log of 0) however
 * long the silence.
 */
import type { Clock } from "../../../common/src/clock.js";
import { ArrivalWindow } from "./arrival-window.js";
import type { BrokerState, ExpiredBroker, FailureDetector } from "./detector.js";

export const DEFAULT_PHI_THRESHOLD = 8;
/** A broker is removed once φ reaches this multiple of the suspicion threshold. */
export const PHI_EXPIRY_FACTOR = 2;
/** Inter-arrival times kept per broker. */
export const DEFAULT_PHI_WINDOW_SIZE = 100;
/** Floor of σ, in heartbeat intervals (250 ms for the default 1 s). */
export const MIN_STD_DEVIATION_INTERVALS = 0.25;

export interface PhiAccrualDetectorOptions {
  clock: Clock;
  heartbeatIntervalMs: number;
  /** Safety net: silence after which a broker is dead whatever φ says. */
  expiryMs: number;
  /** φ from which a broker is suspect; it is dead from PHI_EXPIRY_FACTOR × this. @defaultValue 8 */
  phiThreshold?: number;
  /** @defaultValue 100 */
  windowSize?: number;
  /** @defaultValue MIN_STD_DEVIATION_INTERVALS × heartbeatIntervalMs */
  minStdDeviationMs?: number;
}

interface Rhythm {
  lastHeartbeatMs: number;
  intervals: ArrivalWindow;
}

export class PhiAccrualDetector implements FailureDetector {
  readonly kind = "phi";
  readonly expiryMs: number;
  readonly phiThreshold: number;
  readonly expiryPhi: number;
  private readonly clock: Clock;
  private readonly heartbeatIntervalMs: number;
  private readonly windowSize: number;
  private readonly minStdDeviationMs: number;
  private readonly rhythms = new Map<string, Rhythm>();

  constructor(options: PhiAccrualDetectorOptions) {
    this.clock = options.clock;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.expiryMs = options.expiryMs;
    this.phiThreshold = options.phiThreshold ?? DEFAULT_PHI_THRESHOLD;
    this.expiryPhi = this.phiThreshold * PHI_EXPIRY_FACTOR;
    this.windowSize = options.windowSize ?? DEFAULT_PHI_WINDOW_SIZE;
    this.minStdDeviationMs = options.minStdDeviationMs ?? MIN_STD_DEVIATION_INTERVALS * options.heartbeatIntervalMs;
  }

  heartbeat(key: string): void {
    const now = this.clock.now();
    const rhythm = this.rhythms.get(key);
    if (rhythm === undefined) {
      const intervals = new ArrivalWindow(this.windowSize);
      const seedSpreadMs = this.heartbeatIntervalMs / 4;
      intervals.add(this.heartbeatIntervalMs - seedSpreadMs);
      intervals.add(this.heartbeatIntervalMs + seedSpreadMs);
      this.rhythms.set(key, { lastHeartbeatMs: now, intervals });
      return;
    }
    rhythm.intervals.add(Math.max(0, now - rhythm.lastHeartbeatMs));
    rhythm.lastHeartbeatMs = now;
  }

  forget(key: string): void {
    this.rhythms.delete(key);
  }

  isTracked(key: string): boolean {
    return this.rhythms.has(key);
  }

  heartbeatAgeMs(key: string): number | undefined {
    const rhythm = this.rhythms.get(key);
    return rhythm === undefined ? undefined : Math.max(0, this.clock.now() - rhythm.lastHeartbeatMs);
  }

  /** φ of the current silence; undefined for a key never seen. */
  suspicion(key: string): number | undefined {
    const rhythm = this.rhythms.get(key);
    if (rhythm === undefined) return undefined;
    const { meanMs, standardDeviationMs } = rhythm.intervals;
    return phi(Math.max(0, this.clock.now() - rhythm.lastHeartbeatMs), meanMs, Math.max(standardDeviationMs, this.minStdDeviationMs));
  }

  state(key: string): BrokerState {
    const age = this.heartbeatAgeMs(key);
    if (age === undefined || age > this.expiryMs) return "dead";
    const suspicion = this.suspicion(key) ?? Infinity;
    if (suspicion >= this.expiryPhi) return "dead";
    return suspicion >= this.phiThreshold ? "suspect" : "alive";
  }

  sweep(): ExpiredBroker[] {
    const dead: ExpiredBroker[] = [];
    for (const key of this.rhythms.keys()) {
      if (this.state(key) === "dead") {
        dead.push({ key, heartbeatAgeMs: this.heartbeatAgeMs(key) ?? 0, suspicion: this.suspicion(key) ?? Infinity });
      }
    }
    for (const { key } of dead) this.rhythms.delete(key);
    return dead;
  }
}

/**
 * φ = −log10(1 − CDF((elapsedMs − meanMs) / stdDeviationMs)) under the logistic approximation
 * of the normal CDF (see the file comment): log10(1 + e^z), computed without overflow.
 */
export function phi(elapsedMs: number, meanMs: number, stdDeviationMs: number): number {
  const y = (elapsedMs - meanMs) / stdDeviationMs;
  const z = y * (1.5976 + 0.070566 * y * y);
  const softplus = z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
  return softplus / Math.LN10;
}
