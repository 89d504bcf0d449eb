/**
 * `sluice consume TOPIC`: prints message values, one per line (or, with --json, one
 * document `{"messages": [...]}` at the end).
 *
 * - Without --group: an ephemeral reader (no offsets kept), from the end of each partition
 *   or from the beginning with --from-beginning.
 * - --group G: a member of consumer group G; it reads the partitions the group assigns it,
 *   from the group's committed offsets, and commits the offset of the last printed
 *   message (each line is written out before the next message is taken, so a crash never
 *   commits past what reached stdout). On SIGTERM/SIGINT it flushes, commits, leaves.
 * - --group G --queue: a member of queue group G; each message is acked once printed.
 *
 * `--until-end` stops at the end offsets seen at start (a group member: of the partitions
 * assigned to it); `--max-messages` stops after N; `--timeout-ms` gives up (exit 1) when
 * the goal is not reached in time.
 */
import type { Command } from "commander";
import { InvalidArgumentError, RequestTimedOutError, toSluiceError } from "../../../common/src/errors.js";
import type { Consumer, ConsumerMessage, Sluice } from "../../../clients/src/index.js";
import { connect } from "../client.js";
import { action, parseInteger, StdoutWriter, type GlobalOptions } from "../output.js";

interface ConsumeFlags {
  group?: string;
  queue?: boolean;
  fromBeginning?: boolean;
  maxMessages?: number;
  untilEnd?: boolean;
  timeoutMs?: number;
  printOffsets?: boolean;
}

/** How often a group member with --until-end checks whether its partitions are all read. */
const UNTIL_END_CHECK_MS = 100;
/** Acks a queue member leaves unanswered before it waits for the oldest. */
const MAX_PENDING_ACKS = 1_000;

const STOPPED = Symbol("stopped");

/** Prints messages as lines, or collects them for one JSON document. */
class MessagePrinter {
  readonly collected: unknown[] | undefined;
  count = 0;

  constructor(
    json: boolean,
    private readonly printOffsets: boolean,
    private readonly out: StdoutWriter,
    /** Write each line out at once, before the next message is taken (group members). */
    private readonly flushEachLine: boolean,
  ) {
    this.collected = json ? [] : undefined;
  }

  get closed(): boolean {
    return this.out.isClosed;
  }

  async print(message: ConsumerMessage, deliveryCount?: number): Promise<void> {
    this.count++;
    const value = message.value === null ? "" : message.value.toString("utf8");
    if (this.collected !== undefined) {
      this.collected.push({
        partition: message.partition,
        offset: message.offset,
        timestamp: message.timestamp,
        key: message.key === null ? null : message.key.toString("utf8"),
        value,
        headers: Object.fromEntries(Object.entries(message.headers).map(([k, v]) => [k, v.toString("utf8")])),
        ...(deliveryCount === undefined ? {} : { deliveryCount }),
      });
      return;
    }
    await this.out.line(this.printOffsets ? `${message.partition}:${message.offset}\t${value}` : value);
    if (this.flushEachLine) await this.out.flush();
  }

  /** Writes out buffered text lines. */
  flush(): Promise<void> {
    return this.out.flush();
  }

  /** Writes the JSON document (with --json), once. */
  writeDocument(): void {
    if (this.collected === undefined || this.documentWritten) return;
    this.documentWritten = true;
    process.stdout.write(JSON.stringify({ messages: this.collected }) + "\n");
  }

  private documentWritten = false;
}

/** What ends a run early: --timeout-ms, SIGTERM/SIGINT, or a goal noticed outside the loop. */
class RunControl {
  timedOut = false;
  signalled = false;
  readonly stopped: Promise<typeof STOPPED>;
  private resolveStopped!: (value: typeof STOPPED) => void;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onSignal = (): void => {
    this.signalled = true;
    this.stop();
  };
  /** What stopping does besides resolving `stopped` (close a consumer to end a pending wait). */
  onStop: () => void = () => undefined;

  constructor(timeoutMs: number | undefined) {
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
    this.timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            this.timedOut = true;
            this.stop();
          }, timeoutMs);
    process.once("SIGTERM", this.onSignal);
    process.once("SIGINT", this.onSignal);
  }

  stop(): void {
    this.resolveStopped(STOPPED);
    this.onStop();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    process.off("SIGTERM", this.onSignal);
    process.off("SIGINT", this.onSignal);
  }
}

