/**
 * The queue-mode ack window of one (group, topic, partition): which offsets are leased to which
 * member, nacked for later, acked, or waiting to be dead-lettered. Pure and clock-free: every
 * time is passed in as `nowMs`, so the coordinator decides when to call `expire` (at `nextDueMs`).
 *
 * The window covers [startOffset, nextOffset). Every offset below startOffset is done; every
 * offset at or above nextOffset was never delivered. Inside, each offset has one state and a
 * delivery count. Per-offset data lives in parallel typed arrays used as a ring indexed by
 * `offset - startOffset`, so lease/ack touch one slot; the ring grows by doubling up to the
 * window cap (`maxWindow`), which also bounds memory when one message is stuck.
 *
 * Three heaps keep lease/ack O(log n) without scanning the window: `ready` (available offsets
 * below nextOffset, lowest first), `deadlines` (leases by deadline) and `delayed` (nacked offsets
 * by the time they come back). Entries are never removed in place: an entry whose offset changed
 * state since it was pushed is skipped when it surfaces, and a heap is rebuilt from its live
 * entries when stale ones outnumber them (amortised O(1) per entry).
 *
 * Per-key ordering: offsets with the same key form a doubly linked chain in offset order (the
 * links are offsets, stored per slot). Only the head of a chain may be leased, so a key is with
 * one member at a time and in order, and a stuck key blocks only its own chain. Keys come from
 * the caller's `keyOf`; offsets that entered the window without one (a restored window, or calls
 * without `keyOf`) get their key on the next call that passes `keyOf` (`keyedThrough`).
 */
import { InvalidArgumentError, InvalidConfigError } from "../../../common/src/errors.js";

export const DEFAULT_MAX_QUEUE_WINDOW = 10_000;
/** Ring slots allocated up front; the ring doubles when the window grows past it. */
const INITIAL_RING_SLOTS = 64;
/** A heap is rebuilt once it holds this many more entries than twice its live ones. */
const HEAP_SLACK_ENTRIES = 1024;

export interface QueueWindowOptions {
  /** Most offsets between startOffset and nextOffset; leasing new offsets stops at the cap. @defaultValue 10_000 */
  maxWindow?: number;
}

export interface Lease {
  offset: number;
  deliveryCount: number;
  leaseId: number;
  deadlineMs: number;
}

export interface WindowSnapshot {
  startOffset: number;
  /** Offsets ≥ startOffset already acked (or dead and settled), as sorted [from, toExclusive) ranges. */
  done: Array<[number, number]>;
  /** Delivery counts of offsets ≥ startOffset delivered at least once and not done: [offset, count] pairs, sorted. Dead offsets carry theirs in `dead`. */
  deliveries: Array<[number, number]>;
  /** Offsets waiting to be dead-lettered: [offset, deliveryCount, lastError] */
  dead: Array<[number, number, string]>;
}

/** unknown = not leased, lease expired/reassigned, wrong member or leaseId. */
export type SettleResult = "ok" | "unknown-lease";

export type OffsetState = "available" | "leased" | "delayed" | "acked" | "dead";

// Slot states. AVAILABLE covers both due redeliveries and never-delivered offsets parked behind their key.
const AVAILABLE = 0;
const LEASED = 1;
const DELAYED = 2;
const DONE = 3;
const DEAD = 4;
const STATE_NAMES: readonly OffsetState[] = ["available", "leased", "delayed", "acked", "dead"];
/** `keys` value of an offset without a key; `prevSame`/`nextSame` value for "no neighbour". */
const NO_KEY = Number.NaN;
const NONE = -1;

interface KeyChain {
  head: number;
  tail: number;
}

export function parseQueueWindowOptions(options: QueueWindowOptions = {}): Required<QueueWindowOptions> {
  const maxWindow = options.maxWindow ?? DEFAULT_MAX_QUEUE_WINDOW;
  if (!Number.isSafeInteger(maxWindow) || maxWindow < 1) {
    throw new InvalidConfigError(`maxWindow must be a positive integer (offsets in flight per partition), got ${String(maxWindow)}`);
  }
  return { maxWindow };
}

