/**
 * Creating, growing and deleting topics: validate, place, ask the brokers, then record.
 *
 * The brokers are asked first and the registry written last, so a recorded topic always has
 * its partitions on disk somewhere; a creation that fails half-way asks the brokers that did
 * create partitions to delete them again, so nothing half-made is left to be reported back.
 *
 * Growing a topic (topic-alter.ts) cannot be undone that way: brokers have no call to drop
 * single partitions. A grow that fails half-way leaves the record as it was, and the new
 * partitions already made stay empty and unrouted; asking again completes it, since placement
 * is deterministic over the same registry and a broker's grow keeps what it already has.
 * (Over the in-memory registry, name servers also learn partitions from heartbeats: one may
 * record the partitions that were made before the alter is asked again, and then refuses the
 * same count; the partitions of the failed group stay without a group until it is fixed.)
 */
import {
  InvalidArgumentError,
  LimitExceededError,
  NotReadyError,
  TopicAlreadyExistsError,
  UnknownTopicError,
  errorFromWire,
  toSluiceError,
  type SluiceError,
} from "../../common/src/errors.js";
import type { Logger } from "../../common/src/logger.js";
import { GROUP_STATE_TOPIC, isInternalTopic } from "../../common/src/protocol.js";
import type { CreateTopicRequest, NsCreatePartitionsRequest, TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import type { BrokerAdminClients } from "./broker-admin.js";
import type { ClusterState } from "./cluster-state.js";
import { parseTopicLimits, type TopicLimits } from "./options.js";
import { placePartitions } from "./placement.js";
import type { TopicRecord } from "./registry/store.js";
import {
  checkClusterPartitions,
  checkGrowthLimits,
  grownRecord,
  planPartitionGrowth,
  validateAlterableTopic,
  type PartitionGrowth,
} from "./topic-alter.js";
import { EMPTY_TOPIC_CONFIG } from "./topic-reports.js";
import { validatePartitionCount, validateTopicName } from "./topic-validation.js";

/** Codes a broker may answer DeleteTopic with that still mean "nothing of it left here". */
const DELETE_TOLERATED_CODES = new Set(["UNKNOWN_TOPIC", "NOT_LEADER"]);

export class TopicAdmin {
  constructor(
    private readonly state: ClusterState,
    private readonly brokers: BrokerAdminClients,
    private readonly logger: Logger,
    private readonly limits: TopicLimits = parseTopicLimits(),
  ) {}

  /** `internal`: Sluice's own `%` topics, which users may not create. */
  async createTopic(request: CreateTopicRequest, internal = false): Promise<TopicRoute> {
    const { topic } = request;
    validateTopicName(topic, internal);
    validatePartitionCount(topic, request.partitions);
    // Claimed before the lookup, so a second CreateTopic racing this one is a duplicate too.
    if (!this.state.claimTopicCreation(topic)) throw new TopicAlreadyExistsError(topic);
    try {
      if ((await this.state.getTopic(topic)) !== undefined) throw new TopicAlreadyExistsError(topic);
      checkCreationLimits(this.limits, topic, request.partitions, await this.topicSizes());
      const assignment = placePartitions({
        topic,
        partitionCount: request.partitions,
        groups: await this.state.placementGroups(),
        pinnedGroups: request.brokerGroups,
      });
      const record: TopicRecord = {
        topic,
        partitionCount: request.partitions,
        assignment,
        config: { ...EMPTY_TOPIC_CONFIG, ...request.config },
      };
      await this.createOnBrokers(record);
      if (!(await this.state.recordNewTopic(record))) throw new TopicAlreadyExistsError(topic);
      this.logger.info({ topic, partitionCount: record.partitionCount, groups: [...new Set(assignment)] }, "topic created");
      const [route] = await this.state.routes([topic]);
      return route!;
    } finally {
      this.state.releaseTopicCreation(topic);
    }
  }

  /**
   * Adds partitions to a topic, up to `request.partitions` in total (Kafka's CreatePartitions).
   * Existing partitions and their data are untouched; the new ones appear in routes (and so
   * in route pushes) once every broker group involved has made them.
   */
  async createPartitions(request: NsCreatePartitionsRequest): Promise<TopicRoute> {
    const { topic, partitions: partitionCount } = request;
    validateAlterableTopic(topic);
    // The same reservation as a creation: reports of the topic are ignored while its brokers
    // grow it, so a heartbeat cannot record half the new partitions first.
    if (!this.state.claimTopicCreation(topic)) {
      throw new NotReadyError(`topic "${topic}" is being created or altered through this name server right now; retry when that is done`);
    }
    try {
      const record = await this.state.getTopic(topic);
      if (record === undefined) throw this.state.unknownTopicError(topic);
      const growth = planPartitionGrowth(record, partitionCount, await this.state.placementGroups());
      const clusterPartitions = (await this.topicSizes()).reduce((sum, t) => sum + t.partitionCount, 0);
      checkGrowthLimits(this.limits, topic, growth.previousCount, partitionCount, clusterPartitions);
      await this.growOnBrokers(record, growth);
      const updated = await this.state.updateTopic(topic, (current) => grownRecord(current, growth));
      // Deleted (through another name server) while the brokers grew it: theirs to clean up.
      if (updated === undefined) throw this.state.unknownTopicError(topic);
      this.logger.info(
        { topic, previousCount: growth.previousCount, partitionCount, added: growth.added },
        "partitions added to topic",
      );
      const [route] = await this.state.routes([topic]);
      return route!;
    } finally {
      this.state.releaseTopicCreation(topic);
    }
  }

  async deleteTopic(topic: string): Promise<void> {
    // %groups holds every group's offsets and membership, %DLQ%<group> a queue group's dead
    // letters: deleting them under running coordinators breaks every group until a restart.
    if (isInternalTopic(topic)) {
      throw new InvalidArgumentError(`topic "${topic}" is internal to Sluice (group state or dead letters) and cannot be deleted`);
    }
    const record = await this.state.getTopic(topic);
    if (record === undefined) throw new UnknownTopicError(topic, " on this name server");
    const groups = new Set(record.assignment);
    const hosts = (await this.state.liveBrokers()).filter((b) => groups.has(b.group));
    const results = await Promise.allSettled(hosts.map((broker) => this.brokers.deleteTopic(broker.address, topic)));
    results.forEach((result, i) => {
      if (result.status === "fulfilled") return;
      const error = toSluiceError(result.reason);
      if (DELETE_TOLERATED_CODES.has(error.code)) return;
      const broker = hosts[i]!;
      // The record stays, so the delete can simply be retried; brokers that did delete answer
      // UNKNOWN_TOPIC the second time.
      throw withContext(error, `deleting topic "${topic}" on broker ${broker.group}/${broker.brokerId} (${broker.address}) failed`);
    });
    await this.state.removeTopic(topic);
    this.logger.info({ topic, brokers: hosts.length }, "topic deleted");
  }

  /** Every topic's partition count, internal topics included, for the limits. */
  private async topicSizes(): Promise<TopicSize[]> {
    return (await this.state.allRoutes()).map((route) => ({ topic: route.topic, partitionCount: route.partitions.length }));
  }

  /** Creates each group's partitions on its master, in parallel; undoes them all on failure. */
  private async createOnBrokers(record: TopicRecord): Promise<void> {
    const views = await this.state.groupViews();
    const partitionsByGroup = new Map<string, number[]>();
    record.assignment.forEach((group, partition) => {
      const list = partitionsByGroup.get(group);
      if (list === undefined) partitionsByGroup.set(group, [partition]);
      else list.push(partition);
    });
    const calls = [...partitionsByGroup].map(([group, partitions]) => {
      // Placement only picks groups with a live master; re-read here, it could have expired since.
      const master = views.get(group)?.master;
      if (master === undefined) {
        return { group, address: "", result: Promise.reject(errorFromWire("NO_BROKERS_AVAILABLE", `broker group "${group}" lost its master`)) };
      }
      const result = this.brokers.createPartitions(master.address, {
        topic: record.topic,
        partitions,
        config: record.config,
        partitionCount: record.partitionCount,
      });
      return { group, address: master.address, result };
    });
    const results = await Promise.allSettled(calls.map((c) => c.result));
    const failures = results.flatMap((result, i) =>
      result.status === "rejected" ? [{ call: calls[i]!, error: toSluiceError(result.reason) }] : [],
    );
    if (failures.length === 0) return;

    const exists = failures.find((f) => f.error.code === "TOPIC_ALREADY_EXISTS");
    // A broker that already has the topic means it was created through another name server
    // and this one has not heard yet: those partitions are not ours to remove.
    if (exists !== undefined) throw new TopicAlreadyExistsError(record.topic);
    const created = calls.filter((_, i) => results[i]!.status === "fulfilled");
    await Promise.allSettled(created.map((c) => this.brokers.deleteTopic(c.address, record.topic)));
    const { call, error } = failures[0]!;
    this.logger.warn(
      { topic: record.topic, group: call.group, address: call.address, code: error.code, err: error.message, rolledBack: created.length },
      "topic creation failed on a broker; partitions created elsewhere were deleted again",
    );
    throw withContext(error, `creating topic "${record.topic}" on broker group "${call.group}"${call.address ? ` (${call.address})` : ""} failed`);
  }

  /**
   * Tells every group of the growth its new partitions and count, in parallel. A failure is
   * reported with what did happen, so the operator knows asking again is the way out.
   */
  private async growOnBrokers(record: TopicRecord, growth: PartitionGrowth): Promise<void> {
    const views = await this.state.groupViews();
    const calls = [...growth.partitionsByGroup].map(([group, partitions]) => {
      // The plan only takes groups with a live master; re-read here, it could have expired since.
      const master = views.get(group)?.master;
      if (master === undefined) {
        return { group, result: Promise.reject(errorFromWire("NO_BROKERS_AVAILABLE", `broker group "${group}" lost its master`)) };
      }
      const result = this.brokers.createPartitions(master.address, {
        topic: record.topic,
        partitions,
        config: record.config,
        partitionCount: growth.partitionCount,
        grow: true,
      });
      return { group, result };
    });
    const results = await Promise.allSettled(calls.map((c) => c.result));
    const failed = results.findIndex((r) => r.status === "rejected");
    if (failed < 0) return;
    const error = toSluiceError((results[failed] as PromiseRejectedResult).reason);
    const grown = calls.filter((_, i) => results[i]!.status === "fulfilled").map((c) => c.group);
    this.logger.warn(
      { topic: record.topic, group: calls[failed]!.group, code: error.code, err: error.message, grown },
      "adding partitions failed on a broker group; the topic record is unchanged",
    );
    throw withContext(
      error,
      `adding partitions to topic "${record.topic}" on broker group "${calls[failed]!.group}" failed; the topic still has ` +
        `${growth.previousCount} partitions` +
        (grown.length > 0 ? ` (groups ${grown.join(", ")} made theirs already: asking again completes the alter)` : ""),
    );
  }
}

export interface TopicSize {
  topic: string;
  partitionCount: number;
}

/**
 * Refuses creating `topic` with `partitions` partitions past a limit, `existing` being every
 * topic now (LIMIT_EXCEEDED naming the limit, the count and the flag that raises it).
 *
 * Internal topics are made by Sluice, not asked for by users, so maxTopics and
 * maxPartitionsPerTopic neither count nor refuse them: a queue group's `%DLQ%<group>` is made
 * when a consumer first joins the group, and counting it as a topic would refuse that join
 * because of how many topics users created; and their sizes are fixed (a DLQ has 1 partition,
 * `%groups` the name server's groupStatePartitions). Their partitions cost brokers files and
 * memory like any other, so they count toward maxPartitions, and a DLQ is refused once the
 * cluster is full: clients choose group names, so nothing else bounds the number of DLQs.
 * `%groups` is never refused: it is made once per cluster and every consumer group needs it.
 *
 * The counts are read before the brokers are asked: creations running at the same time (on
 * one name server, or on several over etcd) can each pass, so a limit can be overshot by the
 * creations in flight. A cap against runaway growth, not an exact quota.
 */
export function checkCreationLimits(limits: TopicLimits, topic: string, partitions: number, existing: readonly TopicSize[]): void {
  if (topic === GROUP_STATE_TOPIC) return;
  const plural = partitions === 1 ? "" : "s";
  if (!isInternalTopic(topic)) {
    if (partitions > limits.maxPartitionsPerTopic) {
      throw new LimitExceededError(
        `topic "${topic}" cannot have ${partitions} partitions: the limit is ${limits.maxPartitionsPerTopic} per topic ` +
          `(maxPartitionsPerTopic); raise it with --max-partitions-per-topic on the name servers`,
      );
    }
    const userTopics = existing.filter((t) => !isInternalTopic(t.topic)).length;
    if (userTopics >= limits.maxTopics) {
      throw new LimitExceededError(
        `cannot create topic "${topic}": the cluster has ${userTopics} topic${userTopics === 1 ? "" : "s"} and the limit is ${limits.maxTopics} (maxTopics, ` +
          `internal topics not counted); delete a topic, or raise the limit with --max-topics on the name servers`,
      );
    }
  }
  const clusterPartitions = existing.reduce((sum, t) => sum + t.partitionCount, 0);
  checkClusterPartitions(limits, clusterPartitions, partitions, `creating topic "${topic}" with ${partitions} partition${plural}`);
}

/** The same error (code, retriability) with a message that says where it happened. */
function withContext(error: SluiceError, context: string): SluiceError {
  return errorFromWire(error.code, `${context}: ${error.message}`, error.retriable, error.retryAfterMs);
}
