/**
 * Partition assignors: given a group's members (their subscriptions and what they own now)
 * and the partition count of each topic, decide which member consumes which partition.
 *
 * Pure functions, no I/O: the group coordinator calls `assignPartitions` whenever
 * membership, subscriptions or partition counts change, and then moves partitions
 * cooperatively (a partition changes hands only after its old owner releases it). That is
 * why `sticky` matters: every partition it moves costs a revoke/release/assign round trip,
 * so it keeps what it can and moves only what balance requires.
 *
 * Every assignor is deterministic: members are processed in memberId order and topics in
 * name order (UTF-16 code unit order, never locale order), so two coordinators computing the
 * same input agree, whatever order the members arrived in.
 */
import { InvalidArgumentError } from "../../../common/src/errors.js";

export interface TopicPartition {
  topic: string;
  partition: number;
}

export type AssignorName = "range" | "roundrobin" | "sticky";

export const ASSIGNOR_NAMES: readonly AssignorName[] = ["range", "roundrobin", "sticky"];

export interface AssignorMember {
  memberId: string;
  /** Topics this member subscribes to. */
  topics: readonly string[];
  /** The member's current target assignment (what the coordinator last gave it); sticky keeps as much as it can. */
  current: readonly TopicPartition[];
}

export interface AssignmentInput {
  members: readonly AssignorMember[];
  /** Partition count per subscribed topic; topics missing here are unknown and get no partitions. */
  partitionCounts: ReadonlyMap<string, number>;
}

export function isAssignorName(value: string): value is AssignorName {
  return (ASSIGNOR_NAMES as readonly string[]).includes(value);
}

/** Orders by topic (code unit order), then partition: the order of every returned list. */
export function compareTopicPartitions(a: TopicPartition, b: TopicPartition): number {
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  return a.partition - b.partition;
}

/**
 * memberId → its new target assignment, sorted by topic then partition. Every member appears
 * (possibly with []). Deterministic: same input → same output regardless of member order in the input.
 */
export function assignPartitions(assignor: AssignorName, input: AssignmentInput): Map<string, TopicPartition[]> {
  if (!isAssignorName(assignor)) {
    throw new InvalidArgumentError(`unknown partition assignor "${String(assignor)}"; use one of ${ASSIGNOR_NAMES.join(", ")}`);
  }
  const group = prepareGroup(input);
  return toAssignment(group, ASSIGNORS[assignor](group));
}

/**
 * The input, validated and indexed. Members are numbered in memberId order and topics in name
 * order, so "lowest index" means "lowest memberId" / "first topic" everywhere below.
 */
interface Group {
  members: readonly AssignorMember[];
  /** Per member index: the subscribed topics that are known (present in partitionCounts). */
  subscriptions: readonly ReadonlySet<string>[];
  /** Known topics with at least one subscriber, sorted. */
  topics: readonly string[];
  topicIndex: ReadonlyMap<string, number>;
  /** Per topic index. */
  partitionCounts: readonly number[];
  /** Per topic index: indexes of the members subscribed to it, ascending. */
  subscribers: readonly (readonly number[])[];
}

/** Per topic index, per partition: the index of the owning member. */
type Owners = Int32Array[];

const UNOWNED = -1;

