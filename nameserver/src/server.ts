/**
 * The name server process: gRPC (NameServer service), an optional HTTP side (/metrics,
 * /healthz, /readyz) and the sweep timer that expires silent brokers.
 */
import type { Server } from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import type { GrpcListener } from "../../common/src/grpc/listener.js";
import { createHttpServer, createMetricsRegistry, listenHttp } from "../../common/src/http/server.js";
import { createServerSecurityKit, type ServerSecurityKit } from "../../common/src/security/server-config.js";
import { NameServerService } from "../../proto/gen/sluice/v1/nameserver.js";
import { BrokerAdminClients } from "./broker-admin.js";
import { ClusterState } from "./cluster-state.js";
import { NameServerMetrics } from "./metrics.js";
import {
  GRACEFUL_SHUTDOWN_MS,
  NAMESERVER_CLIENT_ID,
  parseNameServerOptions,
  type NameServerOptions,
  type ResolvedNameServerOptions,
} from "./options.js";
import { EtcdRegistryStore } from "./registry/etcd-store.js";
import { EtcdRegistryView } from "./registry/etcd-view.js";
import type { RegistryStore } from "./registry/store.js";
import { RouteWatch } from "./route-watch.js";
import { createNameServerService } from "./service.js";
import { SecurityService } from "./security-service.js";
import { SecurityService as SecurityServiceDefinition } from "../../proto/gen/sluice/v1/security.js";
import { CoordinatorFinder } from "./coordinators.js";
import { Controller } from "./controller/controller.js";
import { GroupRecords } from "./controller/group-records.js";
import { BrokerPromoter } from "./controller/promote-broker.js";
import { ReplicationClients } from "./controller/replica-calls.js";
import { ReplicaReports } from "./controller/replica-reports.js";
import { TopicAdmin } from "./topic-admin.js";

/** What the name server runs for replication: broker clients, and over etcd the group records and controller. */
interface ReplicationControl {
  clients: ReplicationClients;
  records: GroupRecords | undefined;
  controller: Controller | undefined;
}

export class NameServer {
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  private stopping: Promise<void> | undefined;

  private constructor(
    private readonly options: ResolvedNameServerOptions,
    readonly state: ClusterState,
    private readonly grpcServer: Server,
    private readonly httpServer: FastifyInstance | undefined,
    private readonly brokerAdmin: BrokerAdminClients,
    private readonly metrics: NameServerMetrics,
    private readonly routeWatch: RouteWatch,
    /** "host:port" the gRPC server bound. */
    readonly grpcAddress: string,
    /** "host:port" the HTTP server bound, or null when it runs without one. */
    readonly httpAddress: string | null,
    /** The store the state uses: the options' store, or the etcd view over it. */
    private readonly store: RegistryStore,
    private readonly replication: ReplicationControl,
    private readonly securityService: SecurityService,
    private readonly listener: GrpcListener,
    private readonly stopFollowingSecurity: () => void,
  ) {}

  /** True while this name server is the elected failover controller (etcd mode). */
  get isController(): boolean {
    return this.replication.controller?.isLeader ?? false;
  }

