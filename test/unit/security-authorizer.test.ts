import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgumentError, NotAuthorizedError } from "../../common/src/errors.js";
import { parseOperation, parsePrincipal, parseResource } from "../../common/src/security/acl.js";
import { Authorizer, MAX_CACHED_DECISIONS } from "../../common/src/security/authorizer.js";
import { ANONYMOUS, type AclEntry, type Principal, type SecuritySnapshot, type UserRecord } from "../../common/src/security/types.js";

const user = (name: string, method: Principal["method"] = "password"): Principal => ({ name: `User:${name}`, superuser: false, method });
const alice = user("alice");
const bob = user("bob");

/** `acl("allow User:alice produce topic:orders.*")`, the way `sluice acl list` prints entries. */
function acl(line: string): AclEntry {
  const [permission, principal, operation, resource] = line.split(" ") as [string, string, string, string];
  return {
    permission: permission as AclEntry["permission"],
    principal: parsePrincipal(principal),
    operation: parseOperation(operation),
    ...parseResource(resource),
  };
}

function snapshot(lines: string[], users: UserRecord[] = [], version = 1): SecuritySnapshot {
  return { version, users, acls: lines.map(acl) };
}

const authorizer = (...lines: string[]): Authorizer => new Authorizer(snapshot(lines));

describe("authorizer: allow, deny and patterns", () => {
  it("denies by default", () => {
    const auth = authorizer();
    for (const op of ["produce", "consume", "describe", "create", "alter", "delete", "admin"] as const) {
      assert.equal(auth.authorize(alice, op, "topic", "orders"), false, op);
    }
    assert.equal(auth.authorize(alice, "describe", "cluster", "cluster"), false);
  });

  it("a literal entry covers exactly one name, one operation and one principal", () => {
    const auth = authorizer("allow User:alice produce topic:orders");
    assert.equal(auth.authorize(alice, "produce", "topic", "orders"), true);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders2"), false);
    assert.equal(auth.authorize(alice, "produce", "topic", "order"), false);
    assert.equal(auth.authorize(alice, "consume", "topic", "orders"), false);
    assert.equal(auth.authorize(bob, "produce", "topic", "orders"), false);
    assert.equal(auth.authorize(alice, "consume", "group", "orders"), false);
  });

  it("a prefix entry covers names starting with it, and stops at its boundary", () => {
    const auth = authorizer("allow User:alice produce topic:orders.*");
    assert.equal(auth.authorize(alice, "produce", "topic", "orders.eu"), true);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders.eu.returns"), true);
    assert.equal(auth.authorize(alice, "produce", "topic", "ordersX"), false);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders"), false);
    assert.equal(auth.authorize(alice, "produce", "topic", "xorders.eu"), false);
  });

  it("topic:* covers every topic but no group", () => {
    const auth = authorizer("allow User:alice consume topic:*");
    assert.equal(auth.authorize(alice, "consume", "topic", "anything"), true);
    assert.equal(auth.authorize(alice, "consume", "group", "anything"), false);
  });

  it("User:* covers every principal, certificate ones included", () => {
    const auth = authorizer("allow User:* describe topic:public.*");
    assert.equal(auth.authorize(alice, "describe", "topic", "public.news"), true);
    assert.equal(auth.authorize(user("CN-host-7", "certificate"), "describe", "topic", "public.news"), true);
    assert.equal(auth.authorize(alice, "describe", "topic", "private"), false);
  });

  it("deny beats allow: literal deny under a prefix allow", () => {
    const auth = authorizer("allow User:alice produce topic:orders.*", "deny User:alice produce topic:orders.secret");
    assert.equal(auth.authorize(alice, "produce", "topic", "orders.secret"), false);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders.eu"), true);
  });

  it("deny beats allow: prefix deny over a literal allow, whatever the order", () => {
    const auth = authorizer("deny User:alice produce topic:orders.*", "allow User:alice produce topic:orders.eu");
    assert.equal(auth.authorize(alice, "produce", "topic", "orders.eu"), false);
    const reversed = authorizer("allow User:alice produce topic:orders.eu", "deny User:alice produce topic:orders.*");
    assert.equal(reversed.authorize(alice, "produce", "topic", "orders.eu"), false);
  });

  it("deny beats allow across User:* and the principal's own entries", () => {
    const denyAll = authorizer("allow User:alice consume topic:logs", "deny User:* consume topic:logs");
    assert.equal(denyAll.authorize(alice, "consume", "topic", "logs"), false);
    const denyOne = authorizer("allow User:* consume topic:logs", "deny User:bob consume topic:logs");
    assert.equal(denyOne.authorize(alice, "consume", "topic", "logs"), true);
    assert.equal(denyOne.authorize(bob, "consume", "topic", "logs"), false);
  });

  it("deny admin denies every operation; deny produce does not deny describe", () => {
    const auth = authorizer("allow User:alice admin topic:orders", "deny User:alice admin topic:orders");
    assert.equal(auth.authorize(alice, "describe", "topic", "orders"), false);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders"), false);
    const narrow = authorizer("allow User:alice describe topic:orders", "allow User:alice consume topic:orders", "deny User:alice produce topic:orders");
    assert.equal(narrow.authorize(alice, "produce", "topic", "orders"), false);
    assert.equal(narrow.authorize(alice, "describe", "topic", "orders"), true);
    assert.equal(narrow.authorize(alice, "consume", "topic", "orders"), true);
  });
});

