/**
 * Gathers the acks, nacks and extends of a queue consumer into few QueueRequests, and
 * settles each caller's promise when the broker's QueueSettled for its request arrives.
 *
 *   job.ack() ─▶ current batch ──(next turn of the event loop, or 1,000 settles)──▶
 *     QueueRequest{correlation_id: n, acks, nacks, extends, credit_messages} ─▶ broker
 *   broker ─▶ QueueSettled{correlation_id: n, errors[{partition, offset, error}]} ─▶
 *     the batch's promises resolve, those named in `errors` reject (UNKNOWN_LEASE)
 *
 * Why the next turn of the event loop (setImmediate) and not a timer: a `for await` loop over
 * jobs the broker already delivered runs entirely in microtasks, so every job it acks before
 * it has to wait lands in one request, while a lone ack leaves at once (well under the 2 ms a
 * timer would add to every awaited ack).
 *
 * Message credit the iterator gives back rides on the same requests; credit alone is sent
 * once `creditThreshold` jobs were taken, so a slow consumer does not send a request per job.
 *
 * A batch holds at most one settle per job (a second settle of the same job, e.g. extend then
 * ack in one tick, closes the batch first), so an error naming (partition, offset) points at
 * exactly one caller. The hot path allocates the settle message and one promise per call.
 */
import { InvalidArgumentError, SluiceError } from "../../../common/src/errors.js";
import { fromWireError } from "../../../common/src/grpc/errors.js";
import type { QueueRequest, QueueSettle, QueueSettled } from "../../../proto/gen/sluice/v1/groups.js";

/** Most settles in one QueueRequest: keeps a request far below gRPC's message size limit. */
export const MAX_SETTLES_PER_REQUEST = 1_000;

export type SettleKind = "ack" | "nack" | "extend";

/** What the batcher remembers about a caller between two settles (a Job). */
export interface SettleOwner {
  /** Stamp of the batch holding this owner's last settle; 0 when none. */
  settleStamp: number;
}

export interface SettleBatcherOptions {
  /** @defaultValue 1000 */
  maxSettlesPerRequest?: number;
  /** Credit alone is sent once this much was returned. @defaultValue 1 */
  creditThreshold?: number;
  /** Runs a flush later; tests pass their own. @defaultValue setImmediate */
  schedule?: (flush: () => void) => void;
}

/**
 * Sends one request on the current stream; false when there is no stream right now (the
 * batch waits for `resume()`).
 */
export type SettleWrite = (request: QueueRequest) => boolean;

class SettleBatch {
  correlationId = 0;
  readonly acks: QueueSettle[] = [];
  readonly nacks: QueueSettle[] = [];
  readonly extends: QueueSettle[] = [];
  /** Every settle in the order added, with its caller's promise callbacks at the same index. */
  readonly settles: QueueSettle[] = [];
  readonly resolvers: (() => void)[] = [];
  readonly rejecters: ((err: SluiceError) => void)[] = [];

  constructor(readonly stamp: number) {}

  get size(): number {
    return this.settles.length;
  }

  resolveAll(): void {
    for (const resolve of this.resolvers) resolve();
  }

  rejectAll(err: SluiceError): void {
    for (const reject of this.rejecters) reject(err);
  }

  /**
   * Resolves the settles the broker accepted and rejects those it named. An error with a
   * negative offset is about the whole request (the broker could not make it durable): every
   * settle of the batch rejects with it.
   */
  answer(errors: QueueSettled["errors"]): void {
    if (errors.length === 0) return this.resolveAll();
    const refused = new Map<string, SluiceError>();
    for (const e of errors) {
      const err =
        e.error === undefined
          ? new SluiceError("UNKNOWN_LEASE", `the broker refused the settle of partition ${e.partition} offset ${e.offset}`)
          : fromWireError(e.error);
      if (e.offset < 0) return this.rejectAll(err);
      refused.set(`${e.partition}:${e.offset}`, err);
    }
    for (let i = 0; i < this.settles.length; i++) {
      const settle = this.settles[i]!;
      const err = refused.get(`${settle.partition}:${settle.offset}`);
      if (err === undefined) this.resolvers[i]!();
      else this.rejecters[i]!(err);
    }
  }
}

export class SettleBatcher {
  private readonly maxSettles: number;
  private readonly creditThreshold: number;
  private readonly schedule: (flush: () => void) => void;
  private current: SettleBatch | undefined;
  private nextStamp = 1;
  private nextCorrelationId = 1;
  private scheduled = false;
  private credit = 0;
  /** Batches closed while no stream was open, sent in order by `resume()`. */
  private waiting: SettleBatch[] = [];
  private readonly inFlight = new Map<number, SettleBatch>();
  private idleWaiters: (() => void)[] = [];
  private readonly flushLater = (): void => {
    this.scheduled = false;
    this.flush();
  };