  static async start(input: NameServerOptions = {}): Promise<NameServer> {
    const options = parseNameServerOptions(input);
    const { logger } = options;
    // Over etcd the name server reads a watched view (every name server sees every write at
    // once, and keeps serving it while etcd is lost) and judges brokers from their records.
    const view = options.store instanceof EtcdRegistryStore ? new EtcdRegistryView({ store: options.store, logger }) : undefined;
    if (view !== undefined) await view.start();
    const store: RegistryStore = view ?? options.store;
    const state = new ClusterState({
      store,
      sharedLiveness: view !== undefined,
      clock: options.clock,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      expiryMs: options.expiryMs,
      detector: options.detector,
      logger,
      learnTopicsFromReports: options.storeIsMemory,
      startupGraceMs: options.startupGraceMs,
    });
    const registry = input.metricsRegistry ?? createMetricsRegistry();
    const kit = await createServerSecurityKit(options.security, registry, logger);
    // The users and ACLs this name server enforces are the registry's: read now, followed after.
    const stopFollowingSecurity = await followRegistrySecurity(store, kit);
    const brokerAdmin = new BrokerAdminClients({
      clientId: NAMESERVER_CLIENT_ID,
      requestTimeoutMs: options.brokerRequestTimeoutMs,
      channels: kit.peers,
    });
    const metrics = new NameServerMetrics(registry, state);
    const routeWatch = new RouteWatch({ source: state, logger });
    // Changes written through other name servers (and leases expiring) reach WatchRoutes here.
    view?.onChange(() => state.announceRouteChange());
    const grpcServer = kit.createGrpcServer();
    const topics = new TopicAdmin(state, brokerAdmin, logger, options.topicLimits);
    const replicaReports = new ReplicaReports();
    const replication: ReplicationControl = {
      clients: new ReplicationClients(NAMESERVER_CLIENT_ID, kit.peers),
      records: options.store instanceof EtcdRegistryStore ? new GroupRecords({ endpoints: options.store.endpoints, keyPrefix: options.store.keyPrefix }) : undefined,
      controller: undefined,
    };
    const promoter = new BrokerPromoter({
      records: replication.records,
      state,
      reports: replicaReports,
      brokers: replication.clients,
      clock: options.clock,
      logger,
    });
    // Users and ACLs: kept in the registry, changed by `sluice user|acl`, followed by brokers.
    const securityService = new SecurityService({ store, guard: kit.security, logger });
    grpcServer.addService(SecurityServiceDefinition, securityService.handlers);
    grpcServer.addService(
      NameServerService,
      createNameServerService({
        state,
        topics,
        guard: kit.security,
        coordinators: new CoordinatorFinder(state, topics, options.groupStatePartitions, logger),
        metrics,
        routeWatch,
        heartbeatIntervalMs: options.heartbeatIntervalMs,
        expiryMs: options.expiryMs,
        replicaReports,
        promoter,
        clock: options.clock,
      }),
    );

    let grpcBound = false;
    let httpServer: FastifyInstance | undefined;
    let listener: GrpcListener | undefined;
    try {
      listener = await kit.listen(grpcServer, options.host, options.port);
      grpcBound = true;
      const grpcAddress = `${options.host.includes(":") && !options.host.startsWith("[") ? `[${options.host}]` : options.host}:${listener.port}`;
      let httpAddress: string | null = null;
      if (options.httpPort !== null) {
        httpServer = createHttpServer({
          metrics: registry,
          logger,
          ...kit.httpOptions(),
          // Nothing to load before serving: the registry fills from heartbeats as they come.
          notReadyReason: () => (grpcBound ? (view?.notReadyReason() ?? null) : "the gRPC port is not bound yet"),
        });
        httpAddress = await listenHttp(httpServer, options.host, options.httpPort);
      }
      if (replication.records !== undefined && options.failoverController) {
        replication.controller = new Controller({ records: replication.records, brokers: replication.clients, candidateId: grpcAddress, clock: options.clock, logger });
        replication.controller.start();
      }
      const server = new NameServer(options, state, grpcServer, httpServer, brokerAdmin, metrics, routeWatch, grpcAddress, httpAddress, store, replication, securityService, listener, stopFollowingSecurity);
      server.startSweeping();
      logger.info(
        { grpcAddress, httpAddress, heartbeatIntervalMs: options.heartbeatIntervalMs, expiryMs: options.expiryMs, detector: options.detector, store: options.storeIsMemory ? "memory" : view !== undefined ? "etcd" : "external" },
        "name server started",
      );
      logger.info(
        { tls: options.security.tls !== undefined, mtls: options.security.tls?.ca !== undefined, auth: options.security.auth },
        options.security.auth ? "authentication on: every caller must prove who it is, ACLs apply" : "authentication off: every caller may do everything",
      );
      return server;
    } catch (err) {
      routeWatch.close();
      securityService.close();
      stopFollowingSecurity();
      listener?.close();
      grpcServer.forceShutdown();
      await httpServer?.close();
      brokerAdmin.close();
      await closeReplication(replication);
      await view?.close();
      throw err;
    }
  }

  /** Stops the sweep timer, lets in-flight calls finish (at most 2 s), then closes everything. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    // Resign first, so another name server's controller takes over without waiting for a lease.
    await closeReplication(this.replication);
    // Route watches are endless streams: end them first, or the graceful shutdown waits them out.
    this.routeWatch.close();
    this.securityService.close();
    this.stopFollowingSecurity();
    this.listener.close();
    await Promise.all([shutdownGrpc(this.grpcServer, GRACEFUL_SHUTDOWN_MS), this.httpServer?.close()]);
    this.brokerAdmin.close();
    await this.store.close();
    this.options.logger.info({ grpcAddress: this.grpcAddress }, "name server stopped");
  }

  // Sweeping twice per interval bounds how late an expiry is noticed to half an interval.
  private startSweeping(): void {
    const periodMs = Math.max(1, Math.floor(this.options.heartbeatIntervalMs / 2));
    this.sweepTimer = setInterval(() => void this.sweepOnce(), periodMs);
    this.sweepTimer.unref();
  }

  private async sweepOnce(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const { expired } = await this.state.sweep();
      for (const { record } of expired) this.metrics.brokerExpiries.inc({ group: record.group, broker_id: String(record.brokerId) });
    } catch (err) {
      this.options.logger.error({ err }, "sweeping expired brokers failed; retrying on the next tick");
    } finally {
      this.sweeping = false;
    }
  }
}

async function closeReplication(replication: ReplicationControl): Promise<void> {
  await replication.controller?.stop();
  replication.clients.close();
  replication.records?.close();
}

/** Reads the registry's users and ACLs into the guard and follows every later change. */
async function followRegistrySecurity(store: RegistryStore, kit: ServerSecurityKit): Promise<() => void> {
  const stop = store.watchSecurity((snapshot) => {
    if (snapshot.version >= kit.security.version) kit.security.update(snapshot);
  });
  kit.security.update(await store.readSecurity());
  return stop;
}

/** Graceful shutdown with a deadline: calls still running after `graceMs` are cut off. */
function shutdownGrpc(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
