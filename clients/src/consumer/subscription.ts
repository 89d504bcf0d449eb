/**
 * One topic subscription: which partitions are read, from which broker stream, at which
 * offset, and what happens when something goes wrong.
 *
 * - Start: each partition starts at its explicit offset, else at the earliest or latest
 *   offset (`fromBeginning`), found with ListOffsets.
 * - Streams: one Subscribe stream per broker, carrying the partitions read from it: each
 *   partition's master, or a slave while the master is missing or unreachable (see
 *   routing/read-replicas.ts); master-check.ts moves them back once the master is reachable.
 * - A stream that fails, or a partition error such as NOT_LEADER, detaches the partitions
 *   concerned (an unreachable broker is marked so, and reads go to another replica); after a
 *   backoff the route is refreshed and they are subscribed again where their masters now
 *   are, from the offset after the last data received (`fetchOffset`), so nothing is skipped
 *   and nothing is delivered twice. Consumers retry for as long as they run: only
 *   non-retriable errors end the iteration.
 * - OFFSET_OUT_OF_RANGE (the position was deleted by retention or truncated): the partition
 *   jumps to the earliest or latest offset, following `fromBeginning`, like Kafka's
 *   auto.offset.reset.
 * - seek() moves a partition on its stream; data the broker sent before it saw the move is
 *   recognised by its offsets and dropped (see `seekTarget`).
 * - Group mode (`managed`): no partition is read until the group member assigns it, with
 *   the start offset it found; revoke() stops one and forgets what was received for it,
 *   pause() stops one but keeps its position. The member commits `positions()`.
 */
import { baseOffsetOf, LOG_OVERHEAD_BYTES } from "../../../common/src/batch/index.js";
import { InvalidArgumentError, UnknownPartitionError, type SluiceError } from "../../../common/src/errors.js";
import { fromWireError } from "../../../common/src/grpc/errors.js";
import type { FetchPartition, FetchResponse } from "../../../proto/gen/sluice/v1/broker.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { listOffsets } from "../routing/list-offsets.js";
import { chooseReadReplica } from "../routing/read-replicas.js";
import { MasterCheck } from "./master-check.js";
import { MessageQueue, PartitionPosition } from "./message-queue.js";
import type { ParsedConsumerOptions, ParsedSubscribeOptions } from "./options.js";
import { SubscribeStream, type SubscribeStreamListener } from "./subscribe-stream.js";

/**
 * Bytes the broker reads per partition per round (a larger batch still goes whole). Measured
 * on the 2-core box: 256 KiB keeps several responses in flight within an 8 MiB window and
 * consumed 100-byte messages faster than 1 MiB or 4 MiB reads did.
 */
const MAX_PARTITION_READ_BYTES = 256 * 1024;
/** Start offsets and resets may be asked of a slave while a partition's master is away. */
const READ_FROM_SLAVES = { readFromSlaves: true } as const;

class SubscribedPartition extends PartitionPosition {
  /** Offset the next received data starts from; where a new stream resumes. */
  fetchOffset = -1;
  /** The stream currently delivering this partition; undefined while detached. */
  stream: SubscribeStream | undefined;
  /**
   * After a seek to this offset: received data that starts after it was sent before the
   * broker saw the seek, and is dropped. -1 when no seek is pending.
   */
  seekTarget = -1;
  /** Its position fell outside the log; look up the reset offset before resubscribing. */
  needsReset = false;
  /** Paused by the application: not subscribed anywhere until resumed. */
  paused = false;
  /** Read from a slave: its master was missing or unreachable when it was attached. */
  fromSlave = false;
}

/** What a group member reads of the positions: see PartitionPosition. */
export type PositionKind = "yielded" | "processed";

export class Subscription implements SubscribeStreamListener {
  readonly queue: MessageQueue;
  private readonly partitions = new Map<number, SubscribedPartition>();
  private readonly streams = new Map<string, SubscribeStream>();
  private readonly detached = new Set<SubscribedPartition>();
  /** Seeks made before the start offsets were known; they win over the start policy. */
  private readonly earlySeeks = new Map<number, number>();
  private readonly partitionReadBytes: number;
  private reattachTimer: NodeJS.Timeout | undefined;
  private reattachAttempt = 0;
  private started = false;
  private closed = false;
  private readonly masterCheck: MasterCheck;

