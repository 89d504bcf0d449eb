/**
 * The orchestrator's own parts: /proc parsing and metering, the bench JSON check, targets,
 * the plan, flow rules around a run, and .cpuprofile summaries.
 * Run: node --import tsx --test test/unit/bench-tools.test.ts
 */
import { spawn } from "node:child_process";
import assert from "node:assert/strict";
import { test } from "node:test";
import { areaOf, summarizeProfile, type CpuProfile } from "../../bench/cpuprofile.js";
import { decisionsDuring, flowRulesFor, parseFlowDecisions } from "../../bench/flow-rules.js";
import { benchArgs, benchPlan, parseBenchSettings, prefillFor, THROTTLED_RATE_PER_SECOND } from "../../bench/plan.js";
import { BrokerMeter, parseStatCpuTicks, parseStatusKb, parseUnwrittenKb } from "../../bench/proc-stats.js";
import { medianOutcome, parseBenchJson, type RunOutcome, type RunRecord } from "../../bench/results.js";
import { evaluateTargets } from "../../bench/targets.js";

test("utime + stime are read after the last parenthesis, whatever the command name holds", () => {
  // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
  const stat = "4242 (node (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 37 0 0 20 0 11 0 100 0 0";
  assert.equal(parseStatCpuTicks(stat), 287);
  assert.throws(() => parseStatCpuTicks("garbage"), /unexpected/);
});

test("VmRSS and VmHWM come out in kB; an absent field is undefined", () => {
  const status = "Name:\tnode\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t11\n";
  assert.equal(parseStatusKb(status, "VmRSS"), 102_400);
  assert.equal(parseStatusKb(status, "VmHWM"), 204_800);
  assert.equal(parseStatusKb("Name:\tkthreadd\n", "VmRSS"), undefined);
});

test("unwritten page-cache data is Dirty plus Writeback", () => {
  assert.equal(parseUnwrittenKb("MemFree:  100 kB\nDirty:     2048 kB\nWriteback:   512 kB\nWritebackTmp: 7 kB\n"), 2560);
  assert.equal(parseUnwrittenKb("MemFree: 100 kB\n"), 0);
});

test("the meter charges a busy process's CPU and sees its memory grow", async () => {
  // A child that allocates ~80 MB, then spins for 1.5 s of CPU. Bounds are loose on purpose:
  // other test files share the two cores, so the child gets only part of a core.
  const script = "const keep = Buffer.alloc(80 * 1024 * 1024, 1); const t = Date.now(); while (Date.now() - t < 1500) {} process.stdout.write(String(keep[0]));";
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "ignore"] });
  const meter = new BrokerMeter(child.pid as number, 100);
  meter.begin();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  meter.stop();
  const usage = meter.usage(1000);
  await new Promise((resolve) => child.once("close", resolve));
  assert.ok(usage.brokerCpuMs >= 100 && usage.brokerCpuMs <= 1200, `cpu ${usage.brokerCpuMs} ms`);
  assert.equal(usage.brokerCpuUsPerMsg, Number(((usage.brokerCpuMs * 1000) / 1000).toFixed(3)));
  assert.ok(usage.brokerPeakRssMb >= 80, `peak ${usage.brokerPeakRssMb} MB`);
  assert.ok(usage.brokerHighWaterRssMb >= usage.brokerPeakRssMb);
  assert.ok(usage.rssSamples >= 3);
});

test("bench JSON must carry every numeric field of the contract", () => {
  const good = { msgsPerSec: 1, mbPerSec: 0.1, p50Ms: 1, p99Ms: 2, p999Ms: 3, messages: 10, seconds: 10 };
  assert.deepEqual(parseBenchJson(JSON.stringify(good) + "\n"), good);
  assert.throws(() => parseBenchJson("not json"), /did not print one JSON document/);
  assert.throws(() => parseBenchJson(JSON.stringify({ ...good, p99Ms: "2" })), /lacks numeric p99Ms/);
});

