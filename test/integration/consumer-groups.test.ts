/**
 * Consumer groups (pub/sub) end to end: real `sluice dev`, members as separate processes
 * (test/integration/fixtures/group-consumer.ts, or the CLI), partitions moving as members
 * join, leave, crash and restart, while every produced message is handled at least once.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { REPO_ROOT, SLUICE_BIN, runCli, startDev, type Cluster } from "../helpers/processes.js";

const FIXTURE = join(REPO_ROOT, "test", "integration", "fixtures", "group-consumer.ts");
const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) child.kill("SIGKILL");
});
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

/** A process whose stdout lines are collected as they come. */
class LineProcess {
  readonly lines: string[] = [];
  stderr = "";
  readonly exited: Promise<number | null>;
  private partial = "";
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    children.add(child);
    child.stdout!.on("data", (chunk: Buffer) => {
      this.partial += chunk.toString();
      const parts = this.partial.split("\n");
      this.partial = parts.pop()!;
      for (const line of parts) this.onLine(line);
      for (const listener of this.listeners) listener();
    });
    child.stderr!.on("data", (chunk: Buffer) => (this.stderr += chunk.toString()));
    // "close": stdout is drained, so every line the process wrote has been seen.
    this.exited = new Promise((resolve) =>
      child.once("close", (code) => {
        children.delete(child);
        resolve(code);
      }),
    );
  }

  protected onLine(line: string): void {
    this.lines.push(line);
  }

  async waitFor(what: string, condition: () => boolean, timeoutMs = 20_000): Promise<void> {
    if (condition()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        clearInterval(poll);
        reject(new Error(`${this.name}: timed out waiting for ${what}; stderr:\n${this.stderr.slice(-2000)}`));
      }, timeoutMs);
      const check = (): void => {
        if (!condition()) return;
        clearTimeout(timer);
        clearInterval(poll);
        this.listeners.delete(check);
        resolve();
      };
      // Conditions may depend on other processes too: look now and then, not only on output.
      const poll = setInterval(check, 50);
      this.listeners.add(check);
    });
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** A group member (the fixture): its assignment history and the messages it handled. */
class Member extends LineProcess {
  readonly assignments: number[][] = [];
  readonly handled: [number, number][] = [];