function prepareGroup(input: AssignmentInput): Group {
  for (const [topic, count] of input.partitionCounts) {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new InvalidArgumentError(`topic "${topic}" has partition count ${count}; expected an integer >= 0`);
    }
  }
  const members = [...input.members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  for (let i = 1; i < members.length; i++) {
    if (members[i]!.memberId === members[i - 1]!.memberId) {
      throw new InvalidArgumentError(`member "${members[i]!.memberId}" appears twice in the group`);
    }
  }
  // Members with identical topic lists form a "class", so the work grows with distinct subscriptions,
  // not members × topics (groups nearly always share one; 1,000 × 10,000 topics would cost seconds).
  const classOf = new Map<string, number>();
  const classTopics: Set<string>[] = [];
  const classMembers: number[][] = [];
  const subscriptions = members.map((m, memberIndex) => {
    const key = JSON.stringify(m.topics);
    let classId = classOf.get(key);
    if (classId === undefined) {
      classId = classTopics.length;
      classOf.set(key, classId);
      classTopics.push(new Set(m.topics.filter((t) => input.partitionCounts.has(t))));
      classMembers.push([]);
    }
    classMembers[classId]!.push(memberIndex);
    return classTopics[classId]!;
  });
  const topics = [...new Set(classTopics.flatMap((known) => [...known]))].sort();
  const topicIndex = new Map(topics.map((t, i) => [t, i]));
  const classesOfTopic: number[][] = topics.map(() => []);
  classTopics.forEach((known, classId) => {
    for (const topic of known) classesOfTopic[topicIndex.get(topic)!]!.push(classId);
  });
  // Topics read by the same classes share one subscriber list.
  const subscriberLists = new Map<string, number[]>();
  const subscribers = classesOfTopic.map((classIds) => {
    const key = classIds.join(",");
    let list = subscriberLists.get(key);
    if (list === undefined) {
      list = classIds.flatMap((classId) => classMembers[classId]!).sort((a, b) => a - b);
      subscriberLists.set(key, list);
    }
    return list;
  });
  return {
    members,
    subscriptions,
    topics,
    topicIndex,
    partitionCounts: topics.map((t) => input.partitionCounts.get(t)!),
    subscribers,
  };
}

function emptyOwners(group: Group): Owners {
  return group.partitionCounts.map((count) => new Int32Array(count).fill(UNOWNED));
}

/** Walking topics in order and partitions upwards yields every list already sorted. */
function toAssignment(group: Group, owners: Owners): Map<string, TopicPartition[]> {
  const lists: TopicPartition[][] = group.members.map(() => []);
  owners.forEach((byPartition, topicIndex) => {
    const topic = group.topics[topicIndex]!;
    byPartition.forEach((owner, partition) => lists[owner]!.push({ topic, partition }));
  });
  return new Map(group.members.map((m, i) => [m.memberId, lists[i]!]));
}

/** Kafka's RangeAssignor: each topic cut into contiguous ranges; the first `count % n` members get one more. */
function assignRange(group: Group): Owners {
  const owners = emptyOwners(group);
  group.subscribers.forEach((subscribed, topicIndex) => {
    const count = group.partitionCounts[topicIndex]!;
    const base = Math.floor(count / subscribed.length);
    const withExtra = count % subscribed.length;
    let partition = 0;
    subscribed.forEach((memberIndex, rank) => {
      const end = partition + base + (rank < withExtra ? 1 : 0);
      owners[topicIndex]!.fill(memberIndex, partition, end);
      partition = end;
    });
  });
  return owners;
}

/**
 * Kafka's RoundRobinAssignor: all partitions of all topics in one sorted sequence, dealt like
 * cards around the circle of members; a member not subscribed to a topic is passed over.
 */
function assignRoundRobin(group: Group): Owners {
  const owners = emptyOwners(group);
  const memberCount = group.members.length;
  let next = 0;
  group.topics.forEach((topic, topicIndex) => {
    for (let partition = 0; partition < group.partitionCounts[topicIndex]!; partition++) {
      // Terminates: every topic in group.topics has at least one subscriber.
      while (!group.subscriptions[next % memberCount]!.has(topic)) next++;
      owners[topicIndex]![partition] = next % memberCount;
      next++;
    }
  });
  return owners;
}

const ASSIGNORS: Record<AssignorName, (group: Group) => Owners> = {
  range: assignRange,
  roundrobin: assignRoundRobin,
  sticky: assignSticky,
};

/** A partition held by the sticky assignor while it works: topic by index, to keep comparisons cheap. */
interface Held {
  topicIndex: number;
  partition: number;
}

/**
 * The order in which a member keeps its partitions: lowest partition numbers first, so
 * "give away the highest partition first" takes from the end. Partition number before topic
 * spreads the losses over a member's topics instead of emptying one topic.
 */
function compareKeepOrder(a: Held, b: Held): number {
  return a.partition - b.partition || a.topicIndex - b.topicIndex;
}

