/**
 * The TCP side of every Sluice gRPC port. Sluice owns the listening socket and hands each
 * accepted connection to grpc-js through its connection injector, so it can decide what grpc-js
 * leaves to the transport:
 *
 * - **TLS** is terminated here (`node:tls`, ALPN h2). Client certificates are requested when a
 *   CA is configured but not enforced by the handshake: a presented certificate that does not
 *   verify (expired, unknown issuer) is recorded with its reason, and every call on that
 *   connection is refused with AUTHENTICATION_FAILED naming it (server-security.ts). A failed
 *   handshake closes the connection and is counted.
 * - **Connections per client** (per remote IP, like Kafka's max.connections.per.ip) and in
 *   total. A connection over a limit is not dropped silently: it is served just long enough to
 *   answer its calls with TOO_MANY_REQUESTS saying which limit, then closed.
 *
 * Calls find their connection's facts by `call.getPeer()` ("address:port"), which is the key
 * of `connections`.
 */
import net from "node:net";
import tls from "node:tls";
import type { Server } from "@grpc/grpc-js";
import { ServerCredentials } from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import { connectionFactsOf, PLAIN_CONNECTION, type ConnectionFacts } from "../security/connection-facts.js";
import type { ServerTls } from "../security/tls-files.js";

export type { ConnectionFacts };

export const DEFAULT_MAX_CONNECTIONS = 10_000;
export const DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 1_000;
/** How long a connection over a limit stays open to answer its calls with the reason. */
const REFUSED_CONNECTION_GRACE_MS = 2_000;
/** A TLS handshake must finish within this, or the socket is dropped (a stalled or idle peer). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface GrpcListenerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  tls?: ServerTls | undefined;
  maxConnections?: number;
  maxConnectionsPerClient?: number;
  logger: Logger;
  /** A TLS handshake failed (reason: OpenSSL's code or message, e.g. a plain-text client). */
  onHandshakeFailure?: (reason: string) => void;
  /** A connection went over a limit. */
  onConnectionRefused?: (limit: "per_client" | "total") => void;
}

export class GrpcListener {
  private readonly connections = new Map<string, ConnectionFacts>();
  /** Connections over a limit, until their TLS handshake ends (then their facts say so). */
  private readonly refused = new Map<string, string>();
  private readonly perClient = new Map<string, number>();
  private open = 0;

  private constructor(
    private readonly netServer: net.Server,
    private readonly options: GrpcListenerOptions,
    readonly port: number,
  ) {}

  /** Binds `host:port` and feeds every connection to `server`. */
  static async listen(server: Server, options: GrpcListenerOptions): Promise<GrpcListener> {
    const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
    let listener: GrpcListener | undefined;
    // A tls.Server (not a TLSSocket wrapped by hand): http2 must take the socket over right as
    // the handshake ends, before any application byte is read, and only the server's own
    // 'secureConnection' event guarantees that.
    const netServer: net.Server = options.tls
      ? tls.createServer({
          cert: options.tls.cert,
          key: options.tls.key,
          ...(options.tls.ca ? { ca: options.tls.ca } : {}),
          requestCert: options.tls.ca !== undefined,
          // Verification is judged per call (with a clear error), not by killing the handshake.
          rejectUnauthorized: false,
          ALPNProtocols: ["h2"],
          minVersion: "TLSv1.2",
          handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        })
      : net.createServer({ noDelay: true });
    netServer.on("connection", (socket: net.Socket) => listener?.admit(socket));
    if (options.tls) {
      const tlsServer = netServer as tls.Server;
      tlsServer.on("secureConnection", (socket: tls.TLSSocket) => listener?.secured(socket, injector));
      tlsServer.on("tlsClientError", (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
        options.onHandshakeFailure?.(handshakeReason(err));
        options.logger.debug({ peer: `${socket.remoteAddress}:${socket.remotePort}`, reason: err.message }, "TLS handshake failed");
      });
    } else {
      netServer.on("connection", (socket: net.Socket) => {
        const peer = peerOf(socket);
        const refusedBecause = listener?.refused.get(peer);
        if (refusedBecause !== undefined) listener?.connections.set(peer, { ...PLAIN_CONNECTION, refusedBecause });
        injector.injectConnection(socket);
      });
    }
    await new Promise<void>((resolve, reject) => {
      netServer.once("error", reject);
      netServer.listen(options.port, options.host, () => {
        netServer.off("error", reject);
        resolve();
      });
    });
    const address = netServer.address() as net.AddressInfo;
    listener = new GrpcListener(netServer, options, address.port);
    netServer.on("error", (err) => options.logger.error({ err }, "gRPC listener error"));
    return listener;
  }