  static start(name: string, settings: Record<string, unknown>): Member {
    const child = spawn(process.execPath, ["--import", "tsx", FIXTURE, JSON.stringify(settings)], {
      cwd: REPO_ROOT,
      env: { ...process.env, SLUICE_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    return new Member(name, child);
  }

  get assignment(): number[] {
    return this.assignments.at(-1) ?? [];
  }

  protected override onLine(line: string): void {
    super.onLine(line);
    if (line.startsWith("A ")) this.assignments.push(line.slice(2) === "" ? [] : line.slice(2).split(",").map(Number));
    else if (line.startsWith("M ")) {
      const [, partition, offset] = line.split(" ");
      this.handled.push([Number(partition), Number(offset)]);
    }
  }
}

/** Every assignment in the history is a subset of the one before: partitions only left, none came back. */
function onlyShrank(member: Member, from = 0): boolean {
  const history = member.assignments.slice(from).filter((a) => a.length > 0);
  return history.every((a, i) => i === 0 || a.every((p) => history[i - 1]!.includes(p)));
}

const key = (partition: number, offset: number): string => `${partition}:${offset}`;

/** What was produced (partition:offset) and what the members handled. */
class Ledger {
  readonly produced = new Set<string>();
  private background: Promise<void> | undefined;
  private producing = false;

  constructor(
    private readonly sluice: Sluice,
    readonly topic: string,
    private readonly partitions: number,
  ) {}

  async produce(count: number): Promise<void> {
    const producer = this.sluice.producer({ lingerMs: 2 });
    const base = this.produced.size;
    const messages = Array.from({ length: count }, (_, i) => ({ partition: (base + i) % this.partitions, value: `m${base + i}` }));
    for (const meta of await producer.send(this.topic, messages)) this.produced.add(key(meta.partition, meta.offset));
    await producer.close();
  }

  /** Produces `perTick` messages every 50 ms until stopProducing(). */
  startProducing(perTick = 10): void {
    this.producing = true;
    this.background = (async () => {
      while (this.producing) {
        await this.produce(perTick);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
  }

  async stopProducing(): Promise<void> {
    this.producing = false;
    await this.background;
  }

  /** Unique messages handled by `members`, and how many were handled more than once. */
  tally(members: Member[]): { unique: Set<string>; duplicates: number } {
    const unique = new Set<string>();
    let total = 0;
    for (const m of members) {
      for (const [p, o] of m.handled) {
        unique.add(key(p, o));
        total++;
      }
    }
    return { unique, duplicates: total - unique.size };
  }

  missing(members: Member[]): string[] {
    const { unique } = this.tally(members);
    return [...this.produced].filter((k) => !unique.has(k));
  }

  async allHandled(members: Member[], timeoutMs = 20_000): Promise<void> {
    await members[0]!.waitFor(`every produced message handled (${this.produced.size})`, () => this.missing(members).length === 0, timeoutMs);
  }
}

describe("consumer groups", { timeout: 180_000 }, () => {
  let cluster: Cluster;
  let sluice: Sluice;

  before(async () => {
    cluster = await startDev();
    sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "groups-test" });
  });
  after(async () => {
    await sluice?.close();
    await cluster?.process.stop();
  });

  async function topic(name: string, partitions: number): Promise<Ledger> {
    await sluice.admin().createTopic(name, { partitions });
    return new Ledger(sluice, name, partitions);
  }

  function member(name: string, ledger: Ledger, group: string, extra: Record<string, unknown> = {}): Member {
    return Member.start(name, { nameserver: cluster.nameserver, topic: ledger.topic, group, ...extra });
  }

  /** The coordinator's view: stable, and each member's target assignment. */
  async function describeAssignments(group: string): Promise<{ state: string; assignments: number[][] }> {
    const description = await sluice.admin().describeGroup(group);
    return {
      state: description.state,
      assignments: description.members.map((m) => m.assignments.map((a) => a.partition).sort((x, y) => x - y)),
    };
  }

  it("members joining one by one: 6 → 3+3 → 2+2+2, only the partitions that must move do; SIGTERM hands a member's partitions over with nothing skipped", async (t) => {
    const ledger = await topic("join", 6);
    await ledger.produce(600);
    const a = member("A", ledger, "join-g");
    await a.waitFor("A owns all 6", () => a.assignment.length === 6);
    const b = member("B", ledger, "join-g");
    await b.waitFor("3 + 3", () => a.assignment.length === 3 && b.assignment.length === 3);
    const c = member("C", ledger, "join-g");
    await c.waitFor("2 + 2 + 2", () => [a, b, c].every((m) => m.assignment.length === 2));
    assert.deepEqual([...a.assignment, ...b.assignment, ...c.assignment].sort(), [0, 1, 2, 3, 4, 5]);
    assert.ok(onlyShrank(a) && onlyShrank(b), `incremental: A ${JSON.stringify(a.assignments)}, B ${JSON.stringify(b.assignments)}`);
    const view = await describeAssignments("join-g");
    assert.equal(view.state, "stable");
    assert.deepEqual(view.assignments.map((x) => x.length), [2, 2, 2]);

    await ledger.produce(300);
    await ledger.allHandled([a, b, c]);
    const before = { a: a.assignment, c: c.assignment, history: a.assignments.length };

    assert.equal(await b.stop("SIGTERM"), 0, "a member stops cleanly on SIGTERM");
    assert.ok(b.lines.includes("CLOSED"));
    await a.waitFor("A and C take B's partitions", () => a.assignment.length === 3 && c.assignment.length === 3);
    assert.ok(before.a.every((p) => a.assignment.includes(p)) && before.c.every((p) => c.assignment.includes(p)), "A and C keep theirs");
    await ledger.produce(300);
    await ledger.allHandled([a, b, c]);
    const { duplicates } = ledger.tally([a, b, c]);
    t.diagnostic(`${ledger.produced.size} produced, ${duplicates} handled twice`);
    // Members commit what they finished when a partition moves or they leave: no re-reads expected.
    assert.ok(duplicates <= 6, `at most one re-read per moved partition, got ${duplicates}`);
    await Promise.all([a.stop(), c.stop()]);
  });

  it("a crashed member (SIGKILL): its partitions move within the session timeout and resume from its last commit, nothing skipped", async (t) => {
    const ledger = await topic("crash", 6);
    await ledger.produce(1200);
    const settings = { sessionTimeoutMs: 3_000, autoCommitIntervalMs: 200 };
    const [a, b, c] = ["A", "B", "C"].map((name) => member(name, ledger, "crash-g", settings)) as [Member, Member, Member];
    await a.waitFor("2 + 2 + 2", () => [a, b, c].every((m) => m.assignment.length === 2));
    await ledger.allHandled([a, b, c]);
    ledger.startProducing(10);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const bPartitions = b.assignment;
    const killedAt = Date.now();
    await b.stop("SIGKILL");
    await a.waitFor("A and C own all 6", () => a.assignment.length === 3 && c.assignment.length === 3, 15_000);
    const movedAfterMs = Date.now() - killedAt;
    // Expiry takes the session timeout; the survivors learn at their next heartbeat (≤ 1 s).
    assert.ok(movedAfterMs < 3_000 + 3_000, `partitions moved ${movedAfterMs} ms after the crash (session timeout 3000 ms)`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await ledger.stopProducing();
    await ledger.allHandled([a, b, c]);
    const reread: number[] = [];
    for (const partition of bPartitions) {
      const lastByB = Math.max(...b.handled.filter(([p]) => p === partition).map(([, o]) => o));
      const firstAfter = Math.min(...[...a.handled, ...c.handled].filter(([p]) => p === partition).map(([, o]) => o));
      assert.ok(firstAfter <= lastByB + 1, `partition ${partition}: resumed at ${firstAfter}, B had handled up to ${lastByB}`);
      // B committed every 200 ms: the new owner re-reads a little, not the whole partition (> 200 messages).
      assert.ok(lastByB + 1 - firstAfter <= 60, `partition ${partition}: re-read ${lastByB + 1 - firstAfter} messages after the crash`);
      reread.push(lastByB + 1 - firstAfter);
    }
    t.diagnostic(`partitions moved ${movedAfterMs} ms after SIGKILL; re-read per moved partition: ${reread.join(", ")}`);
    await Promise.all([a.stop(), c.stop()]);
  });

  it("rolling restart of every member while producing: every message handled, few handled twice", async (t) => {
    const ledger = await topic("rolling", 6);
    await ledger.produce(300);
    const all: Member[] = [];
    let live = ["A", "B", "C"].map((name) => member(name, ledger, "rolling-g"));
    all.push(...live);
    await live[0]!.waitFor("2 + 2 + 2", () => live.every((m) => m.assignment.length === 2));
    ledger.startProducing(10);
    for (let i = 0; i < 3; i++) {
      const old = live[i]!;
      assert.equal(await old.stop("SIGTERM"), 0);
      const fresh = member(`${old.name}'`, ledger, "rolling-g");
      all.push(fresh);
      live = live.map((m) => (m === old ? fresh : m));
      await fresh.waitFor("the group settles with the new member", () => live.every((m) => m.assignment.length === 2), 20_000);
    }
    await ledger.stopProducing();
    await ledger.allHandled(all);
    const { duplicates } = ledger.tally(all);
    t.diagnostic(`${ledger.produced.size} produced, ${duplicates} handled twice`);
    assert.ok(duplicates <= 30, `duplicates bounded: ${duplicates}`);
    await Promise.all(live.map((m) => m.stop()));
  });

  it("static membership: a member restarted with its instance id within the session timeout gets its partitions back, nothing else moves", async () => {
    const ledger = await topic("static", 6);
    const settings = (id: string) => ({ groupInstanceId: id, sessionTimeoutMs: 8_000 });
    const a = member("A", ledger, "static-g", settings("a"));
    const b = member("B", ledger, "static-g", settings("b"));
    const c = member("C", ledger, "static-g", settings("c"));
    await a.waitFor("2 + 2 + 2", () => [a, b, c].every((m) => m.assignment.length === 2));
    const [historyA, historyC, partitionsB] = [a.assignments.length, c.assignments.length, b.assignment];
    assert.equal(await b.stop("SIGTERM"), 0);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    assert.equal(a.assignments.length, historyA, "A does not take B's partitions while B may come back");
    const b2 = member("B'", ledger, "static-g", settings("b"));
    await b2.waitFor("B' owns B's partitions", () => b2.assignment.length === 2);
    assert.deepEqual(b2.assignment, partitionsB);
    assert.equal(a.assignments.length, historyA, "A's partitions never moved");
    assert.equal(c.assignments.length, historyC, "C's partitions never moved");
    await ledger.produce(120);
    await ledger.allHandled([a, b2, c]);
    await Promise.all([a.stop(), b2.stop(), c.stop()]);
  });

  it("two groups on one topic each get every message; members of one group share them", async () => {
    const ledger = await topic("fanout", 3);
    await ledger.produce(300);
    const args = (group: string) => ["consume", "fanout", "--group", group, "--from-beginning", "--until-end", "--print-offsets"];
    const [x, y1, y2] = await Promise.all([
      runCli(args("fanout-x"), { nameserver: cluster.nameserver, timeoutMs: 30_000 }),
      runCli(args("fanout-y"), { nameserver: cluster.nameserver, timeoutMs: 30_000 }),
      runCli(args("fanout-y"), { nameserver: cluster.nameserver, timeoutMs: 30_000 }),
    ]);
    for (const run of [x, y1, y2]) assert.equal(run.code, 0, run.stderr);
    const offsets = (stdout: string) => stdout.split("\n").filter(Boolean).map((line) => line.split("\t")[0]!);
    assert.deepEqual(new Set(offsets(x.stdout)), ledger.produced, "group x got every message");
    assert.equal(offsets(x.stdout).length, 300);
    const y = [...offsets(y1.stdout), ...offsets(y2.stdout)];
    assert.deepEqual(new Set(y), ledger.produced, "group y got every message, spread over its members");
    assert.ok(y.length - 300 <= 3, `group y: ${y.length - 300} handled twice`);
  });

  it("sluice consume --group: SIGTERM flushes, commits the last printed offsets and leaves; the next run starts after them", async () => {
    const ledger = await topic("cli-group", 2);
    await ledger.produce(100);
    const child = spawn(process.execPath, [SLUICE_BIN, "--nameserver", cluster.nameserver, "consume", "cli-group", "--group", "cli-g", "--from-beginning", "--print-offsets"], {
      env: { ...process.env, SLUICE_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const cli = new LineProcess("consume --group", child);
    await cli.waitFor("100 lines", () => cli.lines.length === 100);
    assert.equal(await cli.stop("SIGTERM"), 0);
    assert.match(cli.stderr, /stopped after 100 messages/);
    const description = await sluice.admin().describeGroup("cli-g");
    assert.equal(description.members.length, 0, "it left the group");
    assert.deepEqual(
      description.partitions.map((p) => [p.partition, p.committedOffset]),
      [[0, 50], [1, 50]],
      "committed: the offset after the last printed message",
    );
    await ledger.produce(10);
    const next = await runCli(["consume", "cli-group", "--group", "cli-g", "--until-end", "--print-offsets"], { nameserver: cluster.nameserver });
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(next.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]).sort(), ["0:50", "0:51", "0:52", "0:53", "0:54", "1:50", "1:51", "1:52", "1:53", "1:54"]);
  });

  it("sluice consume --group --queue: prints and acks each message once", async () => {
    const ledger = await topic("cli-queue", 2);
    await ledger.produce(50);
    const first = await runCli(["consume", "cli-queue", "--group", "cli-q", "--queue", "--from-beginning", "--max-messages", "50", "--print-offsets"], {
      nameserver: cluster.nameserver,
    });
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(new Set(first.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]!)), ledger.produced);
    const again = await runCli(["consume", "cli-queue", "--group", "cli-q", "--queue", "--max-messages", "1", "--timeout-ms", "1500"], {
      nameserver: cluster.nameserver,
    });
    assert.notEqual(again.code, 0, "everything was acked: nothing comes again");
    assert.equal(again.stdout, "");
    const usage = await runCli(["consume", "cli-queue", "--queue"], { nameserver: cluster.nameserver });
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--queue needs --group/);
  });
});
