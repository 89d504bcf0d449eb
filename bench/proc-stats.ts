/**
 * What the benchmark measures about the broker process from outside, through Linux /proc:
 * CPU time (so "µs of broker CPU per message" does not depend on how busy the client was)
 * and resident memory (sampled, because the target is a ceiling that must hold throughout).
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** Linux's USER_HZ on every mainstream distribution; used when `getconf` is missing. */
const FALLBACK_CLOCK_TICKS_PER_SECOND = 100;
export const RSS_SAMPLE_INTERVAL_MS = 100;

let cachedTicksPerSecond: number | undefined;

/** `getconf CLK_TCK`: the unit of utime/stime in /proc/<pid>/stat (asked once). */
export function clockTicksPerSecond(): number {
  if (cachedTicksPerSecond !== undefined) return cachedTicksPerSecond;
  try {
    const ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    cachedTicksPerSecond = Number.isInteger(ticks) && ticks > 0 ? ticks : FALLBACK_CLOCK_TICKS_PER_SECOND;
  } catch {
    cachedTicksPerSecond = FALLBACK_CLOCK_TICKS_PER_SECOND;
  }
  return cachedTicksPerSecond;
}

/**
 * utime and stime (fields 14 and 15, in clock ticks) from the text of /proc/<pid>/stat.
 * Field 2, the command name, is in parentheses and may itself hold spaces or parentheses,
 * so fields are counted from the last ")": after it come field 3 (state), 4, 5, …
 */
export function parseStatCpu(statText: string): { userTicks: number; systemTicks: number } {
  const close = statText.lastIndexOf(")");
  if (close < 0) throw new Error(`unexpected /proc/<pid>/stat content: ${statText.slice(0, 80)}`);
  const fields = statText.slice(close + 2).trim().split(/\s+/);
  // fields[0] is field 3, so field n is fields[n - 3].
  const userTicks = Number(fields[14 - 3]);
  const systemTicks = Number(fields[15 - 3]);
  if (!Number.isFinite(userTicks) || !Number.isFinite(systemTicks)) throw new Error(`no utime/stime in /proc/<pid>/stat: ${statText.slice(0, 80)}`);
  return { userTicks, systemTicks };
}

/** utime + stime, in clock ticks. */
export function parseStatCpuTicks(statText: string): number {
  const { userTicks, systemTicks } = parseStatCpu(statText);
  return userTicks + systemTicks;
}

/** A "<Field>:   12345 kB" line of /proc/<pid>/status, in kB; undefined when absent. */
export function parseStatusKb(statusText: string, field: "VmRSS" | "VmHWM"): number | undefined {
  const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(statusText);
  return match ? Number(match[1]) : undefined;
}

export function readCpuTicks(pid: number): number {
  return parseStatCpuTicks(readFileSync(`/proc/${pid}/stat`, "utf8"));
}

export function readCpu(pid: number): { userTicks: number; systemTicks: number } {
  return parseStatCpu(readFileSync(`/proc/${pid}/stat`, "utf8"));
}

/** Resident set now and its high-water mark since the process started, in kB. */
export function readMemoryKb(pid: number): { rssKb: number; hwmKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKb = parseStatusKb(status, "VmRSS");
  if (rssKb === undefined) throw new Error(`/proc/${pid}/status has no VmRSS (is it a zombie?)`);
  return { rssKb, hwmKb: parseStatusKb(status, "VmHWM") ?? rssKb };
}

