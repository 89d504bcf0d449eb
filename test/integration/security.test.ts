/**
 * Issue #8 end to end, on real processes: a name server and a master + slave broker group with
 * TLS (dev CA from ops/tls), `--auth` and sync replication, then real SDK clients and the CLI.
 *
 * - heartbeats and replication keep working with TLS + auth (acks=all needs the slave);
 * - a plain-text client is refused; wrong password, unknown user, expired and untrusted
 *   certificates are refused and counted in /metrics;
 * - a user without `produce` is refused and nothing is appended;
 * - an ACL added or removed reaches a producer's live connection within 1 s.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Sluice, type SluiceOptions } from "../../clients/src/index.js";
import { SLUICE_BIN, startServer, tempDir, type ServerProcess } from "../helpers/processes.js";
import { httpsGet, waitReadyTls } from "../helpers/https.js";
import { devCertificates, secureServerFlags, writePasswordFile, type DevCerts } from "../helpers/tls.js";
import { spawn } from "node:child_process";

const ADMIN_PASSWORD = "admin-secret-for-tests";
const ALICE_PASSWORD = "alice-secret-for-tests";

interface Secured {
  ns: string;
  nsHttp: string;
  master: { address: string; http: string };
  processes: ServerProcess[];
}

async function metricValue(certs: DevCerts, address: string, name: string, labels: Record<string, string>): Promise<number> {
  const { body } = await httpsGet(certs.caCert, address, "/metrics");
  let total = 0;
  for (const line of body.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.split(" ").pop());
  }
  return total;
}

/** The CLI with the caller's flags; resolves exit code and output. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [SLUICE_BIN, ...args], { env: { ...process.env, SLUICE_LOG_LEVEL: "warn", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("security: TLS, authentication and ACLs on a real cluster", { timeout: 120_000 }, () => {
  let certs: DevCerts;
  let cluster: Secured;
  let adminPasswordFile: string;
  let alicePasswordFile: string;
  const clients: Sluice[] = [];

  const client = (options: Partial<SluiceOptions>): Sluice => {
    const sluice = new Sluice({ nameservers: [cluster.ns], requestTimeoutMs: 5_000, retry: { retries: 0 }, ...options });
    clients.push(sluice);
    return sluice;
  };
  const asAdmin = (): Sluice => client({ tls: { ca: certs.caCert }, credentials: { username: "admin", password: ADMIN_PASSWORD } });
  const adminFlags = (): string[] => ["--nameserver", cluster.ns, "--tls-ca", certs.ca, "--user", "admin", "--password-file", adminPasswordFile];

  before(async () => {
    certs = await devCertificates();
    const dir = tempDir("sluice-sec-");
    adminPasswordFile = writePasswordFile(dir, "admin.pw", ADMIN_PASSWORD);
    alicePasswordFile = writePasswordFile(dir, "alice.pw", ALICE_PASSWORD);
    const secure = secureServerFlags(certs, adminPasswordFile);
    const processes: ServerProcess[] = [];
    const ns = await startServer(["nameserver", "--port", "0", "--http-port", "0", "--data", join(dir, "ns"), ...secure]);
    processes.push(ns);
    await waitReadyTls(certs.caCert, ns.info.http as string);
    const brokers: { address: string; http: string }[] = [];
    for (const id of [0, 1]) {
      const proc = await startServer([
        "--nameserver", ns.info.nameserver as string,
        "broker", "--name", "sec", "--id", String(id), "--data", join(dir, `b${id}`), "--port", "0", "--http-port", "0",
        "--replication", "sync", "--min-in-sync-slaves", "1",
        ...secure,
      ]);
      processes.push(proc);
      await waitReadyTls(certs.caCert, proc.info.http as string);
      brokers.push({ address: proc.info.broker as string, http: proc.info.http as string });
    }
    cluster = { ns: ns.info.nameserver as string, nsHttp: ns.info.http as string, master: brokers[0]!, processes };
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    for (const proc of cluster?.processes.reverse() ?? []) await proc.stop();
  });

  it("keeps heartbeats and sync replication working with TLS and auth on", async () => {
    const admin = asAdmin().admin();
    const deadline = Date.now() + 15_000;
    let states: string[] = [];
    while (Date.now() < deadline) {
      states = (await admin.cluster()).brokers.map((b) => `${b.id}:${b.role}:${b.state}`).sort();
      if (states.join() === "0:master:alive,1:slave:alive") break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.deepEqual(states, ["0:master:alive", "1:slave:alive"], "both brokers heartbeat over TLS as admin");
    await admin.createTopic("orders", { partitions: 1 });
    // acks=all under --replication sync --min-in-sync-slaves 1: acknowledged only once the
    // slave, fetching over TLS as admin, holds the batch.
    const producer = asAdmin().producer({ acks: "all" });
    const inSyncBy = Date.now() + 15_000;
    for (;;) {
      try {
        await producer.send("orders", [{ value: Buffer.from("first") }]);
        break;
      } catch (err) {
        if (Date.now() > inSyncBy) throw err;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    await producer.send("orders", Array.from({ length: 99 }, (_, i) => ({ value: Buffer.from(`m-${i}`) })));
    assert.equal((await admin.listOffsets("orders", "latest")).get(0), 100);
    assert.equal(await metricValue(certs, cluster.master.http, "sluice_under_replicated_partitions", {}), 0);
  });

  it("refuses a plain-text client, and one that does not trust the cluster's CA", async () => {
    const plain = client({ credentials: { username: "admin", password: ADMIN_PASSWORD } });
    await assert.rejects(plain.admin().listTopics(), (err: { code: string }) => err.code === "BROKER_UNAVAILABLE");
    const wrongCa = client({ tls: { ca: certs.untrusted.cert }, credentials: { username: "admin", password: ADMIN_PASSWORD } });
    await assert.rejects(wrongCa.admin().listTopics(), (err: { code: string }) => err.code === "BROKER_UNAVAILABLE");
    assert.ok((await metricValue(certs, cluster.nsHttp, "sluice_tls_handshake_failures_total", {})) >= 2);
    const result = await cli(["--nameserver", cluster.ns, "topic", "list"]);
    assert.notEqual(result.code, 0);
  });

  it("refuses a wrong password, an unknown user and missing credentials alike, and counts them", async () => {
    const before = await metricValue(certs, cluster.nsHttp, "sluice_authentication_failures_total", { reason: "bad_credentials" });
    for (const credentials of [{ username: "admin", password: "not-the-password" }, { username: "nobody", password: ADMIN_PASSWORD }]) {
      await assert.rejects(client({ tls: { ca: certs.caCert }, credentials }).admin().listTopics(), (err: { code: string; message: string }) => {
        assert.equal(err.code, "AUTHENTICATION_FAILED");
        assert.ok(!err.message.includes(credentials.password), "no password in any error");
        return true;
      });
    }
    await assert.rejects(client({ tls: { ca: certs.caCert } }).admin().listTopics(), (err: { code: string }) => err.code === "AUTHENTICATION_FAILED");
    assert.equal(await metricValue(certs, cluster.nsHttp, "sluice_authentication_failures_total", { reason: "bad_credentials" }), before + 2);
    assert.ok((await metricValue(certs, cluster.nsHttp, "sluice_authentication_failures_total", { reason: "missing_credentials" })) >= 1);
    // The REST API answers 401 with a Basic challenge.
    const rest = await httpsGet(certs.caCert, cluster.master.http, "/api/v1/topics", "admin:wrong");
    assert.equal(rest.status, 401);
  });

  it("refuses expired and untrusted client certificates, naming why, and counts them", async () => {
    await assert.rejects(
      client({ tls: { ca: certs.caCert, cert: certs.expired.cert, key: certs.expired.key } }).admin().listTopics(),
      (err: { code: string; message: string }) => err.code === "AUTHENTICATION_FAILED" && /CERT_HAS_EXPIRED/.test(err.message),
    );
    await assert.rejects(
      client({ tls: { ca: certs.caCert, cert: certs.untrusted.cert, key: certs.untrusted.key } }).admin().listTopics(),
      (err: { code: string; message: string }) => err.code === "AUTHENTICATION_FAILED" && /--tls-ca/.test(err.message),
    );
    assert.ok((await metricValue(certs, cluster.nsHttp, "sluice_authentication_failures_total", { reason: "certificate_expired" })) >= 1);
    assert.ok((await metricValue(certs, cluster.nsHttp, "sluice_authentication_failures_total", { reason: "certificate_untrusted" })) >= 1);
    // A valid certificate is an identity of its own: User:alice, with no ACLs yet.
    const mtls = client({ tls: { ca: certs.caCert, cert: certs.clients.alice.cert, key: certs.clients.alice.key } });
    assert.deepEqual(await mtls.admin().listTopics(), [], "alice may describe no topic yet");
  });

  it("refuses produce without the ACL and appends nothing; an ACL change reaches a live connection within 1 s", async () => {
    const added = await cli([...adminFlags(), "user", "add", "alice", "--password-file", alicePasswordFile]);
    assert.equal(added.code, 0, added.stderr);
    assert.ok(!added.stdout.includes(ALICE_PASSWORD) && !added.stderr.includes(ALICE_PASSWORD));
    const describe = await cli([...adminFlags(), "acl", "add", "--principal", "User:alice", "--operation", "describe", "--resource", "topic:orders"]);
    assert.equal(describe.code, 0, describe.stderr);

    const admin = asAdmin().admin();
    const endBefore = (await admin.listOffsets("orders", "latest")).get(0);
    const alice = client({ tls: { ca: certs.caCert }, credentials: { username: "alice", password: ALICE_PASSWORD } });
    const producer = alice.producer({ acks: "all" });
    await assert.rejects(producer.send("orders", [{ value: Buffer.from("denied") }]), (err: { code: string; message: string }) => {
      assert.equal(err.code, "NOT_AUTHORIZED");
      assert.match(err.message, /produce/);
      return true;
    });
    assert.equal((await admin.listOffsets("orders", "latest")).get(0), endBefore, "nothing appended");

    // Granted: the same producer (same connection) gets through within 1 s of the change.
    const grant = await cli([...adminFlags(), "acl", "add", "--principal", "User:alice", "--operation", "produce", "--resource", "topic:ord*"]);
    assert.equal(grant.code, 0, grant.stderr);
    const grantedAt = Date.now();
    await sendUntil(producer, (ok) => ok, 3_000);
    const allowedAfterMs = Date.now() - grantedAt;
    assert.ok(allowedAfterMs < 1_000, `the grant took ${allowedAfterMs} ms to apply`);

    // Revoked: refused again within 1 s, on the same connection.
    const revoke = await cli([...adminFlags(), "acl", "delete", "--principal", "User:alice", "--operation", "produce", "--resource", "topic:ord*"]);
    assert.equal(revoke.code, 0, revoke.stderr);
    const revokedAt = Date.now();
    await sendUntil(producer, (ok) => !ok, 3_000);
    const deniedAfterMs = Date.now() - revokedAt;
    assert.ok(deniedAfterMs < 1_000, `the revocation took ${deniedAfterMs} ms to apply`);
  });

  it("a queue consumer's live stream ends with NOT_AUTHORIZED within 1 s of its ACL's deletion", async () => {
    const admin = asAdmin();
    await admin.admin().createTopic("jobs", { partitions: 1 });
    for (const resource of ["group:sec-workers", "topic:jobs"]) {
      const added = await cli([...adminFlags(), "acl", "add", "--principal", "User:alice", "--operation", "consume", "--resource", resource]);
      assert.equal(added.code, 0, added.stderr);
    }
    const producer = admin.producer({ acks: "all" });
    const alice = client({ tls: { ca: certs.caCert }, credentials: { username: "alice", password: ALICE_PASSWORD } });
    const jobs = alice.queue({ group: "sec-workers", topic: "jobs" })[Symbol.asyncIterator]();
    let sent = 0;
    const feed = setInterval(() => void producer.send("jobs", [{ value: Buffer.from(`job-${sent++}`) }]).catch(() => undefined), 50);
    try {
      // The grant reaches the broker through WatchSecurity; the first job shows it did.
      const first = await jobs.next();
      assert.equal(first.done, false);
      await first.value.ack();
      const revoke = await cli([...adminFlags(), "acl", "delete", "--principal", "User:alice", "--operation", "consume", "--resource", "topic:jobs"]);
      assert.equal(revoke.code, 0, revoke.stderr);
      const revokedAt = Date.now();
      for (;;) {
        let next: IteratorResult<{ ack(): Promise<void> }>;
        try {
          next = await jobs.next();
        } catch (err) {
          assert.equal((err as { code: string }).code, "NOT_AUTHORIZED");
          break;
        }
        assert.equal(next.done, false, "the stream ended without the error");
        await next.value.ack().catch(() => undefined);
        assert.ok(Date.now() - revokedAt < 3_000, "still receiving jobs 3 s after the revocation");
      }
      const deniedAfterMs = Date.now() - revokedAt;
      assert.ok(deniedAfterMs < 1_000, `the revocation took ${deniedAfterMs} ms to end the stream`);
    } finally {
      clearInterval(feed);
    }
  });
});

/** Sends one message every 25 ms until `done(succeeded)`; fails after `timeoutMs`. */
async function sendUntil(producer: { send(topic: string, messages: { value: Buffer }[]): Promise<unknown> }, done: (ok: boolean) => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ok: boolean;
    try {
      await producer.send("orders", [{ value: Buffer.from("probe") }]);
      ok = true;
    } catch (err) {
      if ((err as { code?: string }).code !== "NOT_AUTHORIZED") throw err;
      ok = false;
    }
    if (done(ok)) return;
    if (Date.now() > deadline) throw new Error("the ACL change never applied");
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
