// Flow rules: validation with field-naming messages, defaults, scopes and globs; and the SDK's
// fan-out of list/set/delete to every live broker's REST admin API (real HTTP servers).
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { SluiceError, UnknownFlowRuleError } from "../../common/src/errors.js";
import {
  DEFAULT_COLD_FACTOR,
  DEFAULT_MAX_QUEUE_MS,
  MAX_MAX_QUEUE_MS,
  describeFlowLimit,
  flowRuleKey,
  flowRuleUnit,
  parseFlowRule,
  parseFlowRules,
  parseFlowScope,
  type FlowRule,
} from "../../common/src/flow/rules.js";
import { silentLogger } from "../../common/src/logger.js";
import { deleteFlowRule, listFlowRules, setFlowRule } from "../../clients/src/admin/flow-rules.js";
import type { ClientContext } from "../../clients/src/context.js";
import { RetryPolicy } from "../../clients/src/retry.js";

/** Asserts parseFlowRule refuses `input` with an INVALID_CONFIG error whose message matches. */
function refuses(input: unknown, message: RegExp, where?: string): void {
  assert.throws(
    () => parseFlowRule(input, where),
    (e: unknown) => {
      assert.ok(e instanceof SluiceError, `a SluiceError, got ${String(e)}`);
      assert.equal(e.code, "INVALID_CONFIG");
      assert.equal(e.name, "InvalidConfigError");
      assert.match(e.message, message);
      return true;
    },
  );
}

const topicBucket = { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 1000 };

