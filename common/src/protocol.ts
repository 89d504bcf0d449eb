/** Protocol versions and metadata keys shared by every Sluice process and the SDK. */

/** The protocol version this build speaks. Bump when a client must know about a change. */
export const PROTOCOL_VERSION = 1;
/** The oldest protocol version this build still accepts. */
export const MIN_PROTOCOL_VERSION = 1;

/** gRPC trailer keys that carry a SluiceError across a unary call. */
export const ERROR_CODE_METADATA = "sluice-error-code";
export const ERROR_RETRIABLE_METADATA = "sluice-retriable";
export const ERROR_RETRY_AFTER_METADATA = "sluice-retry-after-ms";

/** Largest gRPC message either side accepts; a batch is capped well below it. */
export const MAX_GRPC_MESSAGE_BYTES = 64 * 1024 * 1024;

/** Topic names: what Kafka allows, so names travel between the two. */
export const TOPIC_NAME_PATTERN = /^[a-zA-Z0-9._-]{1,249}$/;
