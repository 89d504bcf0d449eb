/**
 * One HTTP request from the SDK to a server's HTTP port (the flow admin API), secured like the
 * client's gRPC channels: HTTPS checked against the client's `tls.ca` (and presenting
 * `tls.cert`/`tls.key` for mutual TLS) whenever `tls` is set, plain HTTP otherwise, and the
 * password user as `authorization: Basic …`. Node's global fetch cannot take a custom CA
 * without undici's Agent, so this goes through `node:https` / `node:http` directly.
 *
 * Failures come back as the SDK's errors: no complete answer within `timeoutMs` (the body
 * included) is REQUEST_TIMED_OUT, a connection or TLS failure is BROKER_UNAVAILABLE. Any
 * answer, whatever its status, resolves: the caller decodes error bodies.
 */
import { request as httpRequestRaw, type ClientRequest, type IncomingMessage, type RequestOptions } from "node:http";
import { request as httpsRequestRaw } from "node:https";
import { BrokerUnavailableError, InvalidConfigError, RequestTimedOutError, type SluiceError } from "../../../common/src/errors.js";
import { basicAuthHeader } from "../../../common/src/security/basic-auth.js";
import type { ParsedCredentials, ParsedTls } from "../security-options.js";

export interface HttpRequest {
  method: string;
  /** Absolute URL; see `httpUrl` for one built from an advertised `host:port`. */
  url: URL;
  /** Sent as JSON (`content-type: application/json`); no body when undefined. */
  body?: unknown;
  /** The whole exchange, connection, TLS handshake and answer body included, must fit in this. */
  timeoutMs: number;
  /** The client's TLS: HTTPS is required once it is set, and checked against its CA. */
  tls: ParsedTls | undefined;
  /** The client's password user, sent as a Basic credential. */
  credentials: ParsedCredentials | undefined;
}

export interface HttpAnswer {
  status: number;
  /** The body as UTF-8 text. */
  text: string;
}

/** Error codes Node gives a failed TLS handshake or certificate check (not a refused connection). */
const TLS_FAILURE_CODE = /^(EPROTO|ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_OSSL_)/;

/**
 * The URL of `path` on a server advertised as `host:port`: `https://` when the client uses TLS,
 * `http://` otherwise. An address that already carries a scheme keeps it.
 */
export function httpUrl(address: string, path: string, tls: ParsedTls | undefined): URL {
  const base = /^https?:\/\//i.test(address) ? address : `${tls === undefined ? "http" : "https"}://${address}`;
  return new URL(path, base);
}

/** Sends the request and resolves with the answer (any status), or rejects with a SluiceError. */
export function httpRequest(request: HttpRequest): Promise<HttpAnswer> {
  const { url, method, timeoutMs, tls, credentials } = request;
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return Promise.reject(new InvalidConfigError(`${url.origin} is not an http:// or https:// address`));
  }
  if (url.protocol === "http:" && tls !== undefined) {
    // The credentials would travel in clear text to a server the client meant to reach over TLS.
    return Promise.reject(new InvalidConfigError(`${url.host} is addressed as http:// but the client is configured for TLS; refusing plain text`));
  }
  const payload = request.body === undefined ? undefined : Buffer.from(JSON.stringify(request.body), "utf8");
  const headers: Record<string, string> = { accept: "application/json" };
  if (payload !== undefined) {
    headers["content-type"] = "application/json";
    headers["content-length"] = String(payload.length);
  }
  if (credentials !== undefined) headers.authorization = basicAuthHeader(credentials.username, credentials.password);
  // agent: false: one connection per request, closed afterwards, so no idle socket keeps a
  // CLI process alive and each request's TLS options are its own.
  const options: RequestOptions & { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string } = { method, headers, agent: false };
  if (url.protocol === "https:" && tls !== undefined) {
    if (tls.ca !== undefined) options.ca = tls.ca;
    if (tls.cert !== undefined) options.cert = tls.cert;
    if (tls.key !== undefined) options.key = tls.key;
    // As the gRPC channels' name override: the certificate is checked against this name.
    if (tls.serverName !== undefined) options.servername = tls.serverName;
  }
  const send = url.protocol === "https:" ? httpsRequestRaw : httpRequestRaw;

  return new Promise<HttpAnswer>((resolve, reject) => {
    let settled = false;
    let outgoing: ClientRequest | undefined;
    const finish = (outcome: { answer: HttpAnswer } | { error: SluiceError }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if ("answer" in outcome) resolve(outcome.answer);
      else {
        reject(outcome.error);
        outgoing?.destroy();
      }
    };
    const timer = setTimeout(() => finish({ error: new RequestTimedOutError(`no answer within ${timeoutMs} ms`) }), timeoutMs);
    try {
      outgoing = send(url, options, (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => finish({ answer: { status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") } }));
        response.on("error", (err) => finish({ error: unreachable(err) }));
        // A body cut half way (the server went away) is a failure, not a short answer.
        response.on("close", () => {
          if (!response.complete) finish({ error: new BrokerUnavailableError("the connection closed before the whole answer arrived") });
        });
      });
    } catch (err) {
      // Bad request options (e.g. a header Node refuses) throw synchronously.
      finish({ error: unreachable(err as Error) });
      return;
    }
    outgoing.on("error", (err) => finish({ error: unreachable(err) }));
    outgoing.end(payload);
  });
}

/** A connection failure as BROKER_UNAVAILABLE naming its cause; a TLS failure says what to check. */
function unreachable(err: Error): SluiceError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code !== undefined && TLS_FAILURE_CODE.test(code)) {
    return new BrokerUnavailableError(
      `TLS handshake failed: ${code} (${err.message}); check that tls.ca (--tls-ca) is the CA of the broker's certificate and that the broker serves HTTPS`,
      { cause: err },
    );
  }
  return new BrokerUnavailableError(`unreachable: ${code ?? err.message}`, { cause: err });
}
