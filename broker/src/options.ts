/**
 * Broker options: one interface, defaults as named constants, validated once at the door.
 * Flags, environment variables and the config file all land in `parseBrokerOptions`.
 */
import { InvalidConfigError } from "../../common/src/errors.js";
import { parseFlowRules, type FlowRule } from "../../common/src/flow/rules.js";
import type { SecureChannels } from "../../common/src/grpc/channel-security.js";
import { parseServerSecurity, peerChannelsFor, type ResolvedServerSecurity, type ServerSecurityOptions } from "../../common/src/security/server-config.js";
import type { FlushPolicy } from "./storage/partition-log.js";

export const DEFAULT_BROKER_PORT = 10911;
export const DEFAULT_BROKER_HTTP_PORT = 8080;
export const DEFAULT_NAMESERVER = "127.0.0.1:9876";
export const DEFAULT_CLUSTER = "sluice";
export const DEFAULT_FLUSH_INTERVAL_MS = 1000;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1000;
export const DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024;
export const DEFAULT_RETENTION_MS = 7 * 24 * 60 * 60 * 1000;
export const DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_MAX_FETCH_BYTES = 4 * 1024 * 1024;
/** Bytes of produce data one stream may have waiting for the log before it is paused. */
export const DEFAULT_MAX_PENDING_PRODUCE_BYTES = 32 * 1024 * 1024;
/** Batches held by flow control, broker-wide: what throttled producers may make the broker keep. */
export const DEFAULT_MAX_HELD_PRODUCE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;
/** Replication defaults (R10–R12): a slave more than this far behind leaves the in-sync set. */
export const DEFAULT_MAX_SLAVE_LAG_MS = 10_000;
/** The broker's etcd lease: failover starts this long after a master stops renewing it. */
export const DEFAULT_LEASE_TTL_MS = 2000;
/** A master stops appending and acknowledging this long before its lease could expire. */
export const DEFAULT_FENCE_MARGIN_MS = 500;
export { DEFAULT_INITIAL_REBALANCE_DELAY_MS } from "./groups/membership.js";
import { DEFAULT_INITIAL_REBALANCE_DELAY_MS } from "./groups/membership.js";

/** When `acks: "all"` is met: at once (`async`), when every in-sync slave has it (`sync`), or k slaves (`quorum:k`). */
export type ReplicationMode = { kind: "async" } | { kind: "sync" } | { kind: "quorum"; k: number };

export interface BrokerOptions {
  /** Broker group name (`--name`): a master and its slaves share it. */
  group: string;
  /** Identity inside the group (`--id`). Id 0 is a new group's first master. */
  brokerId: number;
  cluster: string;
  dataDir: string;
  host: string;
  /** gRPC port; 0 picks a free one. */
  port: number;
  /** HTTP port (/healthz, /readyz, /metrics); 0 picks a free one. */
  httpPort: number;
  /** Name servers to register with ("host:port"). */
  nameservers: string[];
  /**
   * etcd client URLs (`--etcd`): the broker holds its own etcd lease and name servers over
   * etcd write its record under it. Empty: no lease, name servers expire it by heartbeats.
   */
  etcd: string[];
  flush: FlushPolicy;
  flushIntervalMs: number;
  heartbeatIntervalMs: number;
  /** Defaults for topics created without their own values. */
  segmentBytes: number;
  retentionMs: number;
  retentionBytes: number;
  maxMessageBytes: number;
  maxFetchBytes: number;
  maxPendingProduceBytes: number;
  shutdownTimeoutMs: number;
  /** Wait after the first member joins an empty group before the first assignment, so members started together share it. */
  groupInitialRebalanceDelayMs: number;
  /** `--replication async|sync|quorum:K`: the master's setting is the group's. */
  replication: ReplicationMode;
  /** Write gate: `acks: "all"` is refused while fewer slaves are in sync. Default 1 in `sync` mode, else 0. */
  minInSyncSlaves: number;
  /** A slave behind for longer than this leaves the in-sync set (and the write gate counts it out). */
  maxSlaveLagMs: number;
  /** Bytes/s for a slave catching up from outside the in-sync set (0 = unthrottled); in-sync traffic is never throttled. */
  replicationThrottleBytesPerSecond: number;
  /** TTL of the broker's etcd lease (whole seconds on the wire; at least 2 s). */
  leaseTtlMs: number;
  /** The master fences itself this long before its lease could expire. */
  fenceMarginMs: number;
  /**
   * Ingress flow rules from the config file's `flow:` list (R20–R22), validated and with
   * defaults filled in. Rules changed at run time (`sluice flow`) are layered over them.
   */
  flowRules: FlowRule[];
  /** Batch bytes flow control may hold at once, broker-wide; past it a batch that would be held is refused. */
  maxHeldProduceBytes: number;
  /**
   * `/metrics` adds per-partition series (end offset, size, consumer-group lag per partition).
   * Off by default: a series per partition is what makes a Prometheus server slow.
   */
  metricsPerPartition: boolean;
  /** TLS, authentication and connection limits (shared with the name server's). */
  security: ResolvedServerSecurity;
  /** Channels for this broker's calls to name servers and other brokers (derived from `security`). */
  peerChannels: SecureChannels;
}

