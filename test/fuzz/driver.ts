/**
 * The fuzz driver every decoder test shares: replays the corpus of `test/fuzz/<dir>/`, then
 * runs `iterations` mutated inputs through `run`, inside a wall-clock budget.
 *
 * Reproducible: input i of a run is built from its own PRNG, seeded from (seed, i), so a
 * failure names the seed and the iteration, and SLUICE_FUZZ_SEED=<seed> replays the same
 * inputs. The default seed is derived from the fuzzer's name: every run of the suite sees the
 * same inputs. The failing input is also written to `<corpusDir>/crash-<hash>.bin`; kept
 * there, it is replayed by every later run (the corpus is "valid examples and every input
 * that ever found a bug").
 *
 * `run` throws (an assertion) when the decoder misbehaved; it returns a short label of what
 * happened ("accepted", "CORRUPT_BATCH"...) so a test can check that both sides, accepting
 * and refusing, were reached. A run past `maxMs` fails: a slower decoder must not make the
 * suite silently test less. A single input slower than `maxInputMs`, twice, fails as a hang.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BYTE_MUTATORS, Rng, iterationSeed, mutate, type Mutator } from "./mutate.js";

export const FUZZ_DIR = new URL(".", import.meta.url).pathname;
/** Each fuzz test file asserts this many mutated inputs per decoder. */
export const MIN_FUZZ_ITERATIONS = 100_000;
/**
 * The most a fuzz test file may spend fuzzing: a bound on the suite's time, not a speed target
 * (alone, each file needs 3–12 s; in the full suite, four files share two cores with the
 * integration tests). A run past it still fails, so a decoder that got many times slower
 * cannot make the suite silently test less.
 */
export const FILE_BUDGET_MS = 120_000;
/** Hang detection: far above any decode, so only a loop or a blow-up trips it. */
const DEFAULT_MAX_INPUT_MS = 2000;
/** Base inputs when the corpus is empty and no seeds are given. */
const EMPTY_SEED = [Buffer.alloc(0)];
/**
 * Corpus files above this are replayed but not mutated: they are the deep nests and huge
 * values that once found a bug, and copying them on every mutation would cost more than it finds.
 */
const MAX_BASE_BYTES = 1024;

export interface FuzzOptions {
  /** What is fuzzed, for messages ("batch-decode"). */
  name: string;
  /** Folder of seed inputs under test/fuzz/ ("batch"); crashes are written there too. */
  corpusDir: string;
  /** Seeds built in code, besides the corpus files. */
  seeds?: readonly Buffer[];
  iterations: number;
  /** Wall-clock budget of the whole run (corpus and iterations). */
  maxMs: number;
  maxInputMs?: number;
  /** @defaultValue BYTE_MUTATORS */
  mutators?: readonly Mutator[];
  maxMutations?: number;
  /** Applied after the mutators (e.g. reseal a batch's CRC so damage reaches the record parser). */
  finish?: (input: Buffer, rng: Rng) => Buffer;
  /** Checks one input; throws when the decoder misbehaved; returns an outcome label. */
  run: (input: Buffer) => string | void | Promise<string | void>;
}

export interface FuzzReport {
  name: string;
  seed: number;
  corpusInputs: number;
  /** Mutated inputs run (corpus replays not included). */
  iterations: number;
  elapsedMs: number;
  slowestInputMs: number;
  outcomes: Record<string, number>;
}

/**
 * A temp directory for fuzz inputs that must be files, on tmpfs when the machine has one:
 * rewriting a small file costs ~10 µs there and ~130 µs on this box's ext4 /tmp (the
 * truncate is journaled), the difference between a file fuzzer that fits its budget and one
 * that does not. The caller removes it.
 */
export function fuzzTempDir(prefix: string): string {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  try {
    return mkdtempSync(join(base, prefix));
  } catch {
    return mkdtempSync(join(tmpdir(), prefix));
  }
}

export function corpusPath(dir: string): string {
  return join(FUZZ_DIR, dir);
}

/** Every file of the corpus folder, sorted by name; none when the folder does not exist. */
export function loadCorpus(dir: string): { name: string; bytes: Buffer }[] {
  const path = corpusPath(dir);
  if (!existsSync(path)) return [];
  return readdirSync(path, { withFileTypes: true })
    .filter((entry) => entry.isFile() && !entry.name.startsWith("."))
    .map((entry) => entry.name)
    .sort()
    .map((name) => ({ name, bytes: readFileSync(join(path, name)) }));
}

function defaultSeed(name: string): number {
  const fromEnv = process.env.SLUICE_FUZZ_SEED;
  if (fromEnv !== undefined && fromEnv !== "") return Number(fromEnv) >>> 0;
  return createHash("sha256").update(name).digest().readUInt32BE(0);
}

/** Writes the failing input beside the corpus and returns its path. */
function saveCrash(dir: string, input: Buffer): string {
  const folder = corpusPath(dir);
  mkdirSync(folder, { recursive: true });
  const file = join(folder, `crash-${createHash("sha256").update(input).digest("hex").slice(0, 16)}.bin`);
  if (!existsSync(file)) writeFileSync(file, input);
  return file;
}

function preview(input: Buffer): string {
  const hex = input.subarray(0, 64).toString("hex");
  return `${input.length} bytes: ${hex}${input.length > 64 ? "…" : ""}`;
}

