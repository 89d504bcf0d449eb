import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  InvalidArgumentError,
  InvalidConfigError,
  UnknownAclError,
  UnknownUserError,
  UnsupportedDataFormatError,
  UserAlreadyExistsError,
} from "../../common/src/errors.js";
import { hashPassword } from "../../common/src/security/password.js";
import { SNAPSHOT_FORMAT, addAcl, applyUser, decodeSnapshot, emptySnapshot, encodeSnapshot, removeAcl, removeUser } from "../../common/src/security/snapshot.js";
import type { AclEntry, SecuritySnapshot, UserRecord } from "../../common/src/security/types.js";

const produceOrders: AclEntry = {
  principal: "User:alice",
  operation: "produce",
  resourceType: "topic",
  resourceName: "orders.",
  patternType: "prefix",
  permission: "allow",
};
const denyAll: AclEntry = { principal: "User:*", operation: "admin", resourceType: "cluster", resourceName: "cluster", patternType: "literal", permission: "deny" };

/** Asserts an error of `type` whose message contains every fragment. */
function fails(fn: () => unknown, type: new (...args: never[]) => Error, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof type, `${String(err)} is not a ${type.name}`);
    for (const fragment of fragments) assert.ok(err.message.includes(fragment), `"${err.message}" lacks "${fragment}"`);
    return true;
  });
}

describe("snapshot changes", () => {
  let alice: UserRecord;
  let bob: UserRecord;
  before(async () => {
    alice = { name: "alice", passwordHash: await hashPassword("alice-pass-1"), superuser: false };
    bob = { name: "bob", passwordHash: await hashPassword("bob-pass-12"), superuser: true };
  });

  it("starts empty at version 0", () => {
    assert.deepEqual(emptySnapshot(), { version: 0, users: [], acls: [] });
  });

  it("adds users one version on, sorted, without touching the snapshot given", () => {
    const empty = emptySnapshot();
    const one = applyUser(empty, bob);
    const two = applyUser(one, alice);
    assert.equal(one.version, 1);
    assert.equal(two.version, 2);
    assert.deepEqual(two.users.map((u) => u.name), ["alice", "bob"]);
    assert.deepEqual(empty.users, []);
    assert.deepEqual(one.users.map((u) => u.name), ["bob"]);
  });

  it("refuses an existing user unless replace is asked", () => {
    const one = applyUser(emptySnapshot(), alice);
    fails(() => applyUser(one, { ...alice, superuser: true }), UserAlreadyExistsError, "alice");
    const replaced = applyUser(one, { ...alice, passwordHash: bob.passwordHash }, { replace: true });
    assert.equal(replaced.version, 2);
    assert.equal(replaced.users.length, 1);
    assert.equal(replaced.users[0]!.passwordHash, bob.passwordHash);
  });

  it("refuses bad users and the reserved names", () => {
    const empty = emptySnapshot();
    fails(() => applyUser(empty, { ...alice, name: "al ice" }), InvalidArgumentError, "not a valid user name");
    fails(() => applyUser(empty, { ...alice, name: "*" }), InvalidArgumentError);
    fails(() => applyUser(empty, { ...alice, passwordHash: "plain-text" }), InvalidArgumentError, "passwordHash");
    fails(() => applyUser(empty, { ...alice, superuser: "yes" as never }), InvalidArgumentError, "superuser");
    fails(() => applyUser(empty, { ...alice, name: "admin" }), InvalidArgumentError, "built in", "--admin-password-file");
    fails(() => applyUser(empty, { ...alice, name: "ANONYMOUS" }), InvalidArgumentError, "reserved");
    fails(() => removeUser(empty, "admin"), InvalidArgumentError, "built in");
  });

  it("removes a user, and refuses an unknown one", () => {
    const withAcl = addAcl(applyUser(emptySnapshot(), alice), produceOrders);
    const gone = removeUser(withAcl, "alice");
    assert.equal(gone.version, 3);
    assert.deepEqual(gone.users, []);
    assert.deepEqual(gone.acls, [produceOrders], "ACL entries stay: a certificate may prove the same principal");
    fails(() => removeUser(gone, "alice"), UnknownUserError, "alice");
  });

  it("adds ACL entries; adding one already there changes nothing, not even the version", () => {
    const one = addAcl(emptySnapshot(), produceOrders);
    assert.equal(one.version, 1);
    const again = addAcl(one, { ...produceOrders });
    assert.equal(again, one);
    const two = addAcl(one, denyAll);
    assert.equal(two.version, 2);
    assert.equal(two.acls.length, 2);
    fails(() => addAcl(one, { ...produceOrders, resourceType: "group" }), InvalidArgumentError, "ACL field operation");
  });

  it("removes an entry, and refuses one that is not there", () => {
    const two = addAcl(addAcl(emptySnapshot(), produceOrders), denyAll);
    const one = removeAcl(two, { ...produceOrders });
    assert.equal(one.version, 3);
    assert.deepEqual(one.acls, [denyAll]);
    fails(() => removeAcl(one, produceOrders), UnknownAclError, "ALLOW User:alice produce topic:orders.*");
  });
});