  constructor(
    private readonly write: SettleWrite,
    options: SettleBatcherOptions = {},
  ) {
    this.maxSettles = options.maxSettlesPerRequest ?? MAX_SETTLES_PER_REQUEST;
    this.creditThreshold = options.creditThreshold ?? 1;
    this.schedule = options.schedule ?? setImmediate;
    if (!Number.isInteger(this.maxSettles) || this.maxSettles < 1) {
      throw new InvalidArgumentError(`maxSettlesPerRequest must be a positive integer, got ${String(this.maxSettles)}`);
    }
  }

  /** Settles not yet answered: gathering, waiting for a stream, or sent. */
  get pendingSettles(): number {
    let count = this.current?.size ?? 0;
    for (const batch of this.waiting) count += batch.size;
    for (const batch of this.inFlight.values()) count += batch.size;
    return count;
  }

  /** Queues one settle; resolves once the broker made it durable. */
  add(kind: SettleKind, owner: SettleOwner, settle: QueueSettle): Promise<void> {
    let batch = this.current;
    if (batch !== undefined && owner.settleStamp === batch.stamp) {
      this.flush();
      batch = undefined;
    }
    if (batch === undefined) {
      batch = this.current = new SettleBatch(this.nextStamp++);
      this.scheduleFlush();
    }
    owner.settleStamp = batch.stamp;
    (kind === "ack" ? batch.acks : kind === "nack" ? batch.nacks : batch.extends).push(settle);
    batch.settles.push(settle);
    const done = new Promise<void>((resolve, reject) => {
      batch.resolvers.push(resolve);
      batch.rejecters.push(reject);
    });
    if (batch.size >= this.maxSettles) this.flush();
    return done;
  }

  /** Gives `messages` of credit back to the broker with the next request. */
  grantCredit(messages: number): void {
    this.credit += messages;
    if (this.credit >= this.creditThreshold) this.scheduleFlush();
  }

  /** Forgets credit not sent yet: a new stream starts with its own grant. */
  dropCredit(): void {
    this.credit = 0;
  }

  /** Sends the current batch (and pending credit) now. */
  flush(): void {
    const batch = this.current;
    this.current = undefined;
    if (batch === undefined) {
      if (this.credit > 0 && this.waiting.length === 0) this.send(undefined);
      return;
    }
    // Batches wait in order: nothing overtakes one that is waiting for a stream.
    if (this.waiting.length > 0 || !this.send(batch)) this.waiting.push(batch);
  }

  /** A stream is open again: sends the batches that waited for it, in order. */
  resume(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (let i = 0; i < waiting.length; i++) {
      if (!this.send(waiting[i]!)) {
        this.waiting = waiting.slice(i);
        return;
      }
    }
    if (this.credit > 0) this.scheduleFlush();
  }

  /** The broker answered request `settled.correlationId`. Unknown ids (credit only) are ignored. */
  settled(settled: QueueSettled): void {
    const batch = this.inFlight.get(settled.correlationId);
    if (batch === undefined) return;
    this.inFlight.delete(settled.correlationId);
    batch.answer(settled.errors);
    this.checkIdle();
  }

  /**
   * The stream died: requests sent on it will never be answered, so their settles reject
   * with `err`. The broker delivers those jobs again once their leases expire.
   */
  streamLost(err: SluiceError): void {
    this.credit = 0;
    const lost = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const batch of lost) batch.rejectAll(err);
    this.checkIdle();
  }

  /** Rejects every settle not answered yet, sent or not (the consumer is closing). */
  rejectAll(err: SluiceError): void {
    this.streamLost(err);
    const unsent = this.waiting;
    this.waiting = [];
    if (this.current !== undefined) unsent.push(this.current);
    this.current = undefined;
    for (const batch of unsent) batch.rejectAll(err);
    this.checkIdle();
  }

  /** Resolves once nothing is pending, or after `timeoutMs`. */
  whenIdle(timeoutMs: number): Promise<void> {
    if (this.pendingSettles === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.idleWaiters.push(done);
    });
  }

  private scheduleFlush(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.schedule(this.flushLater);
  }

  /** Writes a request for `batch` (or credit alone); false when no stream took it (the caller keeps the batch). */
  private send(batch: SettleBatch | undefined): boolean {
    const request: QueueRequest = {
      creditMessages: this.credit,
      correlationId: 0,
      acks: batch?.acks ?? [],
      nacks: batch?.nacks ?? [],
      extends: batch?.extends ?? [],
    };
    if (batch !== undefined) request.correlationId = batch.correlationId = this.nextCorrelationId++;
    if (!this.write(request)) return false;
    this.credit = 0;
    if (batch !== undefined) this.inFlight.set(batch.correlationId, batch);
    return true;
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || this.pendingSettles > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const done of waiters) done();
  }
}
