/**
 * ops/tls/make-dev-certs.sh: the certificates it makes chain to its CA with the names and key
 * usages Sluice servers and clients need, the test extras fail verification for the right
 * reason in a real TLS handshake, keys are private, and a second run never replaces a CA.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as tls from "node:tls";
import { MAKE_DEV_CERTS_SCRIPT, devCertificates, type CertAndKey, type DevCerts } from "../helpers/tls.js";

const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const HANDSHAKE_TIMEOUT_MS = 5000;

interface ScriptRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

function runScript(args: string[]): Promise<ScriptRun> {
  return new Promise((resolve) => {
    execFile(MAKE_DEV_CERTS_SCRIPT, args, { timeout: 30_000 }, (error, stdout, stderr) => {
      const exitCode = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ exitCode, stdout, stderr });
    });
  });
}

const tempDirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "sluice-ops-tls-"));
  tempDirs.push(dir);
  return dir;
}
after(() => {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Every file of `dir` with its bytes and modification time, to prove a run changed nothing. */
function snapshot(dir: string): Map<string, { bytes: string; mtimeMs: number; mode: number }> {
  const files = new Map<string, { bytes: string; mtimeMs: number; mode: number }>();
  for (const name of readdirSync(dir).sort()) {
    const stat = statSync(join(dir, name));
    files.set(name, { bytes: readFileSync(join(dir, name), "base64"), mtimeMs: stat.mtimeMs, mode: stat.mode });
  }
  return files;
}

function certificate(pem: Buffer): X509Certificate {
  return new X509Certificate(pem);
}

function assertSignedBy(leaf: X509Certificate, ca: X509Certificate, what: string): void {
  assert.ok(leaf.checkIssued(ca), `${what}: issuer should be the development CA, got ${leaf.issuer}`);
  assert.ok(leaf.verify(ca.publicKey), `${what}: signature should verify with the CA's public key`);
}

interface ServerView {
  authorized: boolean;
  authorizationError: string | undefined;
  peerCommonName: string | undefined;
}

/**
 * What a TLS server holding server.crt and trusting only ca.crt sees of a client presenting
 * `client`. The server does not reject (rejectUnauthorized false) so the verdict can be read;
 * the client does verify the server against ca.crt, by `host`.
 */
