/**
 * The gRPC decoders a Sluice server runs on bytes from the network, found from the generated
 * service definitions (so a new RPC is fuzzed without touching the test), and their corpus:
 * `proto/<Service>.<method>/` holds valid messages — a few hand-written ones for the busy
 * streams and, for every method, canonical re-encodings of random wire messages that decoded
 * (fields filled with whatever the random bytes said).
 */
import { encodeBatch } from "../../common/src/batch/index.js";
import { BrokerService } from "../../proto/gen/sluice/v1/broker.js";
import { GroupsService } from "../../proto/gen/sluice/v1/groups.js";
import { NameServerService } from "../../proto/gen/sluice/v1/nameserver.js";
import { ReplicationService } from "../../proto/gen/sluice/v1/replication.js";
import { SecurityService } from "../../proto/gen/sluice/v1/security.js";
import { Rng } from "./mutate.js";
import { randomWireMessage } from "./proto-wire.js";

interface MethodDefinition {
  path: string;
  requestSerialize: (value: never) => Buffer;
  requestDeserialize: (bytes: Buffer) => unknown;
  responseSerialize: (value: never) => Buffer;
  responseDeserialize: (bytes: Buffer) => unknown;
}

export interface ServerDecoder {
  /** "Broker.produce"; also the corpus folder under proto/. */
  name: string;
  decode: (bytes: Buffer) => unknown;
  encode: (value: unknown) => Buffer;
}

const SERVICES: Record<string, Record<string, MethodDefinition>> = {
  Broker: BrokerService as unknown as Record<string, MethodDefinition>,
  Groups: GroupsService as unknown as Record<string, MethodDefinition>,
  NameServer: NameServerService as unknown as Record<string, MethodDefinition>,
  Replication: ReplicationService as unknown as Record<string, MethodDefinition>,
  Security: SecurityService as unknown as Record<string, MethodDefinition>,
};

/** Every request decoder of every service, plus the replication stream's answers, which a slave broker decodes. */
export function serverDecoders(): ServerDecoder[] {
  const decoders: ServerDecoder[] = [];
  for (const [service, methods] of Object.entries(SERVICES)) {
    for (const [method, definition] of Object.entries(methods)) {
      decoders.push({
        name: `${service}.${method}`,
        decode: definition.requestDeserialize,
        encode: definition.requestSerialize as (value: unknown) => Buffer,
      });
    }
  }
  const replicate = ReplicationService.replicate;
  decoders.push({
    name: "Replication.replicate-response",
    decode: replicate.responseDeserialize,
    encode: replicate.responseSerialize as (value: unknown) => Buffer,
  });
  return decoders;
}

const MAX_RANDOM_SEED_BYTES = 160;
const header = { clientId: "fuzz-seed", protocolVersion: 1 };
const T0 = 1_700_000_000_000;

/** Hand-written requests for the streams that carry the traffic, by decoder name. */
function samples(): Record<string, Record<string, unknown>[]> {
  const batch = encodeBatch([{ key: "k", value: "v", timestamp: T0 }, { value: "w", timestamp: T0 + 1 }]);
  return {
    "Broker.produce": [
      { header, correlationId: 7, topic: "orders", partition: 0, acks: 0, batch },
      { header, correlationId: 2 ** 40, topic: "orders.eu-1", partition: 2, acks: 2, batch },
    ],
    "Broker.fetch": [{ header, topic: "orders", partitions: [{ partition: 0, offset: 10, maxBytes: 1 << 20 }, { partition: 1, offset: 0, maxBytes: 1 }], maxWaitMs: 500, minBytes: 1, maxBytes: 1 << 20 }],
    "Broker.subscribe": [{ header, topic: "orders", partitions: [{ partition: 0, offset: 0, maxBytes: 65536 }], creditBytes: 1 << 20, unsubscribe: [3] }],
    "Groups.queue": [
      { header, open: { group: "g", topic: "orders", memberId: "m-1", invisibleMs: 30000, maxDeliveries: 5, keyOrdering: true, fromBeginning: false }, creditMessages: 100, correlationId: 0, acks: [], nacks: [], extends: [] },
      { header, creditMessages: 0, correlationId: 9, acks: [{ partition: 0, offset: 4, leaseId: 77, delayMs: 0, error: "", extendMs: 0 }], nacks: [{ partition: 1, offset: 5, leaseId: 78, delayMs: 1000, error: "boom", extendMs: 0 }], extends: [] },
    ],
    "Groups.groupHeartbeat": [{ header, group: "g", memberId: "", memberEpoch: 0, instanceId: "", topics: ["orders"], assignor: "sticky", sessionTimeoutMs: 10000, owned: [{ topic: "orders", partitions: [0, 1] }], partitionCounts: { orders: 3 } }],
    "Groups.commitOffsets": [{ header, group: "g", memberId: "m-1", memberEpoch: 3, offsets: [{ topic: "orders", partition: 0, offset: 42, metadata: "" }] }],
    "Replication.replicate": [
      { header, hello: { group: "b1", brokerId: 1, epoch: 4, partitions: [{ topic: "orders", partition: 0, logEndOffset: 100, epochs: [{ epoch: 1, startOffset: 0 }, { epoch: 4, startOffset: 90 }] }] } },
      { header, acks: { positions: [{ topic: "orders", partition: 0, logEndOffset: 120, epochs: [] }] } },
    ],
    "Replication.replicate-response": [
      { epoch: 4, data: { topic: "orders", partition: 0, records: batch, highWatermark: 90, logStartOffset: 0 } },
      { epoch: 4, truncate: { topic: "orders", partition: 0, offset: 80, reset: false } },
    ],
  };
}

/** Seeds per decoder: `proto/<decoder>/<name>.bin`, keyed "<decoder>/<name>". */
export function protoSeeds(): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  const written = samples();
  for (const decoder of serverDecoders()) {
    (written[decoder.name] ?? []).forEach((message, i) => {
      out[`${decoder.name}/sample-${i}`] = decoder.encode(decoder.decode(decoder.encode(message)));
    });
    // The largest canonical forms (below MAX_RANDOM_SEED_BYTES) of decodable random messages:
    // the most fields filled, yet small, since every mutation copies its input.
    const rng = new Rng(0x5eed);
    const found = new Map<string, Buffer>();
    for (let i = 0; i < 400; i++) {
      try {
        const canonical = decoder.encode(decoder.decode(Buffer.from(randomWireMessage(rng))));
        found.set(canonical.toString("hex"), canonical);
      } catch {
        // most random messages do not decode; only those that do are seeds
      }
    }
    [...found.values()]
      .filter((bytes) => bytes.length <= MAX_RANDOM_SEED_BYTES)
      .sort((a, b) => b.length - a.length)
      .slice(0, 3)
      .forEach((bytes, i) => {
        out[`${decoder.name}/random-${i}`] = bytes;
      });
  }
  return out;
}