function checkOffset(name: string, offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new InvalidArgumentError(`${name} must be a non-negative integer offset, got ${String(offset)}`);
  }
}

export class QueueWindow {
  private readonly maxWindow: number;
  private start: number;
  private next: number;
  /** Offsets below this had `keyOf` applied (when a caller passed one). */
  private keyedThrough: number;
  private headSlot = 0;
  private mask = INITIAL_RING_SLOTS - 1;
  private states = new Uint8Array(INITIAL_RING_SLOTS);
  private deliveries = new Uint32Array(INITIAL_RING_SLOTS);
  private leaseIds = new Float64Array(INITIAL_RING_SLOTS);
  /** Lease deadline (LEASED) or the time it becomes available again (DELAYED). */
  private times = new Float64Array(INITIAL_RING_SLOTS);
  private members: Array<string | undefined> = new Array<string | undefined>(INITIAL_RING_SLOTS);
  /** 1 while the offset has an entry in `ready`, so it is pushed once. */
  private inReady = new Uint8Array(INITIAL_RING_SLOTS);
  private keys = new Float64Array(INITIAL_RING_SLOTS);
  private prevSame = new Float64Array(INITIAL_RING_SLOTS);
  private nextSame = new Float64Array(INITIAL_RING_SLOTS);
  private readonly chains = new Map<number, KeyChain>();
  private readonly lastErrors = new Map<number, string>();
  private readonly ready = new EntryHeap();
  private readonly deadlines = new EntryHeap();
  private readonly delayedHeap = new EntryHeap();
  private lastLeaseId = 0;
  private changes = 0;
  private counts = [0, 0, 0, 0, 0];
  private redeliveries = 0;

  constructor(startOffset: number, options?: QueueWindowOptions) {
    checkOffset("startOffset", startOffset);
    this.maxWindow = parseQueueWindowOptions(options).maxWindow;
    this.start = startOffset;
    this.next = startOffset;
    this.keyedThrough = startOffset;
  }

  /** Leases are not durable: restored delivered-but-unacked offsets become available (count kept). */
  static restore(snapshot: WindowSnapshot, options?: QueueWindowOptions): QueueWindow {
    const window = new QueueWindow(snapshot.startOffset, options);
    const start = snapshot.startOffset;
    let end = start;
    for (const [from, to] of snapshot.done) {
      checkOffset("done range start", from);
      if (!Number.isSafeInteger(to) || to < from) throw new InvalidArgumentError(`done range [${from}, ${String(to)}) is not a range`);
      end = Math.max(end, to);
    }
    for (const [offset] of snapshot.deliveries) {
      checkOffset("delivery offset", offset);
      end = Math.max(end, offset + 1);
    }
    for (const [offset] of snapshot.dead) {
      checkOffset("dead offset", offset);
      end = Math.max(end, offset + 1);
    }
    for (let offset = start; offset < end; offset++) window.enter(offset, undefined);
    for (const [from, to] of snapshot.done) {
      for (let offset = Math.max(from, start); offset < to; offset++) window.setState(window.slotOf(offset), DONE);
    }
    for (const [offset, count] of snapshot.deliveries) {
      if (offset < start) continue;
      const slot = window.slotOf(offset);
      if (window.states[slot] === AVAILABLE) window.deliveries[slot] = count;
    }
    for (const [offset, count, lastError] of snapshot.dead) {
      if (offset < start) continue;
      const slot = window.slotOf(offset);
      window.setState(slot, DEAD);
      window.deliveries[slot] = count;
      window.lastErrors.set(offset, lastError);
    }
    for (let offset = start; offset < end; offset++) {
      const slot = window.slotOf(offset);
      if (window.states[slot] === AVAILABLE) window.pushReady(slot, offset);
    }
    window.advanceStart();
    window.changes = 0;
    return window;
  }

  get startOffset(): number {
    return this.start;
  }

  /** First offset never delivered (the window is [startOffset, nextOffset)). */
  get nextOffset(): number {
    return this.next;
  }

