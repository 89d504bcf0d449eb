/**
 * The gRPC side of server security, in process but over real loopback sockets and real TLS:
 * the listener (TLS termination, connection limits, handshake failures) and the interceptor
 * (passwords, client certificates, in-flight limit), with a one-method service that answers
 * the principal the handler sees.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { makeGenericClientConstructor, Server, type Client, type ServiceDefinition } from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { fromServiceError, unary } from "../../common/src/grpc/errors.js";
import { SecureChannels, type ChannelSecurity } from "../../common/src/grpc/channel-security.js";
import { GrpcListener, type GrpcListenerOptions } from "../../common/src/grpc/listener.js";
import { silentLogger } from "../../common/src/logger.js";
import { hashPassword } from "../../common/src/security/password.js";
import { SecurityMetrics } from "../../common/src/security/security-metrics.js";
import { ServerSecurity } from "../../common/src/security/server-security.js";
import { devCertificates, type DevCerts } from "../helpers/tls.js";

const identity = (b: Buffer): Buffer => b;
const WHOAMI: ServiceDefinition = {
  whoami: {
    path: "/sluice.test.Probe/WhoAmI",
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};
const ProbeClient = makeGenericClientConstructor(WHOAMI, "Probe");

interface Running {
  port: number;
  security: ServerSecurity;
  registry: Registry;
  stop(): Promise<void>;
}

async function startServer(options: { auth: boolean; tls?: GrpcListenerOptions["tls"]; maxConnectionsPerClient?: number; maxInFlight?: number; slowMs?: number }): Promise<Running> {
  const registry = new Registry();
  const metrics = new SecurityMetrics(registry);
  const security = await ServerSecurity.create({
    auth: options.auth,
    adminPassword: "admin-secret-1",
    metrics,
    logger: silentLogger,
    ...(options.maxInFlight ? { maxInFlightPerConnection: options.maxInFlight } : {}),
  });
  security.update({ version: 1, users: [{ name: "alice", passwordHash: await hashPassword("alice-secret-1"), superuser: false }], acls: [] });
  const server = new Server({ interceptors: [security.interceptor()] });
  server.addService(WHOAMI, {
    whoami: unary(async (_request: Buffer, call) => {
      if (options.slowMs) await new Promise((resolve) => setTimeout(resolve, options.slowMs));
      return Buffer.from(security.principalOf(call).name);
    }),
  });
  const listener = await GrpcListener.listen(server, {
    host: "127.0.0.1",
    port: 0,
    tls: options.tls,
    logger: silentLogger,
    onHandshakeFailure: (reason) => metrics.handshakeFailed(reason),
    onConnectionRefused: (limit) => metrics.connectionRefused(limit),
    ...(options.maxConnectionsPerClient ? { maxConnectionsPerClient: options.maxConnectionsPerClient } : {}),
  });
  security.useConnectionFacts((peer) => listener.connection(peer));
  return {
    port: listener.port,
    security,
    registry,
    stop: async () => {
      listener.close();
      server.forceShutdown();
    },
  };
}

function client(port: number, security: ChannelSecurity = {}): Client {
  const channels = new SecureChannels(security);
  return new ProbeClient(`127.0.0.1:${port}`, channels.credentials, channels.options({ "grpc.enable_retries": 0, "grpc.use_local_subchannel_pool": 1 }));
}

function whoami(c: Client): Promise<string> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 5_000;
    (c as unknown as { whoami(req: Buffer, opts: object, cb: (err: unknown, res?: Buffer) => void): void }).whoami(Buffer.alloc(0), { deadline }, (err, res) =>
      err ? reject(fromServiceError(err)) : resolve(String(res)),
    );
  });
}

async function counterValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  const value = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

describe("gRPC server security", () => {
  let certs: DevCerts;
  before(async () => {
    certs = await devCertificates();
  });

  describe("TLS without --auth", () => {
    let server: Running;
    before(async () => {
      server = await startServer({ auth: false, tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.caCert } });
    });
    after(() => server.stop());

    it("serves a client that trusts the CA, as ANONYMOUS", async () => {
      const c = client(server.port, { tls: { ca: certs.caCert } });
      assert.equal(await whoami(c), "User:ANONYMOUS");
      c.close();
    });

    it("refuses a plain-text client and counts the failed handshake", async () => {
      const c = client(server.port);
      await assert.rejects(whoami(c), (err: { code: string }) => err.code === "BROKER_UNAVAILABLE");
      c.close();
      assert.ok((await counterValue(server.registry, "sluice_tls_handshake_failures_total", { reason: "not_tls" })) >= 1);
    });

    it("refuses a client that does not trust the server's CA", async () => {
      const c = client(server.port, { tls: { ca: certs.untrusted.cert } });
      await assert.rejects(whoami(c), (err: { code: string }) => err.code === "BROKER_UNAVAILABLE");
      c.close();
    });

    it("refuses an expired client certificate even without --auth, naming the reason, and counts it", async () => {
      const c = client(server.port, { tls: { ca: certs.caCert, cert: certs.expired.cert, key: certs.expired.key } });
      await assert.rejects(whoami(c), (err: { code: string; message: string }) => err.code === "AUTHENTICATION_FAILED" && /CERT_HAS_EXPIRED/.test(err.message));
      c.close();
      assert.equal(await counterValue(server.registry, "sluice_authentication_failures_total", { reason: "certificate_expired" }), 1);
    });

    it("refuses a certificate from an untrusted CA", async () => {
      const c = client(server.port, { tls: { ca: certs.caCert, cert: certs.untrusted.cert, key: certs.untrusted.key } });
      await assert.rejects(whoami(c), (err: { code: string; message: string }) => err.code === "AUTHENTICATION_FAILED" && /--tls-ca/.test(err.message));
      c.close();
      assert.equal(await counterValue(server.registry, "sluice_authentication_failures_total", { reason: "certificate_untrusted" }), 1);
    });
  });

  describe("TLS with --auth", () => {
    let server: Running;
    before(async () => {
      server = await startServer({ auth: true, tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.caCert } });
    });
    after(() => server.stop());

    it("takes a password user, and the client certificate's CN without one", async () => {
      const pw = client(server.port, { tls: { ca: certs.caCert }, credentials: { username: "alice", password: "alice-secret-1" } });
      assert.equal(await whoami(pw), "User:alice");
      assert.equal(await whoami(pw), "User:alice", "the second call takes the cached verification");
      pw.close();
      const mtls = client(server.port, { tls: { ca: certs.caCert, cert: certs.clients.alice.cert, key: certs.clients.alice.key } });
      assert.equal(await whoami(mtls), "User:alice");
      mtls.close();
      const admin = client(server.port, { tls: { ca: certs.caCert }, credentials: { username: "admin", password: "admin-secret-1" } });
      assert.equal(await whoami(admin), "User:admin");
      admin.close();
    });

    it("refuses no credentials, a wrong password and an unknown user alike, and counts them", async () => {
      const none = client(server.port, { tls: { ca: certs.caCert } });
      await assert.rejects(whoami(none), (err: { code: string; message: string }) => err.code === "AUTHENTICATION_FAILED" && /--user/.test(err.message));
      none.close();
      const messages: string[] = [];
      for (const credentials of [{ username: "alice", password: "wrong-password" }, { username: "mallory", password: "alice-secret-1" }]) {
        const c = client(server.port, { tls: { ca: certs.caCert }, credentials });
        await assert.rejects(whoami(c), (err: { code: string; message: string }) => {
          messages.push(err.message.replace(credentials.username, "X"));
          return err.code === "AUTHENTICATION_FAILED";
        });
        c.close();
      }
      assert.equal(messages[0], messages[1], "an unknown user and a wrong password must read the same");
      assert.equal(await counterValue(server.registry, "sluice_authentication_failures_total", { reason: "bad_credentials", transport: "grpc" }), 2);
      assert.equal(await counterValue(server.registry, "sluice_authentication_failures_total", { reason: "missing_credentials", transport: "grpc" }), 1);
    });

    it("a principal authenticated before its user was deleted may do nothing more (open streams)", async () => {
      const alice = { name: "User:alice", superuser: false, method: "password" as const };
      server.security.update({ version: 3, users: [{ name: "alice", passwordHash: await hashPassword("alice-secret-1"), superuser: false }], acls: [{ principal: "User:alice", operation: "produce", resourceType: "topic", resourceName: "orders", patternType: "literal", permission: "allow" }] });
      server.security.require(alice, "produce", "topic", "orders");
      server.security.update({ version: 4, users: [], acls: [{ principal: "User:alice", operation: "produce", resourceType: "topic", resourceName: "orders", patternType: "literal", permission: "allow" }] });
      assert.throws(() => server.security.require(alice, "produce", "topic", "orders"), (err: { code: string }) => err.code === "AUTHENTICATION_FAILED");
      assert.equal(server.security.allows(alice, "produce", "topic", "orders"), false);
      // A certificate principal names no stored user: its ACLs alone decide.
      const byCertificate = { name: "User:alice", superuser: false, method: "certificate" as const };
      assert.equal(server.security.allows(byCertificate, "produce", "topic", "orders"), true);
      server.security.update({ version: 5, users: [{ name: "alice", passwordHash: await hashPassword("alice-secret-1"), superuser: false }], acls: [] });
    });

    it("a deleted user is refused on a connection that was authenticated before", async () => {
      const c = client(server.port, { tls: { ca: certs.caCert }, credentials: { username: "alice", password: "alice-secret-1" } });
      assert.equal(await whoami(c), "User:alice");
      server.security.update({ version: 2, users: [], acls: [] });
      await assert.rejects(whoami(c), (err: { code: string }) => err.code === "AUTHENTICATION_FAILED");
      c.close();
    });
  });

  describe("limits", () => {
    it("answers a connection over the per-client limit with TOO_MANY_REQUESTS naming the flag", async () => {
      const server = await startServer({ auth: false, maxConnectionsPerClient: 1 });
      try {
        const first = client(server.port);
        assert.equal(await whoami(first), "User:ANONYMOUS");
        const second = client(server.port);
        await assert.rejects(whoami(second), (err: { code: string; message: string; retriable: boolean }) => err.code === "TOO_MANY_REQUESTS" && err.retriable && /--max-connections-per-client 1/.test(err.message));
        assert.equal(await whoami(first), "User:ANONYMOUS", "the connection within the limit is unaffected");
        first.close();
        assert.equal(await counterValue(server.registry, "sluice_connections_refused_total", { limit: "per_client" }), 1);
        // The refused connection is closed after its grace (2 s) whatever the client does; its
        // next connection is judged afresh and, with the slot now free, served.
        await new Promise((resolve) => setTimeout(resolve, 2_300));
        assert.equal(await whoami(second), "User:ANONYMOUS");
        second.close();
      } finally {
        await server.stop();
      }
    });

    it("refuses calls past the in-flight limit of a connection, and serves again once they finish", async () => {
      const server = await startServer({ auth: false, maxInFlight: 2, slowMs: 300 });
      try {
        const c = client(server.port);
        const results = await Promise.allSettled([whoami(c), whoami(c), whoami(c)]);
        const refused = results.filter((r) => r.status === "rejected");
        assert.equal(refused.length, 1);
        assert.match(String((refused[0] as PromiseRejectedResult).reason.message), /--max-in-flight-per-connection 2/);
        assert.equal(await whoami(c), "User:ANONYMOUS");
        c.close();
      } finally {
        await server.stop();
      }
    });
  });
});
