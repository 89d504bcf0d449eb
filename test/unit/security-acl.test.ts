import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgumentError } from "../../common/src/errors.js";
import {
  aclKey,
  describeAcl,
  formatResource,
  parseOperation,
  parsePermission,
  parsePrincipal,
  parseResource,
  validateAclEntry,
  validateUserName,
} from "../../common/src/security/acl.js";
import type { AclEntry } from "../../common/src/security/types.js";

const entry = (overrides: Partial<AclEntry> = {}): AclEntry => ({
  principal: "User:alice",
  operation: "produce",
  resourceType: "topic",
  resourceName: "orders",
  patternType: "literal",
  permission: "allow",
  ...overrides,
});

/** Asserts an InvalidArgumentError whose message contains every fragment. */
function refuses(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, String(err));
    for (const fragment of fragments) assert.ok(err.message.includes(fragment), `"${err.message}" lacks "${fragment}"`);
    return true;
  });
}

describe("principals and user names", () => {
  it("parses User:<name> and User:*", () => {
    assert.equal(parsePrincipal("User:alice"), "User:alice");
    assert.equal(parsePrincipal("User:svc.orders-1_a@example.com"), "User:svc.orders-1_a@example.com");
    assert.equal(parsePrincipal("User:*"), "User:*");
    assert.equal(parsePrincipal(`User:${"a".repeat(128)}`), `User:${"a".repeat(128)}`);
  });

  it("refuses other forms", () => {
    for (const text of ["alice", "user:alice", "User:", "User:al ice", "User:al:ice", "Group:x", "User:a*", `User:${"a".repeat(129)}`, "User:**"]) {
      refuses(() => parsePrincipal(text), "is not a principal");
    }
  });

  it("user names: the principal charset, but not *", () => {
    assert.equal(validateUserName("bob.smith@corp"), "bob.smith@corp");
    refuses(() => validateUserName("*"), "not a valid user name");
    refuses(() => validateUserName(""), "an empty string");
    refuses(() => validateUserName("a:b"), "not a valid user name");
    refuses(() => validateUserName("x".repeat(129)), "not a valid user name");
    refuses(() => validateUserName(undefined), "not a valid user name");
  });
});

describe("resources", () => {
  it("parses literal, prefix and cluster forms", () => {
    assert.deepEqual(parseResource("topic:orders"), { resourceType: "topic", resourceName: "orders", patternType: "literal" });
    assert.deepEqual(parseResource("topic:orders.*"), { resourceType: "topic", resourceName: "orders.", patternType: "prefix" });
    assert.deepEqual(parseResource("topic:*"), { resourceType: "topic", resourceName: "", patternType: "prefix" });
    assert.deepEqual(parseResource("group:billing"), { resourceType: "group", resourceName: "billing", patternType: "literal" });
    assert.deepEqual(parseResource("group:bill*"), { resourceType: "group", resourceName: "bill", patternType: "prefix" });
    assert.deepEqual(parseResource("cluster"), { resourceType: "cluster", resourceName: "cluster", patternType: "literal" });
  });

  it("formats back to the same text", () => {
    for (const text of ["topic:orders", "topic:orders.*", "topic:*", "group:billing", "group:bill*", "group:*", "cluster"]) {
      assert.equal(formatResource(parseResource(text)), text);
    }
  });

  it("refuses bad types, names and wildcards", () => {
    refuses(() => parseResource("orders"), "is not a resource");
    refuses(() => parseResource("queue:orders"), "is not a resource");
    refuses(() => parseResource("cluster:cluster"), "is not a resource");
    refuses(() => parseResource("topic:"), "not a valid topic name");
    refuses(() => parseResource("topic:or*ders"), "not a valid topic name");
    refuses(() => parseResource("topic:orders**"), "not a topic prefix");
    refuses(() => parseResource("topic:a b"), "not a valid topic name");
    refuses(() => parseResource("topic:.."), "not a valid topic name");
    refuses(() => parseResource("topic:%groups"), "internal");
    refuses(() => parseResource(`topic:${"t".repeat(250)}`), "not a valid topic name");
    // Group names are shorter than topic names (so %DLQ%<group> stays a valid topic).
    assert.ok(parseResource(`topic:${"g".repeat(249)}`));
    refuses(() => parseResource(`group:${"g".repeat(201)}`), "not a valid group name");
  });
});