  /** Facts about the connection a call came in on (`call.getPeer()`). */
  connection(peer: string): ConnectionFacts {
    return this.connections.get(peer) ?? PLAIN_CONNECTION;
  }

  /**
   * Stops accepting at once. Open connections are the gRPC server's to end (its shutdown
   * drains or destroys their sessions), so this does not wait for them.
   */
  close(): void {
    this.closed = true;
    this.netServer.close();
  }

  private closed = false;

  /** Every new TCP connection, before TLS: the limits. */
  private admit(socket: net.Socket): void {
    const client = socket.remoteAddress ?? "unknown";
    const peer = peerOf(socket);
    socket.once("close", () => {
      this.connections.delete(peer);
      this.refused.delete(peer);
    });
    socket.on("error", () => undefined); // a reset peer; the close handler does the bookkeeping
    const refusedBecause = this.overLimit(client);
    if (refusedBecause !== undefined) {
      this.refused.set(peer, refusedBecause);
      // Closed after a fixed grace whatever the client does, so refused sockets cannot pile
      // up, and the client's next connection is judged afresh (capacity may have freed).
      setTimeout(() => socket.destroy(), REFUSED_CONNECTION_GRACE_MS).unref();
      return;
    }
    this.open += 1;
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    socket.once("close", () => {
      this.open -= 1;
      const left = (this.perClient.get(client) ?? 1) - 1;
      if (left <= 0) this.perClient.delete(client);
      else this.perClient.set(client, left);
    });
  }

  /** A TLS connection whose handshake succeeded: what its certificate says, then gRPC. */
  private secured(socket: tls.TLSSocket, injector: { injectConnection(connection: tls.TLSSocket): void }): void {
    // A handshake that finished after close() must not reach a server that is shutting down.
    if (this.closed) {
      socket.destroy();
      return;
    }
    const peer = peerOf(socket);
    this.connections.set(peer, { ...connectionFactsOf(socket), refusedBecause: this.refused.get(peer) });
    socket.on("error", () => undefined);
    injector.injectConnection(socket);
  }

  private overLimit(client: string): string | undefined {
    const maxTotal = this.options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    const maxPerClient = this.options.maxConnectionsPerClient ?? DEFAULT_MAX_CONNECTIONS_PER_CLIENT;
    if (this.open >= maxTotal) {
      this.options.onConnectionRefused?.("total");
      return `the server has ${this.open} connections open, its limit (--max-connections ${maxTotal}); retry later or raise the limit`;
    }
    const mine = this.perClient.get(client) ?? 0;
    if (mine >= maxPerClient) {
      this.options.onConnectionRefused?.("per_client");
      return `${client} has ${mine} connections open, the limit per client (--max-connections-per-client ${maxPerClient}); close some or raise the limit`;
    }
    return undefined;
  }
}

function peerOf(socket: net.Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

/** A short, low-cardinality label for a failed handshake. */
function handshakeReason(err: NodeJS.ErrnoException): string {
  const code = err.code ?? "";
  if (/WRONG_VERSION_NUMBER|HTTP_REQUEST|UNKNOWN_PROTOCOL|PACKET_LENGTH_TOO_LONG/.test(code) || /wrong version number|http request/i.test(err.message)) {
    return "not_tls";
  }
  if (/NO_APPLICATION_PROTOCOL|ALPN/i.test(code + err.message)) return "no_alpn";
  if (/ECONNRESET|EPIPE/.test(code)) return "reset";
  if (/CERTIFICATE|CERT/i.test(code + err.message)) return "certificate";
  return "other";
}
