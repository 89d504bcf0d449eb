/**
 * A promise around a generated unary gRPC method, with a deadline, turning any failure into a
 * SluiceError that names the peer. Shared by the SDK, the broker (its name server link, the
 * remote end offsets of lag) and the name server (its calls to brokers).
 */
import { Metadata, type CallOptions, type ClientUnaryCall, type ServiceError } from "@grpc/grpc-js";
import { fromServiceError } from "./errors.js";

/** The last overload of every generated unary method. */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/**
 * Calls `method` of `client` with a deadline (ms since the epoch). `target` names the peer in
 * error messages ("broker 10.0.0.7:10911").
 */
export function callUnary<Req, Res>(method: UnaryMethod<Req, Res>, client: object, request: Req, deadlineMs: number, target: string): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method.call(client, request, new Metadata(), { deadline: deadlineMs }, (error, response) => {
      if (error) reject(fromServiceError(error, target));
      else resolve(response);
    });
  });
}
