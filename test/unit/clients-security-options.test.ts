/**
 * The SDK's `tls` and `credentials` options: validated once (InvalidArgumentError naming the
 * field, never repeating a secret), never shown by JSON.stringify or util.inspect, and used by
 * every channel the client opens: the Authorization header reaches the name server, broker,
 * groups and security services, and a TLS server is reached only with its CA.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { format, inspect } from "node:util";
import { Sluice, SluiceError } from "../../clients/src/index.js";
import { parseSluiceOptions, type SluiceOptions } from "../../clients/src/options.js";
import { devCertificates, type DevCerts } from "../helpers/tls.js";
import { RecordingServer } from "./clients-fake-recording-server.js";

const PASSWORD = "correct-horse-battery-staple";
const BASIC = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString("base64")}`;
const FAST = { requestTimeoutMs: 3_000, retry: { retries: 0 } } satisfies SluiceOptions;

/** A line from the middle of a PEM key: what would show if any part of the key leaked. */
function keyLine(key: Buffer): string {
  const lines = key.toString("utf8").split("\n").filter((line) => line !== "" && !line.startsWith("-----"));
  return lines[Math.floor(lines.length / 2)] as string;
}

function invalid(options: SluiceOptions, pattern: RegExp, secret?: string): void {
  assert.throws(
    () => parseSluiceOptions(options),
    (err: unknown) => {
      assert.ok(err instanceof SluiceError, `a SluiceError, got ${String(err)}`);
      assert.equal(err.code, "INVALID_ARGUMENT");
      assert.match(err.message, pattern);
      if (secret !== undefined) assert.ok(!err.message.includes(secret), `the message repeats the secret: ${err.message}`);
      return true;
    },
  );
}

