/**
 * Member processes of the group benchmarks: several of them run at once, each as its own
 * `sluice bench … --json` process, and the orchestrator (bench/) adds their results up.
 *
 * - group-consume: a consumer-group member (`sluice.consumer({ group, fromBeginning: true })`)
 *   reads the partitions the group gives it up to the log ends seen at start. It waits until
 *   it holds its share of the partitions (partitions / membersExpected) before it takes the
 *   first message, so the figures are those of the spread group, not of a first member
 *   reading alone while the others start up.
 * - queue: a queue-group member (`sluice.queue({ group, topic, fromBeginning: true, prefetch })`)
 *   acks every job, keeping up to `acksInFlight` acks unanswered (acks are batched on the wire
 *   by the SDK; awaiting each one would measure one round trip per message). It stops once
 *   the group's ack window of every partition has passed the log ends seen at start.
 */
import { Sluice } from "../../../clients/src/index.js";
import type { Consumer } from "../../../clients/src/index.js";
import { InternalError, InvalidArgumentError, RequestTimedOutError, SluiceError } from "../../../common/src/errors.js";
import { memberResult, monotonicUs, type MemberResult } from "./member-result.js";
import type { BenchConnection } from "./runners.js";
import { LatencyRecorder, Progress } from "./stats.js";

export interface GroupBenchOptions {
  nameservers: string[];
  /** TLS and credentials of its clients: the CLI's connection flags. @defaultValue plain text, anonymous */
  connection?: BenchConnection | undefined;
  topic: string;
  group: string;
  /** group-consume: members the group will have; each starts once it holds partitions / membersExpected. */
  membersExpected: number;
  /** queue: jobs the broker may push ahead (the SDK's message credit). */
  prefetch: number;
  /** queue: acks sent and not yet answered, at most. */
  acksInFlight: number;
  /** How long to wait for the group to spread (group-consume) or for the first job (queue). */
  startTimeoutMs: number;
}

/** How often a member checks whether it is done when no message arrives. */
const DONE_POLL_MS = 20;
/** How often a queue member asks the coordinator how far the group's acks are. */
const QUEUE_PROGRESS_POLL_MS = 100;
const ASSIGNMENT_POLL_MS = 10;
/** Blocks of this many messages are timed (as `bench consume`): a clock read per message would cost more than it tells. */
const TIMED_BLOCK = 1024;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Log ends at start; the benchmark reads (or acks) up to them. */
async function endOffsets(sluice: Sluice, topic: string): Promise<Map<number, number>> {
  const ends = await sluice.admin().listOffsets(topic, "latest");
  if (ends.size === 0) throw new InvalidArgumentError(`topic ${topic} has no partitions`);
  return ends;
}

/**
 * Resolves once this member holds its share of the partitions and the whole group is stable
 * with `membersExpected` members: the members then start within a poll of each other instead
 * of one heartbeat round apart each (a partition moves only after its old owner released it).
 */
async function waitForSpreadGroup(sluice: Sluice, consumer: Consumer, partitions: number, membersExpected: number, timeoutMs: number): Promise<void> {
  const least = Math.max(1, Math.floor(partitions / membersExpected));
  const most = Math.ceil(partitions / membersExpected);
  const group = consumer.options.group?.group as string;
  const deadline = performance.now() + timeoutMs;
  let seen = "nothing yet";
  for (;;) {
    const membership = consumer.membership();
    const owned = membership?.assignment.length ?? 0;
    if (membership !== undefined && !membership.reconciling && owned >= least && owned <= most) {
      try {
        const described = await sluice.admin().describeGroup(group);
        const spread = described.members.every((m) => m.assignments.length >= least && m.assignments.length <= most);
        if (described.state === "stable" && described.members.length === membersExpected && spread) return;
        seen = `group ${described.state} with ${described.members.length} members`;
      } catch (err) {
        if (!(err instanceof SluiceError) || !err.retriable) throw err;
      }
    } else {
      seen = `this member holds ${owned} partitions`;
    }
    if (performance.now() > deadline) {
      throw new RequestTimedOutError(
        `group ${group} not spread over ${membersExpected} members after ${timeoutMs} ms (${seen}; ` +
          `expected ${least}–${most} of ${partitions} partitions each; are the other members running?)`,
      );
    }
    await sleep(ASSIGNMENT_POLL_MS);
  }
}

