/**
 * What every gRPC channel of the SDK shares: channel options, security (TLS, the password
 * user's Authorization header), the request header, and a promise wrapper for unary calls
 * that turns any failure into a SluiceError.
 */
import type { ChannelCredentials, ClientOptions } from "@grpc/grpc-js";
import type { SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { MAX_GRPC_MESSAGE_BYTES, PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";

/**
 * HTTP/2 receive window of the client, per stream and per connection. The default 64 KiB
 * makes a broker pushing 1 MiB fetch responses wait for a WINDOW_UPDATE every 64 KiB,
 * i.e. for this process's event loop, many times per response: consumption then runs at
 * the pace of event-loop turns rather than of bytes. Credit (maxBytesInFlight) is what
 * bounds memory, so the window only has to stay out of its way.
 */
export const FLOW_CONTROL_WINDOW_BYTES = 16 * 1024 * 1024;

export const CHANNEL_OPTIONS: ClientOptions = {
  // A batch is capped far below this; both directions allow the same maximum as the servers.
  "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
  "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
  "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW_BYTES,
  // The SDK retries by its own policy (retry.ts), per batch and after route refreshes;
  // grpc-js's transparent retries would only add buffering and bookkeeping to every stream.
  "grpc.enable_retries": 0,
};

/**
 * The credentials and options a generated client's constructor takes, for one client's
 * security: `new BrokerClient(address, ...channelArgs(channels))`. Every channel of a
 * `Sluice` client is made through here with the same `SecureChannels`, so none is plain text
 * when TLS is configured and every call carries the credentials. `extra` adds options, e.g.
 * `channelOverride` to put a second service's stub on an existing channel.
 */
export function channelArgs(channels: SecureChannels, extra: ClientOptions = {}): [ChannelCredentials, ClientOptions] {
  return [channels.credentials, channels.options({ ...CHANNEL_OPTIONS, ...extra })];
}

/** The header every request carries; one frozen object, shared by all requests of a client. */
export function requestHeader(clientId: string): RequestHeader {
  return Object.freeze({ clientId, protocolVersion: PROTOCOL_VERSION });
}

export { callUnary, type UnaryMethod } from "../../../common/src/grpc/unary-call.js";
