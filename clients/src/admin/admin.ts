/**
 * Topic, cluster and group administration: topics through the name servers, partition state
 * and single messages through each partition's master, groups and dead letters through each
 * group's coordinator (groups.ts, dead-letters.ts).
 *
 * Reads retry on retriable errors like every SDK call. Creating and deleting a topic do
 * not: after a timeout the first attempt may have succeeded, and a blind retry would turn
 * that success into TOPIC_ALREADY_EXISTS (or UNKNOWN_TOPIC). Name-server failover still
 * applies to them, since an unreachable name server never received the request.
 */
import { forEachRecord, type DecodedRecord } from "../../../common/src/batch/index.js";
import { InvalidArgumentError, NoBrokersAvailableError, UnknownPartitionError, toSluiceError } from "../../../common/src/errors.js";
import { fromWireError } from "../../../common/src/grpc/errors.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import type { ConsumerMessage } from "../consumer/options.js";
import { checkInteger, checkKnownKeys, checkTopicName } from "../options.js";
import { listOffsets, type OffsetQuery } from "../routing/list-offsets.js";
import { chooseReadReplica } from "../routing/read-replicas.js";
import { deleteFlowRule, listFlowRules, setFlowRule, type BrokerFlowRules, type FlowRuleChange, type FlowRuleInput } from "./flow-rules.js";
import {
  createAcl,
  createUser,
  deleteAcl,
  deleteUser,
  listAcls,
  listUsers,
  type AclChange,
  type AclInput,
  type AclListing,
  type CreateUserOptions,
  type ListAclsOptions,
  type UserChange,
  type UserListing,
} from "./security.js";
import { deadLetters, redrive, type DeadLetter, type DeadLettersOptions, type RedriveOptions, type RedriveResult } from "./dead-letters.js";
import {
  describeGroup,
  listGroups,
  resetOffsets,
  type CommittedPosition,
  type GroupDescription,
  type GroupListing,
  type ResetOffsetsOptions,
  type ResetOffsetsTo,
} from "./groups.js";
import {
  toClusterBroker,
  toSettings,
  toTopicInfo,
  type ClusterInfo,
  type CreateTopicOptions,
  type TopicDescription,
  type TopicInfo,
} from "./types.js";

export const DEFAULT_TOPIC_PARTITIONS = 1;
export const MAX_TOPIC_PARTITIONS = 10_000;
/** A log field the partition's master could not report. */
const UNKNOWN = -1;

export type MessageLocator = { offset: number } | { timestamp: number };

export class Admin {
  constructor(private readonly context: ClientContext) {}

  async createTopic(name: string, options: CreateTopicOptions = {}): Promise<TopicInfo> {
    checkTopicName(name);
    checkKnownKeys("createTopic", options, ["partitions", "brokers", "retentionMs", "retentionBytes"]);
    const partitions = checkInteger("partitions", options.partitions ?? DEFAULT_TOPIC_PARTITIONS, 1, MAX_TOPIC_PARTITIONS);
    const brokers = options.brokers ?? [];
    if (!Array.isArray(brokers) || brokers.some((b) => typeof b !== "string" || b === "")) {
      throw new InvalidArgumentError(`brokers must be a list of broker group names, e.g. ["b1", "b2"]`);
    }
    const response = await this.context.nameServers.createTopic(
      {
        topic: name,
        partitions,
        brokerGroups: brokers,
        config: {
          retentionMs: checkInteger("retentionMs", options.retentionMs ?? 0, 0),
          retentionBytes: checkInteger("retentionBytes", options.retentionBytes ?? 0, 0),
          segmentBytes: 0,
          maxMessageBytes: 0,
        },
      },
      deadlineFromNow(this.context),
    );
    this.context.routes.forget(name);
    if (response.route === undefined) return { topic: name, partitions, config: toSettings(undefined), placement: [] };
    return toTopicInfo(response.route);
  }

