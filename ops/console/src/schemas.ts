/**
 * JSON schemas of the admin API: fastify validates requests with them (400 naming the
 * field), serializes answers with them (a field missing here is dropped from the answer,
 * so these list every field the SDK returns), and /docs/json publishes them.
 * -1 in a numeric field means nobody could report the value, as in the CLI's --json output.
 */
import { MAX_TOPIC_PARTITIONS } from "../../../clients/src/admin/admin.js";
// Brings in the FastifySchema fields the OpenAPI document reads (summary, description, tags, hide).
import type {} from "../../../common/src/http/openapi.js";

const integer = { type: "integer" } as const;
const number = { type: "number" } as const;
const string = { type: "string" } as const;
const boolean = { type: "boolean" } as const;
const nullableString = { type: ["string", "null"] } as const;
const nullableInteger = { type: ["integer", "null"] } as const;
const encoding = { type: ["string", "null"], enum: ["utf8", "base64", null], description: "How the text above encodes the bytes; null when they are null" } as const;

/** Every property listed is required: answers always carry all of them. */
function object(properties: Record<string, unknown>, description?: string, optional: readonly string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {
    type: "object",
    additionalProperties: false,
    required: Object.keys(properties).filter((name) => !optional.includes(name)),
    properties,
  };
  if (description !== undefined) out.description = description;
  return out;
}

function array(items: unknown, description?: string): Record<string, unknown> {
  return description === undefined ? { type: "array", items } : { type: "array", items, description };
}

// ---- request parts ----

/**
 * Largest integer a body field takes: JSON numbers such as 1e300 are integers to a schema,
 * but past this they lose precision, and the SDK would refuse them without naming the field.
 */
export const MAX_BODY_INTEGER = Number.MAX_SAFE_INTEGER;

export const topicParams = object({ topic: { type: "string", minLength: 1, maxLength: 249, description: "Topic name (internal topics start with %)" } });
export const groupParams = object({ group: { type: "string", minLength: 1, maxLength: 200, description: "Consumer or queue group name" } });

export const createTopicBody = object(
  {
    name: { type: "string", pattern: "^[a-zA-Z0-9._-]{1,249}$", description: 'Topic name: 1 to 249 of a-z, A-Z, 0-9, ".", "_", "-"' },
    partitions: { type: "integer", minimum: 1, maximum: MAX_TOPIC_PARTITIONS, default: 1, description: "Partition count" },
    retentionMs: { type: "integer", minimum: 0, maximum: MAX_BODY_INTEGER, description: "Delete segments older than this; 0 keeps them for ever" },
    retentionBytes: { type: "integer", minimum: 0, maximum: MAX_BODY_INTEGER, description: "Per partition: delete the oldest segments beyond this size; 0 = no limit" },
    brokers: {
      type: "array",
      items: { type: "string", minLength: 1 },
      uniqueItems: true,
      description: "Broker groups to place the partitions on, each once (default: chosen by the name server)",
    },
  },
  "The topic to create",
  ["partitions", "retentionMs", "retentionBytes", "brokers"],
);

export const alterTopicBody = object(
  {
    partitions: {
      type: "integer",
      minimum: 1,
      maximum: MAX_TOPIC_PARTITIONS,
      description: "The new partition count: more than the topic has (partitions are added, never removed)",
    },
  },
  "What to change in a topic",
);

export const messageQuery = object(
  {
    partition: { type: "integer", minimum: 0, description: "Partition to read" },
    offset: { type: "integer", minimum: 0, description: "The message at this offset (give offset or timestamp)" },
    timestamp: { type: "string", minLength: 1, description: "The first message at or after this time: epoch ms or ISO 8601 (give offset or timestamp)" },
  },
  undefined,
  ["offset", "timestamp"],
);

export const MAX_DEAD_LETTERS_LISTED = 10_000;
export const DEFAULT_DEAD_LETTERS_LISTED = 100;
export const deadLettersQuery = object(
  { max: { type: "integer", minimum: 1, maximum: MAX_DEAD_LETTERS_LISTED, default: DEFAULT_DEAD_LETTERS_LISTED, description: "At most this many, oldest first" } },
  undefined,
  ["max"],
);

// ---- answers ----

const clusterBroker = object({
  group: string,
  id: integer,
  role: { type: "string", description: "master or slave" },
  state: { type: "string", description: "alive, suspect or dead" },
  epoch: integer,
  address: { type: "string", description: "gRPC host:port" },
  httpAddress: { type: "string", description: "HTTP host:port (this API, /metrics, the console)" },
  heartbeatAgeMs: { type: "integer", description: "-1 when the answering name server never heard from the broker" },
  partitions: integer,
  suspicion: { type: "number", description: "The failure detector's suspicion (phi, or missed intervals); -1 unknown" },
  inSync: { type: ["boolean", "null"], description: "A slave: in its master's in-sync set; null for masters or unknown" },
  lagMs: nullableInteger,
  lagBytes: nullableInteger,
});

