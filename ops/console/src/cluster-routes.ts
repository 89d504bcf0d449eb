/**
 * The cluster as a whole through the admin API:
 *
 *   GET /api/v1/cluster      brokers: role, state, epoch, addresses, heartbeat age (as `sluice cluster --json`)
 *   GET /api/v1/throughput   recent produce rate per topic, sampled while someone calls this
 *
 * Both need describe on the cluster (403 NOT_AUTHORIZED otherwise).
 */
import type { FastifyInstance } from "fastify";
import { CLUSTER, requirePermission } from "../../../common/src/http/permissions.js";
import type { Admin } from "../../../clients/src/index.js";
import { clusterResponse, throughputResponse } from "./schemas.js";
import type { ThroughputSampler } from "./throughput.js";

export interface ClusterRoutesOptions {
  readonly admin: () => Admin;
  /** "group/id" of the broker serving the API. */
  readonly broker: string;
  readonly sampler: ThroughputSampler;
}

const TAGS = ["cluster"];

export function registerClusterRoutes(app: FastifyInstance, options: ClusterRoutesOptions): void {
  const { admin, broker, sampler } = options;

  app.get(
    "/api/v1/cluster",
    { schema: { summary: "Every broker: group, id, role, state, epoch, addresses, heartbeat age", tags: TAGS, response: { 200: clusterResponse } } },
    async (request) => {
      requirePermission(request, "describe", "cluster", CLUSTER);
      return { servedBy: broker, ...(await admin().cluster()) };
    },
  );

  app.get(
    "/api/v1/throughput",
    {
      schema: {
        summary: "Produce throughput per topic (messages/s) over the last samples",
        description:
          "The first call starts a sampler that reads every topic's end offsets every intervalMs and keeps the last 60 readings; " +
          "it stops, forgetting them, after 60 s without a call. Rates appear once two readings exist.",
        tags: TAGS,
        response: { 200: throughputResponse },
      },
    },
    async (request) => {
      requirePermission(request, "describe", "cluster", CLUSTER);
      sampler.touch();
      return sampler.report();
    },
  );
}