  /**
   * Adds partitions to a topic until it has `totalPartitions` (Kafka's `createPartitions` and
   * `kafka-topics --alter --partitions`): the total, not the number to add. A topic only
   * grows: a total at or below the current count fails with INVALID_PARTITIONS, naming the
   * current count; an unknown topic with UNKNOWN_TOPIC. Existing partitions and their data are
   * untouched; new ones are placed across broker groups as `createTopic` places partitions.
   *
   * Producers and consumer groups learn the new count from the name server's route push
   * (within a second; at the latest on their route refresh, `routeRefreshMs`), after which a
   * group rebalances to include the new partitions. Keys hash over the new count, so a key's
   * later messages may land on another partition than its earlier ones (as in Kafka).
   * Not retried after a timeout: the first attempt may have done it.
   *
   * @example
   * const admin = sluice.admin();
   * await admin.createTopic("orders", { partitions: 3 });
   * const grown = await admin.createPartitions("orders", 6);   // grown.partitions === 6
   */
  async createPartitions(name: string, totalPartitions: number): Promise<TopicInfo> {
    checkTopicName(name);
    const partitions = checkInteger("totalPartitions", totalPartitions, 1, MAX_TOPIC_PARTITIONS);
    const response = await this.context.nameServers.createPartitions({ topic: name, partitions }, deadlineFromNow(this.context));
    this.context.routes.forget(name);
    const route =
      response.route ?? (await this.retrying(() => this.context.nameServers.getRoutes([name], deadlineFromNow(this.context)))).routes[0];
    return toTopicInfo(route ?? { topic: name, partitions: [], config: undefined });
  }

  async deleteTopic(name: string): Promise<void> {
    checkTopicName(name);
    await this.context.nameServers.deleteTopic({ topic: name }, deadlineFromNow(this.context));
    this.context.routes.forget(name);
  }

  async listTopics(): Promise<TopicInfo[]> {
    const response = await this.retrying(() => this.context.nameServers.listTopics(deadlineFromNow(this.context)));
    return response.topics.map(toTopicInfo);
  }

  /** The topic's route, and per partition the log's offsets, size and segments from its master. */
  async describeTopic(name: string): Promise<TopicDescription> {
    checkTopicName(name);
    const route = await this.retrying(() => this.context.routes.refresh(name));
    const info = toTopicInfo({ topic: name, partitions: [...route.partitions], config: route.config });
    const description: TopicDescription = {
      topic: name,
      config: info.config,
      partitions: info.placement.map((p) => ({
        ...p,
        startOffset: UNKNOWN,
        endOffset: UNKNOWN,
        highWatermark: UNKNOWN,
        sizeBytes: UNKNOWN,
        segments: UNKNOWN,
      })),
    };
    const details = description.partitions;
    const masters = new Set<string>();
    for (const d of details) {
      if (d.master === null) d.error = `broker group "${d.group}" has no live master`;
      else masters.add(d.master);
    }
    await Promise.all(
      [...masters].map(async (address) => {
        try {
          const response = await this.context.brokers
            .get(address)
            .describePartitions({ header: this.context.header, topic: name }, deadlineFromNow(this.context));
          for (const described of response.partitions) {
            const d = details.find((candidate) => candidate.partition === described.partition);
            if (d === undefined || d.master !== address) continue;
            d.startOffset = described.logStartOffset;
            d.endOffset = described.logEndOffset;
            d.highWatermark = described.highWatermark;
            d.sizeBytes = described.sizeBytes;
            d.segments = described.segments;
            if (described.config !== undefined) description.config = toSettings(described.config);
          }
        } catch (err) {
          for (const d of details) if (d.master === address) d.error = (err as Error).message;
        }
      }),
    );
    for (const d of details) {
      if (d.startOffset === UNKNOWN && d.error === undefined) d.error = `master ${d.master} does not report this partition`;
    }
    return description;
  }

  /** partition → offset: the first retained, the next to be written, or the first at or after a time (-1: none). */
  async listOffsets(topic: string, query: OffsetQuery): Promise<Map<number, number>> {
    checkTopicName(topic);
    checkOffsetQuery(query);
    return listOffsets(this.context, topic, query);
  }

