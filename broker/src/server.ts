/**
 * A broker process: recovers its logs, serves the Broker gRPC service and the HTTP side
 * (/healthz, /readyz, /metrics), and registers with the name servers.
 *
 * Shutdown order matters for "nothing acknowledged is lost" and for clients: stop taking
 * produce, deregister (clients stop routing here), let open calls finish, flush and close
 * the logs (writing the clean-shutdown marker), then close HTTP.
 */
import type { Server } from "@grpc/grpc-js";
import type { FastifyInstance } from "fastify";
import { mkdirSync } from "node:fs";
import { systemClock, type Clock } from "../../common/src/clock.js";
import { unary } from "../../common/src/grpc/errors.js";
import { createHttpServer, createMetricsRegistry, listenHttp, type HttpPlugin } from "../../common/src/http/server.js";
import type { Registry } from "prom-client";
import { createLogger, type Logger } from "../../common/src/logger.js";
import type { GrpcListener } from "../../common/src/grpc/listener.js";
import { createServerSecurityKit } from "../../common/src/security/server-config.js";
import { SecurityFollower } from "./registration/security-follower.js";
import { BrokerService } from "../../proto/gen/sluice/v1/broker.js";
import { ReplicationService, type ReadTailRequest, type ReplicaRequest, type ReplicaResponse } from "../../proto/gen/sluice/v1/replication.js";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { NotLeaderError } from "../../common/src/errors.js";
import { toWireError } from "../../common/src/grpc/errors.js";
import { GroupRole } from "./group-role.js";
import { appendAsMaster } from "./master-append.js";
import { createRoleManager } from "./roles/create-role-manager.js";
import type { RoleManager } from "./roles/role-manager.js";
import { GroupsService } from "../../proto/gen/sluice/v1/groups.js";
import { GroupCoordinator } from "./groups/coordinator.js";
import { registerGroupLagMetrics } from "./groups/lag-metrics.js";
import { registerQueueMetrics } from "./groups/queue-metrics.js";
import { registerReplicationMetrics } from "./replication/replication-metrics.js";
import { requiredInSync } from "./replication/in-sync-rules.js";
import { GroupOffsets } from "./groups/offsets.js";
import { RemoteEndOffsets } from "./groups/remote-end-offsets.js";
import { QueueGroups } from "./groups/queue-groups.js";
import { GroupStateStore } from "./groups/state-store.js";
import { createGroupsService, type GroupServices } from "./grpc/groups.js";
import { attachWebSocketConsume, type WebSocketConsume } from "./http/ws-consume.js";
import type { BrokerInfo, HostedPartition } from "../../proto/gen/sluice/v1/nameserver.js";
import {
  SERVER_VERSION,
  handleCreatePartitions,
  handleDeleteTopic,
  handleDescribePartitions,
  handleHandshake,
  handleListOffsets,
} from "./grpc/admin.js";
import { authorized, clusterAdminOnly, counted, type BrokerContext } from "./grpc/context.js";
import { handleFetch, handleSubscribe } from "./grpc/fetch.js";
import { widenInitialWindow, widenSessionWindows } from "./grpc/flow-window.js";
import { handleProduce } from "./grpc/produce.js";
import { FlowController } from "./flow/flow-controller.js";
import { FlowMetrics } from "./flow/flow-metrics.js";
import { FlowRuleStore } from "./flow/rule-store.js";
import { registerFlowAdmin } from "./http/flow-admin.js";
import { BrokerMetrics } from "./metrics.js";
import { parseBrokerOptions, type BrokerOptions, type BrokerOptionsInput } from "./options.js";
import { BrokerLease } from "./registration/etcd-lease.js";
import { Registrar } from "./registration/registrar.js";
import { TopicManager } from "./topics.js";
import type { PartitionLog } from "./storage/partition-log.js";
import { openDataFormat } from "./storage/data-format.js";

export interface BrokerStartOptions extends BrokerOptionsInput {
  clock?: Clock;
  logger?: Logger;
  /** Routes mounted on the broker's HTTP port beside its own (the admin REST API and console). */
  httpPlugins?: readonly HttpPlugin[];
  /** The registry /metrics serves (`sluice dev` shares one with its name server); by default its own. */
  metricsRegistry?: Registry;
}