describe("flow rules: validation", () => {
  it("refuses rates that are not finite numbers > 0, naming the field and the where prefix", () => {
    refuses({ ...topicBucket, messagesPerSecond: -5 }, /^flow\[2\]\.messagesPerSecond must be a number > 0 and at most 1000000000000, got -5$/, "flow[2]");
    refuses({ ...topicBucket, messagesPerSecond: 0 }, /^messagesPerSecond must be a number > 0 and at most 1000000000000, got 0$/);
    refuses({ ...topicBucket, bytesPerSecond: 1e16, messagesPerSecond: undefined }, /^bytesPerSecond must be a number > 0 and at most 1000000000000, got 10000000000000000$/);
    refuses({ ...topicBucket, messagesPerSecond: Number.NaN }, /messagesPerSecond must be a number > 0 and at most 1000000000000, got NaN/);
    refuses({ ...topicBucket, messagesPerSecond: Number.POSITIVE_INFINITY }, /got Infinity/);
    refuses({ ...topicBucket, messagesPerSecond: "1000" }, /messagesPerSecond must be a number > 0 and at most 1000000000000, got "1000"/);
    refuses({ scope: "broker", limiter: "leaky-bucket", bytesPerSecond: -1 }, /bytesPerSecond must be a number > 0 and at most 1000000000000, got -1/);
    assert.equal(parseFlowRule({ ...topicBucket, messagesPerSecond: 0.5 }).messagesPerSecond, 0.5, "fractional rates are rates");
  });

  it("needs exactly one of messagesPerSecond and bytesPerSecond on rate limiters", () => {
    refuses({ ...topicBucket, bytesPerSecond: 100 }, /^flow\[0\]\.messagesPerSecond and flow\[0\]\.bytesPerSecond are both set/, "flow[0]");
    for (const limiter of ["token-bucket", "leaky-bucket", "warm-up"]) {
      refuses({ scope: "broker", limiter, ...(limiter === "warm-up" ? { warmUpMs: 1000 } : {}) }, new RegExp(`messagesPerSecond or bytesPerSecond is required for limiter ${limiter}`));
    }
  });

  it("refuses a burst below 1 or not an integer", () => {
    refuses({ ...topicBucket, burst: 0 }, /^flow\[2\]\.burst must be an integer >= 1, got 0$/, "flow[2]");
    refuses({ ...topicBucket, burst: 2.5 }, /burst must be an integer >= 1, got 2\.5/);
    refuses({ ...topicBucket, burst: -3 }, /burst must be an integer >= 1, got -3/);
  });

  it("refuses unknown scope kinds and empty patterns", () => {
    refuses({ ...topicBucket, scope: "tpc:x" }, /^scope "tpc:x" is not one of broker, topic:<name>, client:<id>$/);
    refuses({ ...topicBucket, scope: "broker:x" }, /scope "broker:x" is not one of broker, topic:<name>, client:<id>/);
    refuses({ ...topicBucket, scope: "orders" }, /scope "orders" is not one of/);
    refuses({ ...topicBucket, scope: "topic:" }, /^flow\[1\]\.scope "topic:" names no topic/, "flow[1]");
    refuses({ ...topicBucket, scope: "client:" }, /scope "client:" names no client/);
    refuses({ ...topicBucket, scope: 7 }, /scope must be a string/);
    refuses({ limiter: "token-bucket", messagesPerSecond: 1 }, /^scope is required/);
    assert.throws(() => parseFlowScope("tpc:x", "config file sluice.yaml: flow[0]"), /^InvalidConfigError: config file sluice\.yaml: flow\[0\]\.scope "tpc:x"/);
  });

  it("refuses an unknown or missing limiter", () => {
    refuses({ ...topicBucket, limiter: "sliding-window" }, /^limiter must be one of token-bucket, leaky-bucket, warm-up, concurrency, got "sliding-window"$/);
    refuses({ scope: "broker", messagesPerSecond: 1 }, /limiter is required/);
  });

  it("refuses unknown keys and non-objects", () => {
    refuses({ ...topicBucket, burts: 10 }, /^flow\[4\]\.burts is not a flow rule field; the fields are scope, limiter, /, "flow[4]");
    refuses({ ...topicBucket, source: "runtime" }, /source is not a flow rule field/);
    refuses(null, /a flow rule must be an object/);
    refuses([topicBucket], /must be an object/);
    refuses("topic:orders", /must be an object/, "flow[0]");
  });

  it("refuses fields that do not belong to the limiter", () => {
    refuses({ scope: "broker", limiter: "leaky-bucket", messagesPerSecond: 10, burst: 5 }, /^burst does not apply to limiter leaky-bucket; it takes messagesPerSecond, bytesPerSecond, maxQueueMs$/);
    refuses({ ...topicBucket, maxInFlight: 5 }, /maxInFlight does not apply to limiter token-bucket/);
    refuses({ ...topicBucket, warmUpMs: 5 }, /warmUpMs does not apply to limiter token-bucket/);
    refuses({ ...topicBucket, coldFactor: 2 }, /coldFactor does not apply to limiter token-bucket/);
    refuses({ scope: "broker", limiter: "concurrency", maxInFlight: 5, messagesPerSecond: 10 }, /^flow\[3\]\.messagesPerSecond does not apply to limiter concurrency/, "flow[3]");
    refuses({ scope: "broker", limiter: "concurrency", maxInFlight: 5, bytesPerSecond: 10 }, /bytesPerSecond does not apply to limiter concurrency/);
    refuses({ scope: "broker", limiter: "warm-up", messagesPerSecond: 10, warmUpMs: 10, burst: 3 }, /burst does not apply to limiter warm-up/);
  });

  it("refuses maxQueueMs outside 0..10000", () => {
    refuses({ ...topicBucket, maxQueueMs: -1 }, /^maxQueueMs must be an integer from 0 to 10000, got -1$/);
    refuses({ ...topicBucket, maxQueueMs: MAX_MAX_QUEUE_MS + 1 }, /maxQueueMs must be an integer from 0 to 10000, got 10001/);
    refuses({ ...topicBucket, maxQueueMs: 1.5 }, /maxQueueMs must be an integer/);
    assert.equal(parseFlowRule({ ...topicBucket, maxQueueMs: 0 }).maxQueueMs, 0, "0 = refuse at once");
    assert.equal(parseFlowRule({ ...topicBucket, maxQueueMs: MAX_MAX_QUEUE_MS }).maxQueueMs, MAX_MAX_QUEUE_MS);
  });

  it("warm-up needs warmUpMs in range and a coldFactor above 1", () => {
    const warm = { scope: "broker", limiter: "warm-up", messagesPerSecond: 100 };
    refuses(warm, /^flow\[0\]\.warmUpMs is required for limiter warm-up/, "flow[0]");
    refuses({ ...warm, warmUpMs: 0 }, /warmUpMs must be an integer from 1 to 3600000, got 0/);
    refuses({ ...warm, warmUpMs: 3_600_001 }, /warmUpMs must be an integer from 1 to 3600000/);
    refuses({ ...warm, warmUpMs: 1000, coldFactor: 1 }, /^coldFactor must be a number > 1 .*got 1$/);
    refuses({ ...warm, warmUpMs: 1000, coldFactor: 0.5 }, /coldFactor must be a number > 1/);
    refuses({ ...warm, warmUpMs: 1000, coldFactor: Number.NaN }, /coldFactor must be a number > 1.*got NaN/);
    assert.equal(parseFlowRule({ ...warm, warmUpMs: 1000, coldFactor: 1.5 }).coldFactor, 1.5);
  });

  it("concurrency needs an integer maxInFlight >= 1", () => {
    refuses({ scope: "broker", limiter: "concurrency" }, /^maxInFlight is required for limiter concurrency/);
    refuses({ scope: "broker", limiter: "concurrency", maxInFlight: 0 }, /maxInFlight must be an integer >= 1, got 0/);
    refuses({ scope: "broker", limiter: "concurrency", maxInFlight: 2.5 }, /maxInFlight must be an integer >= 1, got 2\.5/);
  });
});