  /**
   * One message by offset, or the first at or after a timestamp. Null when there is none
   * yet (the offset is the log end, or no message is that recent); an offset outside the
   * log fails with OFFSET_OUT_OF_RANGE.
   */
  async getMessage(topic: string, partition: number, where: MessageLocator): Promise<ConsumerMessage | null> {
    checkTopicName(topic);
    checkInteger("partition", partition, 0);
    let offset: number;
    if (typeof where === "object" && where !== null && "offset" in where) {
      offset = checkInteger("offset", where.offset, 0);
    } else if (typeof where === "object" && where !== null && "timestamp" in where) {
      const found = await listOffsets(this.context, topic, { timestamp: checkInteger("timestamp", where.timestamp, 0) }, [partition]);
      offset = found.get(partition) ?? -1;
      if (offset < 0) return null;
    } else {
      throw new InvalidArgumentError(`getMessage needs { offset } or { timestamp }`);
    }
    return this.fetchOne(topic, partition, offset);
  }

  /** Every live broker's ingress flow rules, with their source and live state (tokens, queue). */
  listFlowRules(): Promise<BrokerFlowRules[]> {
    return listFlowRules(this.context);
  }

  /**
   * Adds or replaces the rule of its (scope, limiter) on every live broker, at once and kept
   * across restarts. Limits are per broker, as Kafka's quotas are.
   * @example admin.setFlowRule({ scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 50_000, burst: 100_000 })
   */
  setFlowRule(rule: FlowRuleInput): Promise<FlowRuleChange[]> {
    return setFlowRule(this.context, rule);
  }

  /** Removes the (scope, limiter) rule from every live broker; UNKNOWN_FLOW_RULE where there is none. */
  deleteFlowRule(scope: string, limiter: string): Promise<FlowRuleChange[]> {
    return deleteFlowRule(this.context, scope, limiter);
  }

  /**
   * Adds a password user to the cluster's registry (admin on the cluster). The password (8 to
   * 1024 characters) is sent once and stored only as a salted scrypt hash; `replace` changes an
   * existing user's password and flag instead of failing with USER_ALREADY_EXISTS. `admin` is
   * built in and cannot be added: its password comes from each server's `--admin-password-file`.
   * Not retried after a timeout.
   *
   * @example
   * const admin = sluice.admin();
   * await admin.createUser("alice", readFileSync("alice.pw", "utf8").trim());
   * await admin.createAcl({ principal: "User:alice", operation: "produce", resource: "topic:orders.*" });
   * await admin.createAcl({ principal: "User:alice", operation: "consume", resource: "group:billing" });
   * await admin.listAcls({ principal: "User:alice" });
   * // [{ principal: "User:alice", operation: "consume", resourceType: "group", resourceName: "billing",
   * //    patternType: "literal", permission: "allow", resource: "group:billing" }, …]
   */
  createUser(name: string, password: string, options?: CreateUserOptions): Promise<UserChange> {
    return createUser(this.context, name, password, options);
  }

  /** Deletes a user (UNKNOWN_USER if there is none). Its ACL entries stay, as in Kafka: delete them with `deleteAcl`. */
  deleteUser(name: string): Promise<void> {
    return deleteUser(this.context, name);
  }

  /** Every user, the built-in `admin` first; names and flags only (describe on the cluster). */
  listUsers(): Promise<UserListing[]> {
    return listUsers(this.context);
  }

  /**
   * Allows (or with `permission: "deny"` denies) `operation` on `resource` to `principal`
   * (admin on the cluster). Resources: `topic:orders`, `topic:orders.*` (every topic starting
   * with `orders.`), `topic:*`, `group:billing`, `group:bill*`, `cluster`. An operation that
   * does not apply to the resource (produce on the cluster) fails with INVALID_ARGUMENT.
   * Adding an entry that exists changes nothing (`created: false`). Brokers apply it within a second.
   * @example admin.createAcl({ principal: "User:*", operation: "describe", resource: "topic:*" })
   */
  createAcl(entry: AclInput): Promise<AclChange> {
    return createAcl(this.context, entry);
  }

  /** Deletes the entry equal to `entry`, permission included (UNKNOWN_ACL if there is none). */
  deleteAcl(entry: AclInput): Promise<void> {
    return deleteAcl(this.context, entry);
  }

