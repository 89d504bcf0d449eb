/**
 * gRPC handlers for every RPC of `sluice.v1.NameServer`. Each maps a request onto the
 * cluster state or the topic admin; `unary()` turns thrown SluiceErrors into a gRPC status
 * with the stable code in the trailers.
 */
import type { Clock } from "../../common/src/clock.js";
import type { Metadata, sendUnaryData, ServerWritableStream, ServiceError } from "@grpc/grpc-js";
import { UnsupportedVersionError } from "../../common/src/errors.js";
import { toServiceError, unary as unaryHandler } from "../../common/src/grpc/errors.js";
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../../common/src/protocol.js";
import type { RequestHeader } from "../../proto/gen/sluice/v1/common.js";
import type { BrokerStatus, GroupMaster, NameServerServer, TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import type { ClusterState } from "./cluster-state.js";
import type { BrokerPromoter } from "./controller/promote-broker.js";
import type { ReplicaReports } from "./controller/replica-reports.js";
import type { NameServerMetrics } from "./metrics.js";
import { createWatchRoutesHandler, type RouteWatch } from "./route-watch.js";
import type { TopicAdmin } from "./topic-admin.js";
import type { CoordinatorFinder } from "./coordinators.js";
import { openGuard } from "../../common/src/security/open-guard.js";
import { CLUSTER_RESOURCE_NAME, type Principal, type SecurityGuard } from "../../common/src/security/types.js";

export interface NameServerServiceDeps {
  state: ClusterState;
  topics: TopicAdmin;
  coordinators: CoordinatorFinder;
  metrics: NameServerMetrics;
  /** Pushes route changes to WatchRoutes subscribers. */
  routeWatch: RouteWatch;
  heartbeatIntervalMs: number;
  expiryMs: number;
  /** Masters' reports of their slaves (in sync, lag), for ListBrokers and hand promotion. */
  replicaReports: ReplicaReports;
  /** PromoteBroker: etcd record or the broker's Promote. */
  promoter: BrokerPromoter;
  clock: Clock;
  /** Who may call what (the issue-8 table in the README's Security section). @defaultValue openGuard */
  guard?: SecurityGuard;
}

export function createNameServerService(deps: NameServerServiceDeps): NameServerServer {
  const { state, topics, metrics, replicaReports } = deps;
  const guard = deps.guard ?? openGuard;
  /** Brokers' own calls (register, heartbeat, promote): servers authenticate as admin. */
  const requireClusterAdmin = (call: { metadata: Metadata }): void =>
    guard.require(guard.principalOf(call), "admin", "cluster", CLUSTER_RESOURCE_NAME);
  const describable = (principal: Principal) => (topic: string) => guard.allows(principal, "describe", "topic", topic);
  return {
    registerBroker: unary(async (request, call) => {
      requireClusterAdmin(call);
      const record = await state.register(request.broker, request.partitions, request.etcdLeaseId ?? "");
      replicaReports.record(request.broker, request.replicas, deps.clock.now());
      metrics.registrations.inc();
      return { heartbeatIntervalMs: deps.heartbeatIntervalMs, expiryMs: deps.expiryMs, master: await groupMaster(state, record.group) };
    }),

    heartbeat: unary(async (request, call) => {
      requireClusterAdmin(call);
      metrics.heartbeatsReceived.inc();
      const known = await state.heartbeat(request.broker, request.partitions, request.etcdLeaseId ?? "");
      if (!known || request.broker === undefined) return { known };
      replicaReports.record(request.broker, request.replicas, deps.clock.now());
      return { known, master: await groupMaster(state, request.broker.group) };
    }),

    promoteBroker: unary(async (request, call) => {
      requireClusterAdmin(call);
      return { master: await deps.promoter.promote({ cluster: request.cluster, group: request.group, brokerId: request.brokerId, force: request.force }) };
    }),

    unregisterBroker: unary(async (request, call) => {
      requireClusterAdmin(call);
      await state.unregister(request.cluster, request.group, request.brokerId);
      return {};
    }),

    // No topics asked = every topic the caller may describe: one call for the whole map.
    // Named topics must each be describable (produce and consume imply describe).
    getRoutes: unary(async (request, call) => {
      const principal = guard.principalOf(call);
      if (request.topics.length === 0) return { routes: (await state.allRoutes()).filter((route) => describable(principal)(route.topic)) };
      for (const topic of request.topics) guard.require(principal, "describe", "topic", topic);
      const routes: TopicRoute[] = await state.routes(request.topics);
      return { routes };
    }),

    createTopic: unary(async (request, call) => {
      guard.require(guard.principalOf(call), "create", "topic", request.topic);
      return { route: await topics.createTopic(request) };
    }),

    createPartitions: unary(async (request, call) => {
      guard.require(guard.principalOf(call), "alter", "topic", request.topic);
      return { route: await topics.createPartitions(request) };
    }),

    deleteTopic: unary(async (request, call) => {
      guard.require(guard.principalOf(call), "delete", "topic", request.topic);
      await topics.deleteTopic(request.topic);
      return {};
    }),

    findCoordinator: unary(async (request, call) => {
      guard.require(guard.principalOf(call), "describe", "group", request.group);
      return deps.coordinators.find(request.group, request.queue);
    }),

    // Each change is filtered when it is sent, so an ACL change applies to a watch already open.
    watchRoutes: checkedStream((call) => {
      let principal: Principal;
      try {
        principal = guard.principalOf(call);
        for (const topic of call.request.topics) guard.require(principal, "describe", "topic", topic);
      } catch (err) {
        call.emit("error", toServiceError(err) as ServiceError);
        return;
      }
      createWatchRoutesHandler(deps.routeWatch, guard.enabled ? describable(principal) : undefined)(call);
    }),

    listTopics: unary(async (_request, call) => {
      const principal = guard.principalOf(call);
      return { topics: (await state.allRoutes()).filter((route) => describable(principal)(route.topic)) };
    }),

    listBrokers: unary(async (_request, call) => {
      guard.require(guard.principalOf(call), "describe", "cluster", CLUSTER_RESOURCE_NAME);
      const statuses = await state.brokerStatuses();
      const brokers: BrokerStatus[] = statuses.map(({ record, state: brokerState, heartbeatAgeMs, suspicion, partitionCount }) => ({
        broker: {
          cluster: record.cluster,
          group: record.group,
          brokerId: record.brokerId,
          address: record.address,
          httpAddress: record.httpAddress,
          version: record.version,
          role: record.role,
          epoch: record.epoch,
          weight: record.weight,
        },
        state: brokerState,
        heartbeatAgeMs,
        registeredAtMs: record.registeredAtMs,
        suspicion,
        partitionCount,
        replication: record.role === "slave" ? replicaReports.statusOf(record.cluster, record.group, record.brokerId) : undefined,
      }));
      return { brokers };
    }),
  };
}

/**
 * The group's master as routes see it (the live broker claiming mastership at the highest
 * epoch): how a broker without etcd learns whom to follow, or that it was replaced.
 */
async function groupMaster(state: ClusterState, group: string): Promise<GroupMaster | undefined> {
  const master = (await state.groupViews()).get(group)?.master;
  return master === undefined ? undefined : { brokerId: master.brokerId, epoch: master.epoch, address: master.address };
}

/**
 * Refuses a protocol version outside what this name server speaks, as brokers do
 * (broker/src/grpc/context.ts checkHeader). A missing header or version is version 1: what
 * callers sent before requests carried one.
 */
export function checkProtocolVersion(header: RequestHeader | undefined): void {
  const version = header?.protocolVersion || 1;
  if (version < MIN_PROTOCOL_VERSION || version > PROTOCOL_VERSION) {
    throw new UnsupportedVersionError(
      `protocol version ${version} is not supported: this name server speaks ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}; ` +
        `upgrade the ${version > PROTOCOL_VERSION ? "name server" : "client"}`,
    );
  }
}

/** Every unary handler of this file: `unary()` from common, checking the protocol version first. */
function unary<Req extends { header?: RequestHeader | undefined }, Res>(
  fn: (request: Req, call: { request: Req; metadata: Metadata }) => Promise<Res> | Res,
): (call: { request: Req; metadata: Metadata }, callback: sendUnaryData<Res>) => void {
  return unaryHandler((request: Req, call) => {
    checkProtocolVersion(request.header);
    return fn(request, call);
  });
}

/** The same check for a server stream: a refused version ends the call before the handler runs. */
function checkedStream<Req extends { header?: RequestHeader | undefined }, Res>(
  handler: (call: ServerWritableStream<Req, Res>) => void,
): (call: ServerWritableStream<Req, Res>) => void {
  return (call) => {
    try {
      checkProtocolVersion(call.request.header);
    } catch (err) {
      call.emit("error", toServiceError(err) as ServiceError);
      return;
    }
    handler(call);
  };
}
