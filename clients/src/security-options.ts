/**
 * The security options of a `Sluice` client (TLS to the servers, a password user), checked
 * once, and their parsed form. The parsed form keeps the secrets, the password and the TLS
 * private key, out of `JSON.stringify`, `util.inspect`, `console.log` and pino: a program
 * that logs its client's options never leaks them. Error messages name the field and never
 * repeat a secret.
 */
import { X509Certificate } from "node:crypto";
import { createSecureContext } from "node:tls";
import { inspect, type InspectOptions } from "node:util";
import { InvalidArgumentError } from "../../common/src/errors.js";
import type { ChannelSecurity } from "../../common/src/grpc/channel-security.js";
import type { ClientTls } from "../../common/src/security/tls-files.js";

/**
 * TLS to the name servers and brokers. `true` is TLS checked against the CAs Node.js trusts
 * (its bundled Mozilla list), for servers with publicly trusted certificates.
 *
 * ```ts
 * new Sluice({ nameservers: ["ns1.internal:9876"], tls: { ca: fs.readFileSync("ca.crt") } });
 * ```
 */
export interface TlsOptions {
  /**
   * CA certificate(s), PEM (bytes or text), that the servers' certificates must chain to.
   * @defaultValue the CAs Node.js trusts
   */
  ca?: Buffer | string;
  /** This client's certificate, PEM, for mutual TLS: a server started with `--tls-ca` then knows it as `User:<CN>`. Needs `key`. */
  cert?: Buffer | string;
  /** The private key of `cert`, PEM. Never shown by the parsed options. */
  key?: Buffer | string;
  /** The name the servers' certificates are checked against, when it is not the host of their address (e.g. an IP address). */
  serverName?: string;
}

/**
 * A password user, sent as `authorization: Basic …` on every call to every server.
 *
 * ```ts
 * new Sluice({ credentials: { username: "alice", password: fs.readFileSync("alice.pw", "utf8").trim() } });
 * ```
 */
export interface CredentialsOptions {
  /** A user known to the name servers (or `admin`); cannot contain ":". */
  username: string;
  /** Its password; never shown by the parsed options. */
  password: string;
}

/** What the parsed options show instead of a secret. */
export const REDACTED = "[redacted]";

const TLS_KEYS = ["ca", "cert", "key", "serverName"] as const;
const CREDENTIALS_KEYS = ["username", "password"] as const;

/** TLS as the channels use it: PEM bytes. `key` can be read, but is never shown. */
export class ParsedTls {
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly serverName: string | undefined;
  readonly #key: Buffer | undefined;

  constructor(tls: { ca?: Buffer | undefined; cert?: Buffer | undefined; key?: Buffer | undefined; serverName?: string | undefined }) {
    this.ca = tls.ca;
    this.cert = tls.cert;
    this.serverName = tls.serverName;
    this.#key = tls.key;
    Object.freeze(this);
  }

  get key(): Buffer | undefined {
    return this.#key;
  }

