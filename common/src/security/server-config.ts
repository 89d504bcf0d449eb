/**
 * The security settings a broker and a name server share (`--tls-cert`, `--tls-key`,
 * `--tls-ca`, `--auth`, `--admin-password-file`, `--open-metrics` and the connection limits),
 * validated once at start, and what each server builds from them: its ServerSecurity, its
 * gRPC listener and the channels it uses to call other servers.
 */
import { Server, type ServerOptions } from "@grpc/grpc-js";
import type { Registry } from "prom-client";
import { InvalidConfigError } from "../errors.js";
import { SecureChannels } from "../grpc/channel-security.js";
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT, GrpcListener } from "../grpc/listener.js";
import type { HttpServerOptions } from "../http/server.js";
import type { Logger } from "../logger.js";
import { MAX_GRPC_MESSAGE_BYTES } from "../protocol.js";
import { readPasswordFile } from "./password.js";
import { SecurityMetrics } from "./security-metrics.js";
import { DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION, ServerSecurity } from "./server-security.js";
import { loadServerTls, type ClientTls, type ServerTls } from "./tls-files.js";
import { ADMIN_USER } from "./types.js";

/** As flags and config files give them. */
export interface ServerSecurityOptions {
  /** PEM certificate chain of this server (`--tls-cert`). */
  tlsCertFile?: string;
  /** PEM private key (`--tls-key`). */
  tlsKeyFile?: string;
  /** PEM CA (`--tls-ca`): verifies the other servers, and clients' certificates (mTLS). */
  tlsCaFile?: string;
  /** `--auth`: every caller authenticates, ACLs apply (default deny). @defaultValue false */
  auth?: boolean;
  /** `--admin-password-file`: the built-in superuser `admin`'s password, first line. Required with auth. */
  adminPasswordFile?: string;
  /** `--open-metrics`: /metrics, /healthz and /readyz answer without credentials. @defaultValue false */
  openMetrics?: boolean;
  /** @defaultValue 10000 */
  maxConnections?: number;
  /** Per client IP. @defaultValue 1000 */
  maxConnectionsPerClient?: number;
  /** gRPC calls (a stream is one) in flight on one connection. @defaultValue 1000 */
  maxInFlightPerConnection?: number;
}

export interface ResolvedServerSecurity {
  tls: ServerTls | undefined;
  auth: boolean;
  adminPassword: string | undefined;
  openMetrics: boolean;
  maxConnections: number;
  maxConnectionsPerClient: number;
  maxInFlightPerConnection: number;
}

function limit(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1 || v > 1_000_000) throw new InvalidConfigError(`${name} must be an integer from 1 to 1000000, got ${String(value)}`);
  return v;
}

export function parseServerSecurity(options: ServerSecurityOptions = {}): ResolvedServerSecurity {
  const auth = options.auth ?? false;
  if (auth && !options.adminPasswordFile) {
    throw new InvalidConfigError("--auth needs --admin-password-file F: the built-in superuser admin's password, which servers also use to authenticate to each other");
  }
  return {
    tls: loadServerTls({ certFile: options.tlsCertFile, keyFile: options.tlsKeyFile, caFile: options.tlsCaFile }),
    auth,
    adminPassword: options.adminPasswordFile ? readPasswordFile(options.adminPasswordFile) : undefined,
    openMetrics: options.openMetrics ?? false,
    maxConnections: limit("maxConnections", options.maxConnections, DEFAULT_MAX_CONNECTIONS),
    maxConnectionsPerClient: limit("maxConnectionsPerClient", options.maxConnectionsPerClient, DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
    maxInFlightPerConnection: limit("maxInFlightPerConnection", options.maxInFlightPerConnection, DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION),
  };
}

/** What a server runs for security: the guard, its gRPC server and listener, and peer channels. */
export interface ServerSecurityKit {
  readonly security: ServerSecurity;
  readonly metrics: SecurityMetrics;
  /** Channels to the other servers of the cluster, as `admin` over TLS when configured. */
  readonly peers: SecureChannels;
  readonly settings: ResolvedServerSecurity;
  /** A gRPC server whose every call passes the authentication interceptor. */
  createGrpcServer(options?: ServerOptions): Server;
  /** Binds the gRPC port through the listener (TLS, limits); resolves the bound port. */
  listen(server: Server, host: string, port: number): Promise<GrpcListener>;
  /** The HTTP server's TLS and authentication: the same as the gRPC port's. */
  httpOptions(): Pick<HttpServerOptions, "tls" | "auth">;
}

/**
 * Channels for a server's calls to the other servers: TLS verified with the same CA it verifies
 * clients with (the system's CAs without `--tls-ca`), and `admin`'s password.
 */
export function peerChannelsFor(settings: ResolvedServerSecurity): SecureChannels {
  // No client certificate: servers prove who they are with admin's password, so a server
  // certificate without the clientAuth usage (the usual kind) works between servers too.
  const tls: ClientTls | undefined = settings.tls ? (settings.tls.ca ? { ca: settings.tls.ca } : {}) : undefined;
  const credentials = settings.adminPassword ? { username: ADMIN_USER, password: settings.adminPassword } : undefined;
  return new SecureChannels({ tls, credentials });
}

export async function createServerSecurityKit(settings: ResolvedServerSecurity, registry: Registry, logger: Logger): Promise<ServerSecurityKit> {
  const metrics = new SecurityMetrics(registry);
  const security = await ServerSecurity.create({
    auth: settings.auth,
    adminPassword: settings.adminPassword,
    metrics,
    logger,
    maxInFlightPerConnection: settings.maxInFlightPerConnection,
  });
  return {
    security,
    metrics,
    peers: peerChannelsFor(settings),
    settings,
    createGrpcServer: (options = {}) =>
      new Server({
        "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
        "grpc.max_send_message_length": MAX_GRPC_MESSAGE_BYTES,
        ...options,
        interceptors: [security.interceptor()],
      }),
    httpOptions: () => ({
      tls: settings.tls,
      auth: {
        guard: security,
        authenticate: (headers, socket) => security.authenticateHttp(headers, socket),
        openMetrics: settings.openMetrics,
      },
    }),
    listen: async (server, host, port) => {
      const listener = await GrpcListener.listen(server, {
        host,
        port,
        tls: settings.tls,
        maxConnections: settings.maxConnections,
        maxConnectionsPerClient: settings.maxConnectionsPerClient,
        logger,
        onHandshakeFailure: (reason) => metrics.handshakeFailed(reason),
        onConnectionRefused: (which) => metrics.connectionRefused(which),
      });
      security.useConnectionFacts((peer) => listener.connection(peer));
      return listener;
    },
  };
}