describe("snapshot codec", () => {
  let dir = "";
  let sample: SecuritySnapshot;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-"));
    const alice: UserRecord = { name: "alice", passwordHash: await hashPassword("alice-pass-1"), superuser: false };
    sample = addAcl(addAcl(applyUser(emptySnapshot(), alice), produceOrders), denyAll);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const encoded = (): Record<string, unknown> => JSON.parse(encodeSnapshot(sample)) as Record<string, unknown>;
  const decodeEdited = (edit: (stored: Record<string, any>) => void): SecuritySnapshot => {
    const stored = encoded();
    edit(stored);
    return decodeSnapshot(JSON.stringify(stored), "security.json");
  };

  it("round-trips through a file", () => {
    const file = path.join(dir, "security.json");
    fs.writeFileSync(file, encodeSnapshot(sample));
    const back = decodeSnapshot(fs.readFileSync(file, "utf8"), file);
    assert.deepEqual(back, sample);
    assert.equal(encoded().format, SNAPSHOT_FORMAT);
  });

  it("encodes equal snapshots equally, whatever their order", () => {
    const reordered: SecuritySnapshot = { ...sample, acls: [...sample.acls].reverse(), users: [...sample.users].reverse() };
    assert.equal(encodeSnapshot(reordered), encodeSnapshot(sample));
  });

  it("keeps one of a repeated entry", () => {
    const back = decodeEdited((s) => s.acls.push({ ...s.acls[0] }));
    assert.equal(back.acls.length, sample.acls.length);
  });

  it("refuses a corrupt or hand-edited file, saying where and what", () => {
    fails(() => decodeSnapshot("{ not json", "security.json"), InvalidConfigError, "security.json", "not valid JSON");
    fails(() => decodeSnapshot("[]", "security.json"), InvalidConfigError, "JSON object");
    fails(() => decodeEdited((s) => delete s.format), InvalidConfigError, "format");
    fails(() => decodeEdited((s) => (s.version = -1)), InvalidConfigError, "version");
    fails(() => decodeEdited((s) => (s.version = "7")), InvalidConfigError, "version");
    fails(() => decodeEdited((s) => (s.users = {})), InvalidConfigError, "users must be a list");
    fails(() => decodeEdited((s) => delete s.acls), InvalidConfigError, "acls must be a list");
    fails(() => decodeEdited((s) => (s.users[0].name = "bad name")), InvalidConfigError, "security.json: users[0]", "not a valid user name");
    fails(() => decodeEdited((s) => (s.users[0].passwordHash = "hunter2")), InvalidConfigError, "users[0]", "passwordHash");
    fails(() => decodeEdited((s) => s.users.push({ ...s.users[0] })), InvalidConfigError, "users[1]", "appears twice");
    fails(() => decodeEdited((s) => (s.users[0].name = "admin")), InvalidConfigError, "users[0]", "built in");
    fails(() => decodeEdited((s) => (s.acls[1].operation = "write")), InvalidConfigError, "acls[1]", "ACL field operation");
    fails(() => decodeEdited((s) => (s.acls[0].resourceName = "not valid!")), InvalidConfigError, "acls[0]", "ACL field resourceName");
    fails(() => decodeEdited((s) => (s.acls[0] = "ALLOW User:alice produce topic:x")), InvalidConfigError, "acls[0]", "must be an object");
  });

  it("refuses a file written by a newer format with UnsupportedDataFormatError", () => {
    fails(() => decodeEdited((s) => (s.format = SNAPSHOT_FORMAT + 1)), UnsupportedDataFormatError, "newer Sluice");
  });
});
