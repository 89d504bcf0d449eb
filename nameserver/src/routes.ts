/**
 * Routes: topic → partitions → broker group (live master, live slaves, epoch).
 *
 * Computed on demand from the registry rather than kept up to date incrementally: a route is
 * a pure function of (topic record, live brokers), so a broker that registers, changes role
 * or expires is reflected in the very next lookup, with nothing to invalidate.
 */
import type { BrokerAddress } from "../../proto/gen/sluice/v1/common.js";
import type { PartitionRoute, TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import type { BrokerRecord, TopicRecord } from "./registry/store.js";

/** What routing needs to know about one broker group. */
export interface GroupView {
  group: string;
  /** The live master, if any. */
  master: BrokerRecord | undefined;
  /** Live slaves, by id. */
  slaves: BrokerRecord[];
  /** The master's epoch; without a master, the highest epoch a slave reports. */
  epoch: number;
}

/**
 * Groups live brokers. Should two live brokers of a group both claim to be master (a former
 * master that has not yet learned it was replaced), the one with the higher epoch wins, then
 * the lower id; the other is routed to by nobody.
 */
export function buildGroupViews(liveBrokers: readonly BrokerRecord[]): Map<string, GroupView> {
  const views = new Map<string, GroupView>();
  const sorted = [...liveBrokers].sort((a, b) => a.brokerId - b.brokerId);
  for (const broker of sorted) {
    let view = views.get(broker.group);
    if (view === undefined) {
      view = { group: broker.group, master: undefined, slaves: [], epoch: 0 };
      views.set(broker.group, view);
    }
    if (broker.role === "master") {
      if (view.master === undefined || broker.epoch > view.master.epoch) view.master = broker;
    } else {
      view.slaves.push(broker);
    }
  }
  for (const view of views.values()) {
    view.epoch = view.master?.epoch ?? Math.max(0, ...view.slaves.map((s) => s.epoch));
  }
  return views;
}

export function toBrokerAddress(broker: BrokerRecord): BrokerAddress {
  return { group: broker.group, brokerId: broker.brokerId, address: broker.address, httpAddress: broker.httpAddress };
}

export function buildTopicRoute(topic: TopicRecord, groups: ReadonlyMap<string, GroupView>): TopicRoute {
  const partitions: PartitionRoute[] = topic.assignment.map((group, partition) => {
    const view = groups.get(group);
    return {
      partition,
      group,
      master: view?.master === undefined ? undefined : toBrokerAddress(view.master),
      slaves: view === undefined ? [] : view.slaves.map(toBrokerAddress),
      epoch: view?.epoch ?? 0,
    };
  });
  return { topic: topic.topic, partitions, config: { ...topic.config } };
}

/** Partitions each group hosts across all topics, for placement. */
export function countHostedPartitions(topics: readonly TopicRecord[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const topic of topics) {
    for (const group of topic.assignment) {
      if (group !== "") counts.set(group, (counts.get(group) ?? 0) + 1);
    }
  }
  return counts;
}