describe("Sluice security options", () => {
  let certs: DevCerts;
  before(async () => {
    certs = await devCertificates();
  });

  describe("validation", () => {
    it("takes tls: true (the CAs Node.js trusts), PEM as text or bytes, and leaves plain text by default", () => {
      assert.equal(parseSluiceOptions({}).tls, undefined);
      assert.equal(parseSluiceOptions({}).credentials, undefined);
      assert.equal(parseSluiceOptions({ tls: false }).tls, undefined);
      const system = parseSluiceOptions({ tls: true }).tls;
      assert.ok(system !== undefined);
      assert.equal(system.ca, undefined);
      const text = parseSluiceOptions({ tls: { ca: certs.caCert.toString("utf8"), serverName: "localhost" } }).tls;
      assert.deepEqual(text?.ca, certs.caCert);
      assert.equal(text?.serverName, "localhost");
      const mtls = parseSluiceOptions({ tls: { ca: certs.caCert, cert: certs.clients.alice.cert, key: certs.clients.alice.key } }).tls;
      assert.deepEqual(mtls?.key, certs.clients.alice.key);
    });

    it("refuses malformed TLS options, naming the field", () => {
      invalid({ tls: "ca.crt" as never }, /^tls must be true .* got a string/);
      invalid({ tls: { ca: 42 as never } }, /^tls\.ca must be PEM text or a Buffer/);
      invalid({ tls: { ca: "ca.crt" } }, /^tls\.ca is not PEM .*not its name/);
      invalid({ tls: { ca: "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n" } }, /^tls\.ca is not a PEM certificate/);
      invalid({ tls: { ca: certs.caCert, serverName: "" } }, /^tls\.serverName must be a host name/);
      invalid({ tls: { ca: certs.caCert, crt: certs.server.cert } as never }, /unknown tls option "crt"; known options: ca, cert, key, serverName/);
    });

    it("refuses a certificate without its key and a key that is not the certificate's, never showing the key", () => {
      const key = certs.clients.admin.key;
      invalid({ tls: { cert: certs.clients.alice.cert } }, /^tls\.cert needs tls\.key/);
      invalid({ tls: { key } }, /^tls\.key needs tls\.cert/, keyLine(key));
      invalid({ tls: { cert: certs.clients.alice.cert, key } }, /^tls\.key is not usable with tls\.cert/, keyLine(key));
      invalid({ tls: { cert: certs.clients.alice.cert, key: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n" } }, /^tls\.key is not usable/, "c2VjcmV0LWtleQ==");
    });

    it("refuses a user name with ':' and an empty password; no message repeats the password", () => {
      invalid({ credentials: { username: "ali:ce", password: PASSWORD } }, /^credentials\.username "ali:ce" contains ":"/, PASSWORD);
      invalid({ credentials: { username: "", password: PASSWORD } }, /^credentials\.username must be a non-empty string, got an empty string/, PASSWORD);
      invalid({ credentials: { username: 7 as never, password: PASSWORD } }, /^credentials\.username must be a non-empty string, got a number/, PASSWORD);
      invalid({ credentials: { username: "alice", password: "" } }, /^credentials\.password of user "alice" is empty/);
      invalid({ credentials: { username: "alice", password: Buffer.from(PASSWORD) as never } }, /^credentials\.password must be a string, got a Buffer/, PASSWORD);
      invalid({ credentials: { username: "alice", password: PASSWORD, pasword: PASSWORD } as never }, /unknown credentials option "pasword"/, PASSWORD);
      invalid({ credentials: `alice:${PASSWORD}` as never }, /^credentials must be an object .* got a string/, PASSWORD);
    });
  });

  describe("no secret in logs", () => {
    it("JSON.stringify, util.inspect and %o of the parsed options and of the client show neither the password nor the key", async () => {
      const key = certs.clients.alice.key;
      const sluice = new Sluice({
        nameservers: ["127.0.0.1:1"],
        tls: { ca: certs.caCert, cert: certs.clients.alice.cert, key },
        credentials: { username: "alice", password: PASSWORD },
      });
      try {
        const shown = [
          JSON.stringify(sluice.options),
          JSON.stringify(sluice),
          JSON.stringify({ credentials: sluice.options.credentials, tls: sluice.options.tls }),
          inspect(sluice.options, { depth: Infinity, showHidden: true, getters: true }),
          inspect(sluice, { depth: Infinity, showHidden: true, getters: true }),
          format("%o %O %j", sluice.options.credentials, sluice.options.tls, sluice.options.credentials),
          String(sluice.options.credentials),
        ];
        for (const text of shown) {
          assert.ok(!text.includes(PASSWORD), `the password shows in ${text.slice(0, 200)}`);
          assert.ok(!text.includes(BASIC.slice("Basic ".length)), "the encoded credentials show");
          assert.ok(!text.includes(keyLine(key)), "the private key shows");
        }
        assert.match(JSON.stringify(sluice.options), /"credentials":\{"username":"alice","password":"\[redacted\]"\}/);
        assert.match(inspect(sluice.options), /username: 'alice', password: '\[redacted\]'/);
        assert.match(inspect(sluice.options), /key: '\[redacted\]'/);
        // Still there for the channels, to a caller who asks by name.
        assert.equal(sluice.options.credentials?.password, PASSWORD);
        assert.deepEqual(sluice.options.tls?.key, key);
      } finally {
        await sluice.close();
      }
    });
  });

  describe("the Authorization header", () => {
    let server: RecordingServer;
    before(async () => {
      server = await new RecordingServer().start();
    });
    after(() => server.stop());

    it("goes with every call: name server, route watch, broker, groups and security service", async () => {
      server.calls.length = 0;
      const sluice = new Sluice({ nameservers: [server.address], credentials: { username: "alice", password: PASSWORD }, ...FAST });
      try {
        const admin = sluice.admin();
        assert.equal((await admin.cluster()).brokers.length, 1);
        const described = await admin.describeTopic("t");
        assert.equal(described.partitions[0]?.endOffset, 5);
        assert.deepEqual((await admin.listGroups()).map((g) => g.group), ["billing"]);
        assert.deepEqual((await admin.listUsers()).map((u) => u.name), ["admin"]);
      } finally {
        await sluice.close();
      }
      for (const method of ["ListBrokers", "GetRoutes", "WatchRoutes", "Handshake", "DescribePartitions", "ListGroups", "ListUsers"]) {
        assert.ok(server.callsTo(method).length > 0, `${method} was called`);
      }
      for (const call of server.calls) assert.equal(call.authorization, BASIC, `${call.path} carries the credentials`);
    });

    it("is not sent without credentials", async () => {
      server.calls.length = 0;
      const sluice = new Sluice({ nameservers: [server.address], ...FAST });
      try {
        await sluice.admin().cluster();
        await sluice.admin().listUsers();
      } finally {
        await sluice.close();
      }
      assert.ok(server.calls.length >= 2);
      for (const call of server.calls) assert.equal(call.authorization, undefined, `${call.path} carries no credentials`);
    });
  });

  describe("TLS", () => {
    let server: RecordingServer;
    before(async () => {
      server = await new RecordingServer().start({ cert: certs.server.cert, key: certs.server.key });
    });
    after(() => server.stop());

    it("reaches a TLS server on every channel with tls: { ca }, credentials included", async () => {
      server.calls.length = 0;
      const sluice = new Sluice({ nameservers: [server.address], tls: { ca: certs.caCert }, credentials: { username: "alice", password: PASSWORD }, ...FAST });
      try {
        assert.equal((await sluice.admin().describeTopic("t")).partitions[0]?.error, undefined);
        assert.deepEqual((await sluice.admin().listGroups()).map((g) => g.group), ["billing"]);
        assert.deepEqual((await sluice.admin().listUsers()).map((u) => u.name), ["admin"]);
      } finally {
        await sluice.close();
      }
      for (const method of ["GetRoutes", "Handshake", "DescribePartitions", "ListGroups", "ListUsers"]) {
        assert.ok(server.callsTo(method).length > 0, `${method} reached the server over TLS`);
      }
      for (const call of server.calls) assert.equal(call.authorization, BASIC);
    });

    it("checks the name against tls.serverName when the address says otherwise", async () => {
      const sluice = new Sluice({ nameservers: [server.address], tls: { ca: certs.caCert, serverName: "localhost" }, ...FAST });
      try {
        assert.equal((await sluice.admin().cluster()).brokers.length, 1);
      } finally {
        await sluice.close();
      }
      const wrongName = new Sluice({ nameservers: [server.address], tls: { ca: certs.caCert, serverName: "elsewhere.example" }, ...FAST });
      try {
        await assert.rejects(wrongName.admin().cluster(), (err: SluiceError) => err.code === "BROKER_UNAVAILABLE" || err.code === "REQUEST_TIMED_OUT");
      } finally {
        await wrongName.close();
      }
    });

    it("fails without the CA (the CAs Node.js trusts do not include it) and in plain text", async () => {
      const before = server.calls.length;
      for (const options of [{ tls: true }, {}] satisfies SluiceOptions[]) {
        const sluice = new Sluice({ nameservers: [server.address], credentials: { username: "alice", password: PASSWORD }, ...options, ...FAST });
        try {
          await assert.rejects(sluice.admin().cluster(), (err: SluiceError) => {
            assert.ok(err.code === "BROKER_UNAVAILABLE" || err.code === "REQUEST_TIMED_OUT", `${err.code}: ${err.message}`);
            assert.ok(!err.message.includes(PASSWORD));
            return true;
          });
        } finally {
          await sluice.close();
        }
      }
      assert.equal(server.calls.length, before, "no call got through");
      assert.ok(server.handshakeFailures.length >= 2, `failed handshakes recorded: ${server.handshakeFailures.join(", ")}`);
    });
  });
});
