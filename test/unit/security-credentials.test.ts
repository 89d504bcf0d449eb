import assert from "node:assert/strict";
import crypto from "node:crypto";
import { syncBuiltinESMExports } from "node:module";
import type { PeerCertificate } from "node:tls";
import { after, before, beforeEach, describe, it, mock } from "node:test";
import { AuthenticationFailedError, InvalidArgumentError } from "../../common/src/errors.js";
import { basicAuthHeader, parseBasicAuth } from "../../common/src/security/basic-auth.js";
import { principalFromCertificate } from "../../common/src/security/certificate-identity.js";
import { CredentialVerifier } from "../../common/src/security/credentials.js";
import { hashPassword } from "../../common/src/security/password.js";
import type { SecuritySnapshot, UserRecord } from "../../common/src/security/types.js";

const snapshot = (users: UserRecord[], version = 1): SecuritySnapshot => ({ version, users, acls: [] });

/** Asserts an AuthenticationFailedError with exactly this message. */
async function refused(promise: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof AuthenticationFailedError, String(err));
    assert.equal(err.message, message);
    return true;
  });
}

describe("CredentialVerifier", () => {
  let alice: UserRecord;
  let aliceRehashed: UserRecord;
  let ops: UserRecord;
  // Counts scrypt runs: password.ts imports it by name, which syncBuiltinESMExports re-points.
  let scrypt: ReturnType<typeof mock.method>;

  before(async () => {
    alice = { name: "alice", passwordHash: await hashPassword("alice-pass-1"), superuser: false };
    aliceRehashed = { name: "alice", passwordHash: await hashPassword("alice-pass-2"), superuser: false };
    ops = { name: "ops", passwordHash: await hashPassword("ops-pass-123"), superuser: true };
    scrypt = mock.method(crypto, "scrypt");
    syncBuiltinESMExports();
  });
  after(() => {
    scrypt.mock.restore();
    syncBuiltinESMExports();
  });
  beforeEach(() => scrypt.mock.resetCalls());

  it("returns the user's principal for the right password", async () => {
    const verifier = new CredentialVerifier(snapshot([alice, ops]));
    assert.deepEqual(await verifier.verify("alice", "alice-pass-1"), { name: "User:alice", superuser: false, method: "password" });
    assert.deepEqual(await verifier.verify("ops", "ops-pass-123"), { name: "User:ops", superuser: true, method: "password" });
  });

  it("says the same for an unknown user and a wrong password, and spends a scrypt on both", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    await refused(verifier.verify("alice", "wrong-password"), "unknown user or wrong password for alice");
    assert.equal(scrypt.mock.callCount(), 1);
    await refused(verifier.verify("mallory", "wrong-password"), "unknown user or wrong password for mallory");
    assert.equal(scrypt.mock.callCount(), 2);
    await refused(verifier.verify("bad name\n", "x"), 'unknown user or wrong password for "bad name\\n"');
  });

  it("runs scrypt once, then answers from the HMAC cache", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    await verifier.verify("alice", "alice-pass-1");
    assert.equal(scrypt.mock.callCount(), 1);
    for (let i = 0; i < 5; i++) await verifier.verify("alice", "alice-pass-1");
    assert.equal(scrypt.mock.callCount(), 1);
    // A wrong password is not decided from the cache: it costs what it would without one.
    await refused(verifier.verify("alice", "alice-pass-X"), "unknown user or wrong password for alice");
    assert.equal(scrypt.mock.callCount(), 2);
    assert.ok(await verifier.verify("alice", "alice-pass-1"));
    assert.equal(scrypt.mock.callCount(), 2);
  });

  it("a changed password invalidates the cached HMAC", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    await verifier.verify("alice", "alice-pass-1");
    verifier.update(snapshot([aliceRehashed], 2));
    await refused(verifier.verify("alice", "alice-pass-1"), "unknown user or wrong password for alice");
    assert.ok(await verifier.verify("alice", "alice-pass-2"));
  });

  it("a deleted user's cached HMAC is refused", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    await verifier.verify("alice", "alice-pass-1");
    verifier.update(snapshot([], 2));
    scrypt.mock.resetCalls();
    await refused(verifier.verify("alice", "alice-pass-1"), "unknown user or wrong password for alice");
    assert.equal(scrypt.mock.callCount(), 1, "the refusal costs a decoy scrypt, like any unknown user");
    // Re-created with the same stored hash: verified afresh, then accepted.
    verifier.update(snapshot([alice], 3));
    assert.ok(await verifier.verify("alice", "alice-pass-1"));
  });

  it("a superuser flag change shows in the next principal without a new scrypt", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    await verifier.verify("alice", "alice-pass-1");
    verifier.update(snapshot([{ ...alice, superuser: true }], 2));
    assert.equal((await verifier.verify("alice", "alice-pass-1")).superuser, true);
    assert.equal(scrypt.mock.callCount(), 1);
  });

  it("concurrent verifications of the same pair share one scrypt", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    const principals = await Promise.all(Array.from({ length: 8 }, () => verifier.verify("alice", "alice-pass-1")));
    assert.equal(scrypt.mock.callCount(), 1);
    assert.ok(principals.every((p) => p.name === "User:alice"));

    scrypt.mock.resetCalls();
    const wrong = await Promise.allSettled(Array.from({ length: 4 }, () => verifier.verify("alice", "not-her-password")));
    assert.ok(wrong.every((r) => r.status === "rejected"));
    assert.equal(scrypt.mock.callCount(), 1);
  });

  it("runs one scrypt at a time with at most 32 waiting: past that a caller is refused at once, retriable", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    // 40 different wrong passwords at once: each needs its own scrypt.
    const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => verifier.verify("alice", `wrong-password-${i}`)));
    const codes = results.map((r) => (r.status === "rejected" ? (r.reason as { code: string }).code : "accepted"));
    assert.equal(codes.filter((c) => c === "AUTHENTICATION_FAILED").length, 33, "one running and 32 waiting were checked");
    assert.equal(codes.filter((c) => c === "TOO_MANY_REQUESTS").length, 7);
    assert.equal(scrypt.mock.callCount(), 33);
    const refused = results.find((r) => r.status === "rejected" && (r.reason as { code: string }).code === "TOO_MANY_REQUESTS") as PromiseRejectedResult;
    assert.equal((refused.reason as { retriable: boolean }).retriable, true);
    // The slots free up again: the right password gets through.
    assert.equal((await verifier.verify("alice", "alice-pass-1")).name, "User:alice");
  });

  it("different passwords for the same user are checked separately", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    const [good, bad] = await Promise.allSettled([verifier.verify("alice", "alice-pass-1"), verifier.verify("alice", "alice-pass-9")]);
    assert.equal(good.status, "fulfilled");
    assert.equal(bad.status, "rejected");
    assert.equal(scrypt.mock.callCount(), 2);
  });

  it("a user deleted while scrypt runs is not accepted", async () => {
    const verifier = new CredentialVerifier(snapshot([alice]));
    const pending = verifier.verify("alice", "alice-pass-1");
    verifier.update(snapshot([], 2));
    await refused(pending, "unknown user or wrong password for alice");
  });

  it("the built-in admin is a superuser no snapshot can replace", async () => {
    const verifier = await CredentialVerifier.withAdminPassword("admin-secret", snapshot([]));
    assert.deepEqual(await verifier.verify("admin", "admin-secret"), { name: "User:admin", superuser: true, method: "password" });
    const intruder: UserRecord = { name: "admin", passwordHash: alice.passwordHash, superuser: false };
    verifier.update(snapshot([intruder, alice], 2));
    await refused(verifier.verify("admin", "alice-pass-1"), "unknown user or wrong password for admin");
    assert.ok(await verifier.verify("admin", "admin-secret"));
    assert.ok(await verifier.verify("alice", "alice-pass-1"));
  });
});

