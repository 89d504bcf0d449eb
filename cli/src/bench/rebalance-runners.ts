/**
 * The processes of the rebalance benchmark, each run until SIGTERM (the orchestrator in bench/
 * decides when members leave and when the run ends):
 *
 * - steady-produce: sends `rate` messages per second spread evenly over the partitions (message
 *   i goes to partition i mod P), in small sends every TICK_MS, so every partition receives a
 *   message every few ms and a consumer's gap between two messages of one partition shows
 *   when it stalled.
 * - rebalance-member: a consumer-group member that logs, in process.hrtime µs, when each
 *   partition was assigned to it and released, its first message there, and the gaps between
 *   messages of a partition it holds. On SIGTERM it closes (commits, leaves the group) and
 *   prints what it saw.
 */
import { Sluice } from "../../../clients/src/index.js";
import { monotonicUs } from "./member-result.js";
import type { BenchConnection } from "./runners.js";

export interface RebalanceBenchOptions {
  nameservers: string[];
  /** TLS and credentials of its clients: the CLI's connection flags. @defaultValue plain text, anonymous */
  connection?: BenchConnection | undefined;
  topic: string;
  group: string;
  /** steady-produce: messages per second, over all partitions. */
  rate: number;
  /** steady-produce: stop after this many even without SIGTERM (a run that lost its orchestrator ends). */
  messages: number;
  size: number;
  /** rebalance-member: the member's session timeout. */
  sessionTimeoutMs: number;
}

/** A partition held by this member once, from its assignment to its release. */
export interface Episode {
  partition: number;
  assignedUs: number;
  /** null: still held when the member stopped. */
  releasedUs: number | null;
  firstMessageUs: number | null;
  lastMessageUs: number | null;
  messages: number;
  /** Gaps between consecutive messages of this episode of at least GAP_RECORD_MS (the last MAX_GAPS_KEPT). */
  gaps: { endUs: number; ms: number }[];
  maxGapMs: number;
}

/** `sluice bench rebalance-member --json`. */
export interface RebalanceMemberResult {
  kind: "rebalance-member";
  pid: number;
  memberId: string;
  messages: number;
  /** When SIGTERM arrived, and when close() (commit + leave) had finished. */
  signalUs: number;
  closedUs: number;
  episodes: Episode[];
}

/** `sluice bench steady-produce --json`. */
export interface SteadyProduceResult {
  kind: "steady-produce";
  messages: number;
  seconds: number;
  failedSends: number;
  /** Sends issued later than TICK_MS after their due time (the producer fell behind). */
  lateTicks: number;
}

const TICK_MS = 5;
/** Gaps shorter than this are the producer's own tick, not a stall: not recorded one by one. */
export const GAP_RECORD_MS = 20;
const MAX_GAPS_KEPT = 2_000;
/** How often a member looks at its assignment: the resolution of `assignedUs` and `releasedUs`. */
const ASSIGNMENT_POLL_MS = 5;

function untilSignal(onSignal: () => void): () => void {
  const handler = (): void => onSignal();
  process.once("SIGTERM", handler);
  process.once("SIGINT", handler);
  return () => {
    process.off("SIGTERM", handler);
    process.off("SIGINT", handler);
  };
}

export async function benchSteadyProduce(options: RebalanceBenchOptions): Promise<SteadyProduceResult> {
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: `bench-steady-${process.pid}`, ...options.connection });
  try {
    const route = await sluice.admin().describeTopic(options.topic);
    const partitions = route.partitions.length;
    const producer = sluice.producer({ lingerMs: 0 });
    const value = Buffer.alloc(options.size, 0x61);
    let stopped = false;
    const forget = untilSignal(() => (stopped = true));
    let sent = 0;
    let failedSends = 0;
    let lateTicks = 0;
    const inFlight = new Set<Promise<unknown>>();
    const started = performance.now();
    while (!stopped && sent < options.messages) {
      const now = performance.now();
      const due = Math.min(options.messages, Math.floor(((now - started) * options.rate) / 1000));
      if (due > sent) {
        const batch = [];
        for (; sent < due; sent++) batch.push({ value, partition: sent % partitions });
        const p: Promise<unknown> = producer.send(options.topic, batch).catch(() => failedSends++).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      const next = started + ((Math.floor(((performance.now() - started) / TICK_MS)) + 1) * TICK_MS);
      const wait = next - performance.now();
      if (wait < -TICK_MS) lateTicks++;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)));
    }
    forget();
    await Promise.all(inFlight);
    await producer.close();
    return { kind: "steady-produce", messages: sent, seconds: Number(((performance.now() - started) / 1000).toFixed(3)), failedSends, lateTicks };
  } finally {
    await sluice.close();
  }
}

export async function benchRebalanceMember(options: RebalanceBenchOptions): Promise<RebalanceMemberResult> {
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: `bench-rebalance-${process.pid}`, ...options.connection });
  let pollTimer: NodeJS.Timeout | undefined;
  try {
    const consumer = sluice.consumer({ group: options.group, fromBeginning: true, sessionTimeoutMs: options.sessionTimeoutMs });
    const messages = consumer.subscribe(options.topic);
    const episodes: Episode[] = [];
    const open = new Map<number, Episode>();
    const openEpisode = (partition: number, atUs: number): Episode => {
      const episode: Episode = { partition, assignedUs: atUs, releasedUs: null, firstMessageUs: null, lastMessageUs: null, messages: 0, gaps: [], maxGapMs: 0 };
      episodes.push(episode);
      open.set(partition, episode);
      return episode;
    };
    let memberId = "";
    const pollAssignment = (): void => {
      const now = monotonicUs();
      memberId = consumer.membership()?.memberId || memberId;
      const held = new Set(consumer.assignment());
      for (const partition of held) if (!open.has(partition)) openEpisode(partition, now);
      for (const [partition, episode] of open) {
        if (held.has(partition)) continue;
        episode.releasedUs = now;
        open.delete(partition);
      }
    };
    pollTimer = setInterval(pollAssignment, ASSIGNMENT_POLL_MS);
    let signalUs = 0;
    const forget = untilSignal(() => {
      signalUs = monotonicUs();
      void consumer.close();
    });
    let count = 0;
    for await (const message of messages) {
      const now = monotonicUs();
      count++;
      const episode = open.get(message.partition) ?? openEpisode(message.partition, now);
      episode.messages++;
      if (episode.lastMessageUs === null) {
        episode.firstMessageUs = now;
      } else {
        const gapMs = (now - episode.lastMessageUs) / 1000;
        if (gapMs > episode.maxGapMs) episode.maxGapMs = gapMs;
        if (gapMs >= GAP_RECORD_MS) {
          if (episode.gaps.length >= MAX_GAPS_KEPT) episode.gaps.shift();
          episode.gaps.push({ endUs: now, ms: Number(gapMs.toFixed(3)) });
        }
      }
      episode.lastMessageUs = now;
    }
    clearInterval(pollTimer);
    await consumer.close();
    forget();
    const closedUs = monotonicUs();
    for (const episode of episodes) episode.maxGapMs = Number(episode.maxGapMs.toFixed(3));
    return { kind: "rebalance-member", pid: process.pid, memberId, messages: count, signalUs, closedUs, episodes };
  } finally {
    clearInterval(pollTimer);
    await sluice.close();
  }
}
