/**
 * How the CLI talks: results on stdout (exactly one JSON document with --json), progress and
 * logs on stderr, one-line errors, and exit codes (0 success, 1 failure, 2 bad usage).
 */
import { SluiceError, toSluiceError } from "../../common/src/errors.js";

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface GlobalOptions {
  nameserver: string;
  json: boolean;
}

/** Writes one JSON document (with --json) or the human text. */
export function emit(json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(json ? JSON.stringify(value) + "\n" : human());
}

/** Prints the error as one line on stderr and returns the exit code it deserves. */
export function reportError(err: unknown): number {
  const e = err instanceof SluiceError ? err : toSluiceError(err);
  const usage = e.code === "INVALID_ARGUMENT" || e.code === "INVALID_CONFIG" || e.code === "INVALID_TOPIC_NAME";
  process.stderr.write(`sluice: ${e.message.replace(/\s*\n\s*/g, " ")} [${e.code}]\n`);
  return usage ? EXIT_USAGE : EXIT_FAILURE;
}

/** Runs a command action, mapping failures to a one-line error and an exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? EXIT_OK;
    } catch (err) {
      process.exitCode = reportError(err);
    }
  };
}

/** A fixed-width text table for human output. */
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd()).join("\n") + "\n";
}

/** Writes to stdout respecting backpressure; resolves false once stdout is closed (EPIPE). */
export class StdoutWriter {
  private closed = false;
  private chunk = "";

  constructor() {
    process.stdout.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") this.closed = true;
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Buffers a line; flushes in chunks of ~64 KiB. */
  async line(text: string): Promise<void> {
    this.chunk += text + "\n";
    if (this.chunk.length >= 64 * 1024) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.chunk.length === 0 || this.closed) {
      this.chunk = "";
      return;
    }
    const data = this.chunk;
    this.chunk = "";
    if (!process.stdout.write(data)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          process.stdout.off("drain", done);
          process.stdout.off("error", done);
          resolve();
        };
        process.stdout.once("drain", done);
        process.stdout.once("error", done);
      });
    }
  }
}

export function parseInteger(name: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new SluiceError("INVALID_ARGUMENT", `--${name} must be an integer from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}
