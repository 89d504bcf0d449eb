/**
 * Valid examples of the files a server reads at start, for the config fuzzers' corpora:
 *
 *   config-yaml/       `--config` files of `sluice broker`, `nameserver` and `dev` (cli/src/config.ts)
 *   role-file/         <data>/role.json (broker/src/roles/role-file.ts)
 *   leader-epochs/     <partition>/leader-epochs (broker/src/storage/leader-epochs.ts)
 *   recovery-points/   <data>/logs/recovery-point-checkpoint (broker/src/storage/logs-dir.ts)
 *   flow-rules-file/   <data>/flow-rules.json (broker/src/flow/rule-store.ts)
 */
/** Two small broker files rather than one big one: the yaml parser's cost grows with the document. */
const BROKER_YAML = `# sluice broker --config broker.yaml
name: b1
id: 0
port: 10911
nameserver: 127.0.0.1:9876,127.0.0.1:9886
flush: interval
metricsPerPartition: true
flow:
  - { scope: "topic:orders.*", limiter: token-bucket, messagesPerSecond: 50000, burst: 100000 }
`;

const BROKER_REPLICATION_YAML = `replication: quorum:1
minInSyncSlaves: 1
maxSlaveLagMs: 10000
etcd: [http://127.0.0.1:2379]
flow:
  - scope: broker
    limiter: concurrency
    maxInFlight: 2000
`;

const NAMESERVER_YAML = `host: 0.0.0.0
port: 9876
heartbeatIntervalMs: 1000
expiryHeartbeats: 3
detector: phi
phiThreshold: 8.5
etcd: http://127.0.0.1:2379
`;

const DEV_YAML = `data: &dir ./data
flush: sync
portOffset: 10
retentionBytes: 0
maxHeldProduceBytes: 67108864
`;

const FLOW_RULES_FILE = {
  version: 1,
  set: [
    { scope: "topic:orders.*", limiter: "token-bucket", messagesPerSecond: 50000, burst: 100000, maxQueueMs: 500 },
    { scope: "client:loader-?", limiter: "warm-up", bytesPerSecond: 1048576, maxQueueMs: 500, warmUpMs: 10000, coldFactor: 3 },
  ],
  deleted: [{ scope: "broker", limiter: "concurrency" }],
};

/** corpus folder → file name → bytes, with the extension each folder's files get. */
export function configSeeds(): Record<string, { extension: string; files: Record<string, string> }> {
  return {
    "config-yaml": { extension: "yaml", files: { broker: BROKER_YAML, "broker-replication": BROKER_REPLICATION_YAML, nameserver: NAMESERVER_YAML, dev: DEV_YAML, empty: "" } },
    "role-file": { extension: "json", files: { master: '{"epoch":2,"master":1}\n', fresh: '{"epoch":0,"master":null}\n' } },
    "leader-epochs": { extension: "txt", files: { history: "sluice-leader-epochs 1\n-1 0\n3 100\n7 250\n", empty: "sluice-leader-epochs 1\n" } },
    "recovery-points": { extension: "txt", files: { partitions: "orders 0 100\norders-eu 12 0\n%groups 3 55\n" } },
    "flow-rules-file": { extension: "json", files: { changes: `${JSON.stringify(FLOW_RULES_FILE, null, 2)}\n`, empty: '{"version":1}\n' } },
  };
}
