/**
 * The broker's relationship with one name server: register (retrying with backoff while the
 * name server is unreachable), heartbeat every interval, register again when the name server
 * has forgotten this broker, unregister on the way out. One gRPC channel per name server.
 *
 *   registering ──RegisterBroker ok──▶ registered ──Heartbeat {known:false}──┐
 *        ▲  └─ failure: wait (backoff)      │  └─ no successful heartbeat     │
 *        └───────────────────────────────────┴──── for the expiry window ─────┘
 */
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import type { Clock } from "../../../common/src/clock.js";
import { SluiceError } from "../../../common/src/errors.js";
import { callUnary } from "../../../common/src/grpc/unary-call.js";
import type { Logger } from "../../../common/src/logger.js";
import { MAX_GRPC_MESSAGE_BYTES } from "../../../common/src/protocol.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import {
  NameServerClient,
  type BrokerInfo,
  type GroupMaster,
  type HostedPartition,
  type ReplicaStatus,
} from "../../../proto/gen/sluice/v1/nameserver.js";

/** First wait after a failed registration; doubles per failure up to the maximum. */
export const INITIAL_REGISTER_RETRY_MS = 100;
export const MAX_REGISTER_RETRY_MS = 5000;
/** ± this fraction of random spread, so brokers restarted together do not retry in lockstep. */
const RETRY_JITTER = 0.2;
/** Calls get at least this long, even with a very short heartbeat interval. */
const MIN_CALL_TIMEOUT_MS = 1000;

export type LinkState = "registering" | "registered" | "stopped";

/** What a register or heartbeat carries, read fresh for every call. */
export interface BrokerReport {
  broker: BrokerInfo;
  partitions: HostedPartition[];
  produceBytesPerSecond: number;
  /** The broker's etcd lease (decimal id), or "" when it runs without --etcd. */
  etcdLeaseId: string;
  /** A master's view of its slaves; empty from a slave. */
  replicas: ReplicaStatus[];
}

export interface NameServerLinkOptions {
  /** TLS and credentials for calls to other servers. @defaultValue plain text, anonymous */
  channels?: SecureChannels;
  /** The name server's "host:port". */
  address: string;
  header: RequestHeader;
  report: () => BrokerReport;
  heartbeatIntervalMs: number;
  clock: Clock;
  logger: Logger;
  /** Called each time the link becomes registered (first time and after re-registering). */
  onRegistered: () => void;
  /** Called with the group's master whenever a register or heartbeat answer names one. */
  onGroupMaster: (master: GroupMaster) => void;
}

export class NameServerLink {
  readonly address: string;
  private linkState: LinkState = "registering";
  private readonly client: NameServerClient;
  private readonly options: NameServerLinkOptions;
  private readonly logger: Logger;
  /** The name server's expiry window, learned at registration. */
  private expiryMs: number;
  private lastHeartbeatOkMs = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatInFlight: Promise<void> | undefined;
  private registrationInFlight = false;
  private failing = false;
  private wakeUp: (() => void) | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(options: NameServerLinkOptions) {
    this.options = options;
    this.address = options.address;
    this.logger = options.logger.child({ nameserver: options.address });
    this.expiryMs = options.heartbeatIntervalMs * 3;
    this.client = new NameServerClient(options.address, (options.channels ?? PLAIN_CHANNELS).credentials, (options.channels ?? PLAIN_CHANNELS).options({
      "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
      "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
      // grpc-js backs off reconnects up to 120 s by default; a name server that comes back
      // should see this broker within seconds, so keep the channel's backoff near ours.
      "grpc.initial_reconnect_backoff_ms": INITIAL_REGISTER_RETRY_MS,
      "grpc.max_reconnect_backoff_ms": MAX_REGISTER_RETRY_MS,
    }));
  }

  get state(): LinkState {
    return this.linkState;
  }

  /** Milliseconds-since-epoch of the last accepted heartbeat or registration (0 = never). */
  get lastHeartbeatOkAtMs(): number {
    return this.lastHeartbeatOkMs;
  }

  start(): void {
    void this.registerUntilDone();
  }

  /** Sends a heartbeat now (after any in flight), so the name server learns changes at once. */
  async heartbeatNow(): Promise<void> {
    if (this.heartbeatInFlight) await this.heartbeatInFlight;
    if (this.linkState === "registered") await this.heartbeat();
  }

  /**
   * Registers again now (the broker's etcd lease was replaced: its record must be rewritten
   * under the new one). A registration already running picks the new lease up on its retry.
   */
  registerAgain(): void {
    if (this.linkState !== "registered") return;
    void this.registerUntilDone();
  }

