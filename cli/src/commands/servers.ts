/** `sluice dev`, `sluice nameserver` and `sluice broker`: the server processes. */
import { Command, Option } from "commander";
import { resolve } from "node:path";
import { Broker } from "../../../broker/src/server.js";
import { DEFAULT_BROKER_HTTP_PORT, DEFAULT_BROKER_PORT, parseReplicationMode } from "../../../broker/src/options.js";
import type { BrokerOptionsInput } from "../../../broker/src/options.js";
import type { NameServerOptions } from "../../../nameserver/src/options.js";
import { NameServer } from "../../../nameserver/src/server.js";
import { EtcdRegistryStore } from "../../../nameserver/src/registry/etcd-store.js";
import { InvalidConfigError } from "../../../common/src/errors.js";
import { createLogger } from "../../../common/src/logger.js";
import { loadConfigFile, mergeOptions } from "../config.js";
import { action, parseInteger, type GlobalOptions } from "../output.js";
import { promoteCommand } from "./promote.js";
import { createMetricsRegistry } from "../../../common/src/http/server.js";
import { parseServerSecurity, type ServerSecurityOptions } from "../../../common/src/security/server-config.js";
import { ADMIN_USER } from "../../../common/src/security/types.js";
import type { SluiceOptions } from "../../../clients/src/options.js";
import { adminConsole } from "../../../ops/console/src/index.js";

const DEFAULT_NAMESERVER_PORT = 9876;
const DEFAULT_NAMESERVER_HTTP_PORT = 9877;
const FLUSH = ["sync", "interval", "os"] as const;

/** Keys a broker config file may hold (also the long flag names). */
const BROKER_KEYS = [
  "name", "id", "data", "host", "port", "httpPort", "nameserver", "flush", "flushIntervalMs", "heartbeatIntervalMs",
  "segmentBytes", "retentionMs", "retentionBytes", "maxMessageBytes", "cluster", "etcd",
  "replication", "minInSyncSlaves", "maxSlaveLagMs", "replicationThrottleBytes", "leaseTtlMs", "fenceMarginMs", "flow", "maxHeldProduceBytes",
  "metricsPerPartition",
] as const;
const NAMESERVER_KEYS = [
  "host", "port", "httpPort", "heartbeatIntervalMs", "expiryMs", "expiryHeartbeats", "detector", "phiThreshold",
] as const;
const DETECTORS = ["fixed", "phi"] as const;
/** Config file keys of the name server's registry (alongside NAMESERVER_KEYS). */
const NAMESERVER_STORE_KEYS = ["etcd", "data"] as const;
const DEV_KEYS = ["data", "flush", "portOffset", "host", "flushIntervalMs", "segmentBytes", "retentionMs", "retentionBytes", "maxMessageBytes", "flow", "maxHeldProduceBytes", "metricsPerPartition"] as const;

function sourceOf(command: Command) {
  return (key: string): string | undefined => command.getOptionValueSource(key) ?? undefined;
}