  get inFlight(): number {
    return this.counts[LEASED]!;
  }

  get version(): number {
    return this.changes;
  }

  /** State of one offset: below the window it is "acked", above it "available" (never delivered). */
  stateOf(offset: number): OffsetState {
    if (offset < this.start) return "acked";
    if (offset >= this.next) return "available";
    return STATE_NAMES[this.states[this.slotOf(offset)]!]!;
  }

  /**
   * Leases up to maxCount offsets to memberId for invisibleMs, lowest offsets first: due
   * redeliveries, then new offsets below endOffset (the log end) while the window has room.
   * With keyOf, only the oldest not-done offset of a key is leased, and only when nothing else
   * of that key is leased, delayed or waiting for the DLQ; other keys are not blocked.
   */
  lease(
    memberId: string,
    maxCount: number,
    endOffset: number,
    nowMs: number,
    invisibleMs: number,
    keyOf?: (offset: number) => number | undefined,
  ): Lease[] {
    const leases: Lease[] = [];
    this.promoteDelayed(nowMs);
    if (maxCount <= 0) return leases;
    if (keyOf) this.resolveKeys(keyOf);
    const deadlineMs = nowMs + invisibleMs;
    while (leases.length < maxCount && this.ready.size > 0) {
      const offset = this.ready.topOffset();
      this.ready.pop();
      if (!this.inWindow(offset)) continue;
      const slot = this.slotOf(offset);
      this.inReady[slot] = 0;
      if (this.states[slot] === AVAILABLE && this.isKeyHead(slot, offset)) {
        leases.push(this.grant(slot, offset, memberId, deadlineMs));
      }
    }
    const windowEnd = this.start + this.maxWindow;
    while (leases.length < maxCount && this.next < endOffset && this.next < windowEnd) {
      const offset = this.next;
      const slot = this.enter(offset, keyOf);
      if (this.isKeyHead(slot, offset)) leases.push(this.grant(slot, offset, memberId, deadlineMs));
    }
    if (keyOf) this.keyedThrough = this.next;
    return leases;
  }

  ack(memberId: string, offset: number, leaseId: number): SettleResult {
    const slot = this.leasedSlot(memberId, offset, leaseId);
    if (slot === NONE) return "unknown-lease";
    this.finish(slot, offset);
    return "ok";
  }

  /** Back to available after delayMs; if deliveryCount ≥ maxDeliveries it goes to `dead` with lastError instead. */
  nack(
    memberId: string,
    offset: number,
    leaseId: number,
    nowMs: number,
    delayMs: number,
    maxDeliveries: number,
    lastError = "nacked by consumer",
  ): SettleResult {
    const slot = this.leasedSlot(memberId, offset, leaseId);
    if (slot === NONE) return "unknown-lease";
    this.members[slot] = undefined;
    if (this.deliveries[slot]! >= maxDeliveries) {
      this.kill(slot, offset, lastError);
    } else if (delayMs > 0) {
      this.setState(slot, DELAYED);
      this.times[slot] = nowMs + delayMs;
      this.delayedHeap.push(nowMs + delayMs, offset, 0);
    } else {
      this.setState(slot, AVAILABLE);
      this.pushReady(slot, offset);
    }
    this.changes++;
    return "ok";
  }

  /** New deadline = nowMs + extraMs; the lease keeps its leaseId. */
  extend(memberId: string, offset: number, leaseId: number, nowMs: number, extraMs: number): SettleResult {
    const slot = this.leasedSlot(memberId, offset, leaseId);
    if (slot === NONE) return "unknown-lease";
    this.times[slot] = nowMs + extraMs;
    this.pushDeadline(nowMs + extraMs, offset, leaseId);
    this.changes++;
    return "ok";
  }