export function consumeCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command("consume <topic>")
    .description("print messages, one value per line")
    .option("--group <group>", "consume as a member of this consumer group (offsets are committed)")
    .option("--queue", "with --group: queue semantics, each message acked once printed")
    .option("--from-beginning", "start at the earliest offset instead of the end (a group: when it has no committed offset)")
    .option("--max-messages <n>", "stop after N messages", parseInteger("max-messages", 1))
    .option("--until-end", "stop after the end offsets seen at start")
    .option("--timeout-ms <ms>", "give up (exit 1) if not done within this time", parseInteger("timeout-ms", 1))
    .option("--print-offsets", "prefix each value with partition:offset and a tab")
    .action(
      action(async (topic: string, flags: ConsumeFlags) => {
        if (flags.queue && flags.group === undefined) {
          throw new InvalidArgumentError(`--queue needs --group: the queue group whose members share the messages`);
        }
        if (flags.queue && flags.untilEnd) {
          throw new InvalidArgumentError(
            `--until-end does not apply to --queue (a queue member gets whichever messages the group leases it); use --max-messages or --timeout-ms`,
          );
        }
        const g = globals();
        const sluice = connect(g);
        const printer = new MessagePrinter(g.json, flags.printOffsets === true, new StdoutWriter(), flags.group !== undefined);
        const control = new RunControl(flags.timeoutMs);
        const run: RunState = { flags, printer, control, reachedEnd: false };
        try {
          if (flags.queue) await consumeQueue(sluice, topic, run);
          else if (flags.group !== undefined) await consumeGroup(sluice, topic, flags.group, run);
          else await consumeEphemeral(sluice, topic, run);
        } finally {
          control.dispose();
          await printer.flush();
          await sluice.close();
        }
        const failure = runFailure(run);
        if (failure !== undefined) throw failure;
        printer.writeDocument();
        if (control.signalled) process.stderr.write(`sluice: stopped after ${printer.count} messages\n`);
        return 0;
      }),
    );
}

interface RunState {
  readonly flags: ConsumeFlags;
  readonly printer: MessagePrinter;
  readonly control: RunControl;
  /** --until-end: every partition read was read to its end seen at start. */
  reachedEnd: boolean;
}

/** The error the run ends with: the time ran out before the goal was reached. */
function runFailure({ flags, printer, control, reachedEnd }: RunState): RequestTimedOutError | undefined {
  const goalMissed = flags.maxMessages !== undefined ? printer.count < flags.maxMessages : flags.untilEnd === true && !reachedEnd;
  if (!control.timedOut || !goalMissed) return undefined;
  return new RequestTimedOutError(`timed out after ${flags.timeoutMs} ms with ${printer.count} message${printer.count === 1 ? "" : "s"} printed`);
}

function maxReached(flags: ConsumeFlags, printer: MessagePrinter): boolean {
  return (flags.maxMessages !== undefined && printer.count >= flags.maxMessages) || printer.closed;
}

/** Reads every partition without a group. */
async function consumeEphemeral(sluice: Sluice, topic: string, run: RunState): Promise<void> {
  const { flags, printer, control } = run;
  const consumer = sluice.consumer({ fromBeginning: flags.fromBeginning === true });
  control.onStop = () => void consumer.close();
  try {
    // End offsets at start, per partition: --until-end stops once each is reached.
    const remaining = flags.untilEnd ? await consumer.endOffsets(topic) : undefined;
    if (remaining) {
      for (const [partition, end] of remaining) if (end <= 0) remaining.delete(partition);
    }
    const atEnd = (): boolean => (run.reachedEnd = remaining !== undefined && remaining.size === 0);
    if (atEnd() || maxReached(flags, printer)) return;
    for await (const message of consumer.subscribe(topic)) {
      if (remaining) {
        const end = remaining.get(message.partition);
        if (end === undefined || message.offset >= end) {
          if (remaining.size === 0) break;
          continue;
        }
        if (message.offset + 1 >= end) remaining.delete(message.partition);
      }
      await printer.print(message);
      if (maxReached(flags, printer) || atEnd()) break;
    }
  } finally {
    await consumer.close().catch(() => undefined);
  }
}

/**
 * A member of consumer group `group`. Text output: lines are written out one by one and
 * the consumer's auto-commit commits what was taken, on its timer, when partitions move,
 * and on close. With --json nothing is printed before the end, so nothing is committed
 * before: the offsets of the printed messages are committed once the document is out.
 */
