/**
 * The failure detector's options (`--detector`, `--phi-threshold`, `--expiry-heartbeats`,
 * `--expiry-ms`), validated once at start-up with errors that say what to pass instead.
 */
import { InvalidConfigError } from "../../../common/src/errors.js";
import { DETECTOR_KINDS, type DetectorKind, type DetectorSettings } from "./detector.js";
import { DEFAULT_PHI_THRESHOLD } from "./phi-detector.js";

/** Missed heartbeats after which a broker is removed (R2's k). */
export const DEFAULT_EXPIRY_HEARTBEATS = 3;
export const DEFAULT_DETECTOR: DetectorKind = "fixed";
/**
 * Below φ = 1 a broker would be suspect 10 % of the time while heartbeating on schedule.
 * There is no upper bound: a high threshold just leaves removal to the expiry window.
 */
export const MIN_PHI_THRESHOLD = 1;

export interface DetectorOptionsInput {
  heartbeatIntervalMs: number;
  detector?: string;
  phiThreshold?: number;
  expiryHeartbeats?: number;
  expiryMs?: number;
}

export interface ResolvedDetectorOptions {
  /** k × T: removal for the fixed detector, the safety net for φ. */
  expiryMs: number;
  detector: DetectorSettings;
}

export function parseDetectorOptions(input: DetectorOptionsInput): ResolvedDetectorOptions {
  const { heartbeatIntervalMs } = input;
  const kind = input.detector ?? DEFAULT_DETECTOR;
  if (!isDetectorKind(kind)) {
    throw new InvalidConfigError(`detector must be one of ${DETECTOR_KINDS.join(", ")}, got "${kind}"`);
  }
  const expiryMs = resolveExpiryMs(input);
  if (kind === "fixed") {
    if (input.phiThreshold !== undefined) {
      throw new InvalidConfigError(
        `phiThreshold (${input.phiThreshold}) only applies to the phi detector; add --detector phi or drop --phi-threshold`,
      );
    }
    return { expiryMs, detector: { kind } };
  }
  const phiThreshold = input.phiThreshold ?? DEFAULT_PHI_THRESHOLD;
  if (!Number.isFinite(phiThreshold) || phiThreshold < MIN_PHI_THRESHOLD) {
    throw new InvalidConfigError(
      `phiThreshold must be a number of at least ${MIN_PHI_THRESHOLD} (φ = 8, the usual choice, means a one-in-10⁸ ` +
        `chance that a live broker is that late), got ${input.phiThreshold}`,
    );
  }
  return { expiryMs, detector: { kind, phiThreshold } };
}

function resolveExpiryMs(input: DetectorOptionsInput): number {
  const { heartbeatIntervalMs, expiryHeartbeats, expiryMs } = input;
  if (expiryHeartbeats !== undefined && expiryMs !== undefined) {
    throw new InvalidConfigError(
      `give either expiryHeartbeats (${expiryHeartbeats}) or expiryMs (${expiryMs}), not both: ` +
        `the expiry window is expiryHeartbeats × heartbeatIntervalMs`,
    );
  }
  if (expiryMs === undefined) {
    const k = expiryHeartbeats ?? DEFAULT_EXPIRY_HEARTBEATS;
    // k = 1 would expire every broker between two heartbeats.
    if (!Number.isInteger(k) || k < 2) {
      throw new InvalidConfigError(
        `expiryHeartbeats must be an integer of at least 2 (one missed heartbeat is normal jitter), got ${k}; ` +
          `${DEFAULT_EXPIRY_HEARTBEATS} is the usual choice`,
      );
    }
    return k * heartbeatIntervalMs;
  }
  if (!Number.isInteger(expiryMs) || expiryMs < 1) {
    throw new InvalidConfigError(`expiryMs must be a positive integer number of milliseconds, got ${expiryMs}`);
  }
  if (expiryMs <= heartbeatIntervalMs) {
    throw new InvalidConfigError(
      `expiryMs (${expiryMs}) must be longer than heartbeatIntervalMs (${heartbeatIntervalMs}), or every broker ` +
        `expires between two heartbeats; ${DEFAULT_EXPIRY_HEARTBEATS} × the interval is the usual choice`,
    );
  }
  return expiryMs;
}

function isDetectorKind(value: string): value is DetectorKind {
  return (DETECTOR_KINDS as readonly string[]).includes(value);
}