  /** Expired leases become available again (or dead when deliveryCount ≥ maxDeliveries, lastError "lease expired"); returns the offsets that expired. */
  expire(nowMs: number, maxDeliveries: number): number[] {
    this.promoteDelayed(nowMs);
    const expired: number[] = [];
    while (this.deadlines.size > 0 && this.deadlines.topKey() <= nowMs) {
      const offset = this.deadlines.topOffset();
      const live = this.isLiveLease(this.deadlines.topKey(), offset, this.deadlines.topTag());
      this.deadlines.pop();
      if (!live) continue;
      const slot = this.slotOf(offset);
      this.members[slot] = undefined;
      if (this.deliveries[slot]! >= maxDeliveries) {
        this.kill(slot, offset, "lease expired");
      } else {
        this.setState(slot, AVAILABLE);
        this.pushReady(slot, offset);
      }
      expired.push(offset);
    }
    if (expired.length > 0) this.changes++;
    return expired.sort((a, b) => a - b);
  }

  /** Offsets in `dead` state, for the caller to move to the DLQ. */
  deadLetters(): Array<{ offset: number; deliveryCount: number; lastError: string }> {
    return [...this.lastErrors]
      .sort((a, b) => a[0] - b[0])
      .map(([offset, lastError]) => ({ offset, deliveryCount: this.deliveries[this.slotOf(offset)]!, lastError }));
  }

  /** DLQ append done: the offset counts as done. Settling an offset that is not dead does nothing. */
  settleDead(offset: number): void {
    if (!this.inWindow(offset)) return;
    const slot = this.slotOf(offset);
    if (this.states[slot] !== DEAD) return;
    this.lastErrors.delete(offset);
    this.finish(slot, offset);
  }

  /** Releases every lease of memberId (member left/crashed): those offsets become available now, delivery count kept. */
  releaseMember(memberId: string): number[] {
    const released: number[] = [];
    if (this.counts[LEASED] === 0) return released;
    for (let offset = this.start; offset < this.next; offset++) {
      const slot = this.slotOf(offset);
      if (this.states[slot] !== LEASED || this.members[slot] !== memberId) continue;
      this.members[slot] = undefined;
      this.setState(slot, AVAILABLE);
      this.pushReady(slot, offset);
      released.push(offset);
    }
    if (released.length > 0) this.changes++;
    return released;
  }

  /** Earliest time something changes by itself (a lease deadline or a delayed offset becoming available), or undefined. */
  nextDueMs(): number | undefined {
    const deadlines = this.deadlines;
    while (deadlines.size > 0 && !this.isLiveLease(deadlines.topKey(), deadlines.topOffset(), deadlines.topTag())) deadlines.pop();
    const delayed = this.delayedHeap;
    while (delayed.size > 0 && !this.isLiveDelay(delayed.topKey(), delayed.topOffset())) delayed.pop();
    if (deadlines.size === 0) return delayed.size === 0 ? undefined : delayed.topKey();
    return delayed.size === 0 ? deadlines.topKey() : Math.min(deadlines.topKey(), delayed.topKey());
  }

  /** Moves the window when the log start moved past it (retention): offsets below are dropped, leases on them become unknown. */
  truncateTo(logStartOffset: number): void {
    checkOffset("logStartOffset", logStartOffset);
    if (logStartOffset <= this.start) return;
    if (logStartOffset >= this.next) {
      this.reset(logStartOffset);
      return;
    }
    // Lowest first: each dropped keyed offset is then the head of its chain when unlinked.
    for (let offset = this.start; offset < logStartOffset; offset++) {
      const slot = this.slotOf(offset);
      this.unlinkKey(slot, offset);
      this.lastErrors.delete(offset);
      this.counts[this.states[slot]!]!--;
      this.members[slot] = undefined;
    }
    this.headSlot = this.slotOf(logStartOffset);
    this.start = logStartOffset;
    this.advanceStart();
    this.changes++;
  }

  /** Resets to a new start (admin reset): everything cleared. */
  reset(startOffset: number): void {
    checkOffset("startOffset", startOffset);
    this.start = startOffset;
    this.next = startOffset;
    this.keyedThrough = startOffset;
    this.headSlot = 0;
    this.members.fill(undefined);
    this.chains.clear();
    this.lastErrors.clear();
    this.ready.clear();
    this.deadlines.clear();
    this.delayedHeap.clear();
    this.counts = [0, 0, 0, 0, 0];
    this.changes++;
  }