  constructor(
    private readonly context: ClientContext,
    readonly topic: string,
    private readonly options: ParsedConsumerOptions,
    private readonly subscribe: ParsedSubscribeOptions,
    private readonly onClosed: () => void,
    /** Group mode: the partitions and their start offsets come from assign(). */
    private readonly managed = false,
  ) {
    this.queue = new MessageQueue(topic, () => this.close());
    this.partitionReadBytes = Math.min(MAX_PARTITION_READ_BYTES, Math.floor(options.maxBytesInFlight / 2));
    this.masterCheck = new MasterCheck(context, topic, {
      readers: () => this.readers(),
      move: (partitions) => this.move(partitions),
    });
  }

  start(): void {
    if (this.managed) {
      this.started = true;
      return;
    }
    this.initialize().catch((err: SluiceError) => this.queue.fail(err));
  }

  /** Group mode: starts reading these partitions at these offsets; ones already read are left alone. */
  assign(starts: ReadonlyMap<number, number>): void {
    if (this.closed) return;
    const added: SubscribedPartition[] = [];
    for (const [partition, offset] of starts) {
      if (this.partitions.has(partition)) continue;
      const state = new SubscribedPartition(partition);
      state.moveTo(offset);
      state.fetchOffset = offset;
      // Data of an earlier subscription of this partition on the same stream may still be
      // on its way; what starts past the new offset cannot be the answer to this one.
      state.seekTarget = offset;
      this.partitions.set(partition, state);
      added.push(state);
    }
    if (added.length > 0) this.attach(added);
  }

  /**
   * Group mode: stops reading these partitions and drops what was received for them but
   * not yielded yet. Read `positions()` first: they are forgotten here.
   */
  revoke(partitions: Iterable<number>): void {
    const byStream = new Map<SubscribeStream, number[]>();
    for (const partition of partitions) {
      const state = this.partitions.get(partition);
      if (state === undefined) continue;
      this.partitions.delete(partition);
      this.stopReading(state, byStream);
    }
    for (const [stream, list] of byStream) stream.unsubscribe(list);
    if (!this.closed) this.endIdleStreams();
  }

  /** Stops fetching a partition and drops what was received past its position; the position stays. */
  pause(partition: number): void {
    const state = this.requireState(partition, "pause");
    if (state.paused) return;
    state.paused = true;
    const byStream = new Map<SubscribeStream, number[]>();
    this.stopReading(state, byStream);
    for (const [stream, list] of byStream) stream.unsubscribe(list);
  }

  /** Fetches a paused partition again, from its position. */
  resume(partition: number): void {
    const state = this.requireState(partition, "resume");
    if (!state.paused) return;
    state.paused = false;
    state.fetchOffset = state.position;
    state.seekTarget = state.position;
    if (!this.closed) this.attach([state]);
  }

  /** The partitions read now, in order. */
  assignedPartitions(): number[] {
    return [...this.partitions.keys()].sort((a, b) => a - b);
  }

  /** partition → position (next offset to yield) or processed position, for partitions read now. */
  positions(kind: PositionKind): Map<number, number> {
    const positions = new Map<number, number>();
    for (const [partition, state] of this.partitions) {
      const offset = kind === "yielded" ? state.position : state.processed;
      if (offset >= 0) positions.set(partition, offset);
    }
    return positions;
  }

  /** Everything yielded counts as finished (an explicit `commit()` of the yielded positions). */
  finishYielded(): void {
    this.queue.finishInHand();
  }

  /** The next offset the iterator yields for `partition`; -1 while its start offset is looked up. */
  position(partition: number): number {
    return this.requireState(partition, "position").position;
  }

