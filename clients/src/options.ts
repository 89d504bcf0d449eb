/** Options of the `Sluice` client, their defaults, and the one place they are validated. */
import { InvalidArgumentError, InvalidTopicNameError } from "../../common/src/errors.js";
import { silentLogger, type Logger } from "../../common/src/logger.js";
import { isValidTopicName } from "../../common/src/protocol.js";
import { parseRetryOptions, type ParsedRetryOptions, type RetryOptions } from "./retry.js";
import {
  parseCredentials,
  parseTlsOptions,
  type CredentialsOptions,
  type ParsedCredentials,
  type ParsedTls,
  type TlsOptions,
} from "./security-options.js";

export interface SluiceOptions {
  /**
   * Name servers as `host:port`, in an array or one comma-separated string. The client
   * asks them in turn and moves to the next when one cannot be reached.
   * @defaultValue ["127.0.0.1:9876"]
   */
  nameservers?: string[] | string;
  /** Sent with every request, so brokers can log and meter per client. @defaultValue "sluice-js" */
  clientId?: string;
  /**
   * How long one operation (a send, an admin call, a route lookup) may take, retries
   * included, before it fails with REQUEST_TIMED_OUT or its last error.
   * @defaultValue 30000
   */
  requestTimeoutMs?: number;
  /** Backoff for retriable errors. @defaultValue `{ retries: 5, initialRetryMs: 100, maxRetryMs: 2000 }` */
  retry?: RetryOptions;
  /** How often cached topic routes are refreshed from the name servers, in ms. @defaultValue 30000 */
  routeRefreshMs?: number;
  /** A pino logger for connection events (never one line per message). @defaultValue a silent logger */
  logger?: Logger;
  /**
   * TLS to every name server and broker: `true` checks their certificates against the CAs
   * Node.js trusts; an object gives the CA (PEM, bytes or text) and, for mutual TLS, this
   * client's certificate and key. No channel of the client is plain text once it is set.
   *
   * ```ts
   * tls: { ca: fs.readFileSync("ca.crt") }                                   // a private CA
   * tls: { ca, cert: fs.readFileSync("app.crt"), key: fs.readFileSync("app.key") }  // mTLS: User:<CN>
   * ```
   * @defaultValue plain text
   */
  tls?: TlsOptions | boolean;
  /**
   * A password user, sent as `authorization: Basic …` with every call (servers started with
   * `--auth` check it and its ACLs). The parsed options never show the password.
   *
   * ```ts
   * credentials: { username: "alice", password: process.env.SLUICE_PASSWORD! }
   * ```
   * @defaultValue none: anonymous, or the identity of `tls.cert`
   */
  credentials?: CredentialsOptions;
}

export const DEFAULT_NAMESERVERS: readonly string[] = ["127.0.0.1:9876"];
export const DEFAULT_CLIENT_ID = "sluice-js";
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_ROUTE_REFRESH_MS = 30_000;
/** Refreshing routes faster than this would load the name servers for nothing. */
export const MIN_ROUTE_REFRESH_MS = 100;
/** Longest request timeout accepted (a day): guards against seconds passed as ms × 1000. */
export const MAX_REQUEST_TIMEOUT_MS = 86_400_000;

export interface ParsedSluiceOptions {
  readonly nameservers: readonly string[];
  readonly clientId: string;
  readonly requestTimeoutMs: number;
  readonly retry: ParsedRetryOptions;
  readonly routeRefreshMs: number;
  readonly logger: Logger;
  /** TLS settings; undefined = plain text. Shows no private key when logged. */
  readonly tls: ParsedTls | undefined;
  /** The password user; undefined = none. Shows no password when logged. */
  readonly credentials: ParsedCredentials | undefined;
}

/** `host:port` with a port in 1..65535; IPv6 hosts in brackets (`[::1]:9876`). */
const ADDRESS_PATTERN = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/;

/** Splits and checks a name-server list; shared with the CLI's `--nameserver` flag. */
export function parseNameservers(value: string[] | string | undefined): string[] {
  const raw = value === undefined ? [...DEFAULT_NAMESERVERS] : typeof value === "string" ? value.split(",") : value;
  if (!Array.isArray(raw)) {
    throw new InvalidArgumentError(`nameservers must be an array of "host:port" strings or one comma-separated string`);
  }
  const addresses = raw.map((entry) => (typeof entry === "string" ? entry.trim() : entry)).filter((entry) => entry !== "");
  if (addresses.length === 0) {
    throw new InvalidArgumentError(`nameservers must list at least one name server as "host:port", e.g. ["127.0.0.1:9876"]`);
  }
  for (const address of addresses) {
    const match = typeof address === "string" ? ADDRESS_PATTERN.exec(address) : null;
    const port = match ? Number(match[2]) : 0;
    if (!match || port < 1 || port > 65_535) {
      throw new InvalidArgumentError(`name server address "${String(address)}" is not "host:port" (e.g. "127.0.0.1:9876")`);
    }
  }
  return [...new Set(addresses as string[])];
}

/** Checks an integer option in [min, max]; the message names the option and the range. */
export function checkInteger(name: string, value: unknown, min: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw new InvalidArgumentError(`${name} must be an integer ${range}, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

/** Topic names as the name servers accept them (Kafka's rule): checked before any request. */
export function checkTopicName(topic: unknown): string {
  // Internal names pass: a dead-letter topic (`%DLQ%<group>`) is read like any other.
  if (typeof topic === "string" && isValidTopicName(topic, true)) return topic;
  throw new InvalidTopicNameError(
    `${topic === "" ? "an empty name" : JSON.stringify(topic)} is not a valid topic name: use 1 to 249 characters from a-z, A-Z, 0-9, ".", "_" and "-" (not "." or "..")`,
  );
}

export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== "boolean") throw new InvalidArgumentError(`${name} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

/** Rejects option names this version does not know, so a typo does not pass silently. */
export function checkKnownKeys(what: string, options: object, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InvalidArgumentError(`unknown ${what} option "${key}"; known options: ${known.join(", ")}`);
    }
  }
}

const KNOWN_KEYS = ["nameservers", "clientId", "requestTimeoutMs", "retry", "routeRefreshMs", "logger", "tls", "credentials"] as const;

export function parseSluiceOptions(options: SluiceOptions = {}): ParsedSluiceOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidArgumentError(`Sluice options must be an object like { nameservers: ["127.0.0.1:9876"] }`);
  }
  checkKnownKeys("Sluice", options, KNOWN_KEYS);
  const clientId = options.clientId ?? DEFAULT_CLIENT_ID;
  if (typeof clientId !== "string" || clientId.trim() === "") {
    throw new InvalidArgumentError(`clientId must be a non-empty string, got ${JSON.stringify(clientId)}`);
  }
  return {
    nameservers: parseNameservers(options.nameservers),
    clientId,
    requestTimeoutMs: checkInteger("requestTimeoutMs", options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, 1, MAX_REQUEST_TIMEOUT_MS),
    retry: parseRetryOptions(options.retry),
    routeRefreshMs: checkInteger("routeRefreshMs", options.routeRefreshMs ?? DEFAULT_ROUTE_REFRESH_MS, MIN_ROUTE_REFRESH_MS),
    logger: options.logger ?? silentLogger,
    tls: parseTlsOptions(options.tls),
    credentials: parseCredentials(options.credentials),
  };
}
