/**
 * gRPC handlers for every RPC of `sluice.v1.NameServer`. Each maps a request onto the
 * cluster state or the topic admin; `unary()` turns thrown SluiceErrors into a gRPC status
 * with the stable code in the trailers.
 */
import { unary } from "../../common/src/grpc/errors.js";
import type { BrokerStatus, NameServerServer, TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import type { ClusterState } from "./cluster-state.js";
import type { NameServerMetrics } from "./metrics.js";
import { createWatchRoutesHandler, type RouteWatch } from "./route-watch.js";
import type { TopicAdmin } from "./topic-admin.js";
import type { CoordinatorFinder } from "./coordinators.js";

export interface NameServerServiceDeps {
  state: ClusterState;
  topics: TopicAdmin;
  coordinators: CoordinatorFinder;
  metrics: NameServerMetrics;
  /** Pushes route changes to WatchRoutes subscribers. */
  routeWatch: RouteWatch;
  heartbeatIntervalMs: number;
  expiryMs: number;
}

export function createNameServerService(deps: NameServerServiceDeps): NameServerServer {
  const { state, topics, metrics } = deps;
  return {
    registerBroker: unary(async (request) => {
      await state.register(request.broker, request.partitions, request.etcdLeaseId ?? "");
      metrics.registrations.inc();
      return { heartbeatIntervalMs: deps.heartbeatIntervalMs, expiryMs: deps.expiryMs };
    }),

    heartbeat: unary(async (request) => {
      metrics.heartbeatsReceived.inc();
      return { known: await state.heartbeat(request.broker, request.partitions, request.etcdLeaseId ?? "") };
    }),

    unregisterBroker: unary(async (request) => {
      await state.unregister(request.cluster, request.group, request.brokerId);
      return {};
    }),

    // No topics asked = every topic: one call for a client that wants the whole map.
    getRoutes: unary(async (request) => {
      const routes: TopicRoute[] =
        request.topics.length === 0 ? await state.allRoutes() : await state.routes(request.topics);
      return { routes };
    }),

    createTopic: unary(async (request) => ({ route: await topics.createTopic(request) })),

    deleteTopic: unary(async (request) => {
      await topics.deleteTopic(request.topic);
      return {};
    }),

    findCoordinator: unary(async (request) => deps.coordinators.find(request.group, request.queue)),

    watchRoutes: createWatchRoutesHandler(deps.routeWatch),

    listTopics: unary(async () => ({ topics: await state.allRoutes() })),

    listBrokers: unary(async () => {
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
      }));
      return { brokers };
    }),
  };
}
