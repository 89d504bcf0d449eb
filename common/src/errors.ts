/**
 * The one error hierarchy of Sluice, shared by broker, name server, SDK and CLI.
 *
 * Every error has a stable `code` (clients switch on it, never on the message), a
 * `retriable` flag that drives the SDK's retry policy, and a message that says what to do.
 * The table below is the single place that maps a code to its gRPC status and HTTP status.
 */
import { status as GrpcStatus } from "@grpc/grpc-js";

export interface ErrorCodeInfo {
  readonly grpc: GrpcStatus;
  readonly http: number;
  readonly retriable: boolean;
}

/** Stable error codes. Add, never rename. */
export const ERROR_CODES = {
  INVALID_ARGUMENT: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, retriable: false },
  INVALID_TOPIC_NAME: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, retriable: false },
  INVALID_CONFIG: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, retriable: false },
  CORRUPT_BATCH: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 400, retriable: false },
  MESSAGE_TOO_LARGE: { grpc: GrpcStatus.INVALID_ARGUMENT, http: 413, retriable: false },
  UNKNOWN_TOPIC: { grpc: GrpcStatus.NOT_FOUND, http: 404, retriable: true },
  UNKNOWN_PARTITION: { grpc: GrpcStatus.NOT_FOUND, http: 404, retriable: false },
  TOPIC_ALREADY_EXISTS: { grpc: GrpcStatus.ALREADY_EXISTS, http: 409, retriable: false },
  // Kafka's INVALID_PARTITIONS: a partition count the topic's current state rules out (a
  // topic only grows). A precondition, not bad usage: the same request was fine earlier.
  INVALID_PARTITIONS: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, retriable: false },
  OFFSET_OUT_OF_RANGE: { grpc: GrpcStatus.OUT_OF_RANGE, http: 416, retriable: false },
  NOT_LEADER: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 421, retriable: true },
  UNSUPPORTED_VERSION: { grpc: GrpcStatus.UNIMPLEMENTED, http: 400, retriable: false },
  NO_BROKERS_AVAILABLE: { grpc: GrpcStatus.UNAVAILABLE, http: 503, retriable: true },
  BROKER_UNAVAILABLE: { grpc: GrpcStatus.UNAVAILABLE, http: 503, retriable: true },
  NOT_READY: { grpc: GrpcStatus.UNAVAILABLE, http: 503, retriable: true },
  SHUTTING_DOWN: { grpc: GrpcStatus.UNAVAILABLE, http: 503, retriable: true },
  REQUEST_TIMED_OUT: { grpc: GrpcStatus.DEADLINE_EXCEEDED, http: 504, retriable: true },
  STORAGE_FULL: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 507, retriable: true },
  STORAGE_ERROR: { grpc: GrpcStatus.INTERNAL, http: 500, retriable: true },
  THROTTLED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 429, retriable: true },
  CLOSED: { grpc: GrpcStatus.CANCELLED, http: 499, retriable: false },
  NOT_COORDINATOR: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 421, retriable: true },
  FENCED_MEMBER: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, retriable: false },
  UNKNOWN_GROUP: { grpc: GrpcStatus.NOT_FOUND, http: 404, retriable: false },
  GROUP_NOT_EMPTY: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, retriable: false },
  UNKNOWN_LEASE: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, retriable: false },
  UNKNOWN_FLOW_RULE: { grpc: GrpcStatus.NOT_FOUND, http: 404, retriable: false },
  NOT_ENOUGH_REPLICAS: { grpc: GrpcStatus.UNAVAILABLE, http: 503, retriable: true },
  STALE_EPOCH: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, retriable: true },
  OUT_OF_ORDER_SEQUENCE: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, retriable: false },
  PRODUCER_FENCED: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 409, retriable: false },
  // Security (#8). Wrong or missing credentials, a rejected certificate: the caller must fix
  // its identity, so never retriable. Kafka's SASL_AUTHENTICATION_FAILED / *_AUTHORIZATION_FAILED.
  AUTHENTICATION_FAILED: { grpc: GrpcStatus.UNAUTHENTICATED, http: 401, retriable: false },
  NOT_AUTHORIZED: { grpc: GrpcStatus.PERMISSION_DENIED, http: 403, retriable: false },
  UNKNOWN_USER: { grpc: GrpcStatus.NOT_FOUND, http: 404, retriable: false },
  USER_ALREADY_EXISTS: { grpc: GrpcStatus.ALREADY_EXISTS, http: 409, retriable: false },
  UNKNOWN_ACL: { grpc: GrpcStatus.NOT_FOUND, http: 404, retriable: false },
  // A configured cap the request would pass (topics, partitions, request size): asking again
  // gives the same answer until an operator raises the limit or something is deleted.
  LIMIT_EXCEEDED: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 409, retriable: false },
  // Too many connections or requests in flight from one client right now: retry after others end.
  TOO_MANY_REQUESTS: { grpc: GrpcStatus.RESOURCE_EXHAUSTED, http: 429, retriable: true },
  // A data directory written by a newer Sluice (its on-disk format is unknown to this build).
  UNSUPPORTED_DATA_FORMAT: { grpc: GrpcStatus.FAILED_PRECONDITION, http: 500, retriable: false },
  INTERNAL: { grpc: GrpcStatus.INTERNAL, http: 500, retriable: false },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