export class Broker {
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly options: BrokerOptions,
    private readonly grpc: Server,
    private readonly http: FastifyInstance,
    private readonly topics: TopicManager,
    private readonly registrar: Registrar,
    private readonly logger: Logger,
    readonly grpcAddress: string,
    readonly httpAddress: string,
    private readonly state: { shuttingDown: boolean },
    private readonly streamClosers: Set<() => void>,
    /** The broker's own etcd lease (`--etcd`), revoked on the way out. */
    private readonly lease: BrokerLease | undefined,
    private readonly groups: GroupServices & { store: GroupStateStore; remoteEnds: RemoteEndOffsets },
    private readonly webSocketConsume: WebSocketConsume,
    private readonly groupRole: GroupRole,
    private readonly roles: RoleManager,
    private readonly listener: GrpcListener,
    /** Follows the registry's users and ACLs (only with --auth). */
    private readonly securityFollower: SecurityFollower | undefined,
  ) {}

  static async start(input: BrokerStartOptions): Promise<Broker> {
    const options = parseBrokerOptions(input);
    const clock = input.clock ?? systemClock;
    const logger = input.logger ?? createLogger(`broker-${options.group}-${options.brokerId}`);
    mkdirSync(options.dataDir, { recursive: true });

    const registry = input.metricsRegistry ?? createMetricsRegistry();
    let topics: TopicManager | undefined;
    let registrar: Registrar | undefined;
    const state = { shuttingDown: false };
    const metrics = new BrokerMetrics(registry, () => topics, { dataDir: options.dataDir, perPartition: options.metricsPerPartition });
    // Flow rules: the config file's, with run-time changes (flow-rules.json) over them.
    const flowStore = new FlowRuleStore(options.dataDir);
    let flow: FlowController | undefined;
    const flowMetrics = new FlowMetrics(registry, () => flow);
    // Limiters measure intervals on a monotonic clock, whatever `clock` the broker runs on.
    flow = new FlowController(flowStore.effective(options.flowRules, logger), { observer: flowMetrics, maxHeldBytes: options.maxHeldProduceBytes });
    const flowController = flow;

    const kit = await createServerSecurityKit(options.security, registry, logger);
    // HTTP first, so /healthz answers while a long recovery runs and /readyz says why not yet.
    const http = createHttpServer({
      metrics: registry,
      logger,
      ...kit.httpOptions(),
      notReadyReason: () => {
        if (state.shuttingDown) return "shutting down";
        if (!topics) return "recovering logs";
        if (!registrar || registrar.registeredCount === 0) return "not registered with any name server yet";
        return null;
      },
    });
    registerFlowAdmin(http, { flow: flowController, store: flowStore, broker: `${options.group}/${options.brokerId}` });
    for (const plugin of input.httpPlugins ?? []) plugin(http);
    const httpAddress = await listenHttp(http, options.host, options.httpPort);

    try {
      // Refuses a directory of a newer format before anything in it is opened; an older one
      // is marked upgraded only once its logs opened with this build.
      const dataFormat = await openDataFormat(options.dataDir, logger);
      topics = await TopicManager.open(options, clock, logger);
      await dataFormat.commit();
    } catch (err) {
      await http.close();
      throw err;
    }
    const openedTopics = topics;

    const grpc = kit.createGrpcServer();
    widenInitialWindow(grpc, logger);
    let grpcAddress = "";
    let roles: RoleManager | undefined;
    const streamClosers = new Set<() => void>();
    // Created once the lease and the bound address exist (below); handlers reach it lazily.
    let groupRole: GroupRole | undefined;
    const guard = {
      epoch: () => groupRole?.epoch() ?? -1,
      checkMaster: () => {
        if (groupRole === undefined) throw new NotLeaderError("the broker is still starting");
        groupRole.checkMaster();
      },
      checkWriteGate: (topic: string, partition: number) => groupRole!.checkWriteGate(topic, partition),
      waitReplicated: (topic: string, partition: number, lastOffset: number) =>
        groupRole === undefined ? Promise.reject(new NotLeaderError("the broker is still starting")) : groupRole.waitReplicated(topic, partition, lastOffset),
    };
    const context: BrokerContext = {
      options,
      topics: openedTopics,
      metrics,
      logger,
      flow: flowController,
      role: () => groupRole?.role ?? "slave",
      masterAddress: () => groupRole?.masterAddress(),
      replication: guard,
      shuttingDown: () => state.shuttingDown,
      announce: () => registrar?.heartbeatNow(),
      streamClosers,
      security: kit.security,
    };
    // Group state and dead letters are written like produce with acks "all": fenced, stamped
    // with the epoch and acknowledged only once replicated as the group's mode requires.
    const appendReplicated = (log: PartitionLog, batch: Buffer) => appendAsMaster(guard, log, batch, true);
    const store = GroupStateStore.open(options.dataDir, { logger, append: appendReplicated });
    const coordinator = new GroupCoordinator({
      topics: openedTopics,
      store,
      clock,
      logger,
      role: context.role,
      initialRebalanceDelayMs: options.groupInitialRebalanceDelayMs,
      append: appendReplicated,
    });
    const queueCounters = registerQueueMetrics(registry, {
      queues: () => queues,
      topics: () => openedTopics,
      isMaster: () => context.role() === "master",
      committedOffset: (group, topic, partition) => groups.offsets.committedOffset(group, topic, partition),
      loaded: () => coordinator.loadAll(),
    });
    const queues: QueueGroups = new QueueGroups(coordinator, openedTopics, logger, queueCounters);
    // Lag on partitions other broker groups host: their masters' high watermarks, cached.
    const remoteEnds = RemoteEndOffsets.connect({
      nameservers: options.nameservers,
      clientId: `broker-${options.group}-${options.brokerId}-lag`,
      channels: options.peerChannels,
      logger,
    });
    const groups = { coordinator, offsets: new GroupOffsets(coordinator, openedTopics, queues, remoteEnds), queues, store, remoteEnds };
    registerGroupLagMetrics(registry, {
      byPartition: () => groups.offsets.lagByGroupPartition(),
      perPartition: options.metricsPerPartition,
    });
    registerReplicationMetrics(registry, {
      group: options.group,
      brokerId: options.brokerId,
      requiredInSync: requiredInSync(options.replication, options.minInSyncSlaves),
      role: context.role,
      epoch: () => groupRole?.epoch() ?? -1,
      slaves: () => groupRole?.replicaStatus() ?? [],
      writeGateOpen: () => (context.role() === "master" ? groupRole?.writeGateOpen() : undefined),
      partitions: () => openedTopics.logs.all().length,
    });
    const webSocketConsume = attachWebSocketConsume(http.server, { context, queues, auth: http });
    grpc.addService(GroupsService, createGroupsService(context, groups));
    grpc.addService(BrokerService, {
      handshake: unary(counted(metrics, "handshake", handleHandshake(context, () => grpcAddress, () => httpAddress))),
      produce: handleProduce(context),
      // Counted inside: a fetch answers per-partition errors in a successful call.
      fetch: unary(handleFetch(context)),
      subscribe: handleSubscribe(context),
      listOffsets: unary(counted(metrics, "listOffsets", authorized(context, (p, r) => context.security.require(p, "describe", "topic", r.topic), handleListOffsets(context)))),
      // The name server's calls when a topic is created, grown or deleted.
      createPartitions: unary(counted(metrics, "createPartitions", authorized(context, clusterAdminOnly(context), handleCreatePartitions(context)))),
      deleteTopic: unary(counted(metrics, "deleteTopic", authorized(context, clusterAdminOnly(context), handleDeleteTopic(context)))),
      // Every topic on this broker when none is named: an operator's (or the name server's) view.
      describePartitions: unary(
        counted(metrics, "describePartitions", authorized(context, (p, r) => (r.topic === "" ? clusterAdminOnly(context)(p) : context.security.require(p, "describe", "topic", r.topic)), handleDescribePartitions(context))),
      ),
    });
    // Replication is between the brokers of a group (and the name server's controller): admin only.
    const replicationPeer = clusterAdminOnly(context);
    grpc.addService(ReplicationService, {
      replicate: (call: ServerDuplexStream<ReplicaRequest, ReplicaResponse>) => {
        try {
          replicationPeer(context.security.principalOf(call));
        } catch (err) {
          call.write({ epoch: groupRole?.epoch() ?? 0, error: toWireError(err) });
          call.end();
          return;
        }
        const sessions = groupRole?.sessions();
        if (sessions !== undefined) {
          sessions.handle(call);
          return;
        }
        const error = new NotLeaderError(`broker ${options.group}/${options.brokerId} is not the master${groupRole?.masterAddress() ? `; the master is at ${groupRole.masterAddress()}` : ""}`);
        call.write({ epoch: groupRole?.epoch() ?? 0, error: toWireError(error) });
        call.end();
      },
      replicaState: unary(authorized(context, replicationPeer, async () => ({
        group: options.group,
        brokerId: options.brokerId,
        role: context.role(),
        epoch: Math.max(0, groupRole?.epoch() ?? 0),
        partitions: openedTopics.logs.all().map((log) => ({
          topic: log.topic,
          partition: log.partition,
          logEndOffset: log.logEndOffset,
          epochs: log.leaderEpochs.entries().map((e) => ({ epoch: e.epoch, startOffset: e.startOffset })),
        })),
      }))),
      readTail: unary(authorized(context, replicationPeer, async (request: ReadTailRequest) => {
        const log = openedTopics.log(request.topic, request.partition);
        const maxBytes = Math.min(Math.max(request.maxBytes, 1), options.maxFetchBytes);
        const { records } = log.read(request.offset, maxBytes, "logEnd");
        return { records, logEndOffset: log.logEndOffset };
      })),
      promote: unary(authorized(context, replicationPeer, async (request: { epoch: number }) => {
        if (roles === undefined) throw new NotLeaderError("the broker is still starting");
        await roles.promote(request.epoch);
        return { epoch: request.epoch };
      })),
    });
    let listener: GrpcListener;
    try {
      listener = await kit.listen(grpc, options.host, options.port);
      grpcAddress = `${options.host}:${listener.port}`;
      widenSessionWindows(grpc, logger);
    } catch (err) {
      await closeGroups(groups);
      await openedTopics.close();
      await http.close();
      throw err;
    }

    // The lease comes before registering: every registration carries it, and an etcd that
    // cannot be reached stops the start-up here, naming the endpoint.
    let lease: BrokerLease | undefined;
    if (options.etcd.length > 0) {
      lease = new BrokerLease({
        endpoints: options.etcd,
        ttlMs: options.leaseTtlMs,
        clock,
        logger,
        onNewLease: () => registrar?.registerAgain(),
      });
      try {
        await lease.start();
      } catch (err) {
        await lease.close();
        listener.close();
        grpc.forceShutdown();
        await closeGroups(groups);
        await openedTopics.close();
        await http.close();
        throw err;
      }
    }
    const heldLease = lease;

    const info: BrokerInfo = {
      cluster: options.cluster,
      group: options.group,
      brokerId: options.brokerId,
      address: grpcAddress,
      httpAddress,
      version: SERVER_VERSION,
      role: "slave",
      epoch: 0,
      weight: 1,
    };
    // Roles come from the registry (etcd) or role.json and the name servers (no etcd).
    roles = createRoleManager({ options, lease: heldLease, address: grpcAddress, httpAddress, clock, logger });
    const startedRoles = roles;
    groupRole = new GroupRole({
      options,
      topics: openedTopics,
      roles: startedRoles,
      clock,
      logger,
      onSwitched: async (change, previous) => {
        registrar?.setBroker({ ...info, role: change.role, epoch: change.epoch });
        void registrar?.heartbeatNow();
        if (previous.role === "master" && change.role !== "master") {
          // State served as master is no longer ours: the new master replays it from the log.
          coordinator.unloadAll();
          await queues.demote();
          for (const close of [...streamClosers]) close();
        }
      },
    });
    // The first role is in force before registering, so name servers never see a master
    // register as a slave first (a topic created right after start would find no master).
    try {
      await startedRoles.start();
      await groupRole.start();
    } catch (err) {
      await startedRoles.stop().catch(() => undefined);
      await heldLease?.close();
      listener.close();
      grpc.forceShutdown();
      await closeGroups(groups);
      await openedTopics.close();
      await http.close();
      throw err;
    }
    registrar = new Registrar({
      nameservers: options.nameservers,
      channels: options.peerChannels,
      broker: { ...info, role: groupRole.current.role, epoch: groupRole.current.epoch },
      hostedPartitions: () => hostedPartitions(openedTopics),
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      etcdLeaseId: () => heldLease?.leaseId ?? "",
      replicaStatus: () => groupRole?.replicaStatus() ?? [],
      onGroupMaster: (master) => startedRoles.observeGroupMaster(master),
      clock,
      logger,
    });
    registrar.start();
    let securityFollower: SecurityFollower | undefined;
    if (options.security.auth) {
      securityFollower = new SecurityFollower({
        nameservers: options.nameservers,
        channels: options.peerChannels,
        clientId: `broker-${options.group}-${options.brokerId}`,
        apply: (snapshot) => {
          kit.security.update(snapshot);
          logger.info({ version: snapshot.version, users: snapshot.users.length, acls: snapshot.acls.length }, "users and ACLs updated");
        },
        version: () => kit.security.version,
        logger,
      });
      securityFollower.start();
    }
    logger.info(
      { grpc: grpcAddress, http: httpAddress, dataDir: options.dataDir, flush: options.flush, tls: options.security.tls !== undefined, auth: options.security.auth },
      "broker started",
    );
    return new Broker(options, grpc, http, openedTopics, registrar, logger, grpcAddress, httpAddress, state, streamClosers, lease, groups, webSocketConsume, groupRole, startedRoles, listener, securityFollower);
  }

  /** Resolves once registered with at least one name server. */
  whenRegistered(): Promise<void> {
    return this.registrar.whenRegistered();
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    this.state.shuttingDown = true;
    this.logger.info("broker stopping");
    if (this.groupRole.role === "master") {
      // Produce is refused from here (SHUTTING_DOWN, retried by clients). Open produce streams
      // finish once their last acks are out; queue windows are committed while this broker
      // can still write; then an in-sync slave that holds everything takes over, so no
      // acknowledged message depends on this process any more.
      for (const close of [...this.streamClosers]) close();
      this.webSocketConsume.close();
      await closeGroups(this.groups);
      try {
        const to = await this.groupRole.handOff(this.options.shutdownTimeoutMs);
        if (to !== undefined) this.logger.info({ to }, "mastership handed to an in-sync slave");
        else this.logger.warn("no in-sync slave could take mastership; the group waits for failover");
      } catch (err) {
        this.logger.warn({ err }, "handing mastership over failed; the group waits for failover");
      }
    }
    await this.roles.stop().catch((err: unknown) => this.logger.warn({ err }, "stopping the role manager failed"));
    await this.registrar.stop();
    this.securityFollower?.close();
    this.listener.close();
    // Revoking drops the record from etcd now; name servers unregistered it already anyway.
    await this.lease?.close();
    // New produce is refused from here on; open streams finish themselves (produce after its
    // last ack), and whatever is still open when the timeout passes is cut.
    for (const close of [...this.streamClosers]) close();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.grpc.forceShutdown();
        resolve();
      }, this.options.shutdownTimeoutMs);
      this.grpc.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    // Queue windows are committed before the logs they are written to close.
    // Sockets still open after streamClosers asked them to go would keep http.close() waiting.
    this.webSocketConsume.close();
    await closeGroups(this.groups);
    await this.groupRole.close();
    await this.topics.close();
    await this.http.close();
    this.logger.info("broker stopped");
  }
}

async function closeGroups(groups: GroupServices & { store: GroupStateStore; remoteEnds: RemoteEndOffsets }): Promise<void> {
  groups.remoteEnds.close();
  await groups.queues.close();
  await groups.coordinator.close();
  await groups.store.close();
}

function hostedPartitions(topics: TopicManager): HostedPartition[] {
  const out: HostedPartition[] = [];
  for (const record of topics.topics()) {
    for (const partition of record.partitions) {
      const log = topics.logs.get(record.topic, partition);
      out.push({
        topic: record.topic,
        partition,
        logEndOffset: log?.logEndOffset ?? 0,
        sizeBytes: log?.sizeBytes ?? 0,
        partitionCount: record.partitionCount,
        config: {
          retentionMs: record.settings.retentionMs,
          retentionBytes: record.settings.retentionBytes,
          segmentBytes: record.settings.segmentBytes,
          maxMessageBytes: record.settings.maxMessageBytes,
        },
      });
    }
  }
  return out;
}