  seek(partition: number, offset: number): void {
    const state = this.partitions.get(partition);
    if (state === undefined) {
      const requested = this.subscribe.partitions;
      if (this.started || (requested !== undefined && !requested.includes(partition))) {
        throw new InvalidArgumentError(`cannot seek ${this.topic}/${partition}: ${this.notReadReason()}`);
      }
      this.earlySeeks.set(partition, offset);
      return;
    }
    this.queue.dropPartition(state);
    state.moveTo(offset);
    state.fetchOffset = offset;
    state.seekTarget = offset;
    state.needsReset = false;
    if (state.stream !== undefined && !state.stream.closed) state.stream.subscribe([this.fetchPartition(state)]);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.reattachTimer !== undefined) clearTimeout(this.reattachTimer);
    this.masterCheck.stop();
    for (const stream of this.streams.values()) stream.end();
    this.streams.clear();
    this.queue.end();
    this.onClosed();
  }

  streamData(stream: SubscribeStream, response: FetchResponse): void {
    this.context.routes.reachability.noteSuccess(stream.address);
    for (const data of response.partitions) {
      const records = data.records;
      const state = this.partitions.get(data.partition);
      if (state === undefined || state.stream !== stream) {
        stream.consumed(records.length);
        continue;
      }
      if (data.error !== undefined) {
        stream.consumed(records.length);
        this.partitionFailed(state, fromWireError(data.error));
        continue;
      }
      if (records.length < LOG_OVERHEAD_BYTES) {
        stream.consumed(records.length); // nothing whole to decode
        continue;
      }
      if (state.seekTarget >= 0) {
        if (baseOffsetOf(records) > state.seekTarget) {
          stream.consumed(records.length);
          continue;
        }
        state.seekTarget = -1;
      }
      state.fetchOffset = data.nextOffset;
      this.reattachAttempt = 0;
      this.queue.push({ partition: state, records, release: stream.release });
    }
  }

  streamClosed(stream: SubscribeStream, err: SluiceError): void {
    if (this.streams.get(stream.address) === stream) this.streams.delete(stream.address);
    if (this.closed) return;
    this.context.logger.info({ broker: stream.address, topic: this.topic, code: err.code }, "subscribe stream failed; resubscribing");
    if (!err.retriable) {
      this.queue.fail(err);
      return;
    }
    this.context.routes.reachability.noteFailure(stream.address, err.code);
    this.context.routes.noteError(this.topic, err);
    for (const state of this.partitions.values()) if (state.stream === stream) this.detach(state);
    this.scheduleReattach();
  }

  private requireState(partition: number, what: string): SubscribedPartition {
    const state = this.partitions.get(partition);
    if (state === undefined) throw new InvalidArgumentError(`cannot ${what} ${this.topic}/${partition}: ${this.notReadReason()}`);
    return state;
  }

  private notReadReason(): string {
    return this.managed ? "the group has not assigned that partition to this member" : "this consumer does not read that partition";
  }

  /** Unsubscribes a partition (collected per stream) and drops its received data. */
  private stopReading(state: SubscribedPartition, byStream: Map<SubscribeStream, number[]>): void {
    this.detached.delete(state);
    this.queue.dropPartition(state);
    const stream = state.stream;
    state.stream = undefined;
    state.fetchOffset = state.position;
    state.needsReset = false;
    if (stream === undefined || stream.closed) return;
    let list = byStream.get(stream);
    if (list === undefined) byStream.set(stream, (list = []));
    list.push(state.partition);
  }

  private partitionFailed(state: SubscribedPartition, err: SluiceError): void {
    if (err.code === "OFFSET_OUT_OF_RANGE") {
      state.needsReset = true;
    } else if (!err.retriable) {
      this.queue.fail(err);
      return;
    } else {
      this.context.routes.noteError(this.topic, err);
      // A slave that cannot serve the partition (not caught up, left the group): try
      // another replica for a while.
      if (state.fromSlave && state.stream !== undefined) this.context.routes.reachability.markDown(state.stream.address);
    }
    // The broker has already dropped a partition it reported an error for.
    this.detach(state);
    this.scheduleReattach();
  }

  private async initialize(): Promise<void> {
    const route = await this.context.retry.run(() => this.context.routes.get(this.topic), { deadlineMs: deadlineFromNow(this.context) });
    const wanted = this.subscribe.partitions ?? route.partitions.map((p) => p.partition);
    for (const partition of wanted) {
      if (partition >= route.partitionCount) throw new UnknownPartitionError(this.topic, partition, route.partitionCount);
    }
    const explicit = new Map([...this.subscribe.offsets, ...this.earlySeeks]);
    const unknown = wanted.filter((p) => !explicit.has(p));
    const found =
      unknown.length > 0 ? await listOffsets(this.context, this.topic, this.startPolicy(), unknown, READ_FROM_SLAVES) : new Map<number, number>();
    if (this.closed) return;
    for (const partition of wanted) {
      const state = new SubscribedPartition(partition);
      // A seek made while the start offsets were being looked up wins.
      const offset = this.earlySeeks.get(partition) ?? explicit.get(partition) ?? found.get(partition)!;
      state.moveTo(offset);
      state.fetchOffset = offset;
      this.partitions.set(partition, state);
    }
    this.started = true;
    this.attach([...this.partitions.values()]);
  }

  private startPolicy(): "earliest" | "latest" {
    return this.options.fromBeginning ? "earliest" : "latest";
  }

  /**
   * Subscribes partitions on the streams of the replicas to read them from, per the cached
   * route: the master, or a slave while the master is missing or unreachable.
   */
  private attach(states: SubscribedPartition[]): void {
    const route = this.context.routes.peek(this.topic);
    const reachability = this.context.routes.reachability;
    const byAddress = new Map<string, SubscribedPartition[]>();
    for (const state of states) {
      const replica = route === undefined || state.partition >= route.partitionCount ? undefined : chooseReadReplica(route, state.partition, reachability);
      if (replica === undefined) {
        this.detach(state);
        continue;
      }
      if (replica.slave && !state.fromSlave) {
        this.context.logger.debug(
          { topic: this.topic, partition: state.partition, slave: replica.address, master: route!.leaders[state.partition] ?? null },
          "reading the partition from a slave: its master is missing or unreachable",
        );
      }
      state.fromSlave = replica.slave;
      let list = byAddress.get(replica.address);
      if (list === undefined) byAddress.set(replica.address, (list = []));
      list.push(state);
    }
    for (const [address, list] of byAddress) {
      const stream = this.streamFor(address);
      for (const state of list) state.stream = stream;
      stream.subscribe(list.map((s) => this.fetchPartition(s)));
    }
    if (this.detached.size > 0) this.scheduleReattach();
    this.masterCheck.start();
  }

  /** partition → address each attached partition is read from (for the master check). */
  private *readers(): Iterable<readonly [number, string]> {
    for (const state of this.partitions.values()) {
      if (state.stream !== undefined && !state.stream.closed) yield [state.partition, state.stream.address];
    }
  }

  /** Moves partitions to the replica chosen now, resuming after the last data received. */
  private move(partitions: number[]): void {
    if (this.closed) return;
    const byStream = new Map<SubscribeStream, number[]>();
    const states: SubscribedPartition[] = [];
    for (const partition of partitions) {
      const state = this.partitions.get(partition);
      const stream = state?.stream;
      if (state === undefined || stream === undefined) continue;
      state.stream = undefined;
      // Data an earlier subscription on the target stream sent may still arrive: what
      // starts past fetchOffset is dropped, what starts before it is skipped by position.
      state.seekTarget = state.fetchOffset;
      states.push(state);
      if (stream.closed) continue;
      let list = byStream.get(stream);
      if (list === undefined) byStream.set(stream, (list = []));
      list.push(partition);
    }
    for (const [stream, list] of byStream) stream.unsubscribe(list);
    this.attach(states);
    this.endIdleStreams();
  }

  private detach(state: SubscribedPartition): void {
    state.stream = undefined;
    this.detached.add(state);
  }

  private scheduleReattach(): void {
    if (this.reattachTimer !== undefined || this.closed) return;
    // Consumers never give up on retriable errors: the delay grows to maxRetryMs and stays.
    const retry = this.reattachAttempt++;
    this.reattachTimer = setTimeout(() => {
      this.reattachTimer = undefined;
      this.reattach().catch((err: SluiceError) => {
        if (!err.retriable) this.queue.fail(err);
        else this.scheduleReattach();
      });
    }, this.context.retry.delayMs(retry));
  }

  private async reattach(): Promise<void> {
    if (this.closed || this.detached.size === 0) return;
    try {
      await this.context.routes.refresh(this.topic);
    } catch (err) {
      if (!(err as SluiceError).retriable) throw err;
      // Name servers unreachable: try the cached route.
    }
    const resets = [...this.detached].filter((s) => s.needsReset);
    if (resets.length > 0) {
      const offsets = await listOffsets(this.context, this.topic, this.startPolicy(), resets.map((s) => s.partition), READ_FROM_SLAVES);
      for (const state of resets) {
        const offset = offsets.get(state.partition)!;
        this.context.logger.warn(
          { topic: this.topic, partition: state.partition, from: state.fetchOffset, to: offset },
          "offset out of range; resetting the partition's position",
        );
        this.queue.dropPartition(state);
        state.moveTo(offset);
        state.fetchOffset = offset;
        state.needsReset = false;
      }
    }
    if (this.closed) return;
    const states = [...this.detached];
    this.detached.clear();
    this.attach(states);
    this.endIdleStreams();
  }

  /** Ends streams left without partitions after they moved to other brokers. */
  private endIdleStreams(): void {
    const inUse = new Set<SubscribeStream>();
    for (const state of this.partitions.values()) if (state.stream !== undefined) inUse.add(state.stream);
    for (const [address, stream] of this.streams) {
      if (inUse.has(stream)) continue;
      stream.end();
      this.streams.delete(address);
    }
  }

  private streamFor(address: string): SubscribeStream {
    let stream = this.streams.get(address);
    if (stream === undefined || stream.closed) {
      const connection = this.context.brokers.get(address);
      stream = new SubscribeStream(connection, this.topic, this.context.header, this.options.maxBytesInFlight, this);
      this.streams.set(address, stream);
      stream.start();
    }
    return stream;
  }

  private fetchPartition(state: SubscribedPartition): FetchPartition {
    return { partition: state.partition, offset: state.fetchOffset, maxBytes: this.partitionReadBytes };
  }
}