function record(name: string, fields: Partial<RunRecord>): RunRecord {
  return {
    name, kind: "produce", flush: "interval", size: 100, requestedMessages: 1000, rate: null, topic: "t", partitions: 3,
    msgsPerSec: 0, mbPerSec: 0, p50Ms: 0, p99Ms: 0, p999Ms: 0, messages: 1000, seconds: 1,
    brokerCpuMs: 0, brokerUserCpuMs: 0, brokerSystemCpuMs: 0, brokerCpuUsPerMsg: 0, brokerPeakRssMb: 100, brokerHighWaterRssMb: 100, rssSamples: 10, peakUnwrittenMb: 0, clientCpuMs: 0, clientPeakRssMb: 0, clientShutdownMs: 0, loadAverage1m: 0, settleWaitMs: 0, unwrittenMbAtStart: 0,
    startedAt: "", windowUs: { from: 0, to: 1 }, profiled: false, command: [], ...fields,
  };
}

test("targets: absolute bounds, a bound relative to another run, and runs that failed", () => {
  const outcomes: RunOutcome[] = [
    record("produce-100b", { msgsPerSec: 1_200_000, brokerCpuUsPerMsg: 1.5 }),
    record("produce-1kib", { msgsPerSec: 400_000, brokerPeakRssMb: 350 }),
    record("produce-1kib-sync", { msgsPerSec: 270_000 }),
    record("e2e-100b", { p50Ms: 0.4, p99Ms: 2.5, messages: 999 }),
    { name: "consume-100b", kind: "consume", flush: "interval", size: 100, startedAt: "", failed: true, error: "x", exitCode: 1, stderrTail: "", command: [] },
  ];
  const checks = evaluateTargets(outcomes);
  const find = (run: string, label: string) => checks.find((c) => c.run === run && c.label.startsWith(label));
  assert.equal(find("produce-100b", "produce 100 B")?.met, true);
  assert.equal(find("produce-100b", "broker CPU")?.met, false);
  assert.equal(find("produce-1kib", "broker peak RSS")?.met, false);
  assert.equal(find("produce-1kib-sync", "flush sync")?.bound, 280_000);
  assert.equal(find("produce-1kib-sync", "flush sync")?.met, false);
  assert.equal(find("e2e-100b", "e2e p50")?.met, true);
  assert.equal(find("e2e-100b", "e2e p99")?.met, false);
  assert.equal(find("e2e-100b", "e2e messages")?.met, false);
  assert.equal(find("consume-100b", "consume 100 B msgs/s")?.met, null);
  assert.equal(find("consume-100b", "broker peak RSS")?.met, null);
  // consume-1kib was not planned: no check mentions it.
  assert.equal(checks.some((c) => c.run === "consume-1kib"), false);
});

test("the plan scales counts, keeps the e2e rate, filters by name and rejects unknown names", () => {
  const settings = parseBenchSettings({ SLUICE_BENCH_SCALE: "0.1", SLUICE_BENCH_ONLY: "produce-100b,e2e-100b" });
  const plan = benchPlan(settings);
  assert.deepEqual(plan.map((r) => [r.name, r.messages, r.rate]), [["produce-100b", 200_000, undefined], ["e2e-100b", 5_000, 10_000]]);
  assert.equal(benchPlan(parseBenchSettings({ SLUICE_BENCH_SCALE: "0.00001" }))[0]?.messages, 1_000);
  assert.equal(benchPlan(parseBenchSettings({})).length, 16);
  assert.throws(() => parseBenchSettings({ SLUICE_BENCH_ONLY: "produce-9tb" }), /unknown runs/);
  assert.throws(() => parseBenchSettings({ SLUICE_BENCH_SCALE: "-1" }), /positive/);
  assert.throws(() => parseBenchSettings({ SLUICE_BENCH_PROFILE: "1", SLUICE_BENCH_REPEAT: "3" }), /single attempt/);
  assert.deepEqual(parseBenchSettings({ SLUICE_BENCH_BROKER_NODE_FLAGS: " --a  --b=1 " }).brokerNodeFlags, ["--a", "--b=1"]);
  const e2e = plan[1];
  assert.ok(e2e);
  assert.deepEqual(benchArgs(e2e, { nameserver: "127.0.0.1:1", topic: "t", partitions: 3 }).slice(0, 5), ["--nameserver", "127.0.0.1:1", "--json", "bench", "e2e"]);
  assert.ok(benchArgs(e2e, { nameserver: "n", topic: "t", partitions: 3 }).join(" ").endsWith("--rate 10000"));
  assert.equal(prefillFor(e2e), undefined);
  assert.equal(prefillFor({ ...e2e, kind: "consume" })?.kind, "produce");
});