  snapshot(): WindowSnapshot {
    const done: Array<[number, number]> = [];
    const deliveries: Array<[number, number]> = [];
    const dead: Array<[number, number, string]> = [];
    for (let offset = this.start; offset < this.next; offset++) {
      const slot = this.slotOf(offset);
      const state = this.states[slot];
      if (state === DONE) {
        const last = done[done.length - 1];
        if (last !== undefined && last[1] === offset) last[1] = offset + 1;
        else done.push([offset, offset + 1]);
      } else if (state === DEAD) {
        dead.push([offset, this.deliveries[slot]!, this.lastErrors.get(offset) ?? ""]);
      } else if (this.deliveries[slot]! > 0) {
        deliveries.push([offset, this.deliveries[slot]!]);
      }
    }
    return { startOffset: this.start, done, deliveries, dead };
  }

  /** Counts for metrics: available backlog inside the window, leased, delayed, dead, redeliveries since this window was built. */
  stats(): { available: number; leased: number; delayed: number; dead: number; redeliveries: number } {
    const counts = this.counts;
    return { available: counts[AVAILABLE]!, leased: counts[LEASED]!, delayed: counts[DELAYED]!, dead: counts[DEAD]!, redeliveries: this.redeliveries };
  }

  private inWindow(offset: number): boolean {
    return offset >= this.start && offset < this.next;
  }

  private slotOf(offset: number): number {
    return (this.headSlot + (offset - this.start)) & this.mask;
  }

  /** The slot of a live lease matching all three, or NONE. */
  private leasedSlot(memberId: string, offset: number, leaseId: number): number {
    if (!this.inWindow(offset)) return NONE;
    const slot = this.slotOf(offset);
    if (this.states[slot] !== LEASED || this.leaseIds[slot] !== leaseId || this.members[slot] !== memberId) return NONE;
    return slot;
  }

  private isLiveLease(deadlineMs: number, offset: number, leaseId: number): boolean {
    if (!this.inWindow(offset)) return false;
    const slot = this.slotOf(offset);
    return this.states[slot] === LEASED && this.leaseIds[slot] === leaseId && this.times[slot] === deadlineMs;
  }

  private isLiveDelay(availableAtMs: number, offset: number): boolean {
    if (!this.inWindow(offset)) return false;
    const slot = this.slotOf(offset);
    return this.states[slot] === DELAYED && this.times[slot] === availableAtMs;
  }

  private setState(slot: number, state: number): void {
    this.counts[this.states[slot]!]!--;
    this.counts[state]!++;
    this.states[slot] = state;
  }

  /** Takes offset (= nextOffset) into the window as available, never delivered, keyed if keyOf is given. */
  private enter(offset: number, keyOf: ((offset: number) => number | undefined) | undefined): number {
    this.ensureCapacity(offset - this.start + 1);
    const slot = this.slotOf(offset);
    this.states[slot] = AVAILABLE;
    this.counts[AVAILABLE]!++;
    this.deliveries[slot] = 0;
    this.members[slot] = undefined;
    this.inReady[slot] = 0;
    this.keys[slot] = NO_KEY;
    this.next = offset + 1;
    if (keyOf) this.linkKey(slot, offset, keyOf(offset));
    return slot;
  }

  private grant(slot: number, offset: number, memberId: string, deadlineMs: number): Lease {
    this.setState(slot, LEASED);
    const deliveryCount = ++this.deliveries[slot]!;
    if (deliveryCount > 1) this.redeliveries++;
    const leaseId = ++this.lastLeaseId;
    this.leaseIds[slot] = leaseId;
    this.times[slot] = deadlineMs;
    this.members[slot] = memberId;
    this.pushDeadline(deadlineMs, offset, leaseId);
    this.changes++;
    return { offset, deliveryCount, leaseId, deadlineMs };
  }

  /** Acked or dead-lettered: done, frees its key for the next offset, and moves the start past done offsets. */
  private finish(slot: number, offset: number): void {
    this.members[slot] = undefined;
    this.setState(slot, DONE);
    this.unlinkKey(slot, offset);
    this.advanceStart();
    this.changes++;
  }

