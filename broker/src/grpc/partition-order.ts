/**
 * Keeps one produce stream's batches of a partition in the order they arrived while flow
 * control holds some of them.
 *
 * - A batch may go on only after every earlier batch of its partition on this stream went
 *   on: one admitted at once still waits behind a held one.
 * - When a batch is refused (THROTTLED), every later batch of its partition already waiting
 *   is refused too, and so is every batch of it arriving within the refusal's retry-after:
 *   those were pipelined before the producer heard of the refusal. Letting one through would
 *   put it ahead of the refused batch, which the producer resends after the retry-after.
 */
import { SluiceError, ThrottledError } from "../../../common/src/errors.js";
import { MIN_RETRY_AFTER_MS, type FlowTicket } from "../flow/flow-controller.js";

export class PartitionOrder {
  /** Per partition: settles when its last waiting batch may go on (or was refused). */
  private readonly tails = new Map<string, Promise<void>>();
  /** Per partition: batches arriving before this time (ms) are refused. */
  private readonly refusingUntil = new Map<string, number>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Whether a batch with this ticket would wait (held itself, or behind a held batch). */
  wouldWait(key: string, ticket: FlowTicket): boolean {
    return !ticket.immediate || this.tails.has(key);
  }

  /** Throws THROTTLED while the partition refuses batches after an earlier refusal. */
  checkNotRefusing(key: string, topic: string, partition: number): void {
    const until = this.refusingUntil.get(key);
    if (until === undefined) return;
    const now = this.now();
    if (now >= until) {
      this.refusingUntil.delete(key);
      return;
    }
    const retryAfterMs = Math.ceil(until - now);
    throw new ThrottledError(
      `${topic}/${partition}: an earlier batch on this stream was throttled, so later ones sent before the producer heard of it are refused too and the partition keeps its order; resend them in order in ${retryAfterMs} ms`,
      { retryAfterMs },
    );
  }

  /**
   * When the batch may go on: undefined for at once, else a promise that resolves once its
   * ticket is ready and every earlier waiting batch of the partition went on, and rejects
   * when its ticket or an earlier batch was refused.
   */
  after(key: string, ticket: FlowTicket): Promise<void> | undefined {
    const previous = this.tails.get(key);
    if (previous === undefined && ticket.immediate) return undefined;
    let ready: Promise<void>;
    if (previous === undefined) ready = ticket.ready!;
    else if (ticket.ready === undefined) ready = previous;
    else ready = Promise.all([previous, ticket.ready]).then(() => undefined);
    this.tails.set(key, ready);
    // Registered before the caller's own callbacks, so the tail is cleared first.
    const clear = (): void => {
      if (this.tails.get(key) === ready) this.tails.delete(key);
    };
    ready.then(clear, clear);
    return ready;
  }

  /** Notes a refusal: a THROTTLED one makes the partition refuse for its retry-after. */
  refused(key: string, err: unknown): void {
    if (!(err instanceof SluiceError) || err.code !== "THROTTLED") return;
    const until = this.now() + (err.retryAfterMs ?? MIN_RETRY_AFTER_MS);
    this.refusingUntil.set(key, Math.max(this.refusingUntil.get(key) ?? 0, until));
  }
}