/** Dirty + Writeback from /proc/meminfo, in kB: file data the kernel still has to write to disk. */
export function parseUnwrittenKb(meminfoText: string): number {
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)\\s+kB`, "m").exec(meminfoText)?.[1] ?? 0);
  return field("Dirty") + field("Writeback");
}

/** Unwritten page-cache data below which a run may start. */
export const SETTLED_UNWRITTEN_MB = 64;
const SETTLE_POLL_MS = 100;

/**
 * Waits until the kernel has written back earlier runs' data (Dirty + Writeback below
 * SETTLED_UNWRITTEN_MB), for at most timeoutMs. Once about 1 GB is dirty, Linux throttles
 * every buffered write to the disk's pace, so a run that starts on top of its predecessor's
 * backlog measures that backlog (measured here: buffered writes fall from ~4 GB/s to ~400 MB/s).
 * Returns how long it waited and what was left.
 */
export async function waitForWriteback(timeoutMs: number): Promise<{ waitedMs: number; unwrittenMb: number }> {
  const started = Date.now();
  for (;;) {
    const unwrittenMb = parseUnwrittenKb(readFileSync("/proc/meminfo", "utf8")) / 1024;
    const waitedMs = Date.now() - started;
    if (unwrittenMb < SETTLED_UNWRITTEN_MB || waitedMs >= timeoutMs) return { waitedMs, unwrittenMb: Number(unwrittenMb.toFixed(1)) };
    await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
  }
}

/**
 * Samples VmRSS (and the CPU ticks used so far) on a timer and keeps the peak RSS and the last
 * CPU figure. Stops quietly if the process goes away, keeping what it saw — which is how a
 * short-lived client is measured: its CPU is known up to the last sample before it exited.
 */
export class ProcessSampler {
  private timer: NodeJS.Timeout | undefined;
  private peakKb = 0;
  private samples = 0;
  private cpuTicks = 0;

  constructor(private readonly pid: number, private readonly intervalMs = RSS_SAMPLE_INTERVAL_MS) {}

  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
  }

  /** Takes a last sample and returns the peak RSS seen while running, in kB, and the last CPU ticks read. */
  stop(): { peakKb: number; samples: number; cpuTicks: number } {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
    return { peakKb: this.peakKb, samples: this.samples, cpuTicks: this.cpuTicks };
  }

  private sample(): void {
    try {
      const { rssKb } = readMemoryKb(this.pid);
      this.cpuTicks = readCpuTicks(this.pid);
      this.samples++;
      if (rssKb > this.peakKb) this.peakKb = rssKb;
    } catch {
      // The process exited: keep what was seen so far.
    }
  }
}

/**
 * Broker resource use across one run: `begin()` when the client starts, `stop()` the moment the
 * client has its result (so client shut-down time is not charged), then `usage(messages)`.
 */
export class BrokerMeter {
  private readonly ticksPerSecond: number;
  private start = { userTicks: 0, systemTicks: 0 };
  private sampler: ProcessSampler | undefined;
  /** Machine-wide Dirty + Writeback, sampled with the RSS: near ~1 GB Linux starts throttling writers. */
  private unwrittenTimer: NodeJS.Timeout | undefined;
  private peakUnwrittenKb = 0;
  private measured:
    | { userMs: number; systemMs: number; peakKb: number; hwmKb: number; samples: number; peakUnwrittenKb: number }
    | undefined;

  constructor(private readonly pid: number, ticksPerSecond = clockTicksPerSecond()) {
    this.ticksPerSecond = ticksPerSecond;
  }

  begin(): void {
    this.start = readCpu(this.pid);
    this.measured = undefined;
    this.sampler = new ProcessSampler(this.pid);
    this.sampler.start();
    this.peakUnwrittenKb = 0;
    this.sampleUnwritten();
    this.unwrittenTimer = setInterval(() => this.sampleUnwritten(), RSS_SAMPLE_INTERVAL_MS);
  }

  private sampleUnwritten(): void {
    try {
      this.peakUnwrittenKb = Math.max(this.peakUnwrittenKb, parseUnwrittenKb(readFileSync("/proc/meminfo", "utf8")));
    } catch {
      // Not Linux, or /proc unreadable: the figure stays 0.
    }
  }

  /** Freezes the figures; later calls keep the first. Zeros if the broker is gone (the run fails anyway). */
  stop(): void {
    if (this.measured) return;
    const { peakKb, samples } = this.sampler?.stop() ?? { peakKb: 0, samples: 0 };
    if (this.unwrittenTimer) clearInterval(this.unwrittenTimer);
    this.unwrittenTimer = undefined;
    this.sampleUnwritten();
    const peakUnwrittenKb = this.peakUnwrittenKb;
    const toMs = (ticks: number): number => (ticks * 1000) / this.ticksPerSecond;
    try {
      const end = readCpu(this.pid);
      this.measured = {
        userMs: toMs(end.userTicks - this.start.userTicks),
        systemMs: toMs(end.systemTicks - this.start.systemTicks),
        peakKb,
        hwmKb: readMemoryKb(this.pid).hwmKb,
        samples,
        peakUnwrittenKb,
      };
    } catch {
      this.measured = { userMs: 0, systemMs: 0, peakKb, hwmKb: peakKb, samples, peakUnwrittenKb };
    }
  }

  usage(messages: number): BrokerUsage {
    this.stop();
    const { userMs, systemMs, peakKb, hwmKb, samples, peakUnwrittenKb } = this.measured as NonNullable<BrokerMeter["measured"]>;
    const cpuMs = userMs + systemMs;
    return {
      brokerCpuMs: cpuMs,
      brokerUserCpuMs: userMs,
      brokerSystemCpuMs: systemMs,
      brokerCpuUsPerMsg: messages > 0 ? Number(((cpuMs * 1000) / messages).toFixed(3)) : 0,
      brokerPeakRssMb: Number((peakKb / 1024).toFixed(1)),
      brokerHighWaterRssMb: Number((hwmKb / 1024).toFixed(1)),
      rssSamples: samples,
      peakUnwrittenMb: Number((peakUnwrittenKb / 1024).toFixed(1)),
    };
  }
}

export interface BrokerUsage {
  /** utime + stime of the broker process during the run, in ms (resolution: one clock tick). */
  brokerCpuMs: number;
  /** The same split: in the process (utime) and in the kernel on its behalf (stime: writes, fsync, sockets). */
  brokerUserCpuMs: number;
  brokerSystemCpuMs: number;
  brokerCpuUsPerMsg: number;
  /** Largest VmRSS sampled every RSS_SAMPLE_INTERVAL_MS during the run. */
  brokerPeakRssMb: number;
  /** VmHWM at the end of the run: the kernel's exact peak since the broker started. */
  brokerHighWaterRssMb: number;
  rssSamples: number;
  /** Largest machine-wide Dirty + Writeback during the run, in MB (page-cache data not yet on disk). */
  peakUnwrittenMb: number;
}

/**
 * What every multi-process run meters of its clients and its window, whatever it meters of
 * the brokers (cluster.ts, group-execute.ts).
 */
export interface MeteredWindow {
  /** From the measured start to the moment the last client printed its result (monotonic µs). */
  windowUs: { from: number; to: number };
  exitedUs: number;
  clientCpuMs: number;
  clientPeakRssMb: number;
  startedAt: string;
  loadAverage1m: number;
  settled: { waitedMs: number; unwrittenMb: number };
}

/** The clients' CPU (ms, summed) and peak resident memory (MB, the largest) from their samplers. */
export function clientUsage(seen: readonly { peakKb: number; cpuTicks: number }[]): { clientCpuMs: number; clientPeakRssMb: number } {
  return {
    clientCpuMs: Math.round((seen.reduce((sum, s) => sum + s.cpuTicks, 0) * 1000) / clockTicksPerSecond()),
    clientPeakRssMb: Number((Math.max(0, ...seen.map((s) => s.peakKb)) / 1024).toFixed(1)),
  };
}

/** The record fields a metered window gives (see RunRecord). */
export function windowFigures(metered: MeteredWindow) {
  return {
    clientCpuMs: metered.clientCpuMs,
    clientPeakRssMb: metered.clientPeakRssMb,
    clientShutdownMs: Math.round((metered.exitedUs - metered.windowUs.to) / 1000),
    startedAt: metered.startedAt,
    loadAverage1m: metered.loadAverage1m,
    settleWaitMs: metered.settled.waitedMs,
    unwrittenMbAtStart: metered.settled.unwrittenMb,
    windowUs: metered.windowUs,
  };
}