describe("authorizer: implications", () => {
  it("admin on a resource implies every operation on it, and on nothing else", () => {
    const auth = authorizer("allow User:alice admin topic:orders", "allow User:alice admin group:billing");
    for (const op of ["produce", "consume", "describe", "create", "alter", "delete", "admin"] as const) {
      assert.equal(auth.authorize(alice, op, "topic", "orders"), true, op);
      assert.equal(auth.authorize(alice, op, "topic", "payments"), false, op);
    }
    assert.equal(auth.authorize(alice, "consume", "group", "billing"), true);
    assert.equal(auth.authorize(alice, "describe", "cluster", "cluster"), false);
  });

  it("produce, consume, alter and delete imply describe; create and describe imply nothing else", () => {
    for (const op of ["produce", "consume", "alter", "delete"]) {
      assert.equal(authorizer(`allow User:alice ${op} topic:t`).authorize(alice, "describe", "topic", "t"), true, op);
    }
    assert.equal(authorizer("allow User:alice consume group:g").authorize(alice, "describe", "group", "g"), true);
    assert.equal(authorizer("allow User:alice create topic:t").authorize(alice, "describe", "topic", "t"), false);
    const describeOnly = authorizer("allow User:alice describe topic:t");
    assert.equal(describeOnly.authorize(alice, "produce", "topic", "t"), false);
    assert.equal(describeOnly.authorize(alice, "consume", "topic", "t"), false);
  });

  it("create on the cluster implies create on every topic, nothing more", () => {
    const auth = authorizer("allow User:alice create cluster");
    assert.equal(auth.authorize(alice, "create", "topic", "anything"), true);
    assert.equal(auth.authorize(alice, "create", "cluster", "cluster"), true);
    assert.equal(auth.authorize(alice, "produce", "topic", "anything"), false);
    assert.equal(auth.authorize(alice, "describe", "cluster", "cluster"), false);
    assert.equal(authorizer("allow User:alice admin cluster").authorize(alice, "create", "topic", "x"), true);
    assert.equal(authorizer("allow User:* create cluster").authorize(bob, "create", "topic", "x"), true);
  });

  it("a deny on either level refuses a topic creation", () => {
    const denyTopic = authorizer("allow User:alice create cluster", "deny User:alice create topic:prod.*");
    assert.equal(denyTopic.authorize(alice, "create", "topic", "prod.orders"), false);
    assert.equal(denyTopic.authorize(alice, "create", "topic", "dev.orders"), true);
    const denyCluster = authorizer("allow User:alice create topic:orders", "deny User:* create cluster");
    assert.equal(denyCluster.authorize(alice, "create", "topic", "orders"), false);
  });
});