export type BrokerOptionsInput = Partial<Omit<BrokerOptions, "flowRules" | "security" | "peerChannels">> &
  Pick<BrokerOptions, "group" | "dataDir"> & {
    /** Checked here: a list of rules as a config file or a caller writes them. */
    flowRules?: unknown;
    /** @defaultValue plain text, no authentication */
    security?: ServerSecurityOptions;
  };

const FLUSH_POLICIES: readonly FlushPolicy[] = ["sync", "interval", "os"];
const GROUP_NAME = /^[a-zA-Z0-9._-]{1,64}$/;

export function parseBrokerOptions(input: BrokerOptionsInput): BrokerOptions {
  const security = parseServerSecurity(input.security);
  const options: BrokerOptions = {
    group: input.group,
    brokerId: input.brokerId ?? 0,
    cluster: input.cluster ?? DEFAULT_CLUSTER,
    dataDir: input.dataDir,
    host: input.host ?? "127.0.0.1",
    port: input.port ?? DEFAULT_BROKER_PORT,
    httpPort: input.httpPort ?? DEFAULT_BROKER_HTTP_PORT,
    nameservers: input.nameservers ?? [DEFAULT_NAMESERVER],
    etcd: input.etcd ?? [],
    flush: input.flush ?? "interval",
    flushIntervalMs: input.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS,
    heartbeatIntervalMs: input.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
    segmentBytes: input.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
    retentionMs: input.retentionMs ?? DEFAULT_RETENTION_MS,
    retentionBytes: input.retentionBytes ?? 0,
    maxMessageBytes: input.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    maxFetchBytes: input.maxFetchBytes ?? DEFAULT_MAX_FETCH_BYTES,
    maxPendingProduceBytes: input.maxPendingProduceBytes ?? DEFAULT_MAX_PENDING_PRODUCE_BYTES,
    shutdownTimeoutMs: input.shutdownTimeoutMs ?? DEFAULT_SHUTDOWN_TIMEOUT_MS,
    groupInitialRebalanceDelayMs: input.groupInitialRebalanceDelayMs ?? DEFAULT_INITIAL_REBALANCE_DELAY_MS,
    replication: input.replication ?? { kind: "async" },
    minInSyncSlaves: input.minInSyncSlaves ?? (input.replication?.kind === "sync" ? 1 : 0),
    maxSlaveLagMs: input.maxSlaveLagMs ?? DEFAULT_MAX_SLAVE_LAG_MS,
    replicationThrottleBytesPerSecond: input.replicationThrottleBytesPerSecond ?? 0,
    leaseTtlMs: input.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
    fenceMarginMs: input.fenceMarginMs ?? DEFAULT_FENCE_MARGIN_MS,
    flowRules: parseFlowRules(input.flowRules ?? [], "flow"),
    maxHeldProduceBytes: input.maxHeldProduceBytes ?? DEFAULT_MAX_HELD_PRODUCE_BYTES,
    metricsPerPartition: input.metricsPerPartition ?? false,
    security,
    peerChannels: peerChannelsFor(security),
  };
  if (typeof options.metricsPerPartition !== "boolean") {
    throw new InvalidConfigError(`metricsPerPartition must be true or false, got ${JSON.stringify(options.metricsPerPartition)}`);
  }
  if (!GROUP_NAME.test(options.group)) {
    throw new InvalidConfigError(`broker name "${options.group}" is invalid: use 1-64 letters, digits, '.', '_' or '-'`);
  }
  requireInteger("id", options.brokerId, 0, 1_000_000);
  requireInteger("port", options.port, 0, 65535);
  requireInteger("http-port", options.httpPort, 0, 65535);
  if (!options.dataDir) throw new InvalidConfigError("--data must name a directory for the broker's logs");
  if (!FLUSH_POLICIES.includes(options.flush)) {
    throw new InvalidConfigError(`flush policy "${options.flush}" is unknown: use sync, interval or os`);
  }
  if (options.nameservers.length === 0) throw new InvalidConfigError("at least one name server is needed (--nameserver host:port)");
  for (const address of options.nameservers) requireAddress("nameserver", address);
  for (const url of options.etcd) requireEtcdUrl(url);
  requireInteger("flush-interval-ms", options.flushIntervalMs, 1, 3_600_000);
  requireInteger("heartbeat-interval-ms", options.heartbeatIntervalMs, 10, 60_000);
  requireInteger("segment-bytes", options.segmentBytes, 1024, 2 ** 31 - 1);
  requireInteger("retention-ms", options.retentionMs, 0, Number.MAX_SAFE_INTEGER);
  requireInteger("retention-bytes", options.retentionBytes, 0, Number.MAX_SAFE_INTEGER);
  requireInteger("max-message-bytes", options.maxMessageBytes, 1024, 64 * 1024 * 1024 - 1024);
  requireInteger("max-fetch-bytes", options.maxFetchBytes, 1024, 64 * 1024 * 1024 - 1024);
  requireInteger("max-pending-produce-bytes", options.maxPendingProduceBytes, 1024, 2 ** 40);
  requireInteger("max-held-produce-bytes", options.maxHeldProduceBytes, 1024, 2 ** 40);
  requireInteger("shutdown-timeout-ms", options.shutdownTimeoutMs, 0, 600_000);
  requireInteger("group-initial-rebalance-delay-ms", options.groupInitialRebalanceDelayMs, 0, 60_000);
  checkReplicationMode(options.replication);
  requireInteger("min-in-sync-slaves", options.minInSyncSlaves, 0, 64);
  requireInteger("max-slave-lag-ms", options.maxSlaveLagMs, 10, 3_600_000);
  requireInteger("replication-throttle-bytes", options.replicationThrottleBytesPerSecond, 0, Number.MAX_SAFE_INTEGER);
  requireInteger("lease-ttl-ms", options.leaseTtlMs, 2000, 600_000);
  requireInteger("fence-margin-ms", options.fenceMarginMs, 50, options.leaseTtlMs - 100);
  return options;
}

