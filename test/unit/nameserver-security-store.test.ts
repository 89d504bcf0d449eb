/**
 * Users and ACLs in the in-memory registry: compare-and-swap changes with typed aborts, the
 * watch, and `security.json` (atomic, mode 0600, read back by the next store, refused when corrupt).
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { InvalidConfigError, UnknownUserError, UserAlreadyExistsError } from "../../common/src/errors.js";
import { hashPassword } from "../../common/src/security/password.js";
import { addAcl, applyUser, removeUser } from "../../common/src/security/snapshot.js";
import type { AclEntry, SecuritySnapshot } from "../../common/src/security/types.js";
import { MemoryRegistryStore } from "../../nameserver/src/registry/memory-store.js";

const READ_ORDERS: AclEntry = {
  principal: "User:alice",
  operation: "consume",
  resourceType: "topic",
  resourceName: "orders",
  patternType: "literal",
  permission: "allow",
};

let passwordHash: string;
let dir: string;

before(async () => {
  passwordHash = await hashPassword("correct horse battery");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-security-store-"));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const alice = (superuser = false) => ({ name: "alice", passwordHash, superuser });

describe("MemoryRegistryStore users and ACLs", () => {
  test("starts empty at version 0; every change moves the version by one", async () => {
    const store = new MemoryRegistryStore();
    assert.deepEqual(await store.readSecurity(), { version: 0, users: [], acls: [] });
    const first = await store.updateSecurity((s) => applyUser(s, alice()));
    assert.equal(first.version, 1);
    assert.deepEqual(first.users.map((u) => u.name), ["alice"]);
    const second = await store.updateSecurity((s) => addAcl(s, READ_ORDERS));
    assert.equal(second.version, 2);
    assert.deepEqual(second.acls, [READ_ORDERS]);
    assert.deepEqual(await store.readSecurity(), second);
  });

  test("a change that alters nothing keeps the version and tells no listener", async () => {
    const store = new MemoryRegistryStore();
    await store.updateSecurity((s) => addAcl(s, READ_ORDERS));
    const heard: SecuritySnapshot[] = [];
    store.watchSecurity((s) => heard.push(s));
    const again = await store.updateSecurity((s) => addAcl(s, READ_ORDERS));
    assert.equal(again.version, 1);
    assert.equal(heard.length, 0);
  });

  test("a change that throws aborts with its typed error and changes nothing", async () => {
    const store = new MemoryRegistryStore();
    await store.updateSecurity((s) => applyUser(s, alice()));
    await assert.rejects(store.updateSecurity((s) => applyUser(s, alice(true))), UserAlreadyExistsError);
    await assert.rejects(store.updateSecurity((s) => removeUser(s, "bob")), UnknownUserError);
    const now = await store.readSecurity();
    assert.equal(now.version, 1);
    assert.equal(now.users[0]?.superuser, false);
    // The store keeps working after an aborted change.
    assert.equal((await store.updateSecurity((s) => applyUser(s, alice(true), { replace: true }))).version, 2);
  });

  test("changes running at once are applied one after the other, none lost", async () => {
    const store = new MemoryRegistryStore();
    const topics = ["a", "b", "c", "d", "e"];
    const results = await Promise.all(topics.map((t) => store.updateSecurity((s) => addAcl(s, { ...READ_ORDERS, resourceName: t }))));
    assert.deepEqual(results.map((r) => r.version).sort(), [1, 2, 3, 4, 5]);
    assert.equal((await store.readSecurity()).acls.length, 5);
  });

  test("what it hands out is a copy: changing it changes nothing in the store", async () => {
    const store = new MemoryRegistryStore();
    const written = await store.updateSecurity((s) => applyUser(s, alice()));
    written.users[0]!.superuser = true;
    (await store.readSecurity()).users.pop();
    assert.equal((await store.readSecurity()).users[0]?.superuser, false);
  });

  test("watchSecurity tells every change until unsubscribed", async () => {
    const store = new MemoryRegistryStore();
    const heard: number[] = [];
    const unsubscribe = store.watchSecurity((s) => heard.push(s.version));
    await store.updateSecurity((s) => applyUser(s, alice()));
    await store.updateSecurity((s) => addAcl(s, READ_ORDERS));
    unsubscribe();
    await store.updateSecurity((s) => removeUser(s, "alice"));
    assert.deepEqual(heard, [1, 2]);
  });
});

describe("MemoryRegistryStore security file", () => {
  test("users and ACLs survive into the next store on the same file, version included", async () => {
    const file = path.join(dir, "persist", "security.json");
    const first = new MemoryRegistryStore({ securityFile: file });
    await first.updateSecurity((s) => applyUser(s, alice(true)));
    await first.updateSecurity((s) => addAcl(s, READ_ORDERS));
    await first.close();

    const second = new MemoryRegistryStore({ securityFile: file });
    const loaded = await second.readSecurity();
    assert.equal(loaded.version, 2);
    assert.deepEqual(loaded.users, [alice(true)]);
    assert.deepEqual(loaded.acls, [READ_ORDERS]);
    // The version keeps growing from where it was, so brokers never see it go back.
    assert.equal((await second.updateSecurity((s) => removeUser(s, "alice"))).version, 3);
    assert.deepEqual((await new MemoryRegistryStore({ securityFile: file }).readSecurity()).users, []);
  });

  test("the file is written mode 0600 and no temporary file is left behind", async () => {
    const file = path.join(dir, "mode", "security.json");
    const store = new MemoryRegistryStore({ securityFile: file });
    // A leftover temporary file from a crash, readable by everyone, is replaced.
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(`${file}.tmp`, "half", { mode: 0o644 });
    await store.updateSecurity((s) => applyUser(s, alice()));
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ["security.json"]);
    assert.match(fs.readFileSync(file, "utf8"), /"passwordHash": "scrypt\$/);
  });

  test("a missing file is an empty registry; nothing is written until a change", async () => {
    const file = path.join(dir, "missing", "security.json");
    const store = new MemoryRegistryStore({ securityFile: file });
    assert.deepEqual(await store.readSecurity(), { version: 0, users: [], acls: [] });
    assert.equal(fs.existsSync(file), false);
  });

  test("a corrupt file stops the store with InvalidConfigError naming the file", () => {
    const file = path.join(dir, "corrupt.json");
    fs.writeFileSync(file, '{"format": 1, "version": 3, "users": [');
    assert.throws(
      () => new MemoryRegistryStore({ securityFile: file }),
      (err: unknown) => err instanceof InvalidConfigError && err.message.includes(file),
    );
    fs.writeFileSync(file, JSON.stringify({ format: 1, version: 1, users: [{ name: "alice", passwordHash: "plain", superuser: false }], acls: [] }));
    assert.throws(
      () => new MemoryRegistryStore({ securityFile: file }),
      (err: unknown) => err instanceof InvalidConfigError && err.message.includes(file) && /passwordHash/.test(err.message),
    );
  });

  test("a file that cannot be written fails the change, which then did not happen", async () => {
    const parent = path.join(dir, "vanishing");
    const store = new MemoryRegistryStore({ securityFile: path.join(parent, "security.json") });
    // Its directory is now a plain file: no write can succeed (even as root).
    fs.writeFileSync(parent, "");
    await assert.rejects(store.updateSecurity((s) => applyUser(s, alice())), /EEXIST|ENOTDIR/);
    assert.deepEqual(await store.readSecurity(), { version: 0, users: [], acls: [] });
  });
});
