/**
 * The life of a server stream that ends at once at shutdown (Subscribe, Queue): counted in
 * `activeStreams`, registered with the shutdown closers, and closed exactly once whichever of
 * end / cancel / close / error comes first. (Produce differs: it ends after its last ack.)
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";
import type { BrokerContext } from "./context.js";

export interface StreamLifecycle {
  readonly closed: boolean;
  /** Releases the stream's resources (idempotent); does not end the call. */
  close(): void;
  /** close() and end the call. */
  finish(): void;
}

export function trackStream<Req, Res>(
  context: BrokerContext,
  call: ServerDuplexStream<Req, Res>,
  kind: string,
  release: () => void,
): StreamLifecycle {
  let closed = false;
  context.metrics.activeStreams.inc({ kind });
  const lifecycle: StreamLifecycle = {
    get closed() {
      return closed;
    },
    close() {
      if (closed) return;
      closed = true;
      context.streamClosers.delete(lifecycle.finish);
      release();
      context.metrics.activeStreams.dec({ kind });
    },
    finish() {
      lifecycle.close();
      call.end();
    },
  };
  context.streamClosers.add(lifecycle.finish);
  call.on("end", lifecycle.finish);
  call.on("cancelled", lifecycle.close);
  call.on("close", lifecycle.close);
  call.on("error", lifecycle.close);
  return lifecycle;
}
