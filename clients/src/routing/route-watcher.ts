/**
 * Keeps one WatchRoutes stream (route push) open per client and hands every RouteChange to
 * the route cache. It watches every topic: the stream then never has to be reopened as the
 * client starts using new topics, and a topic created while the client runs is known before
 * its first send.
 *
 * When the stream breaks (the name server stopped, the network failed) the watcher opens a
 * new one on the next listed name server after a backoff that doubles up to
 * `WATCH_MAX_RETRY_MS` and starts over once a stream delivers again. A name server that does
 * not implement WatchRoutes (an older version) stops the watching for good: the cache's timer
 * and its refresh-on-error still keep routes current.
 *
 * Only timers it owns are unref'd; the open stream itself keeps the process alive until
 * `close()` (which `Sluice.close()` calls) cancels it.
 */
import { status, type ClientReadableStream } from "@grpc/grpc-js";
import type { Logger } from "../../../common/src/logger.js";
import type { RouteChange } from "../../../proto/gen/sluice/v1/nameserver.js";
import type { NameServerClient } from "../transport/nameserver-client.js";

/** First wait before reopening a broken stream; doubles on every failed attempt. */
export const WATCH_INITIAL_RETRY_MS = 100;
export const WATCH_MAX_RETRY_MS = 5_000;

export interface RouteWatcherOptions {
  readonly logger: Logger;
  /** @defaultValue WATCH_INITIAL_RETRY_MS */
  readonly initialRetryMs?: number;
  /** @defaultValue WATCH_MAX_RETRY_MS */
  readonly maxRetryMs?: number;
}

export class RouteWatcher {
  private stream: ClientReadableStream<RouteChange> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** Attempts since a stream last delivered: picks the name server and the backoff. */
  private failedAttempts = 0;
  private stopped = false;
  private readonly initialRetryMs: number;
  private readonly maxRetryMs: number;

  constructor(
    private readonly nameServers: NameServerClient,
    private readonly onChange: (change: RouteChange, nameServer: string) => void,
    private readonly options: RouteWatcherOptions,
  ) {
    this.initialRetryMs = options.initialRetryMs ?? WATCH_INITIAL_RETRY_MS;
    this.maxRetryMs = options.maxRetryMs ?? WATCH_MAX_RETRY_MS;
  }

  /** Whether a stream is open (or being opened) now. */
  get watching(): boolean {
    return this.stream !== undefined;
  }

  start(): void {
    if (this.stopped || this.stream !== undefined || this.retryTimer !== undefined) return;
    this.open();
  }

  /** Cancels the stream and any pending reopen; nothing is left to keep the process alive. */
  close(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const stream = this.stream;
    this.stream = undefined;
    stream?.cancel();
  }

  private open(): void {
    let opened: { address: string; stream: ClientReadableStream<RouteChange> };
    try {
      opened = this.nameServers.watchRoutes([], this.failedAttempts);
    } catch {
      // The name-server client is closed: so is the Sluice client.
      this.stopped = true;
      return;
    }
    const { address, stream } = opened;
    this.stream = stream;
    let settled = false;
    const broken = (reason: string, code: number | undefined): void => {
      if (settled) return;
      settled = true;
      if (this.stream === stream) this.stream = undefined;
      if (this.stopped) return;
      if (code === status.UNIMPLEMENTED) {
        this.stopped = true;
        this.options.logger.info({ nameserver: address }, "the name server does not push route changes; relying on the refresh timer");
        return;
      }
      this.failedAttempts++;
      const delayMs = this.backoffMs();
      this.options.logger.debug({ nameserver: address, reason, retryInMs: delayMs }, "route watch stream broke; reopening on the next name server");
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        if (!this.stopped) this.open();
      }, delayMs);
      this.retryTimer.unref();
    };
    stream.on("data", (change: RouteChange) => {
      if (this.stopped || this.stream !== stream) return;
      this.failedAttempts = 0;
      this.onChange(change, address);
    });
    stream.on("error", (err: { code?: number; details?: string; message?: string }) => broken(err.details ?? err.message ?? "error", err.code));
    // A server that ends the stream cleanly is stopping: watch elsewhere.
    stream.on("end", () => broken("the name server ended the stream", undefined));
  }

  /** Doubling backoff with jitter (half to full), so many clients do not reconnect in step. */
  private backoffMs(): number {
    const ceiling = Math.min(this.maxRetryMs, this.initialRetryMs * 2 ** Math.min(this.failedAttempts - 1, 20));
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }
}