describe("authorizer: internal topics", () => {
  it("%DLQ%G is checked as the group G with the same operation", () => {
    const auth = authorizer("allow User:alice consume group:billing", "allow User:bob consume topic:*");
    assert.equal(auth.authorize(alice, "consume", "topic", "%DLQ%billing"), true);
    assert.equal(auth.authorize(alice, "describe", "topic", "%DLQ%billing"), true);
    assert.equal(auth.authorize(alice, "consume", "topic", "%DLQ%shipping"), false);
    // topic:* never reaches internal topics.
    assert.equal(auth.authorize(bob, "consume", "topic", "%DLQ%billing"), false);
    assert.equal(auth.authorize(bob, "consume", "topic", "%groups"), false);
  });

  it("other % topics need admin on the cluster, whatever the operation", () => {
    const describer = authorizer("allow User:alice describe cluster", "allow User:alice admin topic:*");
    assert.equal(describer.authorize(alice, "describe", "topic", "%groups"), false);
    const admin = authorizer("allow User:alice admin cluster");
    assert.equal(admin.authorize(alice, "consume", "topic", "%groups"), true);
    assert.equal(admin.authorize(alice, "produce", "topic", "%groups"), true);
    // A DLQ name with no valid group after the prefix is just another internal topic.
    assert.equal(authorizer("allow User:alice consume group:*").authorize(alice, "consume", "topic", "%DLQ%"), false);
    assert.equal(admin.authorize(alice, "consume", "topic", "%DLQ%"), true);
  });
});

describe("authorizer: superusers", () => {
  const hash = "scrypt$14$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

  it("the built-in admin, snapshot superusers and the anonymous identity skip every check", () => {
    const auth = new Authorizer(snapshot(["deny User:* admin topic:*"], [{ name: "ops", passwordHash: hash, superuser: true }]));
    assert.equal(auth.authorize(user("admin"), "produce", "topic", "orders"), true);
    assert.equal(auth.authorize(user("ops"), "admin", "cluster", "cluster"), true);
    assert.equal(auth.authorize(user("ops"), "produce", "topic", "%groups"), true);
    assert.equal(auth.authorize(ANONYMOUS, "delete", "topic", "orders"), true);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders"), false);
  });

  it("other built-in names can be given; a principal form is refused", () => {
    const auth = new Authorizer(snapshot([]), ["admin", "replicator"]);
    assert.equal(auth.authorize(user("replicator"), "admin", "cluster", "cluster"), true);
    assert.throws(() => new Authorizer(snapshot([]), ["User:admin"]), InvalidArgumentError);
  });

  it("a proven identity's own superuser flag does not count: the snapshot decides", () => {
    const auth = new Authorizer(snapshot([], [{ name: "ops", passwordHash: hash, superuser: true }]));
    const claimed: Principal = { name: "User:mallory", superuser: true, method: "certificate" };
    assert.equal(auth.authorize(claimed, "produce", "topic", "orders"), false);
    // Revoked in a new snapshot: a stream holding the old Principal loses it too.
    const held: Principal = { name: "User:ops", superuser: true, method: "password" };
    assert.equal(auth.authorize(held, "produce", "topic", "orders"), true);
    auth.update(snapshot([], [{ name: "ops", passwordHash: hash, superuser: false }], 2));
    assert.equal(auth.authorize(held, "produce", "topic", "orders"), false);
  });
});