  private kill(slot: number, offset: number, lastError: string): void {
    this.setState(slot, DEAD);
    this.lastErrors.set(offset, lastError);
  }

  private advanceStart(): void {
    while (this.start < this.next && this.states[this.headSlot] === DONE) {
      this.counts[DONE]!--;
      this.start++;
      this.headSlot = (this.headSlot + 1) & this.mask;
    }
  }

  private promoteDelayed(nowMs: number): void {
    const delayed = this.delayedHeap;
    while (delayed.size > 0 && delayed.topKey() <= nowMs) {
      const offset = delayed.topOffset();
      const live = this.isLiveDelay(delayed.topKey(), offset);
      delayed.pop();
      if (!live) continue;
      const slot = this.slotOf(offset);
      this.setState(slot, AVAILABLE);
      this.pushReady(slot, offset);
      this.changes++;
    }
  }

  private pushReady(slot: number, offset: number): void {
    if (this.inReady[slot] === 1 || !this.isKeyHead(slot, offset)) return;
    this.inReady[slot] = 1;
    this.ready.push(offset, offset, 0);
    if (this.ready.size > 2 * this.counts[AVAILABLE]! + HEAP_SLACK_ENTRIES) {
      this.ready.retain((_key, readyOffset) => this.inWindow(readyOffset) && this.inReady[this.slotOf(readyOffset)] === 1);
    }
  }

  private pushDeadline(deadlineMs: number, offset: number, leaseId: number): void {
    this.deadlines.push(deadlineMs, offset, leaseId);
    if (this.deadlines.size > 2 * this.counts[LEASED]! + HEAP_SLACK_ENTRIES) {
      this.deadlines.retain((key, leasedOffset, tag) => this.isLiveLease(key, leasedOffset, tag));
    }
  }

  private isKeyHead(slot: number, offset: number): boolean {
    const key = this.keys[slot]!;
    return Number.isNaN(key) || this.chains.get(key)!.head === offset;
  }

  /** Gives keys to the offsets that entered the window without one, in offset order. */
  private resolveKeys(keyOf: (offset: number) => number | undefined): void {
    for (let offset = Math.max(this.keyedThrough, this.start); offset < this.next; offset++) {
      const slot = this.slotOf(offset);
      const state = this.states[slot];
      if (state !== DONE && Number.isNaN(this.keys[slot]!)) this.linkKey(slot, offset, keyOf(offset));
    }
    this.keyedThrough = this.next;
  }

  private linkKey(slot: number, offset: number, key: number | undefined): void {
    this.prevSame[slot] = NONE;
    this.nextSame[slot] = NONE;
    if (key === undefined || Number.isNaN(key)) return;
    this.keys[slot] = key;
    const chain = this.chains.get(key);
    if (chain === undefined) {
      this.chains.set(key, { head: offset, tail: offset });
      return;
    }
    this.prevSame[slot] = chain.tail;
    this.nextSame[this.slotOf(chain.tail)] = offset;
    chain.tail = offset;
  }

  private unlinkKey(slot: number, offset: number): void {
    const key = this.keys[slot]!;
    if (Number.isNaN(key)) return;
    this.keys[slot] = NO_KEY;
    const chain = this.chains.get(key)!;
    const prev = this.prevSame[slot]!;
    const next = this.nextSame[slot]!;
    if (prev !== NONE) this.nextSame[this.slotOf(prev)] = next;
    else chain.head = next;
    if (next !== NONE) this.prevSame[this.slotOf(next)] = prev;
    else chain.tail = prev;
    if (chain.head === NONE) {
      this.chains.delete(key);
    } else if (prev === NONE) {
      // The key's next offset is now its head: if it is waiting, it may be leased.
      const headSlot = this.slotOf(next);
      if (this.states[headSlot] === AVAILABLE) this.pushReady(headSlot, next);
    }
  }

