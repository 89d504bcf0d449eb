import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { InternalError, NotLeaderError, StaleEpochError } from "../../common/src/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import type { GroupMaster } from "../../proto/gen/sluice/v1/nameserver.js";
import { LocalRoleManager } from "../../broker/src/roles/local-role-manager.js";
import { readRoleFile, roleFilePath, writeRoleFile } from "../../broker/src/roles/role-file.js";
import type { RoleChange } from "../../broker/src/roles/role-manager.js";

let dataDir: string;
beforeEach(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sluice-roles-"));
});
afterEach(() => {
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function manager(brokerId: number, requestPromotion?: (to: number) => Promise<GroupMaster>): { roles: LocalRoleManager; changes: RoleChange[] } {
  const roles = new LocalRoleManager({
    group: "b1",
    brokerId,
    dataDir,
    logger: silentLogger,
    requestPromotion: requestPromotion ?? (() => Promise.reject(new Error("no name server in this test"))),
  });
  const changes: RoleChange[] = [];
  roles.onChange((change) => changes.push(change));
  return { roles, changes };
}

describe("LocalRoleManager", () => {
  it("a fresh broker 0 is master at epoch 1 and remembers it; a fresh broker 1 is a slave without master", async () => {
    const { roles } = manager(0);
    assert.deepEqual(await roles.start(), { role: "master", epoch: 1 });
    assert.deepEqual(readRoleFile(dataDir), { epoch: 1, master: 0 });
    roles.fence.check();

    fs.rmSync(roleFilePath(dataDir));
    const slave = manager(1).roles;
    assert.deepEqual(await slave.start(), { role: "slave", epoch: 0, master: undefined });
    assert.deepEqual(readRoleFile(dataDir), { epoch: 0, master: null });
  });

  it("a slave follows the master the name server names, and ignores news older than what it knows", async () => {
    writeRoleFile(dataDir, { epoch: 2, master: 1 });
    const { roles, changes } = manager(2);
    assert.deepEqual(await roles.start(), { role: "slave", epoch: 2, master: undefined });
    roles.observeGroupMaster({ brokerId: 0, epoch: 1, address: "h:10911" });
    assert.deepEqual(roles.current(), { role: "slave", epoch: 2, master: undefined }, "epoch 1 is stale");
    roles.observeGroupMaster({ brokerId: 1, epoch: 2, address: "h:10912" });
    assert.deepEqual(roles.current(), { role: "slave", epoch: 2, master: { brokerId: 1, address: "h:10912" } });
    roles.observeGroupMaster({ brokerId: 1, epoch: 2, address: "h:10912" });
    assert.equal(changes.length, 2, "the same answer again changes nothing");
    roles.observeGroupMaster({ brokerId: 0, epoch: 3, address: "h:10911" });
    assert.deepEqual(roles.current(), { role: "slave", epoch: 3, master: { brokerId: 0, address: "h:10911" } });
    assert.deepEqual(readRoleFile(dataDir), { epoch: 3, master: 0 });
  });

  it("a master steps down only for a master at a higher epoch", async () => {
    const { roles } = manager(0);
    await roles.start();
    roles.observeGroupMaster({ brokerId: 0, epoch: 1, address: "h:10911" });
    roles.observeGroupMaster({ brokerId: 1, epoch: 1, address: "h:10912" });
    assert.deepEqual(roles.current(), { role: "master", epoch: 1 });
    roles.observeGroupMaster({ brokerId: 1, epoch: 2, address: "h:10912" });
    assert.deepEqual(roles.current(), { role: "slave", epoch: 2, master: { brokerId: 1, address: "h:10912" } });
    // Restarted, it comes back as the slave it was.
    const again = manager(0).roles;
    assert.deepEqual(await again.start(), { role: "slave", epoch: 2, master: undefined });
  });

  it("promote needs an epoch higher than any it knows, and persists it", async () => {
    writeRoleFile(dataDir, { epoch: 2, master: 0 });
    const { roles } = manager(1);
    await roles.start();
    await assert.rejects(roles.promote(2), StaleEpochError);
    await roles.promote(3);
    assert.deepEqual(roles.current(), { role: "master", epoch: 3 });
    assert.deepEqual(readRoleFile(dataDir), { epoch: 3, master: 1 });
    assert.deepEqual(await manager(1).roles.start(), { role: "master", epoch: 3 });
  });

  it("hands off through the name server and follows the new master; a slave has nothing to hand off", async () => {
    const asked: number[] = [];
    const { roles } = manager(0, async (to) => {
      asked.push(to);
      return { brokerId: to, epoch: 2, address: "h:10912" };
    });
    await roles.start();
    await roles.recordInSync([1, 0, 1]);
    assert.deepEqual(roles.recordedInSync, [1]);
    await roles.handOff(1);
    assert.deepEqual(asked, [1]);
    assert.deepEqual(roles.current(), { role: "slave", epoch: 2, master: { brokerId: 1, address: "h:10912" } });
    assert.deepEqual(readRoleFile(dataDir), { epoch: 2, master: 1 });
    await assert.rejects(roles.handOff(1), NotLeaderError);
    await assert.rejects(roles.recordInSync([1]), NotLeaderError);
  });

  it("role.json is replaced atomically and a corrupt one is refused with the fix named", () => {
    writeRoleFile(dataDir, { epoch: 5, master: 2 });
    assert.deepEqual(fs.readdirSync(dataDir), ["role.json"]);
    fs.writeFileSync(roleFilePath(dataDir), "{\"epoch\": -1}");
    assert.throws(() => readRoleFile(dataDir), (err: unknown) => err instanceof InternalError && /delete it to start as a new broker/.test(err.message));
  });
});