/** Parses `--replication`: `async`, `sync` or `quorum:K` (K ≥ 1 slaves). */
export function parseReplicationMode(text: string): ReplicationMode {
  const value = text.trim();
  if (value === "async" || value === "sync") return { kind: value };
  const match = /^quorum:(\d{1,2})$/.exec(value);
  if (match) return checkReplicationMode({ kind: "quorum", k: Number(match[1]) });
  throw new InvalidConfigError(`--replication "${text}" is unknown: use async, sync or quorum:K (K slaves must have a batch before it is acknowledged)`);
}

function checkReplicationMode(mode: ReplicationMode): ReplicationMode {
  if (mode.kind === "async" || mode.kind === "sync") return mode;
  if (mode.kind === "quorum" && Number.isInteger(mode.k) && mode.k >= 1 && mode.k <= 64) return mode;
  throw new InvalidConfigError(`replication mode ${JSON.stringify(mode)} is invalid: use async, sync or quorum:K with K from 1 to 64`);
}

function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidConfigError(`--${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

function requireEtcdUrl(url: string): void {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.port === "") {
    throw new InvalidConfigError(`--etcd "${url}" must be an http:// or https:// URL with a port, e.g. http://127.0.0.1:2379`);
  }
}

export function requireAddress(name: string, address: string): void {
  if (!/^[^:\s]+:\d{1,5}$/.test(address)) {
    throw new InvalidConfigError(`--${name} "${address}" is not host:port`);
  }
}