test("flow runs: the topic placeholder, their targets, and the broker's decisions counted over the run", () => {
  const plan = benchPlan(parseBenchSettings({ SLUICE_BENCH_ONLY: "produce-1kib-flow-rules,produce-1kib-throttled" }));
  assert.deepEqual(plan.map((r) => r.flowRules?.map((rule) => rule.scope)), [["broker", "topic:*", "client:*"], ["topic:{topic}"]]);
  const throttled = plan[1];
  assert.ok(throttled?.flowRules);
  const rules = flowRulesFor(throttled.flowRules, "bench-t-1");
  assert.deepEqual(rules, [{ scope: "topic:bench-t-1", limiter: "token-bucket", messagesPerSecond: THROTTLED_RATE_PER_SECOND, burst: 5_000 }]);
  assert.equal(throttled.flowRules[0]?.scope, "topic:{topic}", "the plan's rule is not changed");

  const checks = evaluateTargets([
    record("produce-1kib", { msgsPerSec: 300_000 }),
    record("produce-1kib-flow-rules", { msgsPerSec: 260_000 }),
    record("produce-1kib-throttled", { msgsPerSec: 53_000, messages: 1000 }),
  ]);
  const find = (run: string, label: string) => checks.find((c) => c.run === run && c.label.startsWith(label));
  assert.equal(find("produce-1kib-flow-rules", "1 KiB msgs/s under")?.bound, 270_000);
  assert.equal(find("produce-1kib-flow-rules", "1 KiB msgs/s under")?.met, false);
  assert.equal(find("produce-1kib-throttled", "throttled msgs/s (≥")?.met, true);
  assert.equal(find("produce-1kib-throttled", "throttled msgs/s (≤")?.met, false);
  assert.equal(find("produce-1kib-throttled", "throttled messages")?.met, true);

  const metrics = (admitted: number, delayed: number, refused: number): string =>
    [
      "# HELP sluice_flow_requests_total Produce requests decided by each flow rule",
      "# TYPE sluice_flow_requests_total counter",
      `sluice_flow_requests_total{scope="topic:bench-t-1",limiter="token-bucket",result="admitted"} ${admitted}`,
      `sluice_flow_requests_total{scope="topic:bench-t-1",limiter="token-bucket",result="delayed"} ${delayed}`,
      `sluice_flow_requests_total{scope="topic:bench-t-1",limiter="token-bucket",result="refused"} ${refused}`,
      `sluice_flow_requests_total{scope="client:a\\"b",limiter="concurrency",result="admitted"} 7`,
      `sluice_flow_bytes_total{scope="topic:bench-t-1",limiter="token-bucket",result="admitted"} 999999`,
    ].join("\n");
  const before = parseFlowDecisions(metrics(10, 2, 0));
  // A label value's quote comes escaped (\"): the parsed scope has the plain quote.
  assert.deepEqual(before.get('client:a"b concurrency'), { scope: 'client:a"b', limiter: "concurrency", admitted: 7, delayed: 0, refused: 0 });
  const after = parseFlowDecisions(metrics(15, 40, 3));
  assert.deepEqual(decisionsDuring(before, after, [...rules, { scope: "broker", limiter: "token-bucket" }]), [
    { scope: "topic:bench-t-1", limiter: "token-bucket", admitted: 5, delayed: 38, refused: 3 },
    // No counter yet (a rule that decided nothing): zero, not missing.
    { scope: "broker", limiter: "token-bucket", admitted: 0, delayed: 0, refused: 0 },
  ]);
});

