/**
 * FindCoordinator: which broker coordinates a consumer group.
 *
 * A group's state lives in partition murmur2(group) mod P of the internal topic `%groups`;
 * the master of that partition coordinates the group, so coordination moves with the
 * partition's mastership and finds its state already there. `%groups` is created on first
 * use, and a queue group's dead-letter topic `%DLQ%<group>` is created beside the
 * coordinator (same broker group) so dead letters are appended locally.
 */
import { NoBrokersAvailableError, TopicAlreadyExistsError } from "../../common/src/errors.js";
import { checkGroupName } from "../../common/src/group-name.js";
import type { Logger } from "../../common/src/logger.js";
import { GROUP_STATE_TOPIC, dlqTopicOf, groupStatePartition } from "../../common/src/protocol.js";
import type { FindCoordinatorResponse, PartitionRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import type { ClusterState } from "./cluster-state.js";
import type { TopicAdmin } from "./topic-admin.js";


export class CoordinatorFinder {
  constructor(
    private readonly state: ClusterState,
    private readonly topics: TopicAdmin,
    private readonly groupStatePartitions: number,
    private readonly logger: Logger,
  ) {}

  async find(group: string, queue: boolean): Promise<FindCoordinatorResponse> {
    checkGroupName(group);
    const partitionCount = await this.ensureTopic(GROUP_STATE_TOPIC, this.groupStatePartitions, []);
    const partition = groupStatePartition(group, partitionCount);
    const route = await this.partitionRoute(GROUP_STATE_TOPIC, partition);
    if (route.master === undefined) {
      throw new NoBrokersAvailableError(
        `the coordinator of group "${group}" (master of ${GROUP_STATE_TOPIC}/${partition} in broker group "${route.group}") is not available; retry shortly`,
      );
    }
    if (queue) await this.ensureTopic(dlqTopicOf(group), 1, [route.group]);
    return { partition, route };
  }

  /** The topic's partition count, creating it first if it does not exist yet. */
  private async ensureTopic(topic: string, partitions: number, brokerGroups: string[]): Promise<number> {
    const existing = await this.state.getTopic(topic);
    if (existing !== undefined) return existing.partitionCount;
    try {
      const route = await this.topics.createTopic({ topic, partitions, brokerGroups }, true);
      this.logger.info({ topic, partitions, brokerGroups }, "internal topic created");
      return route.partitions.length;
    } catch (err) {
      // Another caller (or another name server) created it first: use theirs.
      if (!(err instanceof TopicAlreadyExistsError)) throw err;
      const record = await this.state.getTopic(topic);
      if (record === undefined) throw new NoBrokersAvailableError(`${topic} is being created elsewhere; retry shortly`, { cause: err });
      return record.partitionCount;
    }
  }

  private async partitionRoute(topic: string, partition: number): Promise<PartitionRoute> {
    const [route] = await this.state.routes([topic]);
    const found = route?.partitions.find((p) => p.partition === partition);
    if (found === undefined) throw new NoBrokersAvailableError(`no route for ${topic}/${partition} yet; retry shortly`);
    return found;
  }
}