  /** Stops timers; unregisters when registered (or about to be), within `deadlineMs` (epoch ms). */
  async stop(deadlineMs: number): Promise<void> {
    const wasActive = this.linkState === "registered" || this.registrationInFlight;
    this.linkState = "stopped";
    clearTimeout(this.heartbeatTimer);
    clearTimeout(this.retryTimer);
    this.wakeUp?.();
    if (wasActive) {
      const { broker } = this.options.report();
      try {
        await callUnary(
          this.client.unregisterBroker,
          this.client,
          { header: this.options.header, cluster: broker.cluster, group: broker.group, brokerId: broker.brokerId },
          deadlineMs,
          this.target,
        );
        this.logger.info("unregistered from name server");
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, "could not unregister from name server; it will expire this broker");
      }
    }
    this.client.close();
  }

  private async registerUntilDone(): Promise<void> {
    this.linkState = "registering";
    clearTimeout(this.heartbeatTimer);
    let refusedBefore = false;
    for (let attempt = 1; this.linkState === "registering"; attempt++) {
      const report = this.options.report();
      this.registrationInFlight = true;
      try {
        const response = await callUnary(
          this.client.registerBroker,
          this.client,
          {
            header: this.options.header,
            broker: report.broker,
            partitions: report.partitions,
            etcdLeaseId: report.etcdLeaseId,
            replicas: report.replicas,
          },
          this.callDeadline(),
          this.target,
        );
        if (this.linkState !== "registering") return; // stopped while the call ran
        if (response.expiryMs > 0) this.expiryMs = response.expiryMs;
        this.linkState = "registered";
        this.lastHeartbeatOkMs = this.options.clock.now();
        this.failing = false;
        this.logger.info({ attempts: attempt, expiryMs: this.expiryMs }, "registered with name server");
        this.options.onRegistered();
        if (response.master !== undefined) this.options.onGroupMaster(response.master);
        this.scheduleHeartbeat(this.options.heartbeatIntervalMs);
        return;
      } catch (err) {
        if (this.linkState !== "registering") return;
        // A refusal (e.g. another live broker holds this name) needs an operator, unlike an
        // unreachable name server; still retry: the holder may be a stale registration about
        // to expire. One line per outage or refusal, not one per retry.
        const refused = err instanceof SluiceError && err.code === "INVALID_ARGUMENT";
        if (refused && !refusedBefore) {
          this.logger.error({ err: (err as Error).message }, "name server refused this broker's registration; retrying with backoff");
        } else if (attempt === 1) {
          this.logger.warn({ err: (err as Error).message }, "cannot register with name server; retrying with backoff");
        } else {
          this.logger.debug({ attempt, err: (err as Error).message }, "registration retry failed");
        }
        refusedBefore ||= refused;
        await this.sleep(retryDelayMs(attempt));
      } finally {
        this.registrationInFlight = false;
      }
    }
  }

  private heartbeat(): Promise<void> {
    if (this.heartbeatInFlight) return this.heartbeatInFlight;
    clearTimeout(this.heartbeatTimer);
    const startedMs = Date.now();
    this.heartbeatInFlight = this.sendHeartbeat().finally(() => {
      this.heartbeatInFlight = undefined;
      if (this.linkState !== "registered") return;
      const elapsedMs = Date.now() - startedMs;
      this.scheduleHeartbeat(Math.max(0, this.options.heartbeatIntervalMs - elapsedMs));
    });
    return this.heartbeatInFlight;
  }

  private async sendHeartbeat(): Promise<void> {
    const report = this.options.report();
    try {
      const response = await callUnary(
        this.client.heartbeat,
        this.client,
        {
          header: this.options.header,
          broker: report.broker,
          partitions: report.partitions,
          produceBytesPerSecond: report.produceBytesPerSecond,
          etcdLeaseId: report.etcdLeaseId,
          replicas: report.replicas,
        },
        this.callDeadline(),
        this.target,
      );
      if (this.linkState !== "registered") return;
      if (!response.known) {
        this.logger.info("name server does not know this broker (it restarted or expired it); registering again");
        void this.registerUntilDone();
        return;
      }
      this.lastHeartbeatOkMs = this.options.clock.now();
      if (this.failing) this.logger.info("heartbeats reach name server again");
      this.failing = false;
      if (response.master !== undefined) this.options.onGroupMaster(response.master);
    } catch (err) {
      if (this.linkState !== "registered") return;
      if (!this.failing) this.logger.warn({ err: (err as Error).message }, "heartbeat to name server failed");
      this.failing = true;
      // Past the expiry window the name server has dropped us: start over with registration.
      if (this.options.clock.now() - this.lastHeartbeatOkMs > this.expiryMs) void this.registerUntilDone();
    }
  }

  private scheduleHeartbeat(delayMs: number): void {
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = setTimeout(() => void this.heartbeat(), delayMs);
    this.heartbeatTimer.unref();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeUp = resolve;
      this.retryTimer = setTimeout(resolve, ms);
      this.retryTimer.unref();
    });
  }

  private callDeadline(): number {
    return Date.now() + Math.max(this.options.heartbeatIntervalMs, MIN_CALL_TIMEOUT_MS);
  }

  /** Names the name server in error messages. */
  private get target(): string {
    return `name server ${this.address}`;
  }
}

/** 100, 200, 400 … ms capped at 5 s, each ± 20 %. */
export function retryDelayMs(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(MAX_REGISTER_RETRY_MS, INITIAL_REGISTER_RETRY_MS * 2 ** Math.min(attempt - 1, 16));
  return Math.round(base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * random()));
}