  /** The form common/src/grpc/channel-security.ts takes. */
  toClientTls(): ClientTls {
    const tls: ClientTls = {};
    if (this.ca !== undefined) tls.ca = this.ca;
    if (this.cert !== undefined) tls.cert = this.cert;
    if (this.#key !== undefined) tls.key = this.#key;
    if (this.serverName !== undefined) tls.serverName = this.serverName;
    return tls;
  }

  /** What logs show: which parts are set and how large, never the key. */
  toJSON(): Record<string, unknown> {
    return {
      ca: this.ca === undefined ? "the CAs Node.js trusts" : `${this.ca.length} bytes of PEM`,
      ...(this.cert === undefined ? {} : { cert: `${this.cert.length} bytes of PEM` }),
      ...(this.#key === undefined ? {} : { key: REDACTED }),
      ...(this.serverName === undefined ? {} : { serverName: this.serverName }),
    };
  }

  [inspect.custom](_depth: number, options: InspectOptions): string {
    return `ParsedTls ${inspect(this.toJSON(), { ...options, getters: false, showHidden: false })}`;
  }
}

/** A password user. `password` can be read, but is never shown. */
export class ParsedCredentials {
  readonly username: string;
  readonly #password: string;

  constructor(username: string, password: string) {
    this.username = username;
    this.#password = password;
    Object.freeze(this);
  }

  get password(): string {
    return this.#password;
  }

  toJSON(): Record<string, unknown> {
    return { username: this.username, password: REDACTED };
  }

  [inspect.custom](_depth: number, options: InspectOptions): string {
    return `ParsedCredentials ${inspect(this.toJSON(), { ...options, getters: false, showHidden: false })}`;
  }
}

/** `tls` of SluiceOptions: undefined or false = plain text; true = TLS with the CAs Node.js trusts. */
export function parseTlsOptions(value: unknown): ParsedTls | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return new ParsedTls({});
  if (!isPlainObject(value)) {
    throw new InvalidArgumentError(`tls must be true (the CAs Node.js trusts) or an object like { ca: fs.readFileSync("ca.crt") }, got ${kindOf(value)}`);
  }
  refuseUnknownKeys("tls", value, TLS_KEYS);
  const ca = pem("tls.ca", value.ca);
  const cert = pem("tls.cert", value.cert);
  const key = pem("tls.key", value.key);
  if (cert !== undefined && key === undefined) {
    throw new InvalidArgumentError("tls.cert needs tls.key: a client certificate is only usable with its private key (PEM)");
  }
  if (key !== undefined && cert === undefined) {
    throw new InvalidArgumentError("tls.key needs tls.cert: give the client certificate the key belongs to (PEM)");
  }
  const serverName = value.serverName;
  if (serverName !== undefined && (typeof serverName !== "string" || serverName.trim() === "" || /\s/.test(serverName))) {
    throw new InvalidArgumentError(`tls.serverName must be a host name like "broker.internal", got ${JSON.stringify(serverName) ?? kindOf(serverName)}`);
  }
  // Parsed now, so a file that is not a certificate, or a key that is not the certificate's,
  // fails here naming the field instead of failing every handshake later.
  if (ca !== undefined) checkCertificate("tls.ca", ca);
  if (cert !== undefined && key !== undefined) {
    checkCertificate("tls.cert", cert);
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      throw new InvalidArgumentError(`tls.key is not usable with tls.cert (${(err as Error).message}); give the certificate's own private key, PEM`);
    }
  }
  return new ParsedTls({ ca, cert, key, serverName: serverName as string | undefined });
}

/** `credentials` of SluiceOptions. Messages name the field and never repeat the password. */
export function parseCredentials(value: unknown): ParsedCredentials | undefined {
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) {
    throw new InvalidArgumentError(`credentials must be an object like { username: "alice", password: "…" }, got ${kindOf(value)}`);
  }
  refuseUnknownKeys("credentials", value, CREDENTIALS_KEYS);
  const { username, password } = value;
  if (typeof username !== "string" || username === "") {
    throw new InvalidArgumentError(`credentials.username must be a non-empty string, got ${typeof username === "string" ? "an empty string" : kindOf(username)}`);
  }
  if (username.includes(":")) {
    throw new InvalidArgumentError(`credentials.username ${JSON.stringify(username)} contains ":", which ends the user name in a Basic credential; user names cannot contain it`);
  }
  if (typeof password !== "string") {
    throw new InvalidArgumentError(`credentials.password must be a string, got ${kindOf(password)}`);
  }
  if (password === "") throw new InvalidArgumentError(`credentials.password of user "${username}" is empty; give the user's password`);
  return new ParsedCredentials(username, password);
}

/** What every channel of a client is built from (common/src/grpc/channel-security.ts). */
export function channelSecurity(tls: ParsedTls | undefined, credentials: ParsedCredentials | undefined): ChannelSecurity {
  return { tls: tls?.toClientTls(), credentials };
}

function pem(field: string, value: unknown): Buffer | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" && !Buffer.isBuffer(value)) {
    throw new InvalidArgumentError(`${field} must be PEM text or a Buffer of it (e.g. fs.readFileSync(file)), got ${kindOf(value)}`);
  }
  const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  if (!bytes.includes("-----BEGIN ")) {
    throw new InvalidArgumentError(`${field} is not PEM (no "-----BEGIN" line): pass the file's content, not its name`);
  }
  return bytes;
}

function checkCertificate(field: string, bytes: Buffer): void {
  try {
    new X509Certificate(bytes);
  } catch (err) {
    throw new InvalidArgumentError(`${field} is not a PEM certificate (${(err as Error).message})`);
  }
}

function refuseUnknownKeys(what: string, value: object, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) throw new InvalidArgumentError(`unknown ${what} option "${key}"; known options: ${known.join(", ")}`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

/** A value's kind for a message; never the value itself, which may be a secret. */
function kindOf(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (Buffer.isBuffer(value)) return "a Buffer";
  return `a ${typeof value}`;
}
