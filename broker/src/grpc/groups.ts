/**
 * gRPC handlers of `sluice.v1.Groups`: membership heartbeats, offsets, group views, and the
 * Queue stream (credit in, leased batches out, settles answered once durable).
 */
import type { Metadata, ServerDuplexStream } from "@grpc/grpc-js";
import { InvalidArgumentError, toSluiceError } from "../../../common/src/errors.js";
import { toWireError, unary } from "../../../common/src/grpc/errors.js";
import { checkGroupName } from "../../../common/src/group-name.js";
import type { GroupsServer, QueueRequest, QueueResponse } from "../../../proto/gen/sluice/v1/groups.js";
import type { GroupCoordinator } from "../groups/coordinator.js";
import { groupByTopic, type GroupOffsets } from "../groups/offsets.js";
import { parseQueueOpen, type QueueGroups } from "../groups/queue-groups.js";
import type { QueueSession } from "../groups/queue-topic.js";
import { checkHeader, counted, type BrokerContext } from "./context.js";
import { trackStream } from "./stream-lifecycle.js";

export interface GroupServices {
  coordinator: GroupCoordinator;
  offsets: GroupOffsets;
  queues: QueueGroups;
}

function checkGroup(group: string): void {
  checkGroupName(group);
}

export function createGroupsService(context: BrokerContext, services: GroupServices): GroupsServer {
  const { coordinator, offsets, queues } = services;
  const { security } = context;
  /** The caller may do `operation` on the group (members consume; tools describe or alter). */
  const requireGroup = (call: { metadata: Metadata }, operation: "consume" | "describe" | "alter", group: string): void =>
    security.require(security.principalOf(call), operation, "group", group);
  return {
    heartbeat: unary(counted(context.metrics, "heartbeat", async (request, call) => {
      checkHeader(request.header);
      checkGroup(request.group);
      requireGroup(call, "consume", request.group);
      // As Kafka: a member may only subscribe to topics it may see (reading them is checked per fetch).
      const principal = security.principalOf(call);
      for (const topic of request.topics) security.require(principal, "describe", "topic", topic);
      if (queues.kind(request.group) !== undefined) {
        throw new InvalidArgumentError(`group "${request.group}" is a queue group; use another group name for a pub/sub consumer`);
      }
      const output = await coordinator.heartbeat(request.group, {
        memberId: request.memberId,
        memberEpoch: request.memberEpoch,
        instanceId: request.instanceId,
        clientId: request.header?.clientId ?? "",
        topics: request.topics,
        assignor: request.assignor,
        sessionTimeoutMs: request.sessionTimeoutMs,
        owned: request.owned.flatMap((t) => t.partitions.map((partition) => ({ topic: t.topic, partition }))),
        partitionCounts: new Map([
          ...Object.entries(request.partitionCounts),
          // Topics hosted here: the broker's own count wins over what a member read from routes.
          ...request.topics.flatMap((topic) => {
            const count = context.topics.topic(topic)?.partitionCount;
            return count === undefined ? [] : [[topic, count] as [string, number]];
          }),
        ]),
      });
      return {
        memberId: output.memberId,
        memberEpoch: output.memberEpoch,
        heartbeatIntervalMs: output.heartbeatIntervalMs,
        assignment: groupByTopic(output.assignment),
      };
    })),

    commitOffsets: unary(counted(context.metrics, "commitOffsets", async (request, call) => {
      checkHeader(request.header);
      checkGroup(request.group);
      requireGroup(call, "consume", request.group);
      // Committing a position on a topic is consuming it (Kafka checks both, too).
      const principal = security.principalOf(call);
      for (const topic of new Set(request.offsets.map((o) => o.topic))) security.require(principal, "consume", "topic", topic);
      return { results: await offsets.commit(request) };
    })),

    fetchOffsets: unary(counted(context.metrics, "fetchOffsets", async (request, call) => {
      checkHeader(request.header);
      checkGroup(request.group);
      requireGroup(call, "describe", request.group);
      return { offsets: await offsets.fetch(request.group, request.partitions) };
    })),

    listGroups: unary(counted(context.metrics, "listGroups", async (request, call) => {
      checkHeader(request.header);
      const principal = security.principalOf(call);
      return { groups: (await offsets.list()).filter((summary) => security.allows(principal, "describe", "group", summary.group)) };
    })),

    describeGroup: unary(counted(context.metrics, "describeGroup", async (request, call) => {
      checkHeader(request.header);
      checkGroup(request.group);
      requireGroup(call, "describe", request.group);
      return offsets.describe(request.group);
    })),

    resetOffsets: unary(counted(context.metrics, "resetOffsets", async (request, call) => {
      checkHeader(request.header);
      checkGroup(request.group);
      requireGroup(call, "alter", request.group);
      return { offsets: await offsets.reset(request) };
    })),

    queue: (call: ServerDuplexStream<QueueRequest, QueueResponse>) => handleQueue(context, queues, call),
  };
}

function handleQueue(context: BrokerContext, queues: QueueGroups, call: ServerDuplexStream<QueueRequest, QueueResponse>): void {
  let session: QueueSession | undefined;
  let opening: Promise<void> | undefined;
  let topic = "";
  /** Requests that arrived while the session was opening, replayed in order. */
  const early: QueueRequest[] = [];
  const stream = trackStream(context, call, "queue", () => session?.close());

  const fail = (err: unknown): void => {
    if (stream.closed) return;
    // Only a refused open fails the stream: count it as the queue request's outcome.
    if (session === undefined) context.metrics.request("queue", err);
    context.logger.debug({ code: toSluiceError(err).code, err }, "queue stream refused");
    call.write({ topic, deliveries: [], error: toWireError(err) });
    stream.finish();
  };

  const apply = (request: QueueRequest): void => {
    const s = session!;
    if (request.acks.length > 0 || request.nacks.length > 0 || request.extends.length > 0 || request.correlationId !== 0) {
      s.settle(request.correlationId, request.acks, request.nacks, request.extends);
    }
    if (request.creditMessages > 0) s.grant(request.creditMessages);
  };

  call.on("data", (request: QueueRequest) => {
    if (stream.closed) return;
    if (session !== undefined) {
      apply(request);
      return;
    }
    if (opening !== undefined) {
      early.push(request);
      return;
    }
    try {
      checkHeader(request.header);
      const settings = parseQueueOpen(request.open, request.header?.clientId ?? "");
      const principal = context.security.principalOf(call);
      context.security.require(principal, "consume", "group", settings.group);
      context.security.require(principal, "consume", "topic", settings.topic);
      topic = settings.topic;
      early.push(request);
      opening = queues
        .open(settings, {
          keepsLastBatch: true,
          deliver: (partition, records, leases) => {
            // Every delivery asks the authorizer again (cached): a revoked ACL or a deleted
            // user ends the stream at its next delivery. The leases of this batch run out and
            // the messages go to another consumer.
            try {
              context.security.require(principal, "consume", "group", settings.group);
              context.security.require(principal, "consume", "topic", settings.topic);
            } catch (err) {
              queueMicrotask(() => fail(err));
              return false;
            }
            return call.write({ topic, deliveries: [{ partition, records, leases }] });
          },
          settled: (correlationId, errors) => {
            call.write({ topic, deliveries: [], settled: { correlationId, errors } });
          },
        })
        .then(
          (opened) => {
            if (stream.closed) {
              opened.close();
              return;
            }
            session = opened;
            context.metrics.request("queue");
            call.on("drain", () => opened.drained());
            for (const r of early.splice(0)) apply(r);
          },
          (err: unknown) => fail(err),
        );
    } catch (err) {
      fail(err);
    }
  });

}