/**
 * Sticky: balanced like round robin, but starting from what each member owns now.
 *
 * 1. Keep every current partition that is still valid: subscribed, known topic, partition in
 *    range, and not claimed twice (the lower memberId keeps a doubly claimed one).
 * 2. Hand every unowned partition to its least-loaded subscriber (ties: lowest memberId),
 *    topics with the fewest subscribers first since they have the fewest choices.
 * 3. Trim over-loaded members: the most loaded member gives its highest partition to the
 *    least-loaded subscriber of that topic holding at least two fewer, until no such move exists.
 *
 * Step 3 is "drop extras, then hand them to the least loaded" done one partition at a time:
 * there is no fixed per-member quota to drop down to, because with mixed subscriptions a fair
 * share is not known up front, and trimming to a guessed one makes partitions travel away and
 * back (a balanced assignment fed back in would not come out unchanged).
 *
 * With identical subscriptions this moves the fewest partitions possible: loads end within
 * one of each other, and because only the most loaded member gives and only the least loaded
 * receives, no member both gains and loses, and members that owned the most keep the extra one.
 */
function assignSticky(group: Group): Owners {
  const owners = emptyOwners(group);
  const held: Held[][] = group.members.map(() => []);

  group.members.forEach((member, memberIndex) => {
    for (const { topic, partition } of member.current) {
      const topicIndex = group.topicIndex.get(topic);
      if (topicIndex === undefined || !group.subscriptions[memberIndex]!.has(topic)) continue;
      if (!Number.isInteger(partition) || partition < 0 || partition >= group.partitionCounts[topicIndex]!) continue;
      if (owners[topicIndex]![partition] !== UNOWNED) continue; // a lower memberId (or a duplicate entry) has it
      owners[topicIndex]![partition] = memberIndex;
      held[memberIndex]!.push({ topicIndex, partition });
    }
  });
  for (const partitions of held) partitions.sort(compareKeepOrder);

  const byFewestSubscribers = group.topics
    .map((_, topicIndex) => topicIndex)
    .sort((a, b) => group.subscribers[a]!.length - group.subscribers[b]!.length || a - b);
  for (const topicIndex of byFewestSubscribers) {
    const subscribed = group.subscribers[topicIndex]!;
    const byPartition = owners[topicIndex]!;
    for (let partition = 0; partition < byPartition.length; partition++) {
      if (byPartition[partition] !== UNOWNED) continue;
      const receiver = leastLoaded(subscribed, held);
      byPartition[partition] = receiver;
      insertSorted(held[receiver]!, { topicIndex, partition });
    }
  }

  trimOverloaded(group, owners, held);
  return owners;
}

/** Subscribers are in memberId order, so a strict `<` breaks ties towards the lowest memberId. */
function leastLoaded(subscribed: readonly number[], held: readonly Held[][]): number {
  let best = subscribed[0]!;
  for (const memberIndex of subscribed) {
    if (held[memberIndex]!.length < held[best]!.length) best = memberIndex;
  }
  return best;
}

function insertSorted(partitions: Held[], item: Held): void {
  let low = 0;
  let high = partitions.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareKeepOrder(partitions[middle]!, item) < 0) low = middle + 1;
    else high = middle;
  }
  partitions.splice(low, 0, item);
}

/**
 * Step 3. Each move takes a member with load a to a-1 and one with load b ≤ a-2 to b+1, which
 * strictly lowers the sum of squared loads, so the loop ends. A member that cannot give (mixed
 * subscriptions: every subscriber of its topics is as loaded as it, less one) is set aside for
 * the sweep; sweeps repeat until one moves nothing, since later moves may open a way for it.
 * Stops early once the most loaded member holds fewer than (lowest receiver load + 2).
 */