describe("operations and permissions", () => {
  it("parses every operation, forgiving case and spaces", () => {
    for (const op of ["produce", "consume", "describe", "create", "alter", "delete", "admin"]) assert.equal(parseOperation(op), op);
    assert.equal(parseOperation(" Produce "), "produce");
    refuses(() => parseOperation("write"), "is not an operation", "produce, consume");
    assert.equal(parsePermission("DENY"), "deny");
    refuses(() => parsePermission("maybe"), "allow or deny");
  });
});

describe("validateAclEntry", () => {
  it("returns a clean copy of a valid entry", () => {
    const withExtra = { ...entry(), note: "dropped" };
    assert.deepEqual(validateAclEntry(withExtra), entry());
  });

  it("names the field that is wrong", () => {
    refuses(() => validateAclEntry(entry({ principal: "alice" })), "ACL field principal");
    refuses(() => validateAclEntry(entry({ operation: "write" as never })), "ACL field operation");
    refuses(() => validateAclEntry(entry({ resourceType: "queue" as never })), "ACL field resourceType");
    refuses(() => validateAclEntry(entry({ patternType: "regex" as never })), "ACL field patternType");
    refuses(() => validateAclEntry(entry({ permission: "maybe" as never })), "ACL field permission");
    refuses(() => validateAclEntry(entry({ resourceName: "bad name" })), "ACL field resourceName");
    refuses(() => validateAclEntry(entry({ resourceName: 7 as never })), "ACL field resourceName");
    refuses(() => validateAclEntry(null), "must be an object");
  });

  it("cluster: only describe, create, alter, admin, and only as `cluster`", () => {
    for (const operation of ["describe", "create", "alter", "admin"] as const) {
      assert.ok(validateAclEntry(entry({ operation, resourceType: "cluster", resourceName: "cluster" })));
    }
    for (const operation of ["produce", "consume", "delete"] as const) {
      refuses(() => validateAclEntry(entry({ operation, resourceType: "cluster", resourceName: "cluster" })), "ACL field operation", "the cluster");
    }
    refuses(() => validateAclEntry(entry({ operation: "admin", resourceType: "cluster", resourceName: "prod" })), "ACL field resourceName");
    refuses(() => validateAclEntry(entry({ operation: "admin", resourceType: "cluster", resourceName: "cluster", patternType: "prefix" })), "ACL field resourceName");
  });

  it("produce only on topics; consume on topics and groups; create not on groups", () => {
    refuses(() => validateAclEntry(entry({ resourceType: "group", resourceName: "billing" })), "ACL field operation", "produce does not apply to a group");
    assert.ok(validateAclEntry(entry({ operation: "consume", resourceType: "group", resourceName: "billing" })));
    assert.ok(validateAclEntry(entry({ operation: "consume" })));
    refuses(() => validateAclEntry(entry({ operation: "create", resourceType: "group", resourceName: "billing" })), "ACL field operation");
    assert.ok(validateAclEntry(entry({ operation: "create", patternType: "prefix", resourceName: "orders." })));
  });
});

describe("aclKey and describeAcl", () => {
  it("is the same for equal entries and differs in every field", () => {
    const base = aclKey(entry());
    assert.equal(aclKey({ ...entry() }), base);
    // Stable: the registry keys entries by it, so its form must not change between versions.
    assert.equal(base, "allow|User:alice|produce|topic|literal|orders");
    const variants: Partial<AclEntry>[] = [
      { principal: "User:bob" },
      { operation: "consume" },
      { resourceType: "group" },
      { resourceName: "orders2" },
      { patternType: "prefix" },
      { permission: "deny" },
    ];
    const keys = new Set(variants.map((v) => aclKey(entry(v))));
    assert.equal(keys.size, variants.length);
    assert.ok(!keys.has(base));
  });

  it("describes an entry as the CLI writes it", () => {
    assert.equal(describeAcl(entry({ patternType: "prefix", resourceName: "orders." })), "ALLOW User:alice produce topic:orders.*");
    assert.equal(describeAcl(entry({ permission: "deny", principal: "User:*", operation: "admin", resourceType: "cluster", resourceName: "cluster" })), "DENY User:* admin cluster");
  });
});
