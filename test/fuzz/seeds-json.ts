/**
 * Valid JSON inputs of the JSON decoders: WebSocket client frames (ws-frames/) and the REST
 * bodies of the admin API (rest-create-topic/, rest-alter-topic/, rest-flow-rule/).
 */
const WS_FRAMES: Record<string, unknown> = {
  "open-queue": { op: "open", mode: "queue", group: "g", topic: "orders", invisibleMs: 30000, maxDeliveries: 5, keyOrdering: true, fromBeginning: false, clientId: "ws-1" },
  "open-tail-offsets": { op: "open", mode: "tail", topic: "orders", partitions: [0, 2], from: { "0": 42, "2": 0 }, clientId: "t" },
  "open-tail-earliest": { op: "open", mode: "tail", topic: "orders", from: "earliest" },
  credit: { op: "credit", messages: 100 },
  ack: { op: "ack", partition: 0, offset: 42, leaseId: 7, id: 1 },
  nack: { op: "nack", partition: 1, offset: 5, leaseId: 9, delayMs: 1000, error: "boom" },
  extend: { op: "extend", partition: 0, offset: 42, leaseId: 7, extendMs: 5000 },
};

const CREATE_TOPIC: Record<string, unknown> = {
  full: { name: "orders", partitions: 3, retentionMs: 86_400_000, retentionBytes: 1_073_741_824, brokers: ["b1", "b2"] },
  minimal: { name: "a" },
  "dotted-name": { name: "orders.eu_1-x", partitions: 1 },
};

const ALTER_TOPIC: Record<string, unknown> = {
  grow: { partitions: 4 },
};

/** The examples of common/src/flow/rules.ts, one per limiter. */
const FLOW_RULES: Record<string, unknown> = {
  "token-bucket": { scope: "topic:orders.*", limiter: "token-bucket", messagesPerSecond: 50000, burst: 100000 },
  "leaky-bucket": { scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 10485760, maxQueueMs: 0 },
  "warm-up": { scope: "client:loader-?", limiter: "warm-up", messagesPerSecond: 400000, warmUpMs: 10000 },
  concurrency: { scope: "broker", limiter: "concurrency", maxInFlight: 2000 },
};

function asFiles(values: Record<string, unknown>): Record<string, Buffer> {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, Buffer.from(JSON.stringify(value))]));
}

/** corpus folder → file name → bytes. */
export function jsonSeeds(): Record<string, Record<string, Buffer>> {
  return {
    "ws-frames": asFiles(WS_FRAMES),
    "rest-create-topic": asFiles(CREATE_TOPIC),
    "rest-alter-topic": asFiles(ALTER_TOPIC),
    "rest-flow-rule": asFiles(FLOW_RULES),
  };
}