function trimOverloaded(group: Group, owners: Owners, held: Held[][]): void {
  const canReceive = group.members.map(() => false);
  let totalPartitions = 0;
  group.subscribers.forEach((subscribed, topicIndex) => {
    const count = group.partitionCounts[topicIndex]!;
    totalPartitions += count;
    if (count > 0) for (const memberIndex of subscribed) canReceive[memberIndex] = true;
  });
  // How many members able to receive sit at each load, to track the lowest load in O(1) per move.
  const receiversAtLoad = new Int32Array(totalPartitions + 1);
  held.forEach((partitions, memberIndex) => {
    if (canReceive[memberIndex]) receiversAtLoad[partitions.length]!++;
  });
  let lowestLoad = receiversAtLoad.findIndex((count) => count > 0);
  if (lowestLoad < 0) return;
  const changeLoad = (memberIndex: number, from: number): void => {
    if (!canReceive[memberIndex]) return;
    const to = held[memberIndex]!.length;
    receiversAtLoad[from]!--;
    receiversAtLoad[to]!++;
    lowestLoad = Math.min(lowestLoad, to);
    while (receiversAtLoad[lowestLoad] === 0) lowestLoad++;
  };

  for (;;) {
    let moved = false;
    const donors = new MostLoadedFirst(held);
    held.forEach((_, memberIndex) => donors.push(memberIndex));
    for (let donor = donors.pop(); donor !== undefined; donor = donors.pop()) {
      const donorLoad = held[donor]!.length;
      if (donorLoad < lowestLoad + 2) break;
      const receiver = giveHighestMovable(group, owners, held, donor);
      if (receiver === undefined) continue;
      moved = true;
      changeLoad(donor, donorLoad);
      changeLoad(receiver, held[receiver]!.length - 1);
      donors.push(donor);
      donors.push(receiver);
    }
    if (!moved) return;
  }
}

/** Gives away the donor's highest partition that a subscriber with two fewer can take; returns that subscriber. */
function giveHighestMovable(group: Group, owners: Owners, held: Held[][], donor: number): number | undefined {
  const partitions = held[donor]!;
  const receiverByTopic = new Map<number, number>();
  for (let position = partitions.length - 1; position >= 0; position--) {
    const { topicIndex, partition } = partitions[position]!;
    let receiver = receiverByTopic.get(topicIndex);
    if (receiver === undefined) {
      receiver = leastLoaded(group.subscribers[topicIndex]!, held);
      receiverByTopic.set(topicIndex, receiver);
    }
    if (held[receiver]!.length + 2 > partitions.length) continue;
    partitions.splice(position, 1);
    owners[topicIndex]![partition] = receiver;
    insertSorted(held[receiver]!, { topicIndex, partition });
    return receiver;
  }
  return undefined;
}

/**
 * Max-heap of members by load, ties to the lowest memberId. Entries are (load, member) packed
 * into one number; an entry whose load no longer matches the member's is stale and skipped,
 * so a load change is just a fresh push.
 */
class MostLoadedFirst {
  private readonly keys: number[] = [];

  constructor(private readonly held: readonly Held[][]) {}

  push(memberIndex: number): void {
    const memberCount = this.held.length;
    this.keys.push(this.held[memberIndex]!.length * memberCount + (memberCount - 1 - memberIndex));
    let child = this.keys.length - 1;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (this.keys[parent]! >= this.keys[child]!) break;
      [this.keys[parent], this.keys[child]] = [this.keys[child]!, this.keys[parent]!];
      child = parent;
    }
  }

  pop(): number | undefined {
    const memberCount = this.held.length;
    while (this.keys.length > 0) {
      const top = this.keys[0]!;
      const last = this.keys.pop()!;
      if (this.keys.length > 0) this.siftDown(last);
      const memberIndex = memberCount - 1 - (top % memberCount);
      if (Math.floor(top / memberCount) === this.held[memberIndex]!.length) return memberIndex;
    }
    return undefined;
  }

  private siftDown(key: number): void {
    let parent = 0;
    for (;;) {
      let child = 2 * parent + 1;
      if (child >= this.keys.length) break;
      if (child + 1 < this.keys.length && this.keys[child + 1]! > this.keys[child]!) child++;
      if (this.keys[child]! <= key) break;
      this.keys[parent] = this.keys[child]!;
      parent = child;
    }
    this.keys[parent] = key;
  }
}
