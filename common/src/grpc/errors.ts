/**
 * SluiceError <-> gRPC status, in one place. Unary calls carry the error as a gRPC status
 * whose trailers hold the stable code; streamed responses carry it in an `Error` message.
 */
import { Metadata, status as GrpcStatus, type ServiceError, type sendUnaryData } from "@grpc/grpc-js";
import {
  ERROR_CODE_METADATA,
  ERROR_RETRIABLE_METADATA,
  ERROR_RETRY_AFTER_METADATA,
} from "../protocol.js";
import {
  BrokerUnavailableError,
  RequestTimedOutError,
  SluiceError,
  errorFromWire,
  toSluiceError,
} from "../errors.js";

/** The shape of `sluice.v1.Error` (common never imports generated code; proto depends on common). */
export interface WireError {
  code: string;
  message: string;
  retriable: boolean;
  retryAfterMs: number;
}

/** The status object grpc-js sends for a failed unary call. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = toSluiceError(err);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_METADATA, e.code);
  metadata.set(ERROR_RETRIABLE_METADATA, String(e.retriable));
  if (e.retryAfterMs !== undefined) metadata.set(ERROR_RETRY_AFTER_METADATA, String(Math.ceil(e.retryAfterMs)));
  return { code: e.grpcStatus, details: e.message, metadata };
}

/** The SluiceError a client should see for a failed call, whatever failed. */
export function fromServiceError(err: unknown, target = "server"): SluiceError {
  if (err instanceof SluiceError) return err;
  const se = err as Partial<ServiceError>;
  const code = se.metadata?.get(ERROR_CODE_METADATA)[0];
  if (typeof code === "string") {
    const retriable = se.metadata?.get(ERROR_RETRIABLE_METADATA)[0];
    const retryAfter = se.metadata?.get(ERROR_RETRY_AFTER_METADATA)[0];
    return errorFromWire(
      code,
      se.details ?? se.message ?? code,
      retriable === undefined ? undefined : retriable === "true",
      retryAfter === undefined ? undefined : Number(retryAfter),
    );
  }
  switch (se.code) {
    case GrpcStatus.UNAVAILABLE:
      return new BrokerUnavailableError(`cannot reach ${target}: ${se.details ?? se.message}`, { cause: err });
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new RequestTimedOutError(`request to ${target} timed out`, { cause: err });
    case GrpcStatus.CANCELLED:
      return new BrokerUnavailableError(`request to ${target} was cancelled: ${se.details ?? ""}`, { cause: err });
    default:
      return toSluiceError(err);
  }
}

export function toWireError(err: unknown): WireError {
  const e = toSluiceError(err);
  // uint32 on the wire: a fractional value would fail the whole stream's serialization.
  return { code: e.code, message: e.message, retriable: e.retriable, retryAfterMs: Math.max(0, Math.ceil(e.retryAfterMs ?? 0)) };
}

export function fromWireError(wire: WireError): SluiceError {
  return errorFromWire(wire.code, wire.message, wire.retriable, wire.retryAfterMs);
}

/**
 * Adapts an async function to a grpc-js unary handler: its result is the response, and
 * anything it throws is mapped to the right status with the Sluice code in the trailers. The
 * handler also gets the call, for its metadata (the authenticated principal).
 */
export function unary<Req, Res>(
  fn: (request: Req, call: { request: Req; metadata: Metadata }) => Promise<Res> | Res,
): (call: { request: Req; metadata: Metadata }, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (response) => callback(null, response),
        (err: unknown) => callback(toServiceError(err) as ServiceError),
      );
  };
}
