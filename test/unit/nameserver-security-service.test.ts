/**
 * The name server's Security service over a real in-process grpc-js server: users and ACLs
 * through the store, every field checked, the guard asked before anything happens (a denying
 * guard changes nothing), and WatchSecurity streaming the state and its changes.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";
import { Metadata, Server, ServerCredentials, credentials, type ClientReadableStream } from "@grpc/grpc-js";
import { NotAuthorizedError, SluiceError } from "../../common/src/errors.js";
import { fromServiceError } from "../../common/src/grpc/errors.js";
import type { UnaryMethod } from "../../common/src/grpc/unary-call.js";
import { silentLogger } from "../../common/src/logger.js";
import { openGuard } from "../../common/src/security/open-guard.js";
import { verifyPassword } from "../../common/src/security/password.js";
import type { Operation, Principal, SecurityGuard, SecuritySnapshot as StoredSnapshot } from "../../common/src/security/types.js";
import {
  SecurityClient,
  SecurityService as SecurityServiceDefinition,
  type AclEntry,
  type SecuritySnapshot,
} from "../../proto/gen/sluice/v1/security.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";
import { ADMIN_IS_BUILT_IN, SecurityService } from "../../nameserver/src/security-service.js";

const PASSWORD = "s3cret-Passw0rd";
const PRODUCE_ORDERS: AclEntry = {
  principal: "User:alice",
  operation: "produce",
  resourceType: "topic",
  resourceName: "orders.",
  patternType: "prefix",
  permission: "allow",
};

/** A guard that lets callers do only the operations in `allowed`, and records what it was asked. */
class FakeGuard implements SecurityGuard {
  readonly enabled = true;
  readonly asked: string[] = [];
  allowed = new Set<Operation>();

  principalOf(call: { metadata: Metadata }): Principal {
    const user = String(call.metadata.get("x-test-user")[0] ?? "nobody");
    return { name: `User:${user}`, superuser: false, method: "password" };
  }

  require(principal: Principal, operation: Operation, resourceType: string, resourceName: string): void {
    this.asked.push(`${principal.name} ${operation} ${resourceType}:${resourceName}`);
    if (!this.allowed.has(operation)) throw new NotAuthorizedError(`${principal.name} may not ${operation} the cluster`);
  }

  allows(): boolean {
    return false;
  }
}

/** Counts the watchers following it, to see a stream let go of the store. */
class WatchedStore extends MemoryRegistryStore {
  watchers = 0;

  override watchSecurity(listener: (snapshot: StoredSnapshot) => void): () => void {
    const unsubscribe = super.watchSecurity(listener);
    this.watchers++;
    return () => {
      this.watchers--;
      unsubscribe();
    };
  }
}

interface Harness {
  client: SecurityClient;
  store: WatchedStore;
  service: SecurityService;
  server: Server;
}

