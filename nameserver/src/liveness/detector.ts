/**
 * Failure detection (R2): one interface, two detectors, chosen by `--detector fixed|phi`.
 *
 *  - fixed (fixed-detector.ts, the default): a broker missing k heartbeats of interval T is
 *    removed. Simple and predictable, but one setting of k must fit every network.
 *  - phi (phi-detector.ts): φ-accrual. It learns each broker's heartbeat rhythm (mean and
 *    variance of inter-arrival times) and turns the current silence into a suspicion level φ;
 *    a broker on a jittery link is judged by its own jitter, not by a fixed k.
 *
 * Both are pure bookkeeping behind an injected Clock: no timers and no I/O, so every boundary
 * is tested exactly with FakeClock; the server calls `sweep` on its own timer. Each name
 * server judges liveness from the heartbeats it receives, never from the registry store.
 */
import type { Clock } from "../../../common/src/clock.js";
import { FixedWindowDetector } from "./fixed-detector.js";
import { PhiAccrualDetector } from "./phi-detector.js";

/** alive: routed; suspect: still routed, but `sluice cluster` shows it; dead: removed. */
export type BrokerState = "alive" | "suspect" | "dead";

export const DETECTOR_KINDS = ["fixed", "phi"] as const;
export type DetectorKind = (typeof DETECTOR_KINDS)[number];

/** Which detector judges the brokers, with what only that detector needs. */
export type DetectorSettings = { kind: "fixed" } | { kind: "phi"; phiThreshold: number };

export interface ExpiredBroker {
  key: string;
  heartbeatAgeMs: number;
  /** The detector's suspicion when it gave up (for the log line). */
  suspicion: number;
}

export interface FailureDetector {
  readonly kind: DetectorKind;
  /**
   * Silence after which a broker is dead whatever else the detector thinks: the fixed
   * detector's k × T, and the φ detector's safety net. "Removed within the expiry window"
   * holds for both.
   */
  readonly expiryMs: number;
  /** Records a heartbeat from `key` now; this also revives a suspect. */
  heartbeat(key: string): void;
  /** Stops tracking `key` (it unregistered, was swept, or restarts its rhythm on registering). */
  forget(key: string): void;
  isTracked(key: string): boolean;
  /** Milliseconds since the last heartbeat, or undefined for a key never seen. */
  heartbeatAgeMs(key: string): number | undefined;
  /** The broker's state now; an untracked key is dead (nothing vouches for it). */
  state(key: string): BrokerState;
  /**
   * How suspicious the current silence is, for `sluice cluster`: φ for the phi detector,
   * intervals of silence (age / T) for the fixed one; undefined for a key never seen.
   */
  suspicion(key: string): number | undefined;
  /** Forgets every dead broker and returns them with the age of their last heartbeat. */
  sweep(): ExpiredBroker[];
}

export interface FailureDetectorOptions {
  clock: Clock;
  /** The interval brokers are told to heartbeat at (T). */
  heartbeatIntervalMs: number;
  /** k × T: removal for the fixed detector, the safety net for φ. */
  expiryMs: number;
  /** @defaultValue { kind: "fixed" } */
  settings?: DetectorSettings;
}

export function createFailureDetector(options: FailureDetectorOptions): FailureDetector {
  const settings = options.settings ?? { kind: "fixed" };
  if (settings.kind === "phi") return new PhiAccrualDetector({ ...options, phiThreshold: settings.phiThreshold });
  return new FixedWindowDetector(options);
}