describe("flow rules: defaults and lists", () => {
  it("fills in every default, in a fixed field order", () => {
    assert.deepEqual(parseFlowRule({ limiter: "token-bucket", messagesPerSecond: 1000.2, scope: "topic:orders" }), {
      scope: "topic:orders",
      limiter: "token-bucket",
      messagesPerSecond: 1000.2,
      burst: 1001,
      maxQueueMs: DEFAULT_MAX_QUEUE_MS,
    });
    assert.equal(parseFlowRule({ ...topicBucket, messagesPerSecond: 0.25 }).burst, 1, "one second of a slow rate is still one message");
    assert.deepEqual(parseFlowRule({ scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 1024 }), {
      scope: "broker",
      limiter: "leaky-bucket",
      bytesPerSecond: 1024,
      maxQueueMs: 500,
    });
    assert.deepEqual(parseFlowRule({ scope: "client:loader-?", limiter: "warm-up", messagesPerSecond: 400, warmUpMs: 10_000 }), {
      scope: "client:loader-?",
      limiter: "warm-up",
      messagesPerSecond: 400,
      maxQueueMs: 500,
      warmUpMs: 10_000,
      coldFactor: DEFAULT_COLD_FACTOR,
    });
    assert.deepEqual(parseFlowRule({ scope: "broker", limiter: "concurrency", maxInFlight: 2000, maxQueueMs: 0 }), {
      scope: "broker",
      limiter: "concurrency",
      maxQueueMs: 0,
      maxInFlight: 2000,
    });
    const explicit = parseFlowRule({ ...topicBucket, burst: 5, maxQueueMs: 20, coldFactor: undefined });
    assert.deepEqual([explicit.burst, explicit.maxQueueMs], [5, 20], "given values are kept; undefined fields are absent");
    assert.deepEqual(parseFlowRule(explicit), explicit, "a normalised rule parses to itself");
  });

  it("parses lists, refusing a repeated (scope, limiter) and naming both positions", () => {
    const rules = parseFlowRules([topicBucket, { ...topicBucket, limiter: "concurrency", messagesPerSecond: undefined, maxInFlight: 3 }]);
    assert.deepEqual(rules.map(flowRuleKey), ["topic:orders token-bucket", "topic:orders concurrency"]);
    assert.throws(
      () => parseFlowRules([topicBucket, { scope: "broker", limiter: "concurrency", maxInFlight: 1 }, { ...topicBucket, messagesPerSecond: 5 }]),
      (e: unknown) => e instanceof SluiceError && e.code === "INVALID_CONFIG" && /^flow\[2\] repeats the \(topic:orders, token-bucket\) rule of flow\[0\]/.test(e.message),
    );
    assert.throws(() => parseFlowRules([{ ...topicBucket, burst: 0 }], "config file sluice.yaml: flow"), /config file sluice\.yaml: flow\[0\]\.burst must be an integer >= 1, got 0/);
    assert.throws(() => parseFlowRules({ scope: "broker" }), /^InvalidConfigError: flow must be a list of flow rules/);
    assert.deepEqual(parseFlowRules([]), []);
  });

  it("names units and describes limits", () => {
    const rule = (input: object): FlowRule => parseFlowRule(input);
    assert.equal(flowRuleUnit(rule(topicBucket)), "messages");
    assert.equal(flowRuleUnit(rule({ scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 10 })), "bytes");
    assert.equal(flowRuleUnit(rule({ scope: "broker", limiter: "concurrency", maxInFlight: 10 })), "requests");
    assert.equal(describeFlowLimit(rule({ ...topicBucket, messagesPerSecond: 50_000, burst: 100_000 })), "50000 messages/s, burst 100000");
    assert.equal(describeFlowLimit(rule({ scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 10_485_760 })), "10485760 bytes/s");
    assert.equal(
      describeFlowLimit(rule({ scope: "broker", limiter: "warm-up", messagesPerSecond: 400_000, warmUpMs: 10_000 })),
      "400000 messages/s, warm-up 10000 ms x3",
    );
    assert.equal(describeFlowLimit(rule({ scope: "broker", limiter: "concurrency", maxInFlight: 2000 })), "2000 in flight");
  });
});