  /** Every ACL entry, or only those naming exactly `principal` (describe on the cluster). */
  listAcls(options?: ListAclsOptions): Promise<AclListing[]> {
    return listAcls(this.context, options);
  }

  async cluster(): Promise<ClusterInfo> {
    const response = await this.retrying(() => this.context.nameServers.listBrokers(deadlineFromNow(this.context)));
    return { brokers: response.brokers.map(toClusterBroker) };
  }

  /** Every consumer and queue group of the cluster, by name. */
  listGroups(): Promise<GroupListing[]> {
    return listGroups(this.context);
  }

  /** Members, assignments, committed offsets and lag; for a queue group, its ack windows. Unknown group: UNKNOWN_GROUP. */
  describeGroup(group: string): Promise<GroupDescription> {
    return describeGroup(this.context, group);
  }

  /**
   * Moves the group's committed offsets on `topic` (every partition, or `partitions`) to the
   * earliest or latest offset, an offset, or the first message at or after a time; returns
   * the offsets committed (or, with `dryRun`, that would be). Refused (GROUP_NOT_EMPTY) while
   * the group has members.
   */
  resetOffsets(group: string, topic: string, to: ResetOffsetsTo, options?: ResetOffsetsOptions): Promise<CommittedPosition[]> {
    return resetOffsets(this.context, group, topic, to, options);
  }

  /** The dead letters of a queue group not redriven yet, oldest first. */
  deadLetters(group: string, options?: DeadLettersOptions): Promise<DeadLetter[]> {
    return deadLetters(this.context, group, options);
  }

  /**
   * Sends a queue group's dead letters back to their source topics (at most `max`, at most
   * `ratePerSecond`), and commits past each chunk once it is acknowledged: at-least-once.
   */
  redrive(group: string, options?: RedriveOptions): Promise<RedriveResult> {
    return redrive(this.context, group, options);
  }

  private async fetchOne(topic: string, partition: number, offset: number): Promise<ConsumerMessage | null> {
    const deadlineMs = deadlineFromNow(this.context);
    const data = await this.context.retry.run(
      async (attempt) => {
        const route = attempt === 0 ? await this.context.routes.get(topic) : await this.context.routes.refresh(topic);
        if (partition >= route.partitionCount) throw new UnknownPartitionError(topic, partition, route.partitionCount);
        // A slave serves the read while the master is missing or unreachable.
        const replica = chooseReadReplica(route, partition, this.context.routes.reachability);
        if (replica === undefined) throw new NoBrokersAvailableError(`partition ${topic}/${partition} has no live master nor slave`);
        // maxBytes 1: the broker always returns at least the whole batch holding `offset`.
        const response = await this.context.brokers
          .get(replica.address)
          .fetch({ header: this.context.header, topic, partitions: [{ partition, offset, maxBytes: 1 }], maxWaitMs: 0, minBytes: 0, maxBytes: 1 }, deadlineMs)
          .catch((err: unknown) => {
            this.context.routes.reachability.noteFailure(replica.address, toSluiceError(err).code);
            throw err;
          });
        return response.partitions.find((p) => p.partition === partition);
      },
      { deadlineMs },
    );
    if (data === undefined) return null;
    if (data.error !== undefined) throw fromWireError(data.error);
    let found: DecodedRecord | undefined;
    forEachRecord(data.records, offset, (record) => {
      found ??= record;
    });
    if (found === undefined || found.offset !== offset) return null;
    const message = found as ConsumerMessage;
    message.topic = topic;
    message.partition = partition;
    return message;
  }

  private retrying<T>(operation: () => Promise<T>): Promise<T> {
    return this.context.retry.run(operation, { deadlineMs: deadlineFromNow(this.context) });
  }
}

function checkOffsetQuery(query: OffsetQuery): void {
  if (query === "earliest" || query === "latest") return;
  if (typeof query === "object" && query !== null && Number.isSafeInteger(query.timestamp) && query.timestamp >= 0) return;
  throw new InvalidArgumentError(`offsets query must be "earliest", "latest" or { timestamp: ms }, got ${JSON.stringify(query)}`);
}
