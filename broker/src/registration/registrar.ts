/**
 * Keeps a broker registered with every name server (RocketMQ style: name servers do not talk
 * to each other, so each must hear from every broker). Each name server gets its own link
 * that registers, heartbeats every interval and retries independently, so one name server
 * being down never delays the others.
 */
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import { ClosedError, InvalidConfigError } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import { silentLogger } from "../../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import type { BrokerInfo, GroupMaster, HostedPartition, ReplicaStatus } from "../../../proto/gen/sluice/v1/nameserver.js";
import { NameServerLink, type BrokerReport } from "./nameserver-link.js";

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1000;
/** `stop()` gives unregistration this long before it lets name servers expire the broker. */
export const UNREGISTER_TIMEOUT_MS = 1000;

export interface RegistrarOptions {
  /** TLS and credentials for calls to other servers. @defaultValue plain text, anonymous */
  channels?: SecureChannels;
  /** Name servers as "host:port"; the broker registers with every one. */
  nameservers: string[];
  broker: BrokerInfo;
  /** Every partition this broker hosts, read for each register and heartbeat. */
  hostedPartitions: () => HostedPartition[];
  /** Current produce load, reported in heartbeats. @defaultValue () => 0 */
  produceBytesPerSecond?: () => number;
  /** @defaultValue 1000 */
  heartbeatIntervalMs?: number;
  /** The broker's etcd lease id, read for each register and heartbeat. @defaultValue () => "" */
  etcdLeaseId?: () => string;
  /**
   * A master's view of its slaves (in sync, lag), read for each register and heartbeat and
   * shown by `sluice cluster`. @defaultValue () => []
   */
  replicaStatus?: () => ReplicaStatus[];
  /**
   * Told the group's master whenever a name server's answer names one (the role manager's
   * `observeGroupMaster`). Name servers may disagree for a moment: the listener keeps the
   * newest epoch. @defaultValue ignore
   */
  onGroupMaster?: (master: GroupMaster) => void;
  /** @defaultValue "broker-<group>-<id>" */
  clientId?: string;
  clock?: Clock;
  logger?: Logger;
}

export class Registrar {
  private readonly links: NameServerLink[];
  private broker: BrokerInfo;
  private started = false;
  private stopping: Promise<void> | undefined;
  private readonly registered: Promise<void>;
  private resolveRegistered!: () => void;
  private rejectRegistered!: (err: Error) => void;
  private everRegistered = false;

  constructor(options: RegistrarOptions) {
    const heartbeatIntervalMs = options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    validate(options, heartbeatIntervalMs);
    this.broker = { ...options.broker };
    this.registered = new Promise<void>((resolve, reject) => {
      this.resolveRegistered = resolve;
      this.rejectRegistered = reject;
    });
    // Nobody may be waiting when stop() rejects it; that must not crash the process.
    this.registered.catch(() => undefined);

    const logger = (options.logger ?? silentLogger).child({ group: this.broker.group, brokerId: this.broker.brokerId });
    const header = {
      clientId: options.clientId ?? `broker-${this.broker.group}-${this.broker.brokerId}`,
      protocolVersion: PROTOCOL_VERSION,
    };
    const loadOf = options.produceBytesPerSecond ?? (() => 0);
    const leaseOf = options.etcdLeaseId ?? (() => "");
    const replicasOf = options.replicaStatus ?? (() => []);
    const onGroupMaster = options.onGroupMaster ?? (() => undefined);
    const report = (): BrokerReport => ({
      broker: this.broker,
      partitions: options.hostedPartitions(),
      produceBytesPerSecond: loadOf(),
      etcdLeaseId: leaseOf(),
      replicas: replicasOf(),
    });
    this.links = [...new Set(options.nameservers)].map(
      (address) =>
        new NameServerLink({
          address,
          ...(options.channels ? { channels: options.channels } : {}),
          header,
          report,
          heartbeatIntervalMs,
          clock: options.clock ?? systemClock,
          logger,
          onRegistered: () => {
            this.everRegistered = true;
            this.resolveRegistered();
          },
          onGroupMaster: (master) => {
            try {
              onGroupMaster(master);
            } catch (err) {
              logger.error({ err }, "the group master listener failed");
            }
          },
        }),
    );
  }

  /** Starts registering with every name server; returns at once (see `whenRegistered`). */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const link of this.links) link.start();
  }

  /** Name servers this broker is registered with right now. */
  get registeredCount(): number {
    return this.links.filter((link) => link.state === "registered").length;
  }

  /** Resolves once registered with at least one name server (the broker's /readyz waits on it). */
  whenRegistered(): Promise<void> {
    return this.registered;
  }

  /** What this broker reports about itself; a role or epoch change goes out with the next heartbeat. */
  setBroker(broker: BrokerInfo): void {
    this.broker = { ...broker };
  }

  /** Heartbeats every registered name server now, e.g. right after a topic was created here. */
  async heartbeatNow(): Promise<void> {
    await Promise.all(this.links.map((link) => link.heartbeatNow()));
  }

  /** Registers again with every name server it is registered with (a new etcd lease). */
  registerAgain(): void {
    for (const link of this.links) link.registerAgain();
  }

  /** Unregisters from every name server (bounded by 1 s) and stops all timers. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    if (!this.everRegistered) this.rejectRegistered(new ClosedError("the broker's registrar"));
    const deadlineMs = Date.now() + UNREGISTER_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, UNREGISTER_TIMEOUT_MS + 100);
    });
    await Promise.race([Promise.allSettled(this.links.map((link) => link.stop(deadlineMs))), bound]);
    clearTimeout(timer);
  }
}

function validate(options: RegistrarOptions, heartbeatIntervalMs: number): void {
  if (options.nameservers.length === 0) {
    throw new InvalidConfigError("no name server given: pass --nameserver host:port[,host:port…] (default 127.0.0.1:9876)");
  }
  for (const address of options.nameservers) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^\s:/]+):\d{1,5}$/.test(address)) {
      throw new InvalidConfigError(`name server address "${address}" is not "host:port"`);
    }
  }
  if (!Number.isInteger(heartbeatIntervalMs) || heartbeatIntervalMs < 1) {
    throw new InvalidConfigError(`heartbeatIntervalMs must be a positive integer, got ${heartbeatIntervalMs}`);
  }
  if (options.broker.group === "") throw new InvalidConfigError("the broker has no group name: pass --name GROUP");
}
