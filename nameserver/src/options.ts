/**
 * Name server options: defaults as named constants, validated once at start-up.
 * Flags, environment variables and config files all land in `NameServerOptions`.
 */
import { join } from "node:path";
import type { Registry } from "prom-client";
import { systemClock, type Clock } from "../../common/src/clock.js";
import { InvalidConfigError } from "../../common/src/errors.js";
import { DEFAULT_GROUP_STATE_PARTITIONS } from "../../common/src/protocol.js";
import { createLogger, type Logger } from "../../common/src/logger.js";
import { parseServerSecurity, type ResolvedServerSecurity, type ServerSecurityOptions } from "../../common/src/security/server-config.js";
import type { DetectorSettings } from "./liveness/detector.js";
import { DEFAULT_EXPIRY_HEARTBEATS, parseDetectorOptions } from "./liveness/detector-options.js";
import { MemoryRegistryStore } from "./registry/memory-store.js";
import { SECURITY_FILE_NAME } from "./registry/security-file.js";
import type { RegistryStore } from "./registry/store.js";
import { MAX_PARTITIONS_PER_TOPIC } from "./topic-validation.js";

export const DEFAULT_NAMESERVER_HOST = "127.0.0.1";
export const DEFAULT_NAMESERVER_GRPC_PORT = 9876;
export const DEFAULT_NAMESERVER_HTTP_PORT = 9877;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 1000;
/** Missed heartbeats after which a broker is removed (R2's k). */
export { DEFAULT_EXPIRY_HEARTBEATS };
/** Deadline of one call from the name server to a broker (CreatePartitions, DeleteTopic). */
export const DEFAULT_BROKER_REQUEST_TIMEOUT_MS = 10_000;
/** How long `stop()` waits for in-flight calls before cutting them off. */
export const GRACEFUL_SHUTDOWN_MS = 2000;
export { DEFAULT_GROUP_STATE_PARTITIONS };
/** The client id the name server puts in its requests to brokers. */
export const NAMESERVER_CLIENT_ID = "nameserver";
/** Caps on what clients may create, so a script gone wrong cannot exhaust brokers' files and memory. */
export const DEFAULT_MAX_TOPICS = 10_000;
export const DEFAULT_MAX_PARTITIONS_PER_TOPIC = 1_000;
export const DEFAULT_MAX_PARTITIONS = 100_000;

/**
 * Limits on topic and partition counts, checked by topic creation and alter (LIMIT_EXCEEDED).
 * Each name server checks its own; give every name server of a cluster the same values.
 */
export interface TopicLimits {
  /** User topics in the cluster; internal `%` topics do not count. @defaultValue 10000 */
  maxTopics: number;
  /** Partitions of one user topic, at most 10000. @defaultValue 1000 */
  maxPartitionsPerTopic: number;
  /** Partitions of all topics together, internal ones included. @defaultValue 100000 */
  maxPartitions: number;
}

export interface NameServerOptions extends Partial<TopicLimits> {
  /**
   * A registry to add the name server's metrics to: `sluice dev` shares the broker's, so its
   * one /metrics has both. @defaultValue its own, on its own HTTP port
   */
  metricsRegistry?: Registry;
  /** @defaultValue "127.0.0.1" */
  host?: string;
  /** gRPC port; 0 picks a free one. @defaultValue 9876 */
  port?: number;
  /** HTTP port (/metrics, /healthz, /readyz); 0 picks a free one, null runs no HTTP server
   * (embedded in `sluice dev`, whose broker owns the HTTP port). @defaultValue 9877 */
  httpPort?: number | null;
  /** The interval brokers are told to heartbeat at. @defaultValue 1000 */
  heartbeatIntervalMs?: number;
  /** Silence after which a broker is removed; give this or `expiryHeartbeats`. @defaultValue 3 × heartbeatIntervalMs */
  expiryMs?: number;
  /** Missed heartbeats after which a broker is removed (k): expiryMs = k × heartbeatIntervalMs. @defaultValue 3 */
  expiryHeartbeats?: number;
  /**
   * "fixed": k missed heartbeats; "phi": φ-accrual over each broker's heartbeat rhythm, with
   * the expiry window as a safety net (see liveness/). @defaultValue "fixed"
   */
  detector?: "fixed" | "phi";
  /** Phi detector only: φ from which a broker is suspect; removed at twice it. @defaultValue 8 */
  phiThreshold?: number;
  /** @defaultValue 10000 */
  brokerRequestTimeoutMs?: number;
  /**
   * After start, how long an unknown topic is answered with retriable NOT_READY while brokers
   * re-register (in-memory store only). @defaultValue 2 × heartbeatIntervalMs
   */
  startupGraceMs?: number;
  /** Partitions of `%groups` when it is first created. @defaultValue 8 */
  groupStatePartitions?: number;
  /** Where brokers and topics are kept. @defaultValue a new in-memory store */
  store?: RegistryStore;
  /**
   * The name server's own directory. With the default in-memory store, users and ACLs are kept
   * in `<dataDir>/security.json` across restarts (brokers and topics are relearned from
   * heartbeats instead). Ignored when `store` is given. @defaultValue none: users and ACLs live in memory only
   */
  dataDir?: string;
  /**
   * TLS, authentication (`auth`, `adminPasswordFile`) and connection limits, shared with the
   * broker's. @defaultValue plain text, no authentication (everyone may do everything)
   */
  security?: ServerSecurityOptions;
  /**
   * Over etcd: campaign to be the failover controller, which promotes a slave when a group's
   * master loses its lease (one name server leads at a time). Ignored without etcd. @defaultValue true
   */
  failoverController?: boolean;
  clock?: Clock;
  logger?: Logger;
}

