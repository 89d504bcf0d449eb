/**
 * Wider HTTP/2 flow-control windows for the broker's gRPC server.
 *
 * A produce stream carries batches of hundreds of KiB, but HTTP/2's default receive window
 * is 64 KiB: the producer stops every 64 KiB until the broker sends WINDOW_UPDATE, and 1 KiB
 * produce ran at ~190 k msgs/s with both processes mostly idle (~420 k with the window
 * widened). grpc-js 1.14's server has no option for it (the client does:
 * `grpc-node.flow_control_window`), so we set the HTTP/2 settings it passes to
 * `http2.createServer` and widen each session's connection window as it opens.
 *
 * This touches two private fields of grpc-js's Server, which is why the version is pinned
 * exactly; `test/unit/broker-flow-window.test.ts` fails if they move. When they are
 * missing the broker still works, with the default window, and says so.
 */
import type { Server } from "@grpc/grpc-js";
import type { Http2Server, Http2Session } from "node:http2";
import type { Logger } from "../../../common/src/logger.js";

export const BROKER_HTTP2_WINDOW_BYTES = 16 * 1024 * 1024;

interface ServerInternals {
  commonServerOptions?: { settings?: Record<string, unknown> };
  http2Servers?: Map<Http2Server, unknown>;
}

/** Call after `new Server()` and before `bindAsync`. Returns false when the internals are missing. */
export function widenInitialWindow(server: Server, logger: Logger, windowBytes = BROKER_HTTP2_WINDOW_BYTES): boolean {
  const internals = server as unknown as ServerInternals;
  if (!internals.commonServerOptions) {
    logger.warn("grpc-js internals changed: HTTP/2 window stays at 64 KiB, produce throughput will be lower");
    return false;
  }
  internals.commonServerOptions.settings = { ...(internals.commonServerOptions.settings ?? {}), initialWindowSize: windowBytes };
  return true;
}

/** Call after `bindAsync` succeeded: widens the connection-level window of every new session. */
export function widenSessionWindows(server: Server, logger: Logger, windowBytes = BROKER_HTTP2_WINDOW_BYTES): boolean {
  const internals = server as unknown as ServerInternals;
  if (!(internals.http2Servers instanceof Map) || internals.http2Servers.size === 0) {
    logger.warn("grpc-js internals changed: HTTP/2 connection window stays at 64 KiB");
    return false;
  }
  for (const http2Server of internals.http2Servers.keys()) {
    http2Server.on("session", (session: Http2Session) => {
      const widen = (): void => {
        try {
          session.setLocalWindowSize(windowBytes);
        } catch (err) {
          logger.debug({ err }, "could not widen an HTTP/2 session window");
        }
      };
      // The window can be set once the session's local settings are acknowledged.
      session.once("localSettings", widen);
    });
  }
  return true;
}