describe("authorizer: cache", () => {
  it("caches decisions and drops them all when a snapshot arrives", () => {
    const auth = authorizer("allow User:alice produce topic:orders");
    assert.equal(auth.version, 1);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders"), true);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders"), true);
    assert.equal(auth.authorize(bob, "produce", "topic", "orders"), false);
    assert.equal(auth.cachedDecisions, 2);

    auth.update(snapshot(["allow User:bob produce topic:orders"], [], 2));
    assert.equal(auth.version, 2);
    assert.equal(auth.cachedDecisions, 0);
    assert.equal(auth.authorize(alice, "produce", "topic", "orders"), false);
    assert.equal(auth.authorize(bob, "produce", "topic", "orders"), true);
  });

  it("a new deny takes effect at once over a cached allow", () => {
    const auth = authorizer("allow User:alice consume topic:logs");
    assert.equal(auth.authorize(alice, "consume", "topic", "logs"), true);
    auth.update(snapshot(["allow User:alice consume topic:logs", "deny User:alice consume topic:logs"], [], 2));
    assert.equal(auth.authorize(alice, "consume", "topic", "logs"), false);
  });

  it("never holds more than MAX_CACHED_DECISIONS", () => {
    const auth = authorizer("allow User:alice describe topic:*");
    for (let i = 0; i <= MAX_CACHED_DECISIONS; i++) auth.authorize(alice, "describe", "topic", `t${i}`);
    assert.ok(auth.cachedDecisions <= MAX_CACHED_DECISIONS);
    assert.ok(auth.cachedDecisions >= 1);
  });

  it("a cached check costs well under 2 µs", () => {
    const acls: string[] = [];
    for (let p = 0; p < 100; p++) for (let t = 0; t < 10; t++) acls.push(`allow User:u${p} produce topic:t${p}.${t}.*`);
    const auth = authorizer(...acls);
    const principal = user("u42");
    auth.authorize(principal, "produce", "topic", "t42.3.x");
    const checks = 200_000;
    const start = process.hrtime.bigint();
    for (let i = 0; i < checks; i++) auth.authorize(principal, "produce", "topic", "t42.3.x");
    const nsPerCheck = Number(process.hrtime.bigint() - start) / checks;
    assert.ok(nsPerCheck < 2_000, `${nsPerCheck} ns per cached check`);
  });
});

describe("authorizer: require and filterDescribable", () => {
  it("require says who may not do what, and the command that would allow it", () => {
    const auth = authorizer("allow User:bob produce topic:orders");
    assert.doesNotThrow(() => auth.require(bob, "produce", "topic", "orders"));
    assert.throws(
      () => auth.require(bob, "produce", "topic", "payments"),
      (err: unknown) =>
        err instanceof NotAuthorizedError &&
        err.code === "NOT_AUTHORIZED" &&
        err.message ===
          "User:bob may not produce to topic payments; ask an admin: sluice acl add --principal User:bob --operation produce --resource topic:payments",
    );
    assert.throws(
      () => authorizer().require(bob, "produce", "topic", "orders"),
      { message: "User:bob may not produce to topic orders; ask an admin: sluice acl add --principal User:bob --operation produce --resource topic:orders" },
    );
  });

  it("require names the resource an internal topic is checked as", () => {
    const auth = authorizer();
    assert.throws(() => auth.require(bob, "consume", "topic", "%DLQ%billing"), (err: unknown) => {
      assert.ok(err instanceof NotAuthorizedError);
      assert.match(err.message, /may not consume from topic %DLQ%billing \(it needs consume on group billing\)/);
      assert.match(err.message, /--operation consume --resource group:billing$/);
      return true;
    });
    assert.throws(() => auth.require(bob, "describe", "topic", "%groups"), /--operation admin --resource cluster$/);
    assert.throws(() => auth.require(bob, "describe", "cluster", "cluster"), /may not describe the cluster; .*--resource cluster$/);
  });

  it("filterDescribable keeps what the principal may describe, implied describe included", () => {
    const auth = authorizer("allow User:alice describe topic:public.*", "allow User:alice produce topic:orders", "deny User:alice describe topic:public.secret");
    const names = ["public.a", "public.secret", "orders", "payments", "%groups"];
    assert.deepEqual(auth.filterDescribable(alice, "topic", names), ["public.a", "orders"]);
    assert.deepEqual(auth.filterDescribable(bob, "topic", names), []);
    assert.deepEqual(auth.filterDescribable(ANONYMOUS, "topic", new Set(names)), names);
  });
});