export interface ResolvedNameServerOptions {
  host: string;
  port: number;
  httpPort: number | null;
  heartbeatIntervalMs: number;
  expiryMs: number;
  detector: DetectorSettings;
  brokerRequestTimeoutMs: number;
  startupGraceMs: number;
  groupStatePartitions: number;
  topicLimits: TopicLimits;
  store: RegistryStore;
  security: ResolvedServerSecurity;
  /** True when the store is the in-memory one, rebuilt from broker reports. */
  storeIsMemory: boolean;
  failoverController: boolean;
  clock: Clock;
  logger: Logger;
}

export function parseNameServerOptions(options: NameServerOptions = {}): ResolvedNameServerOptions {
  const host = options.host ?? DEFAULT_NAMESERVER_HOST;
  if (host === "") throw new InvalidConfigError("host must not be empty; use 0.0.0.0 to listen on every interface");
  const port = checkPort("port", options.port ?? DEFAULT_NAMESERVER_GRPC_PORT);
  const httpPort = options.httpPort === null ? null : checkPort("httpPort", options.httpPort ?? DEFAULT_NAMESERVER_HTTP_PORT);
  const heartbeatIntervalMs = checkPositiveInteger("heartbeatIntervalMs", options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS);
  const { expiryMs, detector } = parseDetectorOptions({
    heartbeatIntervalMs,
    detector: options.detector,
    phiThreshold: options.phiThreshold,
    expiryHeartbeats: options.expiryHeartbeats,
    expiryMs: options.expiryMs,
  });
  const brokerRequestTimeoutMs = checkPositiveInteger(
    "brokerRequestTimeoutMs",
    options.brokerRequestTimeoutMs ?? DEFAULT_BROKER_REQUEST_TIMEOUT_MS,
  );
  const startupGraceMs = options.startupGraceMs ?? 2 * heartbeatIntervalMs;
  if (!Number.isInteger(startupGraceMs) || startupGraceMs < 0) {
    throw new InvalidConfigError(`startupGraceMs must be a non-negative integer, got ${startupGraceMs}`);
  }
  const groupStatePartitions = options.groupStatePartitions ?? DEFAULT_GROUP_STATE_PARTITIONS;
  if (!Number.isInteger(groupStatePartitions) || groupStatePartitions < 1 || groupStatePartitions > 1000) {
    throw new InvalidConfigError(`groupStatePartitions must be an integer from 1 to 1000, got ${groupStatePartitions}`);
  }
  if (options.dataDir !== undefined && options.dataDir === "") throw new InvalidConfigError("dataDir must not be empty; give the name server's data directory");
  const store =
    options.store ??
    new MemoryRegistryStore({
      ...(options.dataDir === undefined ? {} : { securityFile: join(options.dataDir, SECURITY_FILE_NAME) }),
      // Above any version an earlier run could have reached (changes come far slower than 1000 per ms).
      initialSecurityVersion: Date.now() * 1000,
    });
  return {
    groupStatePartitions,
    topicLimits: parseTopicLimits(options),
    startupGraceMs,
    host,
    port,
    httpPort,
    heartbeatIntervalMs,
    expiryMs,
    detector,
    brokerRequestTimeoutMs,
    store,
    security: parseServerSecurity(options.security),
    storeIsMemory: store instanceof MemoryRegistryStore,
    failoverController: options.failoverController ?? true,
    clock: options.clock ?? systemClock,
    logger: options.logger ?? createLogger("nameserver"),
  };
}

function checkPort(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    throw new InvalidConfigError(`${name} must be an integer from 0 to 65535 (0 picks a free port), got ${value}`);
  }
  return value;
}

function checkPositiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new InvalidConfigError(`${name} must be a positive integer number of milliseconds, got ${value}`);
  }
  return value;
}

export function parseTopicLimits(options: Partial<TopicLimits> = {}): TopicLimits {
  const limit = (name: keyof TopicLimits, value: number, max = Number.MAX_SAFE_INTEGER): number => {
    if (!Number.isInteger(value) || value < 1 || value > max) {
      throw new InvalidConfigError(`${name} must be an integer from 1 to ${max}, got ${value}`);
    }
    return value;
  };
  return {
    maxTopics: limit("maxTopics", options.maxTopics ?? DEFAULT_MAX_TOPICS),
    maxPartitionsPerTopic: limit("maxPartitionsPerTopic", options.maxPartitionsPerTopic ?? DEFAULT_MAX_PARTITIONS_PER_TOPIC, MAX_PARTITIONS_PER_TOPIC),
    maxPartitions: limit("maxPartitions", options.maxPartitions ?? DEFAULT_MAX_PARTITIONS),
  };
}