export interface SluiceErrorOptions {
  /** Overrides the code's default (e.g. a storage error known to be permanent). */
  retriable?: boolean;
  cause?: unknown;
  /** Milliseconds after which a retry makes sense (throttling, leadership moving). */
  retryAfterMs?: number;
}

// A brand that survives two copies of the package in one process (undici's trick): an
// `instanceof SluiceError` from one copy accepts errors made by the other.
const BRAND = Symbol.for("sluice.error");

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: SluiceErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = options.retriable ?? ERROR_CODES[code].retriable;
    this.retryAfterMs = options.retryAfterMs;
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this === SluiceError) return typeof value === "object" && value !== null && BRAND in value;
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  get grpcStatus(): GrpcStatus {
    return ERROR_CODES[this.code].grpc;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  toJSON(): { code: ErrorCode; message: string; retriable: boolean; retryAfterMs?: number } {
    const out: { code: ErrorCode; message: string; retriable: boolean; retryAfterMs?: number } = {
      code: this.code,
      message: this.message,
      retriable: this.retriable,
    };
    if (this.retryAfterMs !== undefined) out.retryAfterMs = this.retryAfterMs;
    return out;
  }
}

/** Bad input from a caller: a flag, an option, a request field. */
export class InvalidArgumentError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("INVALID_ARGUMENT", message, options);
  }
}

export class InvalidTopicNameError extends SluiceError {
  constructor(message: string) {
    super("INVALID_TOPIC_NAME", message);
  }
}

export class InvalidConfigError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("INVALID_CONFIG", message, options);
  }
}

/** A record batch that fails its CRC or whose layout is inconsistent. */
export class CorruptBatchError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("CORRUPT_BATCH", message, options);
  }
}

export class MessageTooLargeError extends SluiceError {
  constructor(message: string) {
    super("MESSAGE_TOO_LARGE", message);
  }
}

export class UnknownTopicError extends SluiceError {
  constructor(topic: string, where = "") {
    super("UNKNOWN_TOPIC", `topic "${topic}" does not exist${where}; create it with \`sluice topic create ${topic}\``);
  }
}

export class UnknownPartitionError extends SluiceError {
  constructor(topic: string, partition: number, partitionCount?: number) {
    const count = partitionCount === undefined ? "" : ` has ${partitionCount} partition${partitionCount === 1 ? "" : "s"};`;
    super("UNKNOWN_PARTITION", `topic "${topic}"${count} partition ${partition} does not exist`);
  }
}

export class TopicAlreadyExistsError extends SluiceError {
  constructor(topic: string) {
    super("TOPIC_ALREADY_EXISTS", `topic "${topic}" already exists`);
  }
}

/** A partition count the topic cannot take: a topic's partitions can be added, never removed. */
export class InvalidPartitionsError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("INVALID_PARTITIONS", message, options);
  }
}