test("a profile's self time is summed by function and location, within the window asked for", () => {
  const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber });
  const profile: CpuProfile = {
    nodes: [
      { id: 1, callFrame: frame("(root)", ""), children: [2, 3, 4] },
      { id: 2, callFrame: frame("append", "file:///repo/broker/src/storage/segment.ts", 9) },
      { id: 3, callFrame: frame("write", "file:///repo/node_modules/@grpc/grpc-js/build/src/call.js", 99) },
      { id: 4, callFrame: frame("(idle)", "") },
    ],
    // Samples at t = 1000, 2000, 3000, 4000, 5000 µs; each lasts until the next.
    startTime: 0,
    endTime: 6000,
    samples: [2, 2, 3, 4, 2],
    timeDeltas: [1000, 1000, 1000, 1000, 1000],
  };
  const all = summarizeProfile(profile, { repoRoot: "/repo" });
  assert.equal(all.windowMs, 5);
  assert.equal(all.busyMs, 4);
  assert.equal(all.gapMs, 0);
  assert.deepEqual(all.byFunction[0], { functionName: "append", location: "broker/src/storage/segment.ts:10", selfMs: 3, percent: 60 });
  assert.equal(all.byArea.find((a) => a.area === "@grpc/grpc-js")?.selfMs, 1);
  assert.equal(all.byArea.find((a) => a.area === "broker/src/storage")?.selfMs, 3);
  const window = summarizeProfile(profile, { repoRoot: "/repo", fromUs: 2500, toUs: 4500 });
  assert.equal(window.windowMs, 2);
  assert.deepEqual(window.byFunction.map((r) => r.functionName).sort(), ["(idle)", "write"]);
  assert.equal(areaOf("node:internal/streams/writable:1", "write"), "node internals");
  assert.equal(areaOf("", "(garbage collector)"), "(garbage collector)");
});

test("a repeated run reports its median attempt, the largest RSS, and any failure first", () => {
  const produce = [900, 1_100, 1_000].map((msgsPerSec, i) => record("produce-100b", { msgsPerSec, brokerPeakRssMb: [120, 150, 110][i] as number }));
  const median = medianOutcome(produce) as RunRecord;
  assert.equal(median.msgsPerSec, 1_000);
  assert.equal(median.brokerPeakRssMb, 150);
  assert.deepEqual(median.attempts?.map((a) => a.msgsPerSec), [900, 1_100, 1_000]);
  // Latency runs rank by p99, lower is better; an even count takes the lower middle (the worse).
  const e2e = [3, 1, 4, 2].map((p99Ms) => record("e2e-100b", { kind: "e2e", p99Ms }));
  assert.equal((medianOutcome(e2e) as RunRecord).p99Ms, 3);
  assert.equal(medianOutcome([produce[0] as RunRecord]), produce[0]);
  const failed: RunOutcome = { name: "produce-100b", kind: "produce", flush: "interval", size: 100, startedAt: "", failed: true, error: "x", exitCode: 1, stderrTail: "", command: [] };
  assert.equal(medianOutcome([produce[0] as RunRecord, failed]), failed);
});

test("a sampling gap is reported as such, not charged to the function that was on top", () => {
  const frame = (functionName: string) => ({ functionName, url: "file:///repo/a.js", lineNumber: 0 });
  const profile: CpuProfile = {
    nodes: [{ id: 1, callFrame: frame("(root)"), children: [2, 3] }, { id: 2, callFrame: frame("hot") }, { id: 3, callFrame: frame("cold") }],
    // 1 ms sampling, then a 50 ms silence after the sample of "cold".
    startTime: 0,
    endTime: 54_000,
    samples: [2, 2, 3, 2],
    timeDeltas: [1000, 1000, 1000, 50_000],
  };
  const summary = summarizeProfile(profile, { repoRoot: "/repo" });
  const cold = summary.byFunction.find((r) => r.functionName === "cold");
  assert.equal(cold?.selfMs, 4); // capped at 4 median intervals
  assert.equal(summary.gapMs, 46);
  assert.equal(summary.byFunction[0]?.functionName, "(unsampled gap)");
});