/** Stops the servers on SIGTERM / SIGINT; a second signal exits at once. */
function stopOnSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) process.exit(1);
    stopping = true;
    process.stderr.write(`sluice: ${signal} received, shutting down\n`);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`sluice: shutdown failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
}

function num(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isFinite(n)) throw new InvalidConfigError(`${name} must be a number, got ${JSON.stringify(value)}`);
  return n;
}

function str(value: unknown): string | undefined {
  return value === undefined ? undefined : String(value);
}

function storageOptions(o: Record<string, unknown>): Partial<BrokerOptionsInput> {
  const out: Partial<BrokerOptionsInput> = {};
  const set = <K extends keyof BrokerOptionsInput>(key: K, value: BrokerOptionsInput[K] | undefined): void => {
    if (value !== undefined) out[key] = value;
  };
  set("flush", str(o.flush) as BrokerOptionsInput["flush"]);
  set("flushIntervalMs", num(o.flushIntervalMs, "flushIntervalMs"));
  set("segmentBytes", num(o.segmentBytes, "segmentBytes"));
  set("retentionMs", num(o.retentionMs, "retentionMs"));
  set("retentionBytes", num(o.retentionBytes, "retentionBytes"));
  set("maxMessageBytes", num(o.maxMessageBytes, "maxMessageBytes"));
  return out;
}

/** Ingress flow rules: the config file's `flow:` list, validated by the broker (naming the field). */
function flowOptions(o: Record<string, unknown>): Partial<BrokerOptionsInput> {
  const out: Partial<BrokerOptionsInput> = {};
  if (o.flow !== undefined) out.flowRules = o.flow;
  const held = num(o.maxHeldProduceBytes, "maxHeldProduceBytes");
  if (held !== undefined) out.maxHeldProduceBytes = held;
  return out;
}

/** What /metrics exports beyond the defaults. The broker checks the value's type. */
function metricsOptions(o: Record<string, unknown>): Partial<BrokerOptionsInput> {
  return o.metricsPerPartition === undefined ? {} : { metricsPerPartition: o.metricsPerPartition as boolean };
}

/** Config file keys (and flags) of the name server's caps on topic and partition counts. */
const TOPIC_LIMIT_KEYS = ["maxTopics", "maxPartitionsPerTopic", "maxPartitions"] as const;

/** The caps of `sluice nameserver` and `sluice dev` (flags or config file); the name server validates them. */
function topicLimitOptions(o: Record<string, unknown>): Partial<Pick<NameServerOptions, (typeof TOPIC_LIMIT_KEYS)[number]>> {
  const out: Partial<Pick<NameServerOptions, (typeof TOPIC_LIMIT_KEYS)[number]>> = {};
  for (const key of TOPIC_LIMIT_KEYS) {
    const value = num(o[key], key);
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function addTopicLimitFlags(command: Command): Command {
  return command
    .option("--max-topics <n>", "refuse creating more user topics than this (default 10000; internal topics not counted)", parseInteger("max-topics", 1))
    .option("--max-partitions-per-topic <n>", "refuse a topic with more partitions than this (default 1000, at most 10000)", parseInteger("max-partitions-per-topic", 1, 10_000))
    .option("--max-partitions <n>", "refuse passing this many partitions in the cluster, internal topics included (default 100000)", parseInteger("max-partitions", 1));
}

/** Config file keys (and flags) of TLS, authentication and connection limits, on every server. */
const SECURITY_KEYS = [
  "tlsCert", "tlsKey", "tlsCa", "auth", "adminPasswordFile", "openMetrics", "maxConnections", "maxConnectionsPerClient", "maxInFlightPerConnection",
] as const;

/**
 * TLS, authentication and limits of a server, from its own flags and config file only: the
 * CLI's client settings (`SLUICE_TLS_CA`, `SLUICE_TLS_CERT`… in a script's environment) must
 * never become a server's identity.
 */
function securityOptions(o: Record<string, unknown>): ServerSecurityOptions {
  const out: ServerSecurityOptions = {};
  const file = (key: "tlsCert" | "tlsKey" | "tlsCa" | "adminPasswordFile"): string | undefined => {
    const value = str(o[key]);
    return value === undefined ? undefined : resolve(value);
  };
  const tlsCertFile = file("tlsCert");
  const tlsKeyFile = file("tlsKey");
  const tlsCaFile = file("tlsCa");
  const adminPasswordFile = file("adminPasswordFile");
  if (tlsCertFile) out.tlsCertFile = tlsCertFile;
  if (tlsKeyFile) out.tlsKeyFile = tlsKeyFile;
  if (tlsCaFile) out.tlsCaFile = tlsCaFile;
  if (adminPasswordFile) out.adminPasswordFile = adminPasswordFile;
  if (o.auth !== undefined) out.auth = o.auth === true || o.auth === "true";
  if (o.openMetrics !== undefined) out.openMetrics = o.openMetrics === true || o.openMetrics === "true";
  const maxConnections = num(o.maxConnections, "maxConnections");
  const maxConnectionsPerClient = num(o.maxConnectionsPerClient, "maxConnectionsPerClient");
  const maxInFlightPerConnection = num(o.maxInFlightPerConnection, "maxInFlightPerConnection");
  if (maxConnections !== undefined) out.maxConnections = maxConnections;
  if (maxConnectionsPerClient !== undefined) out.maxConnectionsPerClient = maxConnectionsPerClient;
  if (maxInFlightPerConnection !== undefined) out.maxInFlightPerConnection = maxInFlightPerConnection;
  return out;
}

/**
 * The console's own client of the cluster (its REST routes read through the SDK): over TLS with
 * the server's certificate and as admin when the servers require authentication. Each request
 * is checked against the caller's own ACLs before the console makes any call.
 */
function consoleClient(security: ServerSecurityOptions): Pick<SluiceOptions, "tls" | "credentials"> {
  const settings = parseServerSecurity(security);
  const out: Pick<SluiceOptions, "tls" | "credentials"> = {};
  if (settings.tls) out.tls = { ...(settings.tls.ca ? { ca: settings.tls.ca } : {}), cert: settings.tls.cert, key: settings.tls.key };
  if (settings.adminPassword) out.credentials = { username: ADMIN_USER, password: settings.adminPassword };
  return out;
}

function addSecurityFlags(command: Command): Command {
  return command
    .option("--tls-cert <file>", "serve gRPC and HTTP over TLS with this PEM certificate (chain)")
    .option("--tls-key <file>", "the certificate's PEM private key")
    .option("--tls-ca <file>", "PEM CA of the cluster: verifies the other servers and clients' certificates (mTLS)")
    .option("--auth", "require authentication (password users or client certificates) and enforce ACLs, default deny")
    .option("--admin-password-file <file>", "password of the built-in superuser admin (first line); servers also use it with each other")
    .option("--open-metrics", "with --auth: leave /metrics, /healthz and /readyz open for scrapers and probes")
    .option("--max-connections <n>", "connections the gRPC port accepts in total (default 10000)", parseInteger("max-connections", 1, 1_000_000))
    .option("--max-connections-per-client <n>", "connections one client IP may hold (default 1000)", parseInteger("max-connections-per-client", 1, 1_000_000))
    .option("--max-in-flight-per-connection <n>", "gRPC calls in flight on one connection, a stream counting as one (default 1000)", parseInteger("max-in-flight-per-connection", 1, 1_000_000));
}

/** Replication and failover settings of `sluice broker` (flags or config file). */
function replicationOptions(o: Record<string, unknown>): Partial<BrokerOptionsInput> {
  const out: Partial<BrokerOptionsInput> = {};
  const set = <K extends keyof BrokerOptionsInput>(key: K, value: BrokerOptionsInput[K] | undefined): void => {
    if (value !== undefined) out[key] = value;
  };
  const mode = str(o.replication);
  set("replication", mode === undefined ? undefined : parseReplicationMode(mode));
  set("minInSyncSlaves", num(o.minInSyncSlaves, "minInSyncSlaves"));
  set("maxSlaveLagMs", num(o.maxSlaveLagMs, "maxSlaveLagMs"));
  set("replicationThrottleBytesPerSecond", num(o.replicationThrottleBytes, "replicationThrottleBytes"));
  set("leaseTtlMs", num(o.leaseTtlMs, "leaseTtlMs"));
  set("fenceMarginMs", num(o.fenceMarginMs, "fenceMarginMs"));
  return out;
}

function addReplicationFlags(command: Command): Command {
  return command
    .addOption(
      new Option("--replication <mode>", "when acks=all is met: async (at once), sync (every in-sync slave has it), quorum:K (K slaves have it)")
        .env("SLUICE_REPLICATION"),
    )
    .option("--min-in-sync-slaves <n>", "refuse acks=all produce while fewer slaves are in sync (default 1 with sync, else 0)", parseInteger("min-in-sync-slaves", 0, 64))
    .option("--max-slave-lag-ms <ms>", "a slave behind for longer leaves the in-sync set (default 10000)", parseInteger("max-slave-lag-ms", 10))
    .option("--replication-throttle-bytes <bytes>", "bytes/s for a slave catching up outside the in-sync set (0 = unthrottled)", parseInteger("replication-throttle-bytes", 0))
    .option("--lease-ttl-ms <ms>", "with --etcd: TTL of the broker's etcd lease; failover starts this long after a master dies (default 2000)", parseInteger("lease-ttl-ms", 2000))
    .option("--fence-margin-ms <ms>", "with --etcd: a master stops acking this long before its lease could expire (default 500)", parseInteger("fence-margin-ms", 50));
}

function addStorageFlags(command: Command): Command {
  return command
    .option("--metrics-per-partition", "/metrics adds per-partition series (end offset, size, group lag per partition); off to keep cardinality low")
    .addOption(new Option("--flush <policy>", "flush policy: sync (fsync before ack), interval, os").choices(FLUSH).env("SLUICE_FLUSH"))
    .option("--flush-interval-ms <ms>", "fsync period under --flush interval (default 1000)", parseInteger("flush-interval-ms", 1))
    .option("--segment-bytes <bytes>", "default segment size for new topics", parseInteger("segment-bytes", 1024))
    .option("--retention-ms <ms>", "default retention by age for new topics (0 = for ever)", parseInteger("retention-ms"))
    .option("--retention-bytes <bytes>", "default retention by size per partition (0 = unlimited)", parseInteger("retention-bytes"))
    .option("--max-message-bytes <bytes>", "largest batch a producer may send", parseInteger("max-message-bytes", 1024));
}

export function serverCommands(program: Command, globals: () => GlobalOptions): void {
  const dev = program
    .command("dev")
    .description("run an embedded single-node cluster: a name server and a broker in one process")
    .addOption(new Option("--data <dir>", "data directory").default("./data").env("SLUICE_DATA"))
    .option("--port-offset <n>", "add N to every port (9876, 10911, 8080)", parseInteger("port-offset", 0, 50000))
    .option("--host <host>", "address to bind", "127.0.0.1")
    .addOption(new Option("--nameserver-port <port>", "name server gRPC port (0 = free port)").argParser(parseInteger("nameserver-port", 0, 65535)).hideHelp())
    .addOption(new Option("--broker-port <port>", "broker gRPC port (0 = free port)").argParser(parseInteger("broker-port", 0, 65535)).hideHelp())
    .addOption(new Option("--http-port <port>", "HTTP port (0 = free port)").argParser(parseInteger("http-port", 0, 65535)).hideHelp())
    .option("--config <file>", "YAML config file (flags override it)");
  addSecurityFlags(addTopicLimitFlags(addStorageFlags(dev))).action(
    action(async (flags: Record<string, unknown>) => {
      const o = mergeOptions(flags, sourceOf(dev), loadConfigFile(str(flags.config), [...DEV_KEYS, ...TOPIC_LIMIT_KEYS, ...SECURITY_KEYS]));
      const security = securityOptions(o);
      const offset = num(o.portOffset, "portOffset") ?? 0;
      const host = str(o.host) ?? "127.0.0.1";
      const logger = createLogger("sluice-dev");
      // One /metrics for the process: the name server's series beside the broker's.
      const metricsRegistry = createMetricsRegistry();
      const nameserver = await NameServer.start({
        metricsRegistry,
        host,
        port: num(o.nameserverPort, "nameserverPort") ?? DEFAULT_NAMESERVER_PORT + offset,
        httpPort: null,
        // Its only broker registers before `dev` reports ready: nothing to relearn.
        startupGraceMs: 0,
        // Users and ACLs survive a restart in <data>/nameserver/security.json.
        dataDir: resolve(str(o.data) ?? "./data", "nameserver"),
        ...topicLimitOptions(o),
        security,
        logger,
      });
      let broker: Broker;
      try {
        broker = await Broker.start({
          group: "local",
          brokerId: 0,
          dataDir: resolve(str(o.data) ?? "./data"),
          host,
          port: num(o.brokerPort, "brokerPort") ?? DEFAULT_BROKER_PORT + offset,
          httpPort: num(o.httpPort, "httpPort") ?? DEFAULT_BROKER_HTTP_PORT + offset,
          nameservers: [nameserver.grpcAddress],
          ...storageOptions(o),
          ...flowOptions(o),
          ...metricsOptions(o),
          security,
          httpPlugins: [adminConsole({ nameservers: [nameserver.grpcAddress], broker: "local/0", logger, client: consoleClient(security) })],
          metricsRegistry,
          logger,
        });
        await broker.whenRegistered();
      } catch (err) {
        await nameserver.stop();
        throw err;
      }
      stopOnSignal(async () => {
        await broker.stop();
        await nameserver.stop();
      });
      const info = {
        nameserver: nameserver.grpcAddress,
        broker: broker.grpcAddress,
        http: broker.httpAddress,
        dataDir: broker.options.dataDir,
        flush: broker.options.flush,
        pid: process.pid,
      };
      process.stdout.write(
        globals().json
          ? JSON.stringify(info) + "\n"
          : `sluice dev is running (Ctrl-C to stop)\n` +
              `  name server  ${info.nameserver}\n` +
              `  broker       ${info.broker}  (group local, id 0, master)\n` +
              `  http         ${security.tlsCertFile ? "https" : "http"}://${info.http}  (/console /metrics /api/v1 /healthz /readyz)\n` +
              (security.auth ? `  security     --auth: callers authenticate (admin's password from --admin-password-file), ACLs apply\n` : "") +
              `  data         ${info.dataDir}  (flush ${info.flush})\n` +
              `try: npx sluice topic create orders --partitions 3\n`,
      );
      await new Promise(() => {});
    }),
  );

  const nameserver = program
    .command("nameserver")
    .description("run a name server (broker registry and topic routes)")
    .option("--host <host>", "address to bind", "127.0.0.1")
    .addOption(new Option("--port <port>", "gRPC port (0 = free port)").argParser(parseInteger("port", 0, 65535)).default(DEFAULT_NAMESERVER_PORT).env("SLUICE_NAMESERVER_PORT"))
    .addOption(new Option("--http-port <port>", "HTTP port (0 = free port)").argParser(parseInteger("http-port", 0, 65535)).default(DEFAULT_NAMESERVER_HTTP_PORT).env("SLUICE_NAMESERVER_HTTP_PORT"))
    .option("--heartbeat-interval-ms <ms>", "expected broker heartbeat interval", parseInteger("heartbeat-interval-ms", 10))
    .option("--expiry-ms <ms>", "remove a broker silent for this long (default 3 x interval)", parseInteger("expiry-ms", 10))
    .option("--expiry-heartbeats <k>", "remove a broker after K missed heartbeats (default 3; instead of --expiry-ms)", parseInteger("expiry-heartbeats", 2))
    .addOption(
      new Option("--detector <kind>", "failure detector: fixed (K missed heartbeats) or phi (phi-accrual, expiry window as safety net)")
        .choices(DETECTORS)
        .env("SLUICE_DETECTOR"),
    )
    .option("--phi-threshold <phi>", "phi detector: suspect from this phi, removed at twice it (default 8)")
    .addOption(
      new Option("--etcd <urls>", "keep brokers and topics in etcd (client URLs, comma-separated): every name server on it answers the same routes")
        .env("SLUICE_ETCD"),
    )
    .option("--data <dir>", "without --etcd: keep users and ACLs in DIR/security.json across restarts (default: in memory only)")
    .option("--config <file>", "YAML config file (flags override it)")
    .action(
      action(async (flags: Record<string, unknown>) => {
        const o = mergeOptions(flags, sourceOf(nameserver), loadConfigFile(str(flags.config), [...NAMESERVER_KEYS, ...NAMESERVER_STORE_KEYS, ...TOPIC_LIMIT_KEYS, ...SECURITY_KEYS]));
        const heartbeatIntervalMs = num(o.heartbeatIntervalMs, "heartbeatIntervalMs");
        const expiryMs = num(o.expiryMs, "expiryMs");
        const expiryHeartbeats = num(o.expiryHeartbeats, "expiryHeartbeats");
        const phiThreshold = num(o.phiThreshold, "phiThreshold");
        // A config file may say anything here: the name server's options validate it.
        const detector = str(o.detector) as NameServerOptions["detector"];
        // Connecting first makes a wrong or down --etcd fail at start-up, naming the endpoint.
        const etcd = str(o.etcd);
        const store = etcd === undefined ? undefined : await EtcdRegistryStore.connect({ endpoints: etcd.split(",") });
        const server = await NameServer.start({
          ...(store === undefined ? {} : { store }),
          // Without etcd, users and ACLs are kept in <data>/security.json (memory only without --data).
          ...(str(o.data) === undefined ? {} : { dataDir: resolve(str(o.data) as string) }),
          host: str(o.host) ?? "127.0.0.1",
          port: num(o.port, "port") ?? DEFAULT_NAMESERVER_PORT,
          httpPort: num(o.httpPort, "httpPort") ?? DEFAULT_NAMESERVER_HTTP_PORT,
          ...(heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs }),
          ...(expiryMs === undefined ? {} : { expiryMs }),
          ...(expiryHeartbeats === undefined ? {} : { expiryHeartbeats }),
          ...(phiThreshold === undefined ? {} : { phiThreshold }),
          ...(detector === undefined ? {} : { detector }),
          ...topicLimitOptions(o),
          security: securityOptions(o),
          logger: createLogger("nameserver"),
        }).catch(async (err: unknown) => {
          await store?.close();
          throw err;
        });
        stopOnSignal(() => server.stop());
        const info = { nameserver: server.grpcAddress, http: server.httpAddress, pid: process.pid };
        process.stdout.write(
          globals().json ? JSON.stringify(info) + "\n" : `sluice name server listening on ${info.nameserver} (http ${info.http})\n`,
        );
        await new Promise(() => {});
      }),
    );
  addSecurityFlags(addTopicLimitFlags(nameserver));

  const broker = program
    .command("broker")
    .description("run a broker of broker group --name")
    .option("--name <group>", "broker group name")
    .addOption(new Option("--id <n>", "broker id inside the group (0 = the first master)").argParser(parseInteger("id", 0)))
    .addOption(new Option("--data <dir>", "data directory (default ./data/<name>-<id>)").env("SLUICE_DATA"))
    .option("--host <host>", "address to bind", "127.0.0.1")
    .addOption(new Option("--port <port>", "gRPC port (0 = free port)").argParser(parseInteger("port", 0, 65535)).default(DEFAULT_BROKER_PORT).env("SLUICE_BROKER_PORT"))
    .addOption(new Option("--http-port <port>", "HTTP port (0 = free port)").argParser(parseInteger("http-port", 0, 65535)).default(DEFAULT_BROKER_HTTP_PORT).env("SLUICE_HTTP_PORT"))
    .option("--heartbeat-interval-ms <ms>", "heartbeat interval to the name servers", parseInteger("heartbeat-interval-ms", 10))
    .option("--cluster <name>", "cluster name")
    .addOption(
      new Option("--etcd <urls>", "take the role from etcd (client URLs, comma-separated): automatic failover, the master fenced by its etcd lease")
        .env("SLUICE_ETCD"),
    )
    .option("--config <file>", "YAML config file (flags override it)");
  addSecurityFlags(addReplicationFlags(addStorageFlags(broker))).action(
    action(async (flags: Record<string, unknown>) => {
      const o = mergeOptions(flags, sourceOf(broker), loadConfigFile(str(flags.config), [...BROKER_KEYS, ...SECURITY_KEYS]));
      const group = str(o.name);
      if (!group) throw new InvalidConfigError("--name is required: the broker group this broker belongs to");
      const brokerId = num(o.id, "id") ?? 0;
      const nameservers = (str(o.nameserver) ?? globals().nameserver).split(",").map((s) => s.trim()).filter(Boolean);
      const heartbeatIntervalMs = num(o.heartbeatIntervalMs, "heartbeatIntervalMs");
      const cluster = str(o.cluster);
      const etcd = str(o.etcd)?.split(",").map((s) => s.trim()).filter(Boolean);
      const brokerSecurity = securityOptions(o);
      const server = await Broker.start({
        group,
        brokerId,
        dataDir: resolve(str(o.data) ?? `./data/${group}-${brokerId}`),
        host: str(o.host) ?? "127.0.0.1",
        port: num(o.port, "port") ?? DEFAULT_BROKER_PORT,
        httpPort: num(o.httpPort, "httpPort") ?? DEFAULT_BROKER_HTTP_PORT,
        nameservers,
        ...(heartbeatIntervalMs === undefined ? {} : { heartbeatIntervalMs }),
        ...(cluster === undefined ? {} : { cluster }),
        ...(etcd === undefined ? {} : { etcd }),
        ...storageOptions(o),
        ...flowOptions(o),
        ...metricsOptions(o),
        ...replicationOptions(o),
        security: brokerSecurity,
        httpPlugins: [
          adminConsole({ nameservers, broker: `${group}/${brokerId}`, logger: createLogger(`console-${group}-${brokerId}`), client: consoleClient(brokerSecurity) }),
        ],
      });
      stopOnSignal(() => server.stop());
      const info = { broker: server.grpcAddress, http: server.httpAddress, group, id: brokerId, dataDir: server.options.dataDir, pid: process.pid };
      process.stdout.write(
        globals().json
          ? JSON.stringify(info) + "\n"
          : `sluice broker ${group}/${brokerId} listening on ${info.broker} (http ${info.http}, data ${info.dataDir})\n`,
      );
      await new Promise(() => {});
    }),
  );
  promoteCommand(broker, globals);
}