  /** Grows the ring (doubling) so `span` offsets from startOffset fit; slots are re-laid from index 0. */
  private ensureCapacity(span: number): void {
    const capacity = this.mask + 1;
    if (span <= capacity) return;
    let grown = capacity * 2;
    while (grown < span) grown *= 2;
    const order = (from: number): number => (this.headSlot + from) & this.mask;
    const used = this.next - this.start;
    const relay = <T extends Uint8Array | Uint32Array | Float64Array>(old: T, fresh: T): T => {
      for (let i = 0; i < used; i++) fresh[i] = old[order(i)]!;
      return fresh;
    };
    this.states = relay(this.states, new Uint8Array(grown));
    this.deliveries = relay(this.deliveries, new Uint32Array(grown));
    this.leaseIds = relay(this.leaseIds, new Float64Array(grown));
    this.times = relay(this.times, new Float64Array(grown));
    this.inReady = relay(this.inReady, new Uint8Array(grown));
    this.keys = relay(this.keys, new Float64Array(grown));
    this.prevSame = relay(this.prevSame, new Float64Array(grown));
    this.nextSame = relay(this.nextSame, new Float64Array(grown));
    const members = new Array<string | undefined>(grown);
    for (let i = 0; i < used; i++) members[i] = this.members[order(i)];
    this.members = members;
    this.headSlot = 0;
    this.mask = grown - 1;
  }
}

/**
 * Binary min-heap of (key, offset, tag) triples in three parallel arrays (no object per entry).
 * No removal in place: callers skip entries that went stale and `retain` the live ones.
 */
class EntryHeap {
  private keys: number[] = [];
  private offsets: number[] = [];
  private tags: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  topKey(): number {
    return this.keys[0]!;
  }

  topOffset(): number {
    return this.offsets[0]!;
  }

  topTag(): number {
    return this.tags[0]!;
  }

  push(key: number, offset: number, tag: number): void {
    let at = this.keys.length;
    this.keys.push(key);
    this.offsets.push(offset);
    this.tags.push(tag);
    while (at > 0) {
      const parent = (at - 1) >> 1;
      if (this.keys[parent]! <= key) break;
      this.move(parent, at);
      at = parent;
    }
    this.place(at, key, offset, tag);
  }

  /** Removes the top entry. */
  pop(): void {
    const last = this.keys.length - 1;
    const key = this.keys[last]!;
    const offset = this.offsets[last]!;
    const tag = this.tags[last]!;
    this.keys.pop();
    this.offsets.pop();
    this.tags.pop();
    if (last > 0) this.siftDown(0, key, offset, tag);
  }

  /** Keeps only the entries `live` accepts, then restores the heap order in O(n). */
  retain(live: (key: number, offset: number, tag: number) => boolean): void {
    let kept = 0;
    for (let i = 0; i < this.keys.length; i++) {
      if (!live(this.keys[i]!, this.offsets[i]!, this.tags[i]!)) continue;
      this.place(kept++, this.keys[i]!, this.offsets[i]!, this.tags[i]!);
    }
    this.keys.length = kept;
    this.offsets.length = kept;
    this.tags.length = kept;
    for (let i = (kept >> 1) - 1; i >= 0; i--) this.siftDown(i, this.keys[i]!, this.offsets[i]!, this.tags[i]!);
  }

  clear(): void {
    this.keys = [];
    this.offsets = [];
    this.tags = [];
  }

  private siftDown(at: number, key: number, offset: number, tag: number): void {
    const size = this.keys.length;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= size) break;
      if (child + 1 < size && this.keys[child + 1]! < this.keys[child]!) child++;
      if (this.keys[child]! >= key) break;
      this.move(child, at);
      at = child;
    }
    this.place(at, key, offset, tag);
  }

  private move(from: number, to: number): void {
    this.keys[to] = this.keys[from]!;
    this.offsets[to] = this.offsets[from]!;
    this.tags[to] = this.tags[from]!;
  }

  private place(at: number, key: number, offset: number, tag: number): void {
    this.keys[at] = key;
    this.offsets[at] = offset;
    this.tags[at] = tag;
  }
}
