/**
 * The consumer's async iterator. Received record data waits here as chunks (one per
 * partition per FetchResponse) and is decoded only when the application reaches it, one
 * chunk at a time, so memory stays bounded by the streams' credit and nothing is copied:
 * messages are the decoder's records (key and value are views into the received buffer)
 * with `topic` and `partition` added.
 *
 * Order: chunks of one partition arrive in offset order on one stream and are queued in
 * arrival order, so each partition is yielded in offset order. Records below the
 * partition's position (the next offset to yield) are skipped, which drops both the head
 * of a batch that starts before the requested offset and any data received twice.
 */
import { forEachRecord } from "../../../common/src/batch/index.js";
import { toSluiceError, type SluiceError } from "../../../common/src/errors.js";
import type { ConsumerMessage } from "./options.js";

/** Where one subscribed partition stands. */
export class PartitionPosition {
  /** The next offset to yield; -1 until the start offset is known. */
  position = -1;
  /**
   * The next offset the application has not finished with: a yielded message counts as
   * handled once the application asks for the next one. What auto-commit commits, so a
   * crash while handling a message never commits past it (at-least-once).
   */
  processed = -1;

  constructor(readonly partition: number) {}

  /** Both positions jump to `offset` (start, seek, reset). */
  moveTo(offset: number): void {
    this.position = offset;
    this.processed = offset;
  }
}

export interface Chunk {
  readonly partition: PartitionPosition;
  readonly records: Buffer;
  /** Gives the chunk's bytes back as credit to the stream that delivered it. */
  readonly release: (bytes: number) => void;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

export class MessageQueue implements AsyncIterableIterator<ConsumerMessage> {
  private chunks: Chunk[] = [];
  private chunkHead = 0;
  private current: ConsumerMessage[] = [];
  private currentIndex = 0;
  private currentChunk: Chunk | undefined;
  /** Pending next() calls, served in order (e.g. one abandoned by a Promise.race timeout). */
  private waiters: { resolve: (r: IteratorResult<ConsumerMessage>) => void; reject: (e: SluiceError) => void }[] = [];
  private failure: SluiceError | undefined;
  private ended = false;
  /** The partition of the message the application holds; handled once it asks for the next. */
  private inHand: PartitionPosition | undefined;

  constructor(
    private readonly topic: string,
    /** Called once when the application stops iterating (break, return, throw). */
    private readonly onReturn: () => void,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  private returned = false;
  /** Releases the subscription exactly once, however the iteration ended. */
  private finish(): void {
    if (this.returned) return;
    this.returned = true;
    this.onReturn();
  }

  push(chunk: Chunk): void {
    if (this.ended) {
      chunk.release(chunk.records.length);
      return;
    }
    this.chunks.push(chunk);
    if (this.waiters.length > 0) this.wake();
  }

  /** Ends the iteration with `err` once the messages already decoded were yielded. */
  fail(err: SluiceError): void {
    if (this.ended || this.failure !== undefined) return;
    this.failure = err;
    if (this.waiters.length > 0) this.wake();
  }

  /** Ends the iteration: pending and later `next()` calls report done. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.dropChunks(() => true);
    this.current = [];
    this.currentIndex = 0;
    if (this.waiters.length > 0) this.wake();
  }

  /** Forgets what was received for `partition` (seek, reset). */
  dropPartition(partition: PartitionPosition): void {
    if (this.currentChunk?.partition === partition) {
      this.releaseCurrent();
      this.current = [];
      this.currentIndex = 0;
    }
    this.dropChunks((chunk) => chunk.partition === partition);
  }

  /**
   * The message in hand counts as finished now (the application committed it explicitly):
   * a later commit of processed positions (auto-commit, leave) then never goes below it.
   */
  finishInHand(): void {
    const held = this.inHand;
    if (held !== undefined) held.processed = held.position;
  }

  next(): Promise<IteratorResult<ConsumerMessage>> {
    const held = this.inHand;
    if (held !== undefined) {
      held.processed = held.position;
      this.inHand = undefined;
    }
    if (this.waiters.length === 0) {
      const ready = this.take();
      if (ready !== undefined) return ready;
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
    });
  }

  return(): Promise<IteratorResult<ConsumerMessage>> {
    this.end();
    this.finish();
    return Promise.resolve(DONE);
  }

  throw(err?: unknown): Promise<IteratorResult<ConsumerMessage>> {
    this.end();
    this.finish();
    return Promise.reject(toSluiceError(err));
  }

  /** The next result if one is available now, else undefined. */
  private take(): Promise<IteratorResult<ConsumerMessage>> | undefined {
    for (;;) {
      if (this.currentIndex < this.current.length) {
        const message = this.current[this.currentIndex++]!;
        const partition = this.currentChunk!.partition;
        partition.position = message.offset + 1;
        this.inHand = partition;
        return Promise.resolve({ done: false, value: message });
      }
      if (this.currentChunk !== undefined) this.releaseCurrent();
      if (this.ended) return Promise.resolve(DONE);
      if (this.chunkHead < this.chunks.length) {
        this.decode(this.nextChunk());
        continue;
      }
      if (this.failure !== undefined) {
        const failure = this.failure;
        this.ended = true;
        // `for await` does not call return() when next() rejects: close the streams here.
        this.finish();
        return Promise.reject(failure);
      }
      return undefined;
    }
  }

  private wake(): void {
    while (this.waiters.length > 0) {
      let result: Promise<IteratorResult<ConsumerMessage>> | undefined;
      try {
        result = this.take();
      } catch (err) {
        result = Promise.reject(toSluiceError(err));
      }
      if (result === undefined) return;
      const waiter = this.waiters.shift()!;
      result.then(waiter.resolve, waiter.reject);
    }
  }

  private nextChunk(): Chunk {
    const chunk = this.chunks[this.chunkHead]!;
    this.chunks[this.chunkHead++] = undefined as unknown as Chunk;
    // Compact now and then instead of shift()ing on every chunk.
    if (this.chunkHead >= 1024 && this.chunkHead * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.chunkHead);
      this.chunkHead = 0;
    }
    return chunk;
  }

  /** Decodes a chunk into `current`; a corrupt batch ends the iteration with its error. */
  private decode(chunk: Chunk): void {
    this.currentChunk = chunk;
    const out = this.current;
    out.length = 0;
    this.currentIndex = 0;
    const topic = this.topic;
    const partition = chunk.partition.partition;
    try {
      forEachRecord(chunk.records, chunk.partition.position, (record) => {
        const message = record as ConsumerMessage;
        message.topic = topic;
        message.partition = partition;
        out.push(message);
      });
    } catch (err) {
      // The records decoded before the corrupt batch are still yielded, then the error.
      this.failure ??= toSluiceError(err);
      this.dropChunks(() => true);
    }
  }

  private releaseCurrent(): void {
    const chunk = this.currentChunk;
    this.currentChunk = undefined;
    if (chunk !== undefined) chunk.release(chunk.records.length);
  }

  private dropChunks(matches: (chunk: Chunk) => boolean): void {
    const kept: Chunk[] = [];
    for (let i = this.chunkHead; i < this.chunks.length; i++) {
      const chunk = this.chunks[i]!;
      if (matches(chunk)) chunk.release(chunk.records.length);
      else kept.push(chunk);
    }
    this.chunks = kept;
    this.chunkHead = 0;
  }
}
