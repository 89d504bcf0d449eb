/**
 * The SDK's one retry policy (kafkajs's retry module, in spirit): exponential backoff with
 * jitter, only for errors marked `retriable`, never past the caller's deadline.
 *
 * Delay before retry n (n = 0 for the first retry):
 *
 *   base(n)  = min(maxRetryMs, initialRetryMs * 2^n)
 *   delay(n) = base(n) * (1 - JITTER + 2 * JITTER * random())     // ±20 %
 *
 * and never less than the server's `retryAfterMs` hint (throttling, leadership moving).
 * The jitter keeps a crowd of clients that failed together from retrying in lockstep.
 */
import { InvalidArgumentError, SluiceError, toSluiceError, type ErrorCode } from "../../common/src/errors.js";

export interface RetryOptions {
  /** Retries after the first attempt; 0 disables retrying. @defaultValue 5 */
  retries?: number;
  /** Delay before the first retry, in ms. @defaultValue 100 */
  initialRetryMs?: number;
  /** Upper bound of one delay, in ms. @defaultValue 2000 */
  maxRetryMs?: number;
}

export const DEFAULT_RETRIES = 5;
export const DEFAULT_INITIAL_RETRY_MS = 100;
export const DEFAULT_MAX_RETRY_MS = 2_000;
/** Each delay doubles the previous one until maxRetryMs. */
export const RETRY_MULTIPLIER = 2;
/** Fraction of a delay drawn at random on either side. */
export const RETRY_JITTER = 0.2;
/** Fraction added at random to a throttled batch's retry-after. */
export const THROTTLE_JITTER = 0.1;

/**
 * Errors that mean a partition's master is changing hands (failover, a restart, a graceful
 * handover) or cannot be reached for now. A failover takes seconds (the master's lease
 * expires, the controller promotes a slave, routes are pushed), longer than `retries`
 * backoffs may last, so a send retries these until its deadline however many attempts that
 * takes (Kafka's producer does the same: its retries are unbounded, its delivery timeout is
 * not). A producer's THROTTLED batch also waits until its deadline, for the broker's retry-after
 * each time (throttleDelayMs). Other retriable errors (a full disk) keep the `retries` cap.
 */
export const MASTER_CHANGE_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "NOT_LEADER",
  "NOT_ENOUGH_REPLICAS",
  "STALE_EPOCH",
  "BROKER_UNAVAILABLE",
  "NO_BROKERS_AVAILABLE",
  "SHUTTING_DOWN",
  "REQUEST_TIMED_OUT",
]);

export interface ParsedRetryOptions {
  readonly retries: number;
  readonly initialRetryMs: number;
  readonly maxRetryMs: number;
}

export function parseRetryOptions(options: RetryOptions = {}): ParsedRetryOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`retry must be an object like { retries: 5, initialRetryMs: 100, maxRetryMs: 2000 }`);
  }
  const retries = options.retries ?? DEFAULT_RETRIES;
  const initialRetryMs = options.initialRetryMs ?? DEFAULT_INITIAL_RETRY_MS;
  const maxRetryMs = options.maxRetryMs ?? DEFAULT_MAX_RETRY_MS;
  if (!Number.isInteger(retries) || retries < 0) {
    throw new InvalidArgumentError(`retry.retries must be an integer >= 0, got ${String(retries)}`);
  }
  if (!Number.isInteger(initialRetryMs) || initialRetryMs < 1) {
    throw new InvalidArgumentError(`retry.initialRetryMs must be an integer >= 1, got ${String(initialRetryMs)}`);
  }
  if (!Number.isInteger(maxRetryMs) || maxRetryMs < initialRetryMs) {
    throw new InvalidArgumentError(
      `retry.maxRetryMs must be an integer >= retry.initialRetryMs (${initialRetryMs}), got ${String(maxRetryMs)}`,
    );
  }
  return { retries, initialRetryMs, maxRetryMs };
}

export interface RunOptions {
  /** Absolute time (ms since the epoch) after which no new attempt starts. */
  deadlineMs: number;
  /** Narrows which retriable errors are retried here; non-retriable errors never are. */
  shouldRetry?: (err: SluiceError) => boolean;
  /** Called before sleeping, e.g. to refresh routes; its failure does not stop the retry. */
  onRetry?: (err: SluiceError, retry: number) => void | Promise<void>;
}

export type Sleep = (ms: number) => Promise<void>;

const realSleep: Sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class RetryPolicy {
  constructor(
    readonly options: ParsedRetryOptions,
    private readonly random: () => number = Math.random,
    private readonly sleep: Sleep = realSleep,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The delay before retry number `retry` (0-based), honouring the error's retry-after hint.
   * Any count works: past ~2^30 the power is Infinity and the cap applies.
   */
  delayMs(retry: number, err?: SluiceError): number {
    const base = Math.min(this.options.maxRetryMs, this.options.initialRetryMs * RETRY_MULTIPLIER ** retry);
    const jittered = Math.round(base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * this.random()));
    return Math.max(jittered, err?.retryAfterMs ?? 0);
  }

  /**
   * How long to wait before retrying after `err` failed attempt `retry + 1`, or -1 to give
   * up: the error is not retriable, the retries are used up, or the wait would end past
   * the deadline. With `untilDeadline` (errors in MASTER_CHANGE_CODES) only the deadline ends the
   * retrying, unless `retries` is 0, which always means "never retry".
   */
  nextDelayMs(err: SluiceError, retry: number, deadlineMs: number, untilDeadline = false): number {
    const retries = this.options.retries;
    if (!err.retriable || retries === 0 || (!untilDeadline && retry >= retries)) return -1;
    const delay = this.delayMs(retry, err);
    return this.now() + delay < deadlineMs ? delay : -1;
  }

  /**
   * How long a batch refused by flow control (THROTTLED) waits before it goes again: the
   * broker's retry-after plus up to 10 % jitter (so producers refused together do not come
   * back together), or -1 when that passes the deadline or `retries` is 0. No exponential growth: the broker
   * knows when it will admit the batch, and waiting longer only loses throughput.
   */
  throttleDelayMs(err: SluiceError, deadlineMs: number): number {
    // `retries: 0` means never retry, here too. A retry-after ending past the deadline gives
    // up at once: waiting could only end in the same refusal.
    if (this.options.retries === 0) return -1;
    const base = err.retryAfterMs ?? this.options.initialRetryMs;
    const delay = Math.round(base * (1 + THROTTLE_JITTER * this.random()));
    return this.now() + delay < deadlineMs ? delay : -1;
  }

  /** Runs `operation` until it succeeds or the policy gives up; throws the last error. */
  async run<T>(operation: (attempt: number) => Promise<T>, options: RunOptions): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await operation(attempt);
      } catch (thrown) {
        const err = toSluiceError(thrown);
        const allowed = options.shouldRetry === undefined || options.shouldRetry(err);
        const delay = allowed ? this.nextDelayMs(err, attempt, options.deadlineMs) : -1;
        if (delay < 0) throw err;
        if (options.onRetry !== undefined) {
          try {
            await options.onRetry(err, attempt);
          } catch {
            // A failed refresh is no reason to stop: the next attempt reports what is wrong.
          }
        }
        await this.sleep(delay);
      }
    }
  }
}
