/**
 * Users and ACLs in etcd, on a real etcd: one key per user and per entry, the version is the
 * etcd revision of the latest change (the same on every name server), changes are transactions
 * that never lose a concurrent one, and a change through one name server reaches another's
 * watch within a second, through the bare store and through the registry view name servers use.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Etcd3 } from "etcd3";
import { SluiceError, UnknownUserError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { aclKey } from "../../common/src/security/acl.js";
import { hashPassword } from "../../common/src/security/password.js";
import { addAcl, applyUser, removeAcl, removeUser } from "../../common/src/security/snapshot.js";
import type { AclEntry, SecuritySnapshot, UserRecord } from "../../common/src/security/types.js";
import { EtcdRegistryStore } from "../../nameserver/src/registry/etcd-store.js";
import { EtcdRegistryView } from "../../nameserver/src/registry/etcd-view.js";
import { etcdSkipReason, startEtcd, type EtcdProcess } from "../helpers/etcd.js";

/** The longest a change may take to reach another name server's watch. */
const PROPAGATION_MS = 1000;

const ENTRY: AclEntry = {
  principal: "User:alice",
  operation: "produce",
  resourceType: "topic",
  resourceName: "orders.",
  patternType: "prefix",
  permission: "allow",
};

/** Resolves with the first snapshot `store`'s watch delivers that satisfies `wanted`, and how long it took. */
function nextSnapshot(
  watch: (listener: (s: SecuritySnapshot) => void) => () => void,
  wanted: (s: SecuritySnapshot) => boolean,
): { arrived: Promise<{ snapshot: SecuritySnapshot; atMs: number }>; cancel: () => void } {
  let unsubscribe = (): void => undefined;
  const arrived = new Promise<{ snapshot: SecuritySnapshot; atMs: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no wanted snapshot within ${PROPAGATION_MS * 3} ms`));
    }, PROPAGATION_MS * 3);
    unsubscribe = watch((snapshot) => {
      if (!wanted(snapshot)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve({ snapshot, atMs: Date.now() });
    });
  });
  return { arrived, cancel: () => unsubscribe() };
}

describe("users and ACLs in etcd", { skip: etcdSkipReason }, () => {
  let etcd: EtcdProcess;
  let raw: Etcd3;
  let alice: UserRecord;
  const closers: (() => Promise<void>)[] = [];
  const openStore = (cluster: string): EtcdRegistryStore => {
    const store = new EtcdRegistryStore({ endpoints: [etcd.endpoint], cluster });
    closers.push(() => store.close());
    return store;
  };
  const openView = async (cluster: string): Promise<EtcdRegistryView> => {
    const view = new EtcdRegistryView({ store: new EtcdRegistryStore({ endpoints: [etcd.endpoint], cluster }), logger: silentLogger });
    closers.push(() => view.close());
    await view.start();
    return view;
  };

  before(async () => {
    etcd = await startEtcd();
    raw = new Etcd3({ hosts: etcd.endpoint });
    alice = { name: "alice", passwordHash: await hashPassword("alice-password"), superuser: false };
  });
  after(async () => {
    await Promise.all(closers.map((close) => close()));
    raw?.close();
    await etcd?.stop();
  });

  test("one key per user and per entry; the version is the etcd revision of the latest change", async () => {
    const store = openStore("layout");
    assert.deepEqual(await store.readSecurity(), { version: 0, users: [], acls: [] });
    await store.updateSecurity((s) => applyUser(s, alice));
    const written = await store.updateSecurity((s) => addAcl(s, ENTRY));

    const keys = await raw.getAll().prefix("/sluice/layout/security/").strings();
    const aclHash = createHash("sha256").update(aclKey(ENTRY)).digest("hex");
    assert.deepEqual(Object.keys(keys).sort(), [
      `/sluice/layout/security/acls/${aclHash}`,
      "/sluice/layout/security/users/alice",
      "/sluice/layout/security/version",
    ]);
    assert.deepEqual(JSON.parse(keys["/sluice/layout/security/users/alice"] as string), alice);
    assert.deepEqual(JSON.parse(keys[`/sluice/layout/security/acls/${aclHash}`] as string), ENTRY);

    const marker = await raw.get("/sluice/layout/security/version").exec();
    assert.equal(written.version, Number(marker.kvs[0]?.mod_revision));
    assert.equal(written.version, Number(marker.header.revision), "the latest write in etcd is this change");

    // A deletion moves the version on too (the newest key is gone, the version is not).
    const deleted = await store.updateSecurity((s) => removeAcl(s, ENTRY));
    assert.ok(deleted.version > written.version);
    assert.equal((await store.readSecurity()).version, deleted.version);
  });

  test("two name servers read the same state at the same version", async () => {
    const a = openStore("shared");
    const b = openStore("shared");
    const written = await a.updateSecurity((s) => addAcl(applyUser(s, alice), ENTRY));
    assert.deepEqual(await b.readSecurity(), written);
    assert.deepEqual(written.users, [alice]);
    assert.deepEqual(written.acls, [ENTRY]);
  });

  test("a change that throws writes nothing; one that changes nothing keeps the version", async () => {
    const store = openStore("abort");
    const first = await store.updateSecurity((s) => applyUser(s, alice));
    const revisionBefore = (await raw.get("anything").exec()).header.revision;
    await assert.rejects(store.updateSecurity((s) => removeUser(s, "bob")), UnknownUserError);
    assert.deepEqual(await store.updateSecurity((s) => s), first);
    assert.equal((await raw.get("anything").exec()).header.revision, revisionBefore, "nothing was written to etcd");
  });

  test("concurrent changes through two name servers are all kept (compare-and-swap)", async () => {
    const a = openStore("race");
    const b = openStore("race");
    const topics = Array.from({ length: 8 }, (_, i) => `t${i}`);
    await Promise.all(
      topics.map((topic, i) => (i % 2 === 0 ? a : b).updateSecurity((s) => addAcl(s, { ...ENTRY, resourceName: topic, patternType: "literal" }))),
    );
    const names = (await a.readSecurity()).acls.map((e) => e.resourceName).sort();
    assert.deepEqual(names, topics);
  });

  test("a change through one store reaches another store's watch within 1 s", async () => {
    const a = openStore("watch");
    const b = openStore("watch");
    const seen = nextSnapshot((l) => b.watchSecurity(l), (s) => s.users.some((u) => u.name === "alice"));
    // Give the watch its moment to open: it is opened by the first subscriber.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const startedMs = Date.now();
    const written = await a.updateSecurity((s) => applyUser(s, alice));
    const { snapshot, atMs } = await seen.arrived;
    assert.ok(atMs - startedMs < PROPAGATION_MS, `took ${atMs - startedMs} ms`);
    assert.equal(snapshot.version, written.version);
  });

  test("registry views: read-your-writes, and another view's watch gets a multi-key change whole within 1 s", async () => {
    const a = await openView("views");
    const b = await openView("views");
    const first = await a.updateSecurity((s) => applyUser(s, alice));
    // b hears of the first change on its own time: wait for it, so only the second is counted below.
    const deadline = Date.now() + PROPAGATION_MS;
    while ((await b.readSecurity()).version < first.version) {
      assert.ok(Date.now() < deadline, "the first change did not reach the other view within 1 s");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await new Promise((resolve) => setImmediate(resolve));
    const versions: number[] = [];
    const unsubscribe = b.watchSecurity((s) => versions.push(s.version));
    closers.push(async () => unsubscribe());
    const seen = nextSnapshot((l) => b.watchSecurity(l), (s) => s.acls.length === 2);

    const startedMs = Date.now();
    // One change, several keys: the user goes, two entries come.
    const written = await a.updateSecurity((s) => addAcl(addAcl(removeUser(s, "alice"), ENTRY), { ...ENTRY, operation: "consume" }));
    assert.deepEqual(await a.readSecurity(), written, "the writing view has its own write at once");
    const { snapshot, atMs } = await seen.arrived;
    assert.ok(atMs - startedMs < PROPAGATION_MS, `took ${atMs - startedMs} ms`);
    assert.deepEqual(snapshot, written);
    // Listeners hear a transaction once, never half of it.
    assert.deepEqual(versions, [written.version]);
  });

  test("a key written by hand that is not a valid record is reported by name", async () => {
    const store = openStore("corrupt");
    await raw.put("/sluice/corrupt/security/users/eve").value("{\"name\":\"eve\",\"passwordHash\":\"plain\",\"superuser\":true}");
    await assert.rejects(store.readSecurity(), (err: unknown) => {
      assert.ok(err instanceof SluiceError);
      assert.match(err.message, /registry key security\/users\/eve does not hold a valid security record/);
      return true;
    });
  });
});
