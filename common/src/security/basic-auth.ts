/**
 * HTTP Basic credentials (RFC 7617), the one form a password travels in: gRPC metadata
 * `authorization`, the HTTP header of the same name, a WebSocket upgrade request.
 *
 *   Basic base64(utf8(<username> ":" <password>))
 */
import { InvalidArgumentError } from "../errors.js";

export interface BasicCredentials {
  username: string;
  password: string;
}

const SCHEME = /^basic[ \t]+/i;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * The credentials of an `Authorization` value, or `undefined` when it is absent or not a
 * well-formed Basic credential (another scheme, bad base64, no colon, an empty user name).
 * A caller that received a header but gets `undefined` should refuse the call rather than fall
 * back to another identity: the client meant to authenticate and got it wrong.
 */
export function parseBasicAuth(headerValue: string | undefined): BasicCredentials | undefined {
  if (typeof headerValue !== "string") return undefined;
  const scheme = SCHEME.exec(headerValue);
  if (scheme === null) return undefined;
  const token = headerValue.slice(scheme[0].length).trim();
  if (token.length % 4 !== 0 || !BASE64.test(token)) return undefined;
  const decoded = Buffer.from(token, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** The `Authorization` value for a user; a user name cannot contain `:` (it ends the name). */
export function basicAuthHeader(username: string, password: string): string {
  if (username.length === 0 || username.includes(":")) {
    throw new InvalidArgumentError(`${JSON.stringify(username)} cannot be sent as a user name: it must be non-empty and contain no ":"`);
  }
  return `Basic ${Buffer.from(`${username}:${password}`, "utf8").toString("base64")}`;
}