export class OffsetOutOfRangeError extends SluiceError {
  constructor(topic: string, partition: number, offset: number, start: number, end: number) {
    super(
      "OFFSET_OUT_OF_RANGE",
      `offset ${offset} is out of range for ${topic}/${partition}: valid offsets are ${start}..${end} (end is the next offset to be written)`,
    );
  }
}

export class NotLeaderError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("NOT_LEADER", message, options);
  }
}

export class UnsupportedVersionError extends SluiceError {
  constructor(message: string) {
    super("UNSUPPORTED_VERSION", message);
  }
}

export class NoBrokersAvailableError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("NO_BROKERS_AVAILABLE", message, options);
  }
}

export class BrokerUnavailableError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("BROKER_UNAVAILABLE", message, options);
  }
}

export class NotReadyError extends SluiceError {
  constructor(message: string) {
    super("NOT_READY", message);
  }
}

export class ShuttingDownError extends SluiceError {
  constructor(message = "the server is shutting down; retry against another broker or after restart") {
    super("SHUTTING_DOWN", message);
  }
}

export class RequestTimedOutError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("REQUEST_TIMED_OUT", message, options);
  }
}

/** The disk is full (ENOSPC): produce is refused until space is freed. */
export class StorageFullError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("STORAGE_FULL", message, options);
  }
}

/**
 * A flow-control limit refused a request: its wait would pass the rule's maximum queueing
 * time. The message names the scope, the limiter and why; `retryAfterMs` says when the
 * request would be admitted. Nothing was appended.
 */
export class ThrottledError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("THROTTLED", message, options);
  }
}

/** `flow delete` named a (scope, limiter) pair the broker has no rule for. */
export class UnknownFlowRuleError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("UNKNOWN_FLOW_RULE", message, options);
  }
}

export class StorageError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("STORAGE_ERROR", message, options);
  }
}

export class ClosedError extends SluiceError {
  constructor(what: string) {
    super("CLOSED", `${what} is closed`);
  }
}

export class InternalError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("INTERNAL", message, options);
  }
}

/** This broker does not coordinate the group (any more): find the coordinator again. */
export class NotCoordinatorError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("NOT_COORDINATOR", message, options);
  }
}

/**
 * The member is not (or no longer) part of the group at this epoch — it missed its session
 * timeout or a newer incarnation replaced it. Its commits are refused; it must rejoin.
 */
export class FencedMemberError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("FENCED_MEMBER", message, options);
  }
}

export class UnknownGroupError extends SluiceError {
  constructor(group: string) {
    super("UNKNOWN_GROUP", `consumer group "${group}" does not exist (it has never joined or committed)`);
  }
}

export class GroupNotEmptyError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("GROUP_NOT_EMPTY", message, options);
  }
}

/** An ack, nack or extend for a lease that is not held: unknown, expired or redelivered. */
export class UnknownLeaseError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("UNKNOWN_LEASE", message, options);
  }
}

/**
 * An `acks: "all"` produce the write gate refused, or whose replication requirement could
 * not be met after the append (the message names the slaves and their lag). Retriable: an
 * idempotent producer's retry is deduplicated if the batch was in fact appended.
 */
export class NotEnoughReplicasError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("NOT_ENOUGH_REPLICAS", message, options);
  }
}

/** A request carrying an older epoch than the broker group's current one (a deposed master, a stale route). */
export class StaleEpochError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("STALE_EPOCH", message, options);
  }
}

/** An idempotent producer's batch whose sequence number leaves a gap (a batch before it was lost). */
export class OutOfOrderSequenceError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("OUT_OF_ORDER_SEQUENCE", message, options);
  }
}

/** A batch from an older epoch of a producer id than the partition has seen (a zombie producer). */
export class ProducerFencedError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("PRODUCER_FENCED", message, options);
  }
}

/** Missing, wrong or unverifiable credentials (password, client certificate). */
export class AuthenticationFailedError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("AUTHENTICATION_FAILED", message, options);
  }
}

