/**
 * Liveness over a shared registry (etcd): every name server judges every broker from its
 * record alone, whichever name server the broker talks to.
 *
 *  - A broker holding its own etcd lease (`leaseId`) is alive while its record exists: the
 *    record vanishes with the lease, so etcd itself is the failure detector, and a name server
 *    dying (nobody refreshes `lastHeartbeatMs` any more) never takes a live broker off the
 *    routes. A stale `lastHeartbeatMs` only makes it suspect, for `sluice cluster`.
 *  - A broker without a lease (started without `--etcd`) is judged by `lastHeartbeatMs`, which
 *    the name servers it heartbeats refresh about once per interval: suspect after
 *    `SUSPECT_AFTER_INTERVALS`, dead (and removed by whichever name server sweeps first) after
 *    the expiry window — the same window as the in-memory mode's fixed detector.
 *
 * `lastHeartbeatMs` is a name server's wall clock, so name servers' clocks must roughly agree
 * (NTP); a skew shows up as a longer or shorter expiry of leaseless brokers only.
 */
import type { BrokerRecord } from "../registry/store.js";
import type { BrokerState } from "./detector.js";

/**
 * The record is refreshed once per interval at best, so a fresh one may already be one
 * interval old: two intervals of age is the first sign of trouble.
 */
export const SUSPECT_AFTER_INTERVALS = 2;

export interface RecordLivenessSettings {
  heartbeatIntervalMs: number;
  expiryMs: number;
}

export interface RecordLiveness {
  state: BrokerState;
  heartbeatAgeMs: number;
  /** Intervals of silence (age / interval), like the fixed detector's suspicion. */
  suspicion: number;
}

export function judgeRecord(record: BrokerRecord, nowMs: number, settings: RecordLivenessSettings): RecordLiveness {
  const heardAtMs = record.lastHeartbeatMs ?? record.registeredAtMs;
  const heartbeatAgeMs = Math.max(0, nowMs - heardAtMs);
  const suspicion = heartbeatAgeMs / settings.heartbeatIntervalMs;
  const suspectAfterMs = Math.min(settings.heartbeatIntervalMs * SUSPECT_AFTER_INTERVALS, settings.expiryMs);
  let state: BrokerState = heartbeatAgeMs > suspectAfterMs ? "suspect" : "alive";
  if (record.leaseId === undefined && heartbeatAgeMs > settings.expiryMs) state = "dead";
  return { state, heartbeatAgeMs, suspicion };
}
