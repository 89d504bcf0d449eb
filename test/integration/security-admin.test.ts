/**
 * `sluice user` and `sluice acl` against a real `sluice dev` (auth off: everyone may manage):
 * add, list and delete through the CLI with --json, bad input refused with one line and
 * nothing changed, and users and ACLs kept across a restart in <data>/nameserver/security.json.
 */
import assert from "node:assert/strict";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli, startDev, tempDir, type CliResult, type Cluster } from "../helpers/processes.js";

const EXIT_FAILURE = 1;
/** The CLI's code for bad input (INVALID_ARGUMENT, INVALID_CONFIG), see cli/src/output.ts. */
const EXIT_USAGE = 2;

interface ListedUser {
  name: string;
  superuser: boolean;
  builtIn: boolean;
}
interface ListedAcl {
  principal: string;
  operation: string;
  resourceType: string;
  resourceName: string;
  patternType: string;
  permission: string;
  resource: string;
}

describe("sluice user and sluice acl", () => {
  let dataDir: string;
  let cluster: Cluster;
  let passwordFile: string;
  const files = tempDir("sluice-security-admin-");

  const cli = (args: string[]): Promise<CliResult> => runCli(["--json", ...args], { nameserver: cluster.nameserver });
  const ok = async <T>(args: string[]): Promise<T> => {
    const result = await cli(args);
    assert.equal(result.code, 0, `sluice ${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stderr, "");
    return JSON.parse(result.stdout) as T;
  };
  const users = async (): Promise<ListedUser[]> => (await ok<{ users: ListedUser[] }>(["user", "list"])).users;
  const acls = async (): Promise<ListedAcl[]> => (await ok<{ acls: ListedAcl[] }>(["acl", "list"])).acls;
  const refused = async (args: string[], exitCode: number, message: RegExp): Promise<void> => {
    const result = await cli(args);
    assert.equal(result.code, exitCode, `sluice ${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stdout, "", "nothing on stdout");
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, message);
  };

  before(async () => {
    dataDir = tempDir("sluice-security-data-");
    cluster = await startDev({ dataDir });
    passwordFile = join(files, "alice.pw");
    writeFileSync(passwordFile, "alice-password-1\n");
  });
  after(async () => {
    await cluster?.process.stop();
  });

  it("adds, lists and deletes users; the password is never printed", async () => {
    assert.deepEqual(await users(), [{ name: "admin", superuser: true, builtIn: true }]);
    assert.deepEqual(await ok(["user", "add", "alice", "--password-file", passwordFile]), { user: "alice", superuser: false, created: true });
    assert.deepEqual(await ok(["user", "add", "ops", "--password-file", passwordFile, "--superuser"]), { user: "ops", superuser: true, created: true });
    await refused(["user", "add", "alice", "--password-file", passwordFile], EXIT_FAILURE, /user alice already exists.*\[USER_ALREADY_EXISTS\]$/);
    assert.deepEqual(await ok(["user", "add", "alice", "--password-file", passwordFile, "--replace", "--superuser"]), { user: "alice", superuser: true, created: false });
    const listed = await cli(["user", "list"]);
    assert.ok(!listed.stdout.includes("alice-password-1") && !listed.stdout.includes("scrypt"), "no password nor hash is listed");
    assert.deepEqual(JSON.parse(listed.stdout), {
      users: [
        { name: "admin", superuser: true, builtIn: true },
        { name: "alice", superuser: true, builtIn: false },
        { name: "ops", superuser: true, builtIn: false },
      ],
    });
    assert.deepEqual(await ok(["user", "delete", "ops"]), { user: "ops", deleted: true });
    await refused(["user", "delete", "ops"], EXIT_FAILURE, /user "ops" does not exist.*\[UNKNOWN_USER\]$/);
    assert.deepEqual((await users()).map((u) => u.name), ["admin", "alice"]);
  });

  it("adds, lists (all, or one principal's) and deletes ACL entries", async () => {
    const added = await ok<{ acl: ListedAcl; created: boolean }>(["acl", "add", "--principal", "User:alice", "--operation", "produce", "--resource", "topic:orders.*"]);
    assert.deepEqual(added, {
      acl: { principal: "User:alice", operation: "produce", resourceType: "topic", resourceName: "orders.", patternType: "prefix", permission: "allow", resource: "topic:orders.*" },
      created: true,
    });
    const again = await ok<{ created: boolean }>(["acl", "add", "--principal", "User:alice", "--operation", "produce", "--resource", "topic:orders.*"]);
    assert.equal(again.created, false);
    await ok(["acl", "add", "--principal", "User:*", "--operation", "describe", "--resource", "cluster"]);
    await ok(["acl", "add", "--principal", "User:bob", "--operation", "consume", "--resource", "group:billing", "--deny"]);

    assert.deepEqual((await acls()).map((e) => `${e.permission} ${e.principal} ${e.operation} ${e.resource}`).sort(), [
      "allow User:* describe cluster",
      "allow User:alice produce topic:orders.*",
      "deny User:bob consume group:billing",
    ]);
    const bobs = await ok<{ acls: ListedAcl[] }>(["acl", "list", "--principal", "User:bob"]);
    assert.deepEqual(bobs.acls.map((e) => e.resource), ["group:billing"]);

    // The permission is part of the entry: an allow does not delete a deny.
    await refused(["acl", "delete", "--principal", "User:bob", "--operation", "consume", "--resource", "group:billing"], EXIT_FAILURE, /\[UNKNOWN_ACL\]$/);
    const deleted = await ok<{ deleted: boolean; acl: ListedAcl }>(["acl", "delete", "--principal", "User:bob", "--operation", "consume", "--resource", "group:billing", "--deny"]);
    assert.equal(deleted.deleted, true);
    assert.equal(deleted.acl.permission, "deny");
    assert.equal((await acls()).length, 2);
  });

  it("refuses bad input with one line and changes nothing", async () => {
    const usersBefore = await users();
    const aclsBefore = await acls();
    const emptyFile = join(files, "empty.pw");
    writeFileSync(emptyFile, "");
    await Promise.all([
      refused(["acl", "add", "--principal", "alice", "--operation", "produce", "--resource", "topic:orders"], EXIT_USAGE, /"alice" is not a principal.*\[INVALID_ARGUMENT\]$/),
      refused(["acl", "add", "--principal", "User:alice", "--operation", "produce", "--resource", "queue:orders"], EXIT_USAGE, /"queue:orders" is not a resource.*\[INVALID_ARGUMENT\]$/),
      refused(["acl", "add", "--principal", "User:alice", "--operation", "produce", "--resource", "cluster"], EXIT_USAGE, /produce does not apply to the cluster.*\[INVALID_ARGUMENT\]$/),
      refused(["acl", "add", "--principal", "User:alice", "--operation", "write", "--resource", "topic:orders"], EXIT_USAGE, /"write" is not an operation.*\[INVALID_ARGUMENT\]$/),
      refused(["user", "add", "carol", "--password-file", emptyFile], EXIT_USAGE, /password file .*empty\.pw has an empty first line.*\[INVALID_CONFIG\]$/),
      refused(["user", "add", "admin", "--password-file", passwordFile], EXIT_USAGE, /admin is built in: change its password with --admin-password-file on every server \[INVALID_ARGUMENT\]$/),
      refused(["user", "delete", "admin"], EXIT_USAGE, /admin is built in.*\[INVALID_ARGUMENT\]$/),
    ]);
    assert.deepEqual(await users(), usersBefore);
    assert.deepEqual(await acls(), aclsBefore);
  });

  it("users and ACLs survive a restart of sluice dev, in a file only its owner can read", async () => {
    const usersBefore = await users();
    const aclsBefore = await acls();
    assert.ok(usersBefore.length > 1 && aclsBefore.length > 0, "the earlier tests left users and entries");
    const file = join(dataDir, "nameserver", "security.json");
    assert.equal(statSync(file).mode & 0o777, 0o600);

    assert.equal(await cluster.process.stop(), 0);
    cluster = await startDev({ dataDir });
    assert.deepEqual(await users(), usersBefore);
    assert.deepEqual(await acls(), aclsBefore);
  });
});
