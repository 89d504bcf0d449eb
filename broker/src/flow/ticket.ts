/**
 * One produce request's way through flow control: a slot of every concurrency rule first,
 * then every rate rule charged at once, then the longest rate wait.
 *
 * Rate rules are charged last, when nothing but a rate rule itself can still refuse the
 * request, so a request refused for want of a slot costs no tokens. A request given up
 * before it ran (`cancel`: refused behind an earlier batch, its stream gone, shutdown) hands
 * back its slots and what its rate rules booked.
 */
import type { SluiceError } from "../../../common/src/errors.js";
import type { FlowRequest, RuleState, SlotWaiter } from "./rule-state.js";

/** A request let through (now or later). */
export interface FlowTicket {
  /** True when the request may go on at once: no wait and every concurrency slot taken. */
  readonly immediate: boolean;
  /** Resolves when the request may go on; rejects with a ThrottledError (or the cancel reason). Undefined when immediate. */
  readonly ready: Promise<void> | undefined;
  /**
   * The request went on and its append settled: frees its concurrency slots. Called before
   * the request went on, it is cancel(). Once only; later calls do nothing.
   */
  release(): void;
  /**
   * The request will not go on: frees its slots, gives back what its rate rules booked, and
   * rejects a pending `ready` with `reason`. Does nothing after release() or a first cancel().
   */
  cancel(reason?: SluiceError): void;
}

/** What a ticket needs from its controller. */
export interface TicketHost {
  now(): number;
  schedule(run: () => void, delayMs: number): () => void;
  decided(state: RuleState, result: "admitted" | "delayed" | "refused", bytes: number): void;
  held(waitMs: number): void;
  /** The refusal of `request` by `state` (waitMs undefined: no slot in time). */
  refusal(state: RuleState, request: FlowRequest, waitMs: number | undefined): SluiceError;
}

/**
 * Waits shorter than this are not held: a timer cannot wait less than 1 ms, and a limiter
 * without burst (warm-up, leaky bucket) books requests arriving together microseconds apart,
 * which would otherwise each be held a whole millisecond. The limiter has booked them anyway.
 */
export const MIN_HOLD_MS = 1;

export class Ticket implements FlowTicket {
  readonly immediate: boolean;
  readonly ready: Promise<void> | undefined;
  /** Concurrency rules whose slot this request holds. */
  private readonly holding: RuleState[] = [];
  /** Rate rules charged for this request, with their booking ids (for refunds). */
  private readonly charged: { state: RuleState; booking: number }[] = [];
  /** Of those, the ones holding it (counted in their `held` until the wait ends). */
  private readonly delaying: RuleState[] = [];
  private finished = false;
  private cancelReason: SluiceError | undefined;
  /** The request was let through (immediate, or `ready` resolved). */
  private wentOn = false;
  private cancelWait: ((reason: SluiceError | undefined) => void) | undefined;
  private waitingFor: { state: RuleState; waiter: SlotWaiter; fail(reason: SluiceError | undefined): void } | undefined;

  /** Throws the refusal when the request cannot pass within the limits; nothing is then held or charged. */
  constructor(
    private readonly host: TicketHost,
    private readonly request: FlowRequest,
    private readonly rated: readonly RuleState[],
    private readonly concurrency: readonly RuleState[],
  ) {
    const arrivedAtMs = host.now();
    if (!this.takeFreeSlots()) {
      this.immediate = false;
      this.ready = this.waitForSlotsThenRates(arrivedAtMs);
      // The caller may give up on the ticket before it is ready (an earlier batch refused).
      this.ready.catch(() => undefined);
      return;
    }
    const waitMs = this.chargeRates(arrivedAtMs, arrivedAtMs);
    this.immediate = waitMs === 0;
    this.wentOn = this.immediate;
    this.ready = this.immediate ? undefined : this.hold(waitMs).then(() => {
      this.wentOn = true;
    });
    this.ready?.catch(() => undefined);
  }

  release(): void {
    // Released before it went on: it never ran, so it is given up (cancel refunds).
    if (!this.wentOn) {
      this.cancel();
      return;
    }
    if (this.finished) return;
    this.finished = true;
    for (const state of this.holding.splice(0)) handBack(state);
  }

  cancel(reason?: SluiceError): void {
    if (this.finished) return;
    this.finished = true;
    this.cancelReason = reason;
    const waiting = this.waitingFor;
    if (waiting !== undefined) {
      waiting.waiter.cancelTimer();
      waiting.state.slots!.remove(waiting.waiter);
      this.waitingFor = undefined;
      waiting.fail(reason);
    }
    this.cancelWait?.(reason);
    for (const state of this.holding.splice(0)) handBack(state);
    // Newest booking first, so a limiter can undo each while it is its latest.
    for (const { state, booking } of this.charged.splice(0).reverse()) state.rate!.refund(booking);
  }