async function serverViewOf(certs: DevCerts, client: CertAndKey, host = "127.0.0.1"): Promise<ServerView> {
  const server = tls.createServer({
    cert: certs.server.cert,
    key: certs.server.key,
    ca: certs.caCert,
    requestCert: true,
    rejectUnauthorized: false,
  });
  const seen = new Promise<ServerView>((resolve) => {
    server.once("secureConnection", (socket) => {
      const peer = socket.getPeerCertificate();
      // Typed as Error, but Node sets the OpenSSL code as a string ("CERT_HAS_EXPIRED"), or null.
      const authorizationError: unknown = socket.authorizationError;
      resolve({
        authorized: socket.authorized,
        authorizationError: authorizationError == null ? undefined : String(authorizationError),
        peerCommonName: typeof peer.subject?.CN === "string" ? peer.subject.CN : undefined,
      });
      socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const socket = tls.connect({ host, port, ca: certs.caCert, cert: client.cert, key: client.key });
  try {
    const clientVerified = new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error("TLS handshake timed out")), HANDSHAKE_TIMEOUT_MS).unref(),
    );
    await Promise.race([clientVerified, timeout]);
    return await Promise.race([seen, timeout]);
  } finally {
    socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe("ops/tls/make-dev-certs.sh --test-extras (through test/helpers/tls.ts)", () => {
  let certs: DevCerts;
  let ca: X509Certificate;
  before(async () => {
    certs = await devCertificates();
    ca = certificate(certs.caCert);
  });

  test("the helper hands out one set per process, with paths that hold the bytes it returns", async () => {
    assert.equal(await devCertificates(), certs);
    assert.deepEqual(readFileSync(certs.ca), certs.caCert);
    for (const pair of [certs.server, certs.clients.admin, certs.clients.alice, certs.expired, certs.untrusted]) {
      assert.deepEqual(readFileSync(pair.certPath), pair.cert);
      assert.deepEqual(readFileSync(pair.keyPath), pair.key);
      assert.ok(certificate(pair.cert).checkPrivateKey(createPrivateKey(pair.key)), `${pair.keyPath} matches ${pair.certPath}`);
    }
  });

  test("the CA is a self-signed CA certificate; every leaf is not a CA", () => {
    assert.equal(ca.ca, true);
    assert.ok(ca.verify(ca.publicKey));
    for (const pair of [certs.server, certs.clients.admin, certs.clients.alice]) assert.equal(certificate(pair.cert).ca, false);
  });

  test("the CA signed the server and client certificates", () => {
    assertSignedBy(certificate(certs.server.cert), ca, "server.crt");
    assertSignedBy(certificate(certs.clients.admin.cert), ca, "admin.crt");
    assertSignedBy(certificate(certs.clients.alice.cert), ca, "alice.crt");
  });

  test("the server certificate names localhost, 127.0.0.1 and ::1, for server and client auth", () => {
    const server = certificate(certs.server.cert);
    const names = server.subjectAltName?.split(", ") ?? [];
    assert.ok(names.includes("DNS:localhost"), `SAN ${server.subjectAltName}`);
    assert.ok(names.includes("IP Address:127.0.0.1"), `SAN ${server.subjectAltName}`);
    assert.equal(server.checkHost("localhost"), "localhost");
    assert.equal(server.checkIP("127.0.0.1"), "127.0.0.1");
    assert.equal(server.checkIP("::1"), "::1");
    assert.deepEqual([...(server.keyUsage ?? [])].sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
  });

  test("client certificates carry CN=<name> and client auth only", () => {
    for (const [name, pair] of Object.entries(certs.clients)) {
      const client = certificate(pair.cert);
      assert.match(client.subject, new RegExp(`^CN=${name}$`, "m"));
      assert.deepEqual(client.keyUsage, [CLIENT_AUTH]);
    }
  });

  test("expired.crt is alice's, signed by the CA, and its validity is entirely in the past", () => {
    const expired = certificate(certs.expired.cert);
    assertSignedBy(expired, ca, "expired.crt");
    assert.match(expired.subject, /^CN=alice$/m);
    assert.ok(new Date(expired.validTo).getTime() < Date.now(), `validTo ${expired.validTo}`);
    assert.ok(new Date(expired.validFrom).getTime() < new Date(expired.validTo).getTime());
  });

  test("untrusted.crt is alice's but not issued by the development CA", () => {
    const untrusted = certificate(certs.untrusted.cert);
    assert.match(untrusted.subject, /^CN=alice$/m);
    assert.equal(untrusted.checkIssued(ca), false);
    assert.equal(untrusted.verify(ca.publicKey), false);
    const untrustedCa = certificate(readFileSync(join(certs.dir, "untrusted-ca.crt")));
    assertSignedBy(untrusted, untrustedCa, "untrusted.crt");
  });

  test("every key file is mode 0600, and the untrusted CA's key is not kept", () => {
    const keys = readdirSync(certs.dir).filter((name) => name.endsWith(".key"));
    assert.deepEqual(keys.sort(), ["admin.key", "alice.key", "ca.key", "expired.key", "server.key", "untrusted.key"]);
    for (const key of keys) assert.equal(statSync(join(certs.dir, key)).mode & 0o777, 0o600, key);
  });

  test("TLS handshake: alice's certificate is verified and names her", async () => {
    const view = await serverViewOf(certs, certs.clients.alice);
    assert.deepEqual(view, { authorized: true, authorizationError: undefined, peerCommonName: "alice" } satisfies ServerView);
  });

  test("TLS handshake: the client verifies the server by the name localhost too", async () => {
    const view = await serverViewOf(certs, certs.clients.admin, "localhost");
    assert.equal(view.peerCommonName, "admin");
    assert.equal(view.authorized, true);
  });

  test("TLS handshake: the expired certificate is refused as CERT_HAS_EXPIRED", async () => {
    const view = await serverViewOf(certs, certs.expired);
    assert.equal(view.authorized, false);
    assert.equal(view.authorizationError, "CERT_HAS_EXPIRED");
  });

  test("TLS handshake: the untrusted certificate is refused for its unknown issuer", async () => {
    const view = await serverViewOf(certs, certs.untrusted);
    assert.equal(view.authorized, false);
    assert.ok(
      view.authorizationError === "UNABLE_TO_GET_ISSUER_CERT_LOCALLY" || view.authorizationError === "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      `authorizationError ${view.authorizationError}`,
    );
  });
});

describe("ops/tls/make-dev-certs.sh options", () => {
  test("--client, --san and --days shape what is made", async () => {
    const dir = tempDir();
    const run = await runScript([dir, "--client", "bob", "--san", "DNS:broker-1.internal", "--san", "IP:10.0.0.5", "--days", "30"]);
    assert.equal(run.exitCode, 0, run.stderr);
    assert.deepEqual(readdirSync(dir).sort(), ["bob.crt", "bob.key", "ca.crt", "ca.key", "server.crt", "server.key"]);
    assert.match(run.stdout, /--tls-cert \S+\/server\.crt --tls-key \S+\/server\.key --tls-ca \S+\/ca\.crt/);

    const ca = certificate(readFileSync(join(dir, "ca.crt")));
    const bob = certificate(readFileSync(join(dir, "bob.crt")));
    assertSignedBy(bob, ca, "bob.crt");
    assert.match(bob.subject, /^CN=bob$/m);
    const server = certificate(readFileSync(join(dir, "server.crt")));
    assert.equal(server.checkHost("broker-1.internal"), "broker-1.internal");
    assert.equal(server.checkIP("10.0.0.5"), "10.0.0.5");
    assert.equal(server.checkIP("127.0.0.1"), "127.0.0.1");
    const lifetimeDays = (new Date(server.validTo).getTime() - new Date(server.validFrom).getTime()) / 86_400_000;
    assert.equal(Math.round(lifetimeDays), 30);
  });

  test("a second run without --force refuses and changes nothing; --force makes a new CA", async () => {
    const dir = tempDir();
    const first = await runScript([dir, "--test-extras"]);
    assert.equal(first.exitCode, 0, first.stderr);
    const before = snapshot(dir);

    for (const args of [[dir], [dir, "--test-extras"], [dir, "--client", "carol"]]) {
      const again = await runScript(args);
      assert.notEqual(again.exitCode, 0, `${args.join(" ")} should refuse`);
      assert.match(again.stderr, /--force/);
      assert.deepEqual(snapshot(dir), before, `${args.join(" ")} changed files`);
    }

    const forced = await runScript([dir, "--force"]);
    assert.equal(forced.exitCode, 0, forced.stderr);
    const newCa = certificate(readFileSync(join(dir, "ca.crt")));
    assert.notDeepEqual(readFileSync(join(dir, "ca.crt")).toString("base64"), before.get("ca.crt")?.bytes);
    assertSignedBy(certificate(readFileSync(join(dir, "server.crt"))), newCa, "server.crt after --force");
    // The old CA's certificates no longer chain: why a plain re-run must refuse.
    const oldAlice = certificate(Buffer.from(before.get("alice.crt")?.bytes ?? "", "base64"));
    assert.equal(oldAlice.verify(newCa.publicKey), false);
  });

  test("bad arguments are refused before anything is written", async () => {
    const dir = tempDir();
    for (const args of [["--client", "../evil"], ["--client", "ca"], ["--san", "DNS:a,IP:1.2.3.4"], ["--days", "0"], ["--bogus"]]) {
      const run = await runScript([dir, ...args]);
      assert.equal(run.exitCode, 2, `${args.join(" ")}: ${run.stderr}`);
      assert.deepEqual(readdirSync(dir), [], `${args.join(" ")} wrote files`);
    }
    const missingDir = await runScript([]);
    assert.equal(missingDir.exitCode, 2);
    const help = await runScript(["--help"]);
    assert.equal(help.exitCode, 0);
    assert.match(help.stdout, /Usage: make-dev-certs\.sh OUT_DIR/);
  });
});