export const clusterResponse = object(
  { servedBy: { type: "string", description: "group/id of the broker answering" }, brokers: array(clusterBroker) },
  "The brokers as `sluice cluster --json` lists them",
);

const topicSettings = object({ retentionMs: integer, retentionBytes: integer, segmentBytes: integer, maxMessageBytes: integer });

const placement = {
  partition: integer,
  group: string,
  master: { ...nullableString, description: "gRPC address of the master; null while the group has none" },
  masterId: nullableInteger,
  slaves: array(string),
  epoch: integer,
};

const partitionDetails = object(
  {
    ...placement,
    startOffset: integer,
    endOffset: integer,
    highWatermark: integer,
    sizeBytes: integer,
    segments: integer,
    error: { type: "string", description: "Why the log fields are -1, when they are" },
  },
  undefined,
  ["error"],
);

export const topicDescription = object(
  { topic: string, internal: { type: "boolean", description: "An internal topic (%groups, %DLQ%<group>)" }, config: topicSettings, partitions: array(partitionDetails) },
  "A topic as `sluice topic describe --json` shows it",
);

export const topicsResponse = object({ topics: array(topicDescription) });

export const createdTopic = object(
  { topic: string, partitions: integer, config: topicSettings, placement: array(object(placement)) },
  "The topic created, as `sluice topic create --json` prints it",
);

export const deletedTopic = object({ deleted: string });

const header = object({ name: string, value: string, encoding: { type: "string", enum: ["utf8", "base64"] } });

export const messageResponse = object({
  topic: string,
  partition: integer,
  offset: integer,
  timestamp: { type: "string", description: "ISO 8601" },
  timestampMs: integer,
  key: { ...nullableString, description: "UTF-8 text, or base64 (see keyEncoding)" },
  keyEncoding: encoding,
  value: { ...nullableString, description: "UTF-8 text, or base64 (see valueEncoding)" },
  valueEncoding: encoding,
  headers: array(header),
});

export const groupsResponse = object({
  groups: array(object({ group: string, kind: { type: "string", description: "consumer or queue" }, state: string, members: integer })),
});

const topicPartition = object({ topic: string, partition: integer });

export const groupDescription = object(
  {
    group: string,
    state: string,
    kind: string,
    members: array(object({ memberId: string, clientId: string, instanceId: string, assignments: array(topicPartition) })),
    partitions: array(
      object({
        topic: string,
        partition: integer,
        committedOffset: { type: "integer", description: "Next offset the group consumes; -1 when nothing was committed" },
        endOffset: integer,
        lag: { type: "integer", description: "endOffset - committedOffset; -1 unknown" },
        lagMs: { type: "integer", description: "Age of the oldest message not consumed yet; -1 unknown" },
      }),
    ),
    queue: array(
      object({
        topic: string,
        partition: integer,
        startOffset: integer,
        endOffset: integer,
        inFlight: integer,
        delayed: integer,
        deadPending: integer,
        redelivered: integer,
        deadLettered: integer,
      }),
      "A queue group's ack window per partition",
    ),
  },
  "A group as `sluice group describe --json` shows it",
);

const deadLetter = object({
  offset: { type: "integer", description: "Offset in %DLQ%<group>" },
  timestamp: string,
  timestampMs: integer,
  key: nullableString,
  keyEncoding: encoding,
  value: nullableString,
  valueEncoding: encoding,
  headers: array(header),
  source: object({ topic: string, partition: integer, offset: integer }),
  deliveries: integer,
  error: { type: "string", description: 'Error of the last nack ("" when the lease expired)' },
  deadAtMs: integer,
});

export const deadLettersResponse = object({
  group: string,
  deadLetters: array(deadLetter, "Oldest first"),
  truncated: { type: "boolean", description: "More dead letters wait beyond `max`" },
});

const ratePoint = object({
  atMs: { type: "integer", description: "When the later of the two readings started (ms since the epoch)" },
  spanMs: { type: "integer", description: "Time between the two readings" },
  messagesPerSecond: number,
});

export const throughputResponse = object(
  {
    intervalMs: integer,
    sampling: boolean,
    samples: { type: "integer", description: "Readings kept (a rate needs two)" },
    total: array(ratePoint, "Messages per second over all user topics"),
    topics: array(object({ topic: string, internal: boolean, messagesPerSecond: number, points: array(ratePoint) })),
  },
  "Produce throughput sampled every intervalMs while the console is used",
);