export async function benchGroupConsume(options: GroupBenchOptions): Promise<MemberResult> {
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: `bench-group-${process.pid}`, ...options.connection });
  let doneTimer: NodeJS.Timeout | undefined;
  try {
    const ends = await endOffsets(sluice, options.topic);
    const consumer = sluice.consumer({ group: options.group, fromBeginning: true });
    const subscribedAt = performance.now();
    const messages = consumer.subscribe(options.topic);
    await waitForSpreadGroup(sluice, consumer, ends.size, options.membersExpected, options.startTimeoutMs);
    // Done: every partition held now is read up to its end. Partitions handed over by a member
    // that finished and left arrive at their committed end, so they count as read at once.
    const done = (): boolean => {
      const membership = consumer.membership();
      if (membership === undefined || membership.reconciling) return false;
      return consumer.assignment().every((p) => consumer.position(p) >= (ends.get(p) ?? 0));
    };
    let finished = false;
    doneTimer = setInterval(() => {
      if (!finished && done()) {
        finished = true;
        void consumer.close();
      }
    }, DONE_POLL_MS);
    const latency = new LatencyRecorder();
    const progress = new Progress("group-consume", [...ends.values()].reduce((a, b) => a + b, 0));
    // Arrays indexed by partition: the loop below runs millions of times a second.
    const endOf: number[] = [];
    for (const [partition, end] of ends) endOf[partition] = end;
    const perPartition: number[] = endOf.map(() => 0);
    let count = 0;
    let bytes = 0;
    let firstUs = 0;
    let lastUs = 0;
    let startupMs = 0;
    let blockStart = 0;
    for await (const message of messages) {
      if (count === 0) {
        firstUs = monotonicUs();
        startupMs = performance.now() - subscribedAt;
        blockStart = performance.now();
      }
      count++;
      bytes += message.value?.length ?? 0;
      perPartition[message.partition]!++;
      if (count % TIMED_BLOCK === 0) {
        const now = performance.now();
        latency.record(now - blockStart);
        blockStart = now;
        progress.update(count);
      }
      if (message.offset + 1 >= endOf[message.partition]!) {
        // The last message of a partition: possibly the last of this member.
        lastUs = monotonicUs();
        if (done()) {
          finished = true;
          break;
        }
      }
    }
    progress.done();
    await consumer.close();
    const read = new Map(perPartition.flatMap((n, partition) => (n > 0 ? [[partition, n] as const] : [])));
    return memberResult("group-consume", { messages: count, bytes, firstUs, lastUs, startupMs, failedAcks: 0 }, read, latency);
  } finally {
    clearInterval(doneTimer);
    await sluice.close();
  }
}

export async function benchQueue(options: GroupBenchOptions): Promise<MemberResult> {
  const sluice = new Sluice({ nameservers: options.nameservers, clientId: `bench-queue-${process.pid}`, ...options.connection });
  let pollTimer: NodeJS.Timeout | undefined;
  let startTimer: NodeJS.Timeout | undefined;
  try {
    const ends = await endOffsets(sluice, options.topic);
    const total = [...ends.values()].reduce((a, b) => a + b, 0);
    const queue = sluice.queue({ group: options.group, topic: options.topic, fromBeginning: true, prefetch: options.prefetch });
    const subscribedAt = performance.now();
    const latency = new LatencyRecorder();
    const progress = new Progress("queue", total);
    const perPartition = new Map<number, number>();
    let received = 0;
    let acked = 0;
    let failedAcks = 0;
    let firstAckError: unknown;
    let bytes = 0;
    let firstUs = 0;
    let lastUs = 0;
    let startupMs = 0;
    let inFlight = 0;
    let groupDone = false;
    let timedOut = false;
    // Waiting for acks resumes at half the limit: the loop then takes jobs in bursts that the SDK sends as few requests.
    const resumeAt = Math.max(1, Math.floor(options.acksInFlight / 2));
    let resume: (() => void) | undefined;
    let idle: (() => void) | undefined;
    const settled = (): void => {
      inFlight--;
      if (resume !== undefined && inFlight <= resumeAt) {
        const wake = resume;
        resume = undefined;
        wake();
      }
      if (idle !== undefined && inFlight === 0) idle();
    };
    const ackTimed = (job: { ack(): Promise<void> }, startedMs: number): void => {
      job.ack().then(
        () => {
          acked++;
          latency.record(performance.now() - startedMs);
          if (inFlight === 1) lastUs = monotonicUs();
          settled();
        },
        (err: unknown) => {
          failedAcks++;
          firstAckError ??= err;
          settled();
        },
      );
    };
    // The group is done once every partition's ack window starts at (or past) the end seen at start.
    const checkGroup = async (): Promise<void> => {
      try {
        const described = await sluice.admin().describeGroup(options.group);
        const windows = described.queue.filter((w) => w.topic === options.topic);
        groupDone = windows.length === ends.size && windows.every((w) => w.startOffset >= (ends.get(w.partition) ?? 0));
      } catch (err) {
        // Before the first stream opens the group does not exist yet.
        if (!(err instanceof SluiceError) || (err.code !== "UNKNOWN_GROUP" && !err.retriable)) throw err;
      }
      if (groupDone) {
        if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
        await queue.close();
      } else {
        pollTimer = setTimeout(() => void checkGroup().catch(() => void queue.close()), QUEUE_PROGRESS_POLL_MS);
      }
    };
    pollTimer = setTimeout(() => void checkGroup().catch(() => void queue.close()), QUEUE_PROGRESS_POLL_MS);
    startTimer = setTimeout(() => {
      if (received === 0 && !groupDone) {
        timedOut = true;
        void queue.close();
      }
    }, options.startTimeoutMs);
    for await (const job of queue) {
      if (received === 0) {
        firstUs = monotonicUs();
        startupMs = performance.now() - subscribedAt;
      }
      received++;
      bytes += job.value?.length ?? 0;
      perPartition.set(job.partition, (perPartition.get(job.partition) ?? 0) + 1);
      inFlight++;
      ackTimed(job, performance.now());
      if ((received & 1023) === 0) progress.update(received);
      if (inFlight >= options.acksInFlight) await new Promise<void>((resolve) => (resume = resolve));
    }
    progress.done();
    if (timedOut) throw new RequestTimedOutError(`no job from queue group ${options.group} within ${options.startTimeoutMs} ms`);
    if (!groupDone) throw new InternalError(`the queue consumer of group ${options.group} ended before the group acked every message`);
    if (failedAcks > 0) process.stderr.write(`bench queue: ${failedAcks} acks failed; the first: ${String(firstAckError)}\n`);
    return memberResult("queue", { messages: acked, bytes, firstUs, lastUs, startupMs, failedAcks }, perPartition, latency);
  } finally {
    clearTimeout(pollTimer);
    clearTimeout(startTimer);
    await sluice.close();
  }
}
