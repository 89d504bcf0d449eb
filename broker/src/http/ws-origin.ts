/**
 * The Origin check of WebSocket upgrades (cross-site WebSocket hijacking). A WebSocket handshake
 * is not subject to CORS: a page on any site can open `ws://<broker>/ws/consume`, and the
 * browser attaches the Basic credentials it cached for the console (or its client certificate),
 * so the page would read topics as the operator. Browsers always send `Origin` on a WebSocket
 * handshake and pages cannot forge it, so an upgrade is refused when its Origin names another
 * host:port than the `Host` it was sent to.
 *
 * An upgrade without `Origin` is not from a browser page (SDKs, scripts, `wscat`) and passes:
 * those clients choose their own credentials, and the check would protect nothing. Behind a
 * reverse proxy, the proxy must keep `Host` as the browser sent it for pages served through it.
 */
import type { IncomingHttpHeaders } from "node:http";

/** Origin and Host values quoted in a refusal are cut to this many characters. */
const QUOTED_HEADER_CHARS = 100;
/** `host` or `host:port` as a Host header carries it; IPv6 in brackets. */
const HOST_HEADER = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]/?#@\s]+)(?::(\d{1,5}))?$/;

/**
 * Why this upgrade must be refused as cross-origin, or undefined when it may proceed (no
 * Origin, or an Origin naming the same host and port as Host). `encrypted`: the upgrade came
 * over TLS, which makes 443 the port of a Host without one.
 */
export function crossOriginRefusal(headers: IncomingHttpHeaders, encrypted: boolean): string | undefined {
  const origin = headers.origin;
  if (origin === undefined) return undefined;
  const fromPage = originHostPort(origin);
  const target = headers.host === undefined ? undefined : hostHeaderHostPort(headers.host, encrypted ? 443 : 80);
  if (fromPage !== undefined && target !== undefined && fromPage === target) return undefined;
  return (
    `cross-origin WebSocket upgrade refused: Origin ${quote(origin)} is not this server (Host ${quote(headers.host ?? "")}); ` +
    `open the page from this broker's HTTP port, or connect from a program (no Origin header)`
  );
}

/** `hostname:port` of an Origin (`scheme://host[:port]`), default port by scheme; undefined for `null` or junk. */
function originHostPort(origin: string): string | undefined {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return undefined;
  }
  const defaultPort = url.protocol === "https:" || url.protocol === "wss:" ? "443" : url.protocol === "http:" || url.protocol === "ws:" ? "80" : undefined;
  if (defaultPort === undefined || url.hostname === "") return undefined;
  // URL leaves out a scheme's default port, and lower-cases and normalizes the host name.
  return `${url.hostname}:${url.port === "" ? defaultPort : url.port}`;
}

/** `hostname:port` of a Host header, normalized as URL normalizes an Origin's host. */
function hostHeaderHostPort(host: string, defaultPort: number): string | undefined {
  const match = HOST_HEADER.exec(host.trim());
  if (match === null) return undefined;
  let hostname: string;
  try {
    hostname = new URL(`http://${match[1] as string}`).hostname;
  } catch {
    return undefined;
  }
  const port = match[2] === undefined ? defaultPort : Number(match[2]);
  return `${hostname}:${port}`;
}

function quote(value: string): string {
  return JSON.stringify(value.length > QUOTED_HEADER_CHARS ? `${value.slice(0, QUOTED_HEADER_CHARS)}…` : value);
}
