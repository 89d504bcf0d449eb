/** Registry records for store tests: a valid broker and topic, with overrides. */
import type { BrokerRecord, TopicRecord } from "../../nameserver/src/registry/store.js";

export function brokerRecord(overrides: Partial<BrokerRecord> = {}): BrokerRecord {
  return {
    cluster: "sluice",
    group: "b1",
    brokerId: 0,
    address: "127.0.0.1:9911",
    httpAddress: "127.0.0.1:9912",
    version: "0.1.0",
    role: "master",
    epoch: 1,
    weight: 1,
    registeredAtMs: 1_700_000_000_000,
    ...overrides,
  };
}

export function topicRecord(name: string, overrides: Partial<TopicRecord> = {}): TopicRecord {
  return {
    topic: name,
    partitionCount: 2,
    assignment: ["b1", "b2"],
    config: { retentionMs: 86_400_000, retentionBytes: 0, segmentBytes: 0, maxMessageBytes: 0 },
    ...overrides,
  };
}
