/** Latency percentiles and the JSON shape `sluice bench --json` prints (contract.md). */

export interface BenchResult {
  msgsPerSec: number;
  mbPerSec: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  messages: number;
  seconds: number;
}

/** Collects latency samples in milliseconds without allocating per sample. */
export class LatencyRecorder {
  private samples = new Float64Array(1 << 16);
  private count = 0;

  record(ms: number): void {
    if (this.count === this.samples.length) {
      const grown = new Float64Array(this.samples.length * 2);
      grown.set(this.samples);
      this.samples = grown;
    }
    this.samples[this.count++] = ms;
  }

  get size(): number {
    return this.count;
  }

  /** The q-quantile (0..1) by nearest rank; 0 when nothing was recorded. */
  percentiles(...qs: number[]): number[] {
    if (this.count === 0) return qs.map(() => 0);
    const sorted = this.samples.slice(0, this.count).sort();
    return qs.map((q) => sorted[Math.min(this.count - 1, Math.max(0, Math.ceil(q * this.count) - 1))] as number);
  }
}

export function summarize(messages: number, bytes: number, seconds: number, latency: LatencyRecorder): BenchResult {
  const [p50, p99, p999] = latency.percentiles(0.5, 0.99, 0.999);
  const round = (n: number, digits: number): number => Number(n.toFixed(digits));
  return {
    msgsPerSec: round(messages / seconds, 0),
    mbPerSec: round(bytes / seconds / 1e6, 1),
    p50Ms: round(p50 ?? 0, 3),
    p99Ms: round(p99 ?? 0, 3),
    p999Ms: round(p999 ?? 0, 3),
    messages,
    seconds: round(seconds, 3),
  };
}

/** A one-line progress bar on stderr, only when stderr is a terminal. */
export class Progress {
  private last = 0;
  private readonly startedAt = Date.now();
  constructor(private readonly label: string, private readonly total: number) {}

  update(done: number): void {
    if (!process.stderr.isTTY) return;
    const now = Date.now();
    if (now - this.last < 100 && done < this.total) return;
    this.last = now;
    const width = 30;
    const share = Math.min(1, done / this.total);
    const filled = Math.round(share * width);
    const seconds = (now - this.startedAt) / 1000;
    const rate = seconds > 0 ? Math.round(done / seconds) : 0;
    const eta = rate > 0 && done < this.total ? ` eta ${Math.ceil((this.total - done) / rate)} s` : "";
    process.stderr.write(
      `\r${this.label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${this.total} ${Math.floor(share * 100)}% ${rate.toLocaleString("en-US")} msgs/s${eta}\x1b[K`,
    );
  }

  done(): void {
    if (process.stderr.isTTY) process.stderr.write("\n");
  }
}

export function renderResult(kind: string, result: BenchResult): string {
  const rows: [string, string][] = [
    ["messages", String(result.messages)],
    ["seconds", result.seconds.toFixed(2)],
    ["msgs/s", result.msgsPerSec.toLocaleString("en-US")],
    ["MB/s", result.mbPerSec.toFixed(1)],
    ["p50", `${result.p50Ms} ms`],
    ["p99", `${result.p99Ms} ms`],
    ["p99.9", `${result.p999Ms} ms`],
  ];
  return `bench ${kind}\n` + rows.map(([k, v]) => `  ${k.padEnd(9)} ${v}`).join("\n") + "\n";
}