  /** Takes slots without waiting; false at the first full rule (the slots taken stay held). */
  private takeFreeSlots(): boolean {
    for (let i = this.holding.length; i < this.concurrency.length; i++) {
      const state = this.concurrency[i]!;
      if (!state.slots!.tryAcquire()) return false;
      this.holding.push(state);
      this.host.decided(state, "admitted", this.request.bytes);
    }
    return true;
  }

  /**
   * Probes every rate rule, refuses (releasing the slots, charging nothing) when one would
   * hold the request past its maxQueueMs counted from arrival, else charges them all.
   * Returns the wait, 0 when under MIN_HOLD_MS.
   */
  private chargeRates(arrivedAtMs: number, now: number): number {
    if (this.rated.length === 0) return 0;
    // Time already spent waiting for slots counts against maxQueueMs.
    const waitedMs = now - arrivedAtMs;
    let waitMs = 0;
    for (const state of this.rated) {
      const wait = state.rate!.probe(state.cost(this.request), now);
      if (wait + waitedMs > state.maxQueueMs) {
        for (const other of this.rated) other.rate!.noteRefused(now);
        this.finished = true;
        for (const held of this.holding.splice(0)) handBack(held);
        throw this.host.refusal(state, this.request, wait + waitedMs);
      }
      waitMs = Math.max(waitMs, wait);
    }
    for (const state of this.rated) {
      const held = state.rate!.take(state.cost(this.request), now) >= MIN_HOLD_MS;
      this.charged.push({ state, booking: state.rate!.lastBooking });
      if (held) {
        state.held++;
        this.delaying.push(state);
      }
      this.host.decided(state, held ? "delayed" : "admitted", this.request.bytes);
    }
    return waitMs < MIN_HOLD_MS ? 0 : waitMs;
  }

  private async hold(waitMs: number): Promise<void> {
    try {
      await new Promise<void>((resolve, reject) => {
        const cancelTimer = this.host.schedule(resolve, waitMs);
        this.cancelWait = (reason) => {
          cancelTimer();
          reject(reason ?? new Error("flow control ticket cancelled"));
        };
      });
      this.host.held(waitMs);
    } finally {
      this.cancelWait = undefined;
      for (const state of this.delaying.splice(0)) state.held--;
    }
  }

  private async waitForSlotsThenRates(arrivedAtMs: number): Promise<void> {
    while (!this.takeFreeSlots()) {
      await this.waitForSlot(this.concurrency[this.holding.length]!, arrivedAtMs);
      // Cancelled after its slot was granted but before this continuation ran (a stream
      // closing cancels its tickets one after another, handing each freed slot to the next).
      if (this.finished) throw this.cancelReason ?? new Error("flow control ticket cancelled");
    }
    const waitMs = this.chargeRates(arrivedAtMs, this.host.now());
    if (waitMs > 0) await this.hold(waitMs);
    this.wentOn = true;
  }

  /** Queues for a slot of `state` until granted, or refuses at arrival + maxQueueMs. */
  private waitForSlot(state: RuleState, arrivedAtMs: number): Promise<void> {
    const remainingMs = arrivedAtMs + state.maxQueueMs - this.host.now();
    if (remainingMs <= 0) return Promise.reject(this.refuseForSlot(state));
    return new Promise<void>((resolve, reject) => {
      const waiter: SlotWaiter = {
        grant: () => {
          this.waitingFor = undefined;
          this.holding.push(state);
          this.host.decided(state, "delayed", this.request.bytes);
          resolve();
        },
        cancelTimer: () => undefined,
      };
      waiter.cancelTimer = this.host.schedule(() => {
        if (!state.slots!.remove(waiter)) return;
        this.waitingFor = undefined;
        reject(this.refuseForSlot(state));
      }, remainingMs);
      state.slots!.enqueue(waiter);
      this.waitingFor = { state, waiter, fail: (reason) => reject(reason ?? new Error("flow control ticket cancelled")) };
    });
  }

  private refuseForSlot(state: RuleState): SluiceError {
    this.finished = true;
    for (const held of this.holding.splice(0)) handBack(held);
    return this.host.refusal(state, this.request, undefined);
  }
}

/** Gives a slot back: to the first waiter, or free. */
function handBack(state: RuleState): void {
  const next = state.slots!.release();
  if (next !== undefined) {
    next.cancelTimer();
    next.grant();
  }
}