async function startHarness(guard: SecurityGuard): Promise<Harness> {
  const store = new WatchedStore();
  const service = new SecurityService({ store, guard, logger: silentLogger });
  const server = new Server();
  server.addService(SecurityServiceDefinition, service.handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  const client = new SecurityClient(`127.0.0.1:${port}`, credentials.createInsecure());
  return { client, store, service, server };
}

async function stopHarness(h: Harness | undefined): Promise<void> {
  if (h === undefined) return;
  h.client.close();
  h.service.close();
  h.server.forceShutdown();
  await h.store.close();
}

/** One unary call as user `alice` (for the fake guard), failures as SluiceErrors. */
function call<Req, Res>(h: Harness, method: (c: SecurityClient) => UnaryMethod<Req, Res>, request: Req): Promise<Res> {
  const metadata = new Metadata();
  metadata.set("x-test-user", "alice");
  return new Promise((resolve, reject) => {
    method(h.client).call(h.client, request, metadata, { deadline: Date.now() + 5000 }, (err, response) =>
      err ? reject(fromServiceError(err)) : resolve(response),
    );
  });
}

async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<SluiceError> {
  let caught: unknown;
  await promise.then(
    () => assert.fail(`expected ${code}`),
    (err: unknown) => {
      caught = err;
    },
  );
  assert.ok(caught instanceof SluiceError, String(caught));
  assert.equal(caught.code, code, caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

/** Collects a WatchSecurity stream's messages and how it ended. */
function collect(stream: ClientReadableStream<SecuritySnapshot>): { messages: SecuritySnapshot[]; ended: Promise<string> } {
  const messages: SecuritySnapshot[] = [];
  stream.on("data", (m: SecuritySnapshot) => messages.push(m));
  const ended = new Promise<string>((resolve) => {
    stream.on("error", (err) => resolve(`error ${fromServiceError(err).code}`));
    stream.on("end", () => resolve("end"));
  });
  return { messages, ended };
}

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("Security service, everyone allowed (openGuard)", () => {
  let h: Harness;
  before(async () => {
    h = await startHarness(openGuard);
  });
  after(() => stopHarness(h));

  test("users: create, replace, list with the built-in admin first, delete", async () => {
    const created = await call(h, (c) => c.createUser, { name: "alice", password: PASSWORD, superuser: false, replace: false });
    assert.equal(created.created, true);
    const stored = (await h.store.readSecurity()).users[0];
    assert.equal(stored?.name, "alice");
    assert.ok(await verifyPassword(PASSWORD, stored?.passwordHash ?? ""), "stored as a hash of the password");
    assert.ok(!stored?.passwordHash.includes(PASSWORD));

    await rejectsWith(call(h, (c) => c.createUser, { name: "alice", password: PASSWORD, superuser: false, replace: false }), "USER_ALREADY_EXISTS");
    const replaced = await call(h, (c) => c.createUser, { name: "alice", password: "another-password", superuser: true, replace: true });
    assert.equal(replaced.created, false);

    const listed = await call(h, (c) => c.listUsers, {});
    assert.deepEqual(listed.users, [
      { name: "admin", superuser: true, builtIn: true },
      { name: "alice", superuser: true, builtIn: false },
    ]);

    await call(h, (c) => c.deleteUser, { name: "alice" });
    await rejectsWith(call(h, (c) => c.deleteUser, { name: "alice" }), "UNKNOWN_USER");
    assert.deepEqual((await call(h, (c) => c.listUsers, {})).users.map((u) => u.name), ["admin"]);
  });

  test("users: admin is refused, bad names and passwords name the field and never echo the password", async () => {
    const before = await h.store.readSecurity();
    const admin = await rejectsWith(call(h, (c) => c.createUser, { name: "admin", password: PASSWORD, superuser: false, replace: true }), "INVALID_ARGUMENT");
    assert.equal(admin.message, ADMIN_IS_BUILT_IN);
    await rejectsWith(call(h, (c) => c.deleteUser, { name: "admin" }), "INVALID_ARGUMENT", /built in/);
    await rejectsWith(call(h, (c) => c.createUser, { name: "bad name!", password: PASSWORD, superuser: false, replace: false }), "INVALID_ARGUMENT", /^name: /);
    await rejectsWith(call(h, (c) => c.createUser, { name: "", password: PASSWORD, superuser: false, replace: false }), "INVALID_ARGUMENT", /^name: /);
    await rejectsWith(call(h, (c) => c.deleteUser, { name: "a/b" }), "INVALID_ARGUMENT", /^name: /);
    const short = await rejectsWith(call(h, (c) => c.createUser, { name: "bob", password: "hunter2", superuser: false, replace: false }), "INVALID_ARGUMENT", /^password: /);
    assert.ok(!short.message.includes("hunter2"));
    await rejectsWith(call(h, (c) => c.createUser, { name: "bob", password: "", superuser: false, replace: false }), "INVALID_ARGUMENT", /^password: /);
    assert.deepEqual(await h.store.readSecurity(), before);
  });

  test("ACLs: create (again: not created), list all or one principal's, delete", async () => {
    assert.equal((await call(h, (c) => c.createAcl, { acl: PRODUCE_ORDERS })).created, true);
    assert.equal((await call(h, (c) => c.createAcl, { acl: PRODUCE_ORDERS })).created, false);
    const bobDescribes: AclEntry = { principal: "User:bob", operation: "describe", resourceType: "cluster", resourceName: "cluster", patternType: "literal", permission: "deny" };
    await call(h, (c) => c.createAcl, { acl: bobDescribes });

    assert.equal((await call(h, (c) => c.listAcls, { principal: "" })).acls.length, 2);
    assert.deepEqual((await call(h, (c) => c.listAcls, { principal: "User:alice" })).acls, [PRODUCE_ORDERS]);
    assert.deepEqual((await call(h, (c) => c.listAcls, { principal: "User:carol" })).acls, []);

    await call(h, (c) => c.deleteAcl, { acl: PRODUCE_ORDERS });
    await rejectsWith(call(h, (c) => c.deleteAcl, { acl: PRODUCE_ORDERS }), "UNKNOWN_ACL");
    await call(h, (c) => c.deleteAcl, { acl: bobDescribes });
    assert.deepEqual((await call(h, (c) => c.listAcls, { principal: "" })).acls, []);
  });

  test("ACLs: every bad field is refused, named, and nothing is stored", async () => {
    const before = await h.store.readSecurity();
    await rejectsWith(call(h, (c) => c.createAcl, {}), "INVALID_ARGUMENT", /^acl: /);
    await rejectsWith(call(h, (c) => c.createAcl, { acl: { ...PRODUCE_ORDERS, principal: "alice" } }), "INVALID_ARGUMENT", /principal/);
    await rejectsWith(call(h, (c) => c.createAcl, { acl: { ...PRODUCE_ORDERS, operation: "write" } }), "INVALID_ARGUMENT", /operation/);
    await rejectsWith(call(h, (c) => c.createAcl, { acl: { ...PRODUCE_ORDERS, resourceType: "queue" } }), "INVALID_ARGUMENT", /resourceType/);
    await rejectsWith(call(h, (c) => c.createAcl, { acl: { ...PRODUCE_ORDERS, resourceName: "a b" } }), "INVALID_ARGUMENT", /resourceName/);
    await rejectsWith(call(h, (c) => c.createAcl, { acl: { ...PRODUCE_ORDERS, patternType: "glob" } }), "INVALID_ARGUMENT", /patternType/);
    await rejectsWith(call(h, (c) => c.createAcl, { acl: { ...PRODUCE_ORDERS, permission: "" } }), "INVALID_ARGUMENT", /permission/);
    const clusterProduce = { principal: "User:alice", operation: "produce", resourceType: "cluster", resourceName: "cluster", patternType: "literal", permission: "allow" };
    await rejectsWith(call(h, (c) => c.createAcl, { acl: clusterProduce }), "INVALID_ARGUMENT", /operation/);
    await rejectsWith(call(h, (c) => c.deleteAcl, { acl: { ...PRODUCE_ORDERS, principal: "User:" } }), "INVALID_ARGUMENT", /principal/);
    await rejectsWith(call(h, (c) => c.listAcls, { principal: "alice" }), "INVALID_ARGUMENT", /^principal: /);
    assert.deepEqual(await h.store.readSecurity(), before);
  });

  test("WatchSecurity: the current state at once, then every change, ended cleanly by close()", async () => {
    await call(h, (c) => c.createUser, { name: "watched", password: PASSWORD, superuser: false, replace: false });
    const { messages, ended } = collect(h.client.watchSecurity({}, new Metadata()));
    await until(() => messages.length === 1);
    const first = messages[0]!;
    assert.deepEqual(first.users.map((u) => u.name), ["watched"]);
    assert.match(first.users[0]!.passwordHash, /^scrypt\$/);

    await call(h, (c) => c.createAcl, { acl: PRODUCE_ORDERS });
    await until(() => messages.length === 2);
    assert.ok(messages[1]!.version > first.version);
    assert.deepEqual(messages[1]!.acls, [PRODUCE_ORDERS]);

    // Without this, a stopping name server would wait out its grace period for the stream.
    const started = Date.now();
    h.service.close();
    assert.equal(await ended, "end");
    assert.equal(h.store.watchers, 0);
    // Well under the name server's 2 s graceful-shutdown window (the point of ending streams).
    assert.ok(Date.now() - started < 1900);
  });
});

describe("Security service behind a guard", () => {
  const guard = new FakeGuard();
  let h: Harness;
  before(async () => {
    h = await startHarness(guard);
  });
  after(() => stopHarness(h));
  beforeEach(() => {
    guard.asked.length = 0;
    guard.allowed = new Set();
  });

  test("a caller denied everything is refused every call, and nothing changes", async () => {
    guard.allowed = new Set(["admin", "describe"]);
    await call(h, (c) => c.createUser, { name: "existing", password: PASSWORD, superuser: false, replace: false });
    await call(h, (c) => c.createAcl, { acl: PRODUCE_ORDERS });
    const before = await h.store.readSecurity();
    guard.allowed = new Set();
    guard.asked.length = 0;

    await rejectsWith(call(h, (c) => c.createUser, { name: "mallory", password: PASSWORD, superuser: true, replace: true }), "NOT_AUTHORIZED");
    await rejectsWith(call(h, (c) => c.createUser, { name: "existing", password: "taken-over!", superuser: true, replace: true }), "NOT_AUTHORIZED");
    await rejectsWith(call(h, (c) => c.deleteUser, { name: "existing" }), "NOT_AUTHORIZED");
    await rejectsWith(call(h, (c) => c.createAcl, { acl: { ...PRODUCE_ORDERS, principal: "User:mallory" } }), "NOT_AUTHORIZED");
    await rejectsWith(call(h, (c) => c.deleteAcl, { acl: PRODUCE_ORDERS }), "NOT_AUTHORIZED");
    await rejectsWith(call(h, (c) => c.listUsers, {}), "NOT_AUTHORIZED");
    await rejectsWith(call(h, (c) => c.listAcls, { principal: "" }), "NOT_AUTHORIZED");
    // Denial comes before validation: a refused caller learns nothing about its input.
    await rejectsWith(call(h, (c) => c.createAcl, {}), "NOT_AUTHORIZED");

    assert.deepEqual(await h.store.readSecurity(), before);
    assert.deepEqual(guard.asked, [
      "User:alice admin cluster:cluster",
      "User:alice admin cluster:cluster",
      "User:alice admin cluster:cluster",
      "User:alice admin cluster:cluster",
      "User:alice admin cluster:cluster",
      "User:alice describe cluster:cluster",
      "User:alice describe cluster:cluster",
      "User:alice admin cluster:cluster",
    ]);
  });

  test("describe on the cluster lists but does not change", async () => {
    guard.allowed = new Set(["describe"]);
    const users = await call(h, (c) => c.listUsers, {});
    assert.ok(users.users.some((u) => u.name === "admin"));
    await call(h, (c) => c.listAcls, { principal: "User:alice" });
    await rejectsWith(call(h, (c) => c.createUser, { name: "carol", password: PASSWORD, superuser: false, replace: false }), "NOT_AUTHORIZED");
    assert.ok(!(await h.store.readSecurity()).users.some((u) => u.name === "carol"));
  });

  test("WatchSecurity (password hashes) needs admin on the cluster: describe is not enough", async () => {
    guard.allowed = new Set(["describe"]);
    const metadata = new Metadata();
    metadata.set("x-test-user", "alice");
    const { messages, ended } = collect(h.client.watchSecurity({}, metadata));
    assert.equal(await ended, "error NOT_AUTHORIZED");
    assert.equal(messages.length, 0);
    assert.deepEqual(guard.asked, ["User:alice admin cluster:cluster"]);
  });

  test("WatchSecurity carries password hashes: admin on the cluster is not enough, only the built-in admin", async () => {
    guard.allowed = new Set(["admin"]);
    const metadata = new Metadata();
    metadata.set("x-test-user", "alice");
    const { messages, ended } = collect(h.client.watchSecurity({}, metadata));
    assert.equal(await ended, "error NOT_AUTHORIZED");
    assert.equal(messages.length, 0);
  });

  test("a cancelled WatchSecurity stops following the store", async () => {
    guard.allowed = new Set(["admin"]);
    const asAdmin = new Metadata();
    asAdmin.set("x-test-user", "admin");
    const stream = h.client.watchSecurity({}, asAdmin);
    const { messages, ended } = collect(stream);
    await until(() => messages.length === 1);
    assert.equal(h.store.watchers, 1);
    stream.cancel();
    assert.equal(await ended, "error BROKER_UNAVAILABLE");
    await until(() => h.store.watchers === 0);
    // Later changes reach no one and fail nothing.
    await call(h, (c) => c.createAcl, { acl: { ...PRODUCE_ORDERS, resourceName: "later" } });
    assert.equal(messages.length, 1);
  });
});
