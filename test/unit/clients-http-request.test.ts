/**
 * The SDK's HTTP requests (clients/src/transport/http-request.ts) against real HTTP and HTTPS
 * servers on loopback, certificates from ops/tls: plain HTTP without `tls`, HTTPS checked
 * against the client's CA with it (presenting the client certificate for mTLS), the password
 * user as a Basic credential, and failures as the SDK's errors.
 */
import assert from "node:assert/strict";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { after, before, describe, it } from "node:test";
import { SluiceError } from "../../common/src/errors.js";
import { parseBasicAuth } from "../../common/src/security/basic-auth.js";
import { parseCredentials, parseTlsOptions } from "../../clients/src/security-options.js";
import { httpRequest, httpUrl } from "../../clients/src/transport/http-request.js";
import { devCertificates, type DevCerts } from "../helpers/tls.js";

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: string;
  /** CN of the client certificate the server verified, if any. */
  clientCn: string | undefined;
}

/** Answers 200 with what it saw, except on /hang, which never answers. */
function handler(seen: Seen[]): http.RequestListener {
  return (req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      if (req.url === "/hang") return;
      const socket = req.socket as Partial<TLSSocket>;
      const peer = typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate() : undefined;
      const cn = peer?.subject?.CN;
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        authorization: req.headers.authorization,
        contentType: req.headers["content-type"],
        body,
        clientCn: Array.isArray(cn) ? cn[0] : cn,
      });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true }));
    });
  };
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("SDK HTTP requests: TLS and credentials", () => {
  let certs: DevCerts;
  const seen: Seen[] = [];
  let plain: http.Server;
  let secure: https.Server;
  let plainAddress: string;
  let secureAddress: string;
  const alice = parseCredentials({ username: "alice", password: "alice-secret-1" });

  before(async () => {
    certs = await devCertificates();
    plain = http.createServer(handler(seen));
    // Asks for a client certificate but also serves clients without one (password users).
    secure = https.createServer({ cert: certs.server.cert, key: certs.server.key, ca: certs.caCert, requestCert: true, rejectUnauthorized: false }, handler(seen));
    plainAddress = await listen(plain);
    secureAddress = await listen(secure);
  });
  after(async () => {
    for (const server of [plain, secure]) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("builds https:// URLs when the client has tls, http:// otherwise, and keeps an explicit scheme", () => {
    const tls = parseTlsOptions({ ca: certs.caCert });
    assert.equal(httpUrl("127.0.0.1:8080", "/admin/flow?scope=broker", undefined).href, "http://127.0.0.1:8080/admin/flow?scope=broker");
    assert.equal(httpUrl("127.0.0.1:8080", "/admin/flow", tls).href, "https://127.0.0.1:8080/admin/flow");
    assert.equal(httpUrl("[::1]:8080", "/admin/flow", tls).host, "[::1]:8080");
    assert.equal(httpUrl("https://b1.internal:8443", "/admin/flow", undefined).href, "https://b1.internal:8443/admin/flow");
  });

  it("sends plain HTTP without tls, with a JSON body and the Basic credential", async () => {
    seen.length = 0;
    const answer = await httpRequest({ method: "PUT", url: httpUrl(plainAddress, "/admin/flow", undefined), body: { scope: "broker" }, timeoutMs: 2000, tls: undefined, credentials: alice });
    assert.deepEqual(answer, { status: 200, text: '{"ok":true}' });
    assert.equal(seen[0]?.method, "PUT");
    assert.equal(seen[0]?.contentType, "application/json");
    assert.deepEqual(JSON.parse(seen[0]?.body ?? ""), { scope: "broker" });
    assert.deepEqual(parseBasicAuth(seen[0]?.authorization), { username: "alice", password: "alice-secret-1" });
    await httpRequest({ method: "GET", url: httpUrl(plainAddress, "/admin/flow", undefined), timeoutMs: 2000, tls: undefined, credentials: undefined });
    assert.equal(seen[1]?.authorization, undefined, "no credentials, no header");
  });

  it("uses HTTPS checked against the client's CA, and presents the client certificate for mTLS", async () => {
    seen.length = 0;
    const tls = parseTlsOptions({ ca: certs.caCert });
    const answer = await httpRequest({ method: "GET", url: httpUrl(secureAddress, "/admin/flow", tls), timeoutMs: 2000, tls, credentials: alice });
    assert.equal(answer.status, 200);
    assert.deepEqual(parseBasicAuth(seen[0]?.authorization), { username: "alice", password: "alice-secret-1" });
    assert.equal(seen[0]?.clientCn, undefined, "no client certificate configured, none sent");

    const mtls = parseTlsOptions({ ca: certs.caCert, cert: certs.clients.admin.cert, key: certs.clients.admin.key });
    await httpRequest({ method: "GET", url: httpUrl(secureAddress, "/admin/flow", mtls), timeoutMs: 2000, tls: mtls, credentials: undefined });
    assert.equal(seen[1]?.clientCn, "admin");
  });

  it("fails a server whose certificate does not chain to the client's CA, naming TLS", async () => {
    seen.length = 0;
    const wrongCa = parseTlsOptions({ ca: certs.untrusted.cert });
    await assert.rejects(
      httpRequest({ method: "GET", url: httpUrl(secureAddress, "/admin/flow", wrongCa), timeoutMs: 2000, tls: wrongCa, credentials: alice }),
      (e: unknown) => e instanceof SluiceError && e.code === "BROKER_UNAVAILABLE" && /TLS handshake failed: \w+/.test(e.message) && !e.message.includes("alice-secret-1"),
    );
    assert.equal(seen.length, 0, "the credential never left the client");
  });

  it("refuses to send over http:// when the client is configured for TLS", async () => {
    seen.length = 0;
    const tls = parseTlsOptions({ ca: certs.caCert });
    await assert.rejects(
      httpRequest({ method: "GET", url: new URL(`http://${plainAddress}/admin/flow`), timeoutMs: 2000, tls, credentials: alice }),
      (e: unknown) => e instanceof SluiceError && e.code === "INVALID_CONFIG" && /refusing plain text/.test(e.message),
    );
    assert.equal(seen.length, 0);
  });

  it("maps no answer in time to REQUEST_TIMED_OUT and a closed port to BROKER_UNAVAILABLE", async () => {
    const startedMs = Date.now();
    await assert.rejects(
      httpRequest({ method: "GET", url: httpUrl(plainAddress, "/hang", undefined), timeoutMs: 200, tls: undefined, credentials: undefined }),
      (e: unknown) => e instanceof SluiceError && e.code === "REQUEST_TIMED_OUT" && e.message === "no answer within 200 ms",
    );
    assert.ok(Date.now() - startedMs < 1500, "bounded by the timeout");
    const closed = http.createServer();
    const closedAddress = await listen(closed);
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    await assert.rejects(
      httpRequest({ method: "GET", url: httpUrl(closedAddress, "/", undefined), timeoutMs: 2000, tls: undefined, credentials: undefined }),
      (e: unknown) => e instanceof SluiceError && e.code === "BROKER_UNAVAILABLE" && e.message === "unreachable: ECONNREFUSED",
    );
  });
});