export async function fuzz(options: FuzzOptions): Promise<FuzzReport> {
  const { name, corpusDir, iterations, maxMs, run, finish } = options;
  const maxInputMs = options.maxInputMs ?? DEFAULT_MAX_INPUT_MS;
  const mutators = options.mutators ?? BYTE_MUTATORS;
  const seed = defaultSeed(name);
  const files = loadCorpus(corpusDir);
  const corpus = [...files.map((f) => f.bytes), ...(options.seeds ?? [])].filter((input) => input.length <= MAX_BASE_BYTES);
  const bases = corpus.length === 0 ? EMPTY_SEED : corpus;
  const context = { corpus: bases };
  const outcomes: Record<string, number> = {};
  const startedAt = performance.now();
  let slowestInputMs = 0;

  // A corpus file that fails is already kept; a mutated input is saved beside the corpus.
  const corpusFiles = new Set(files.map((f) => f.bytes));
  const fail = (input: Buffer, where: string, problem: string, cause?: unknown): Error => {
    const kept = corpusFiles.has(input) ? "a corpus file" : `saved as ${saveCrash(corpusDir, input)}`;
    return new Error(
      `fuzz ${name}: ${where} ${problem} (seed ${seed}; reproduce with SLUICE_FUZZ_SEED=${seed}); input ${kept} (${preview(input)})`,
      cause === undefined ? undefined : { cause },
    );
  };
  const settle = (input: Buffer, where: string, before: number, outcome: string | void, synchronous: boolean): void => {
    let tookMs = performance.now() - before;
    if (tookMs > maxInputMs && synchronous) tookMs = Math.min(tookMs, timeAgain(input));
    if (tookMs > slowestInputMs) slowestInputMs = tookMs;
    if (tookMs > maxInputMs) throw fail(input, where, `took ${tookMs.toFixed(0)} ms${synchronous ? " twice" : ""} (limit ${maxInputMs} ms)`);
    const label = outcome ?? "ok";
    outcomes[label] = (outcomes[label] ?? 0) + 1;
  };
  // A garbage collection or a busy box can stall one input: only an input slow twice is a
  // hang. (Asynchronous runs talk to a server and bound their own waits.)
  const timeAgain = (input: Buffer): number => {
    const before = performance.now();
    try {
      run(input);
    } catch {
      // it passed the first time; the time is what is measured here
    }
    return performance.now() - before;
  };
  // Synchronous runs stay synchronous: an await per input would cost more than many decoders.
  const check = (input: Buffer, where: string): void | Promise<void> => {
    const before = performance.now();
    let result: string | void | Promise<string | void>;
    try {
      result = run(input);
    } catch (err) {
      throw fail(input, where, `failed: ${describeFailure(input, err)}`, err);
    }
    if (!(result instanceof Promise)) return settle(input, where, before, result, true);
    return result.then(
      (outcome) => settle(input, where, before, outcome, false),
      (err: unknown) => {
        throw fail(input, where, `failed: ${describeFailure(input, err)}`, err);
      },
    );
  };
  /**
   * Errors are built without stack traces while fuzzing (capturing one costs more than most
   * decodes, and most inputs are refused with an error): a failing input runs once more with
   * them, so the report shows where the bad error came from.
   */
  const describeFailure = (input: Buffer, first: unknown): string => {
    Error.stackTraceLimit = stackTraceLimit;
    let err = first;
    try {
      const again = run(input);
      if (again instanceof Promise) again.catch(() => undefined);
    } catch (second) {
      err = second;
    }
    return (err as Error)?.stack ?? (err as Error)?.message ?? String(err);
  };

  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  let done = 0;
  try {
    for (const file of files) {
      const pending = check(file.bytes, `corpus file ${corpusDir}/${file.name}`);
      if (pending) await pending;
    }
    for (; done < iterations; done++) {
      const rng = new Rng(iterationSeed(seed, done));
      let input = mutate(rng.chance(0.02) ? Buffer.alloc(0) : rng.pick(bases), rng, context, mutators, options.maxMutations);
      if (finish) input = finish(input, rng);
      const pending = check(input, `iteration ${done}`);
      if (pending) await pending;
      if ((done & 255) === 0 && performance.now() - startedAt > maxMs) {
        throw new Error(`fuzz ${name}: ran only ${done} of ${iterations} inputs in its ${maxMs} ms budget (seed ${seed}): the decoder or its checks got slower`);
      }
    }
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  return {
    name,
    seed,
    corpusInputs: files.length,
    iterations: done,
    elapsedMs: Math.round(performance.now() - startedAt),
    slowestInputMs: Math.round(slowestInputMs * 10) / 10,
    outcomes,
  };
}

/**
 * A wall-clock budget shared by the fuzz runs of one test file: each run may use what the
 * runs before it left, so the file as a whole stays under `totalMs` (the suite's bound is
 * 30 s per file) without a tight bound per decoder that a busy box would trip.
 */
export function fileBudget(totalMs: number): () => number {
  const deadline = performance.now() + totalMs;
  return () => Math.max(0, deadline - performance.now());
}

/** One line for the test log: what ran and how long it took. */
export function describeReport(report: FuzzReport): string {
  const outcomes = Object.entries(report.outcomes)
    .sort((a, b) => b[1] - a[1])
    .map(([label, count]) => `${label} ${count}`)
    .join(", ");
  return `${report.name}: ${report.iterations} inputs + ${report.corpusInputs} corpus files in ${report.elapsedMs} ms (seed ${report.seed}, slowest ${report.slowestInputMs} ms) — ${outcomes}`;
}