describe("Basic authorization header", () => {
  it("round-trips user and password, colons and UTF-8 in the password included", () => {
    const header = basicAuthHeader("alice", "pa:ss wörd");
    assert.equal(header, `Basic ${Buffer.from("alice:pa:ss wörd").toString("base64")}`);
    assert.deepEqual(parseBasicAuth(header), { username: "alice", password: "pa:ss wörd" });
    assert.deepEqual(parseBasicAuth(`bAsIc   ${Buffer.from("bob:").toString("base64")}`), { username: "bob", password: "" });
  });

  it("gives undefined for anything that is not a Basic credential", () => {
    const malformed = [
      undefined,
      "",
      "Basic",
      "Basic ",
      "Bearer abc.def",
      `Basic ${Buffer.from("no-colon").toString("base64")}`,
      `Basic ${Buffer.from(":password-only").toString("base64")}`,
      "Basic not*base64",
      "Basic YWJj", // "abc": no colon
      "Basic YWxpY2U6cHc", // unpadded
    ];
    for (const value of malformed) assert.equal(parseBasicAuth(value), undefined, String(value));
  });

  it("refuses a user name that cannot travel", () => {
    assert.throws(() => basicAuthHeader("a:b", "pw"), InvalidArgumentError);
    assert.throws(() => basicAuthHeader("", "pw"), InvalidArgumentError);
  });
});

describe("principalFromCertificate", () => {
  const cert = (subject: unknown): PeerCertificate => ({ subject }) as unknown as PeerCertificate;

  it("is User:<CN>", () => {
    assert.equal(principalFromCertificate(cert({ CN: "billing-service", O: "Example" })), "User:billing-service");
  });

  it("refuses a certificate with no, several or an unusable CN", () => {
    for (const bad of [{} as PeerCertificate, cert({ O: "Example" }), cert({ CN: "" }), cert({ CN: ["a", "b"] }), cert({ CN: "John Smith" }), cert({ CN: "*" })]) {
      assert.throws(() => principalFromCertificate(bad), AuthenticationFailedError);
    }
  });
});
