/**
 * How a gRPC channel proves who it talks to and who it is: TLS (the server's certificate checked
 * against a CA, and optionally a client certificate for mTLS) and a password user, sent as
 * `authorization: Basic …` metadata on every call. Shared by the SDK and by the servers' own
 * calls to each other (replication, heartbeats, the controller), which authenticate as `admin`.
 */
import { credentials as grpcCredentials, InterceptingCall, type ChannelCredentials, type ClientOptions, type Interceptor } from "@grpc/grpc-js";
import { basicAuthHeader } from "../security/basic-auth.js";
import type { ClientTls } from "../security/tls-files.js";

export interface PasswordCredentials {
  username: string;
  password: string;
}

export interface ChannelSecurity {
  /** TLS to the servers; plain text when absent. */
  tls?: ClientTls | undefined;
  /** A password user; a client certificate (tls.cert) or nobody when absent. */
  credentials?: PasswordCredentials | undefined;
}

export const AUTHORIZATION_METADATA = "authorization";

/**
 * A channel factory for one security setting: every channel it makes shares the credentials
 * object (grpc-js reuses a TLS session cache per credentials) and the metadata interceptor.
 */
export class SecureChannels {
  readonly credentials: ChannelCredentials;
  private readonly interceptors: Interceptor[];
  private readonly tlsOptions: ClientOptions;

  constructor(security: ChannelSecurity = {}) {
    const tls = security.tls;
    this.credentials = tls
      ? grpcCredentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null)
      : grpcCredentials.createInsecure();
    this.tlsOptions = tls?.serverName ? { "grpc.ssl_target_name_override": tls.serverName, "grpc.default_authority": tls.serverName } : {};
    this.interceptors = security.credentials ? [authorizationInterceptor(basicAuthHeader(security.credentials.username, security.credentials.password))] : [];
  }

  /** Channel options for a client constructor: `base` plus TLS name override and authentication. */
  options(base: ClientOptions = {}): ClientOptions {
    const options: ClientOptions = { ...base, ...this.tlsOptions };
    if (this.interceptors.length > 0) options.interceptors = [...this.interceptors, ...(base.interceptors ?? [])];
    return options;
  }
}

/** Adds the Authorization header to every call's metadata (once per call; a stream is one call). */
function authorizationInterceptor(header: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(AUTHORIZATION_METADATA, header);
        next(metadata, listener);
      },
    });
}

/** The plain-text, anonymous default (`sluice dev`, and servers without `--tls-*` or `--auth`). */
export const PLAIN_CHANNELS = new SecureChannels();