async function consumeGroup(sluice: Sluice, topic: string, group: string, run: RunState): Promise<void> {
  const { flags, printer, control } = run;
  const json = printer.collected !== undefined;
  const consumer = sluice.consumer({ group, fromBeginning: flags.fromBeginning === true, autoCommit: !json });
  // Text: closing ends a pending wait at once, so nothing is taken after the stop.
  if (!json) control.onStop = () => void consumer.close();
  const printedNext = new Map<number, number>();
  let checker: NodeJS.Timeout | undefined;
  try {
    const ends = flags.untilEnd ? await consumer.endOffsets(topic) : undefined;
    const iterator = consumer.subscribe(topic);
    if (ends !== undefined) {
      // Checked on a timer: a member whose partitions have nothing left yields nothing.
      let checking = false;
      checker = setInterval(() => {
        if (checking) return;
        checking = true;
        void memberAtEnd(sluice, consumer, ends)
          .then((done) => {
            if (!done || run.reachedEnd) return;
            run.reachedEnd = true;
            control.stop();
          }, () => undefined)
          .finally(() => (checking = false));
      }, UNTIL_END_CHECK_MS);
    }
    let stopped = false;
    for (;;) {
      if (maxReached(flags, printer)) break;
      const result = await Promise.race([iterator.next(), control.stopped]);
      if (result === STOPPED) stopped = true;
      if (result === STOPPED || result.done) break;
      const message = result.value;
      if (ends !== undefined && message.offset >= (ends.get(message.partition) ?? 0)) {
        // Past the end seen at start: not printed, so not committed either.
        consumer.pause(message.partition);
        consumer.seek(message.partition, message.offset);
        continue;
      }
      await printer.print(message);
      printedNext.set(message.partition, message.offset + 1);
    }
    // With --json the document goes out now, then its offsets are committed (not at all
    // when the run failed: nothing was printed).
    if (json && runFailure(run) === undefined) {
      printer.writeDocument();
      await commitPrinted(consumer, printedNext);
    } else if (!json && !stopped) {
      // Leaving commits only what was followed by another read: the last printed message
      // (--max-messages, --until-end) is committed here. After a stop, close() has done it.
      await commitPrinted(consumer, printedNext);
    }
  } finally {
    if (checker !== undefined) clearInterval(checker);
    await consumer.close().catch((err: unknown) => process.stderr.write(`sluice: leaving group "${group}" failed: ${toSluiceError(err).message}\n`));
  }
}

/**
 * --until-end for a member: every partition it reads is read to its end, and the group is
 * stable with this member owning exactly those (an empty assignment is final only then:
 * while the coordinator is still assigning, every member's assignment is empty).
 */
async function memberAtEnd(sluice: Sluice, consumer: Consumer, ends: ReadonlyMap<number, number>): Promise<boolean> {
  const readToEnd = (): boolean => {
    const membership = consumer.membership();
    if (membership === undefined || membership.reconciling) return false;
    return consumer.assignment().every((partition) => consumer.position(partition) >= (ends.get(partition) ?? 0));
  };
  if (!readToEnd()) return false;
  const membership = consumer.membership()!;
  const group = await sluice.admin().describeGroup(membership.group);
  const self = group.members.find((m) => m.memberId === membership.memberId);
  const owned = new Set(consumer.assignment());
  return (
    group.state === "stable" &&
    self !== undefined &&
    self.assignments.length === owned.size &&
    self.assignments.every((a) => owned.has(a.partition)) &&
    readToEnd()
  );
}

/** Commits the offsets after the printed messages of the partitions the member still owns. */
async function commitPrinted(consumer: Consumer, printedNext: ReadonlyMap<number, number>): Promise<void> {
  const owned = new Set(consumer.assignment());
  const offsets = Object.fromEntries([...printedNext].filter(([partition]) => owned.has(partition)));
  try {
    await consumer.commit(offsets);
  } catch (err) {
    process.stderr.write(`sluice: committing the printed offsets failed (they will be read again): ${toSluiceError(err).message}\n`);
  }
}

/** A member of queue group G: prints each job, then acks it (with --json: once the document is out). */
async function consumeQueue(sluice: Sluice, topic: string, run: RunState): Promise<void> {
  const { flags, printer, control } = run;
  const json = printer.collected !== undefined;
  const queue = sluice.queue({ group: flags.group!, topic, fromBeginning: flags.fromBeginning === true });
  if (!json) control.onStop = () => void queue.close();
  const pending = new Set<Promise<void>>();
  const printedJobs: { ack(): Promise<void> }[] = [];
  let failedAcks = 0;
  const ack = (job: { ack(): Promise<void> }): void => {
    const settled: Promise<void> = job.ack().then(
      () => void pending.delete(settled),
      () => {
        failedAcks++;
        pending.delete(settled);
      },
    );
    pending.add(settled);
  };
  try {
    for (;;) {
      if (maxReached(flags, printer)) break;
      const next = queue.next();
      const result = await Promise.race([next, control.stopped]);
      if (result === STOPPED) {
        // A job the stop overtook is handed back now, not when its lease runs out.
        void next.then((late) => (late.done ? undefined : late.value.nack()), () => undefined).catch(() => undefined);
        break;
      }
      if (result.done) break;
      const job = result.value;
      await printer.print(job, job.deliveryCount);
      if (json) printedJobs.push(job);
      else ack(job);
      if (pending.size >= MAX_PENDING_ACKS) await Promise.race(pending);
    }
    if (json && runFailure(run) === undefined) {
      printer.writeDocument();
      for (const job of printedJobs) ack(job);
    }
    await Promise.all(pending);
  } finally {
    await queue.close();
  }
  if (failedAcks > 0) {
    process.stderr.write(`sluice: ${failedAcks} ack${failedAcks === 1 ? "" : "s"} failed; those messages will be delivered again\n`);
  }
}
