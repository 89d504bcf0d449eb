/**
 * The Sluice SDK.
 *
 * ```ts
 * import { Sluice } from "sluice";
 *
 * const sluice = new Sluice({ nameservers: ["127.0.0.1:9876"], clientId: "orders-api" });
 * await sluice.admin().createTopic("orders", { partitions: 3 });
 *
 * const producer = sluice.producer({ lingerMs: 5, acks: "all", idempotent: true });
 * const written = await producer.send("orders", [{ key: "o-1", value: Buffer.from("{...}"), headers: { t: "x" } }]);
 * // written: [{ topic: "orders", partition: 2, offset: 41 }], in input order
 *
 * const consumer = sluice.consumer({ fromBeginning: true });
 * for await (const m of consumer.subscribe("orders")) {
 *   console.log(m.partition, m.offset, m.key?.toString(), m.value?.toString());
 *   if (m.offset >= 41) break; // leaving the loop closes the consumer
 * }
 *
 * await sluice.close(); // flushes producers, closes consumers and connections
 * ```
 *
 * Every error the SDK throws is a `SluiceError` with a stable `code`, `retriable` and `cause`.
 */
export { Sluice } from "./sluice.js";
export type { SluiceOptions } from "./options.js";
export type { TlsOptions, CredentialsOptions } from "./security-options.js";
export { parseNameservers } from "./options.js";
export type { RetryOptions } from "./retry.js";

export { Producer } from "./producer/producer.js";
export type { ProducerOptions, AcksOption } from "./producer/options.js";
export type { ProducerMessage, RecordMetadata } from "./producer/types.js";
export type { Partitioner, PartitionerFunction, PartitionerName, PartitionerOption, SmoothWeightedRoundRobinOptions } from "./producer/partitioner.js";
export { SmoothWeightedRoundRobin } from "./producer/partitioner.js";
export { murmur2, keyHashPartition } from "../../common/src/murmur2.js";

export { Consumer } from "./consumer/consumer.js";
export type { ConsumerOptions, SubscribeOptions, ConsumerMessage, GroupAssignor } from "./consumer/options.js";
export type { GroupMembership } from "./consumer/group-member.js";

export { QueueConsumer } from "./queue/queue-consumer.js";
export { Job } from "./queue/job.js";
export type { QueueOptions, NackOptions } from "./queue/options.js";

export { Admin } from "./admin/admin.js";
export type { MessageLocator } from "./admin/admin.js";
export type {
  ClusterBroker,
  ClusterInfo,
  CreateTopicOptions,
  PartitionDetails,
  PartitionPlacement,
  TopicDescription,
  TopicInfo,
  TopicSettings,
} from "./admin/types.js";
export type {
  GroupListing,
  GroupDescription,
  GroupMemberDescription,
  GroupPartitionLag,
  QueuePartitionDescription,
  TopicPartition,
  ResetOffsetsTo,
  ResetOffsetsOptions,
  CommittedPosition,
} from "./admin/groups.js";
export type { DeadLetter, DeadLettersOptions, RedriveOptions, RedriveResult } from "./admin/dead-letters.js";
export type { OffsetQuery } from "./routing/list-offsets.js";
export type { FlowRuleInput, BrokerFlowRules, ListedFlowRule, FlowRuleState, FlowRuleChange } from "./admin/flow-rules.js";
export type { FlowRule, FlowLimiterKind } from "../../common/src/flow/rules.js";
export type { AclChange, AclInput, AclListing, CreateUserOptions, ListAclsOptions, UserChange, UserListing } from "./admin/security.js";
export type { AclEntry, Operation, Permission, ResourceType, PatternType } from "../../common/src/security/types.js";

export {
  SluiceError,
  InvalidArgumentError,
  InvalidTopicNameError,
  InvalidConfigError,
  CorruptBatchError,
  MessageTooLargeError,
  UnknownTopicError,
  UnknownPartitionError,
  TopicAlreadyExistsError,
  OffsetOutOfRangeError,
  NotLeaderError,
  UnsupportedVersionError,
  NoBrokersAvailableError,
  BrokerUnavailableError,
  NotReadyError,
  ShuttingDownError,
  RequestTimedOutError,
  StorageFullError,
  StorageError,
  ClosedError,
  InternalError,
  UnknownLeaseError,
  NotCoordinatorError,
  FencedMemberError,
  UnknownGroupError,
  GroupNotEmptyError,
  NotEnoughReplicasError,
  StaleEpochError,
  OutOfOrderSequenceError,
  ProducerFencedError,
  ThrottledError,
  UnknownFlowRuleError,
  AuthenticationFailedError,
  NotAuthorizedError,
  UnknownUserError,
  UserAlreadyExistsError,
  UnknownAclError,
  ERROR_CODES,
} from "../../common/src/errors.js";
export type { ErrorCode } from "../../common/src/errors.js";
