/** The SDK's ACL input as people write it, and the checks it makes before any request. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { toAclEntry } from "../../clients/src/admin/security.js";
import { Sluice } from "../../clients/src/index.js";
import { InvalidArgumentError } from "../../common/src/errors.js";

describe("toAclEntry", () => {
  test("reads the CLI's words: prefixes, groups, the cluster; permission defaults to allow", () => {
    assert.deepEqual(toAclEntry({ principal: "User:alice", operation: "produce", resource: "topic:orders.*" }), {
      principal: "User:alice",
      operation: "produce",
      resourceType: "topic",
      resourceName: "orders.",
      patternType: "prefix",
      permission: "allow",
    });
    assert.deepEqual(toAclEntry({ principal: "User:*", operation: "Describe", resource: "cluster", permission: "deny" }), {
      principal: "User:*",
      operation: "describe",
      resourceType: "cluster",
      resourceName: "cluster",
      patternType: "literal",
      permission: "deny",
    });
    assert.equal(toAclEntry({ principal: "User:bob", operation: "consume", resource: "group:billing" }).resourceType, "group");
  });

  test("refuses what does not make sense, naming it", () => {
    const refuses = (input: unknown, message: RegExp): void =>
      assert.throws(() => toAclEntry(input as Parameters<typeof toAclEntry>[0]), (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message));
    refuses({ principal: "alice", operation: "produce", resource: "topic:orders" }, /"alice" is not a principal/);
    refuses({ principal: "User:alice", operation: "write", resource: "topic:orders" }, /"write" is not an operation/);
    refuses({ principal: "User:alice", operation: "produce", resource: "orders" }, /"orders" is not a resource/);
    refuses({ principal: "User:alice", operation: "produce", resource: "cluster" }, /produce does not apply to the cluster/);
    refuses({ principal: "User:alice", operation: "produce", resource: "topic:orders", permission: "maybe" }, /"maybe" is not a permission/);
    refuses({ principal: "User:alice", operation: "produce", resource: "topic:orders", pattern: "prefix" }, /unknown ACL entry option "pattern"/);
    refuses(null, /an ACL entry is/);
  });
});

describe("Admin users and ACLs, checked before any request", () => {
  test("a bad name, password or entry fails at once, with no name server to ask", async () => {
    // Nothing listens on port 1: a request would fail with BROKER_UNAVAILABLE instead.
    const sluice = new Sluice({ nameservers: ["127.0.0.1:1"], requestTimeoutMs: 500 });
    try {
      const admin = sluice.admin();
      await assert.rejects(admin.createUser("bad name", "long-enough-password"), /not a valid user name/);
      await assert.rejects(admin.createUser("alice", "short"), (err: unknown) => err instanceof InvalidArgumentError && !err.message.includes("short"));
      await assert.rejects(admin.createUser("alice", "long-enough-password", { superuser: "yes" as unknown as boolean }), /superuser must be true or false/);
      await assert.rejects(admin.deleteUser(""), /not a valid user name/);
      await assert.rejects(admin.createAcl({ principal: "User:alice", operation: "produce", resource: "cluster" }), InvalidArgumentError);
      await assert.rejects(admin.listAcls({ principal: "everyone" }), /not a principal/);
    } finally {
      await sluice.close();
    }
  });
});