describe("flow rules: scopes and globs", () => {
  const matches = (scope: string, value: string): boolean => {
    const parsed = parseFlowScope(scope);
    assert.notEqual(parsed.kind, "broker");
    return parsed.kind !== "broker" && parsed.matches(value);
  };

  it("parses broker, topic and client scopes", () => {
    assert.deepEqual(parseFlowScope("broker"), { kind: "broker" });
    const topic = parseFlowScope("topic:orders.*");
    assert.deepEqual([topic.kind, "pattern" in topic && topic.pattern], ["topic", "orders.*"]);
    const client = parseFlowScope("client:a:b");
    assert.deepEqual([client.kind, "pattern" in client && client.pattern], ["client", "a:b"], "only the first colon splits");
  });

  it("* matches any run and ? one character; plain names match exactly", () => {
    assert.ok(matches("topic:orders.*", "orders.eu"));
    assert.ok(matches("topic:orders.*", "orders."));
    assert.ok(!matches("topic:orders.*", "orders"));
    assert.ok(!matches("topic:orders.*", "ordersXeu"), ". is literal");
    assert.ok(matches("topic:ord?rs", "orders"));
    assert.ok(matches("topic:ord?rs", "ordxrs"));
    assert.ok(!matches("topic:ord?rs", "ordrs"));
    assert.ok(!matches("topic:ord?rs", "ordeers"));
    assert.ok(matches("topic:*", "anything-at_all"));
    assert.ok(matches("client:loader-*-eu", "loader-7-eu"));
    assert.ok(!matches("client:loader-*-eu", "loader-7-us"));
    assert.ok(matches("client:é?", "éñ"), "? is one character, not one UTF-16 unit");
    assert.ok(matches("client:😀?", "😀😀"));
    assert.ok(matches("topic:orders", "orders"));
    assert.ok(!matches("topic:orders", "orders2"));
    assert.ok(!matches("topic:orders", "Orders"));
  });

  it("takes regular-expression specials literally", () => {
    assert.ok(matches("client:a+b*", "a+b-1"));
    assert.ok(!matches("client:a+b*", "aab-1"));
    assert.ok(matches("client:(x)*", "(x)y"));
    assert.ok(!matches("client:(x)*", "xy"));
    assert.ok(matches("client:[ab]?", "[ab]c"));
    assert.ok(!matches("client:[ab]?", "ac"));
    assert.ok(matches("client:^a$|b\\c{2}/*", "^a$|b\\c{2}/z"));
    assert.ok(matches("client:a.b", "a.b"));
    assert.ok(!matches("client:a.b", "axb"));
  });
});

// ---- The SDK against real HTTP servers standing in for brokers' REST admin API ----

interface Seen {
  method: string;
  url: string;
  contentType: string | undefined;
  body: string;
}

type Reply = (seen: Seen) => { status: number; body: unknown } | "hang";

class FakeBroker {
  readonly seen: Seen[] = [];
  private readonly server: http.Server;
  reply: Reply = () => ({ status: 200, body: {} });

  constructor() {
    this.server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (chunk: Buffer) => (body += chunk.toString()));
      req.on("end", () => {
        const seen = { method: req.method ?? "", url: req.url ?? "", contentType: req.headers["content-type"], body };
        this.seen.push(seen);
        const answer = this.reply(seen);
        if (answer === "hang") return;
        res.writeHead(answer.status, { "content-type": "application/json" });
        res.end(typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body));
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return this;
  }