/** An authenticated principal whose ACLs do not allow the operation on the resource. */
export class NotAuthorizedError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("NOT_AUTHORIZED", message, options);
  }
}

export class UnknownUserError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("UNKNOWN_USER", message, options);
  }
}

export class UserAlreadyExistsError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("USER_ALREADY_EXISTS", message, options);
  }
}

export class UnknownAclError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("UNKNOWN_ACL", message, options);
  }
}

/** A configured cap (topic or partition count, request size) the request would pass. */
export class LimitExceededError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("LIMIT_EXCEEDED", message, options);
  }
}

/** Too many connections or in-flight requests from one client at this moment. */
export class TooManyRequestsError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("TOO_MANY_REQUESTS", message, options);
  }
}

/** A data directory whose on-disk format this build does not know (written by a newer Sluice). */
export class UnsupportedDataFormatError extends SluiceError {
  constructor(message: string, options?: SluiceErrorOptions) {
    super("UNSUPPORTED_DATA_FORMAT", message, options);
  }
}

const CLASS_BY_CODE: Partial<Record<ErrorCode, new (message: string, options?: SluiceErrorOptions) => SluiceError>> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  INVALID_CONFIG: InvalidConfigError,
  INVALID_PARTITIONS: InvalidPartitionsError,
  CORRUPT_BATCH: CorruptBatchError,
  NOT_LEADER: NotLeaderError,
  NO_BROKERS_AVAILABLE: NoBrokersAvailableError,
  BROKER_UNAVAILABLE: BrokerUnavailableError,
  REQUEST_TIMED_OUT: RequestTimedOutError,
  STORAGE_FULL: StorageFullError,
  STORAGE_ERROR: StorageError,
  THROTTLED: ThrottledError,
  UNKNOWN_FLOW_RULE: UnknownFlowRuleError,
  INTERNAL: InternalError,
  NOT_COORDINATOR: NotCoordinatorError,
  FENCED_MEMBER: FencedMemberError,
  GROUP_NOT_EMPTY: GroupNotEmptyError,
  UNKNOWN_LEASE: UnknownLeaseError,
  NOT_ENOUGH_REPLICAS: NotEnoughReplicasError,
  STALE_EPOCH: StaleEpochError,
  OUT_OF_ORDER_SEQUENCE: OutOfOrderSequenceError,
  PRODUCER_FENCED: ProducerFencedError,
  AUTHENTICATION_FAILED: AuthenticationFailedError,
  NOT_AUTHORIZED: NotAuthorizedError,
  UNKNOWN_USER: UnknownUserError,
  USER_ALREADY_EXISTS: UserAlreadyExistsError,
  UNKNOWN_ACL: UnknownAclError,
  LIMIT_EXCEEDED: LimitExceededError,
  TOO_MANY_REQUESTS: TooManyRequestsError,
  UNSUPPORTED_DATA_FORMAT: UnsupportedDataFormatError,
};

/**
 * Rebuilds a typed error from its wire form (a streamed `Error` message or gRPC trailers).
 * Codes this build does not know become a plain SluiceError with INTERNAL semantics.
 */
export function errorFromWire(code: string, message: string, retriable?: boolean, retryAfterMs?: number): SluiceError {
  const known: ErrorCode = isErrorCode(code) ? code : "INTERNAL";
  const options: SluiceErrorOptions = {};
  if (retriable !== undefined) options.retriable = retriable;
  if (retryAfterMs) options.retryAfterMs = retryAfterMs;
  const Ctor = CLASS_BY_CODE[known];
  if (Ctor) return new Ctor(message, options);
  const err = new SluiceError(known, message, options);
  return err;
}

/** Wraps anything thrown into a SluiceError, keeping SluiceErrors as they are. */
export function toSluiceError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err as SluiceError;
  const e = err as NodeJS.ErrnoException;
  if (e && e.code === "ENOSPC") {
    return new StorageFullError("the broker's disk is full; free space or add retention, then retry", { cause: err });
  }
  const message = e && typeof e.message === "string" ? e.message : String(err);
  return new InternalError(message, { cause: err });
}
