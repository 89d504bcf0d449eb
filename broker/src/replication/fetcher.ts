/**
 * The slave side of replication: follows one master over one Replicate stream (fetch-stream.ts)
 * and keeps reconnecting, with backoff, until told to follow another master or to stop.
 *
 * The fetcher remembers the newest group epoch it has heard of (from `follow` and from the
 * master's responses) and sends it in every hello: a deposed master refuses the stream, and a
 * response carrying an older epoch ends it.
 */
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import type { ClientOptions } from "@grpc/grpc-js";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { InvalidConfigError } from "../../../common/src/errors.js";
import { silentLogger, type Logger } from "../../../common/src/logger.js";
import { MAX_GRPC_MESSAGE_BYTES } from "../../../common/src/protocol.js";
import { ReplicationClient } from "../../../proto/gen/sluice/v1/replication.js";
import { FetchStream } from "./fetch-stream.js";
import type { ReplicaHost } from "./types.js";

export const DEFAULT_RECONNECT_BACKOFF_MS = 100;
/** Reconnect delays double up to this: a slave must find a restarted master within seconds. */
export const MAX_RECONNECT_BACKOFF_MS = 2_000;

/**
 * The master pushes up to its unacknowledged-bytes window in 1 MiB messages; with HTTP/2's
 * default 64 KiB window each message would wait on this process's event loop many times.
 */
const FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;

const CHANNEL_OPTIONS: ClientOptions = {
  "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
  "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
  "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW_BYTES,
  // Reconnecting is this module's job: a fresh stream with a fresh hello.
  "grpc.enable_retries": 0,
  "grpc.initial_reconnect_backoff_ms": DEFAULT_RECONNECT_BACKOFF_MS,
  "grpc.max_reconnect_backoff_ms": MAX_RECONNECT_BACKOFF_MS,
};

export interface MasterAddress {
  brokerId: number;
  /** gRPC host:port */
  address: string;
}

export interface ReplicaFetcherOptions {
  /** TLS and credentials for calls to other servers. @defaultValue plain text, anonymous */
  channels?: SecureChannels;
  group: string;
  /** This (slave) broker's id. */
  brokerId: number;
  host: ReplicaHost;
  clock?: Clock;
  logger?: Logger;
  /** First delay before reconnecting; doubles up to MAX_RECONNECT_BACKOFF_MS. @defaultValue DEFAULT_RECONNECT_BACKOFF_MS */
  reconnectBackoffMs?: number;
}

export interface FetcherState {
  master: MasterAddress | undefined;
  /** The newest group epoch this slave knows. */
  epoch: number;
  /** A stream is open and the master accepted it. */
  connected: boolean;
  /** When data last arrived (clock ms); undefined before any. */
  lastDataMs: number | undefined;
}

export class ReplicaFetcher {
  private readonly options: ReplicaFetcherOptions;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly reconnectBackoffMs: number;
  private master: MasterAddress | undefined;
  private newestEpoch = 0;
  private connected = false;
  private lastDataMs: number | undefined;
  /** Bumped by every follow/stop: a loop of an older generation winds down. */
  private generation = 0;
  private loop: Promise<void> = Promise.resolve();
  private stream: FetchStream | null = null;
  private wakeBackoff: (() => void) | null = null;

  constructor(options: ReplicaFetcherOptions) {
    const reconnectBackoffMs = options.reconnectBackoffMs ?? DEFAULT_RECONNECT_BACKOFF_MS;
    if (!Number.isFinite(reconnectBackoffMs) || reconnectBackoffMs <= 0) {
      throw new InvalidConfigError(`reconnectBackoffMs must be a positive number of milliseconds, got ${reconnectBackoffMs}`);
    }
    this.options = options;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.reconnectBackoffMs = reconnectBackoffMs;
  }

  /** Follows `master` (known at `epoch`); following the same master again only raises the epoch. */
  follow(master: MasterAddress, epoch: number): void {
    this.newestEpoch = Math.max(this.newestEpoch, epoch);
    if (this.master && this.master.brokerId === master.brokerId && this.master.address === master.address) return;
    this.master = { ...master };
    const generation = ++this.generation;
    this.interrupt();
    this.logger.info({ group: this.options.group, master: master.brokerId, address: master.address, epoch: this.newestEpoch }, "following a master");
    this.loop = this.loop.then(() => this.run(generation, master));
  }

  /** Stops following; resolves once the stream has ended and every append it started has settled. */
  async stop(): Promise<void> {
    this.generation++;
    this.master = undefined;
    this.interrupt();
    await this.loop;
  }

  state(): FetcherState {
    return { master: this.master && { ...this.master }, epoch: this.newestEpoch, connected: this.connected, lastDataMs: this.lastDataMs };
  }

  private async run(generation: number, master: MasterAddress): Promise<void> {
    if (generation !== this.generation) return;
    const client = new ReplicationClient(master.address, (this.options.channels ?? PLAIN_CHANNELS).credentials, (this.options.channels ?? PLAIN_CHANNELS).options(CHANNEL_OPTIONS));
    let backoffMs = this.reconnectBackoffMs;
    try {
      while (generation === this.generation) {
        const stream = new FetchStream(
          {
            group: this.options.group,
            brokerId: this.options.brokerId,
            clientId: `${this.options.group}/${this.options.brokerId}`,
            host: this.options.host,
            logger: this.logger,
            newestEpoch: () => this.newestEpoch,
            sawEpoch: (epoch) => (this.newestEpoch = Math.max(this.newestEpoch, epoch)),
            onAccepted: () => (this.connected = true),
            onData: () => (this.lastDataMs = this.clock.now()),
          },
          client.replicate(),
        );
        this.stream = stream;
        stream.start();
        const outcome = await stream.ended;
        this.stream = null;
        this.connected = false;
        if (generation !== this.generation) break;
        if (outcome.accepted) backoffMs = this.reconnectBackoffMs;
        this.logger.warn(
          { err: outcome.error, group: this.options.group, master: master.brokerId, address: master.address, retryInMs: backoffMs },
          "replication stream to the master ended; reconnecting",
        );
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, MAX_RECONNECT_BACKOFF_MS);
      }
    } finally {
      client.close();
    }
  }

  private interrupt(): void {
    this.stream?.cancel();
    const wake = this.wakeBackoff;
    this.wakeBackoff = null;
    wake?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeBackoff = null;
        resolve();
      }, ms);
      this.wakeBackoff = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