  get address(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

interface Listed {
  group: string;
  id: number;
  state: string;
  httpAddress: string;
}

/** Just what the flow functions use of a ClientContext: options, retry, the name servers' broker listing, a logger. */
function fakeContext(brokers: () => Listed[], requestTimeoutMs = 2000): ClientContext {
  const nameServers = {
    listBrokers: async () => ({
      brokers: brokers().map((b) => ({
        broker: { cluster: "c", group: b.group, brokerId: b.id, address: "127.0.0.1:1", httpAddress: b.httpAddress, version: "t", role: "master", epoch: 1, weight: 1 },
        state: b.state,
        heartbeatAgeMs: 0,
        registeredAtMs: 0,
        suspicion: 0,
        partitionCount: 0,
      })),
    }),
  };
  return {
    options: { requestTimeoutMs },
    retry: new RetryPolicy({ retries: 0, initialRetryMs: 1, maxRetryMs: 1 }),
    nameServers,
    logger: silentLogger,
  } as unknown as ClientContext;
}

describe("flow rules SDK: fan-out to every live broker", () => {
  let b1: FakeBroker;
  let b2: FakeBroker;
  let listing: Listed[];
  let context: ClientContext;

  before(async () => {
    b1 = await new FakeBroker().start();
    b2 = await new FakeBroker().start();
    listing = [
      { group: "b1", id: 0, state: "alive", httpAddress: b1.address },
      { group: "b2", id: 1, state: "suspect", httpAddress: b2.address },
      { group: "b3", id: 0, state: "dead", httpAddress: "127.0.0.1:9" },
      { group: "b4", id: 0, state: "alive", httpAddress: "" },
    ];
    context = fakeContext(() => listing);
  });
  after(async () => {
    await b1.stop();
    await b2.stop();
  });

  const reset = (): void => {
    b1.seen.length = 0;
    b2.seen.length = 0;
  };

  it("sets the normalised rule on alive and suspect brokers only", async () => {
    reset();
    for (const b of [b1, b2]) b.reply = (seen) => ({ status: 200, body: { broker: "x", rule: JSON.parse(seen.body) } });
    const changes = await setFlowRule(context, { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 100 });
    const stored = { scope: "topic:orders", limiter: "token-bucket", messagesPerSecond: 100, burst: 100, maxQueueMs: 500 };
    assert.deepEqual(changes, [
      { broker: "b1/0", httpAddress: b1.address, scope: "topic:orders", limiter: "token-bucket", rule: stored },
      { broker: "b2/1", httpAddress: b2.address, scope: "topic:orders", limiter: "token-bucket", rule: stored },
    ]);
    for (const b of [b1, b2]) {
      assert.equal(b.seen.length, 1);
      assert.equal(b.seen[0]?.method, "PUT");
      assert.equal(b.seen[0]?.url, "/admin/flow");
      assert.equal(b.seen[0]?.contentType, "application/json");
      assert.deepEqual(JSON.parse(b.seen[0]?.body ?? ""), stored);
    }
  });

  it("refuses a bad rule locally: no broker is asked", async () => {
    reset();
    await assert.rejects(
      setFlowRule(context, { scope: "topic:orders", limiter: "leaky-bucket", messagesPerSecond: 5, burst: 3 }),
      (e: unknown) => e instanceof SluiceError && e.code === "INVALID_CONFIG" && /burst does not apply to limiter leaky-bucket/.test(e.message),
    );
    await assert.rejects(deleteFlowRule(context, "tpc:x", "token-bucket"), /scope "tpc:x" is not one of/);
    await assert.rejects(deleteFlowRule(context, "broker", "bucket"), /limiter must be one of/);
    assert.equal(b1.seen.length + b2.seen.length, 0);
  });

  it("lists every broker's rules", async () => {
    reset();
    const rule = { scope: "broker", limiter: "concurrency", maxQueueMs: 500, maxInFlight: 4, source: "config", state: { queued: 0, inFlight: 1 } };
    b1.reply = () => ({ status: 200, body: { broker: "b1/0", rules: [rule] } });
    b2.reply = () => ({ status: 200, body: { broker: "b2/1", rules: [] } });
    assert.deepEqual(await listFlowRules(context), [
      { broker: "b1/0", httpAddress: b1.address, rules: [rule] },
      { broker: "b2/1", httpAddress: b2.address, rules: [] },
    ]);
    assert.equal(b1.seen[0]?.method, "GET");
  });

  it("deletes on every broker; one without the rule fails the call after all were tried", async () => {
    reset();
    b1.reply = () => ({ status: 404, body: { code: "UNKNOWN_FLOW_RULE", message: "no rule (client:a b, concurrency)", retriable: false } });
    b2.reply = () => ({ status: 200, body: { broker: "b2/1", deleted: { scope: "client:a b", limiter: "concurrency" } } });
    await assert.rejects(deleteFlowRule(context, "client:a b", "concurrency"), (e: unknown) => {
      assert.ok(e instanceof UnknownFlowRuleError);
      assert.equal(e.code, "UNKNOWN_FLOW_RULE");
      assert.match(e.message, new RegExp(`failed on 1 of 2 brokers: b1/0 \\(${b1.address}\\): no rule \\(client:a b, concurrency\\)$`), "one code: not repeated per broker");
      assert.ok(e.cause instanceof AggregateError);
      return true;
    });
    assert.equal(b2.seen[0]?.method, "DELETE", "the healthy broker was asked too");
    assert.equal(b2.seen[0]?.url, "/admin/flow?scope=client%3Aa+b&limiter=concurrency");
    b1.reply = b2.reply;
    const changes = await deleteFlowRule(context, "client:a b", "concurrency");
    assert.deepEqual(changes.map((c) => [c.broker, c.scope, c.limiter, c.rule]), [["b1/0", "client:a b", "concurrency", undefined], ["b2/1", "client:a b", "concurrency", undefined]]);
  });

  it("names every failed broker; mixed failures keep the first one's code", async () => {
    reset();
    b1.reply = () => ({ status: 400, body: { code: "INVALID_CONFIG", message: "burst must be an integer >= 1, got 0", retriable: false } });
    b2.reply = () => ({ status: 500, body: "<html>oops</html>" });
    await assert.rejects(setFlowRule(context, { scope: "broker", limiter: "leaky-bucket", bytesPerSecond: 5 }), (e: unknown) => {
      assert.ok(e instanceof SluiceError);
      assert.equal(e.code, "INVALID_CONFIG");
      assert.equal(e.retriable, false);
      assert.match(e.message, /failed on 2 of 2 brokers: b1\/0 .*burst must be an integer >= 1, got 0 \[INVALID_CONFIG\]; b2\/1 .*HTTP 500 on PUT \/admin\/flow: <html>oops<\/html> \[BROKER_UNAVAILABLE\]/);
      return true;
    });
  });

  it("a broker that does not answer in requestTimeoutMs, or cannot be reached, fails with a retriable error", async () => {
    const slow = await new FakeBroker().start();
    slow.reply = () => "hang";
    try {
      const closedPort = await new FakeBroker().start();
      const closedAddress = closedPort.address;
      await closedPort.stop();
      const brokers = [
        { group: "s", id: 0, state: "alive", httpAddress: slow.address },
        { group: "c", id: 0, state: "alive", httpAddress: closedAddress },
      ];
      const started = Date.now();
      await assert.rejects(listFlowRules(fakeContext(() => brokers, 300)), (e: unknown) => {
        assert.ok(e instanceof SluiceError);
        assert.equal(e.code, "REQUEST_TIMED_OUT");
        assert.equal(e.retriable, true);
        assert.match(e.message, /s\/0 .*no answer within 300 ms \[REQUEST_TIMED_OUT\]; c\/0 .*unreachable: ECONNREFUSED \[BROKER_UNAVAILABLE\]/);
        return true;
      });
      assert.ok(Date.now() - started < 2000, "bounded by requestTimeoutMs");
    } finally {
      await slow.stop();
    }
  });

  it("one class of failure throws that class", async () => {
    reset();
    for (const b of [b1, b2]) b.reply = () => ({ status: 404, body: { message: "Route GET:/admin/flow not found", statusCode: 404 } });
    await assert.rejects(listFlowRules(context), (e: unknown) => {
      assert.ok(e instanceof SluiceError);
      assert.equal(e.code, "UNSUPPORTED_VERSION");
      assert.equal(e.name, "UnsupportedVersionError");
      assert.match(e.message, /failed on 2 of 2 brokers: .*no flow admin API.*; .*no flow admin API/);
      return true;
    });
  });

  it("no live broker with an HTTP address: NO_BROKERS_AVAILABLE", async () => {
    const none = fakeContext(() => [{ group: "b1", id: 0, state: "dead", httpAddress: "127.0.0.1:9" }]);
    await assert.rejects(listFlowRules(none), (e: unknown) => e instanceof SluiceError && e.code === "NO_BROKERS_AVAILABLE" && /none of the 1 known brokers/.test(e.message));
    await assert.rejects(setFlowRule(fakeContext(() => []), { scope: "broker", limiter: "concurrency", maxInFlight: 1 }), /the name servers know no broker/);
  });
});
