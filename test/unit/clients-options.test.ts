// Options are validated once, at the door, with messages that say what is wrong and what
// would be right.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { InvalidArgumentError, SluiceError } from "../../common/src/errors.js";
import { Sluice } from "../../clients/src/index.js";
import { parseNameservers, parseSluiceOptions } from "../../clients/src/options.js";
import { parseProducerOptions } from "../../clients/src/producer/options.js";
import { parseConsumerOptions, parseSubscribeOptions } from "../../clients/src/consumer/options.js";
import { Acks } from "../../proto/gen/sluice/v1/broker.js";

function invalid(pattern: RegExp) {
  return (e: unknown) => e instanceof InvalidArgumentError && e.code === "INVALID_ARGUMENT" && pattern.test(e.message);
}

describe("client options", () => {
  it("defaults to one local name server and sane timeouts", () => {
    const options = parseSluiceOptions();
    assert.deepEqual(options.nameservers, ["127.0.0.1:9876"]);
    assert.equal(options.clientId, "sluice-js");
    assert.equal(options.requestTimeoutMs, 30_000);
    assert.equal(options.routeRefreshMs, 30_000);
    assert.deepEqual(options.retry, { retries: 5, initialRetryMs: 100, maxRetryMs: 2000 });
  });

  it("takes name servers as an array or a comma-separated string", () => {
    assert.deepEqual(parseNameservers("a:1, b:2,,c:3"), ["a:1", "b:2", "c:3"]);
    assert.deepEqual(parseNameservers(["h1:9876", "h1:9876", "[::1]:9876"]), ["h1:9876", "[::1]:9876"]);
  });

  it("refuses an empty name server list", () => {
    assert.throws(() => new Sluice({ nameservers: [] }), invalid(/nameservers must list at least one name server as "host:port"/));
    assert.throws(() => new Sluice({ nameservers: " , " }), invalid(/at least one name server/));
  });

  it("refuses addresses that are not host:port", () => {
    assert.throws(() => parseNameservers(["localhost"]), invalid(/"localhost" is not "host:port"/));
    assert.throws(() => parseNameservers(["h:99999"]), invalid(/"h:99999" is not "host:port"/));
    assert.throws(() => parseNameservers(["http://h:1"]), invalid(/is not "host:port"/));
  });

  it("refuses bad numbers, unknown keys and an empty client id", () => {
    assert.throws(() => parseSluiceOptions({ requestTimeoutMs: 0 }), invalid(/requestTimeoutMs must be an integer between 1 and 86400000, got 0/));
    assert.throws(() => parseSluiceOptions({ routeRefreshMs: 10 }), invalid(/routeRefreshMs must be an integer >= 100, got 10/));
    assert.throws(() => parseSluiceOptions({ clientId: " " }), invalid(/clientId must be a non-empty string/));
    assert.throws(() => parseSluiceOptions({ nameserver: "h:1" } as never), invalid(/unknown Sluice option "nameserver"; known options: nameservers/));
    assert.throws(() => parseSluiceOptions({ retry: { retries: 1.5 } }), invalid(/retry.retries must be an integer >= 0, got 1.5/));
  });
});

describe("producer options", () => {
  it("defaults: no linger, 1 MiB batches, leader acks, no compression, default partitioner", () => {
    assert.deepEqual(parseProducerOptions(), {
      lingerMs: 0,
      maxBatchBytes: 1024 * 1024,
      acks: Acks.ACKS_LEADER,
      idempotent: false,
      compression: "none",
      partitioner: "default",
    });
    assert.equal(parseProducerOptions({ acks: "all" }).acks, Acks.ACKS_ALL);
    assert.equal(parseProducerOptions({ acks: "none" }).acks, Acks.ACKS_NONE);
  });

  it("refuses a bad lingerMs", () => {
    assert.throws(() => parseProducerOptions({ lingerMs: -1 }), invalid(/lingerMs must be an integer between 0 and 60000, got -1/));
    assert.throws(() => parseProducerOptions({ lingerMs: 2.5 }), invalid(/lingerMs must be an integer/));
    assert.throws(() => parseProducerOptions({ lingerMs: "5" as never }), invalid(/lingerMs must be an integer between 0 and 60000, got "5"/));
  });

  it("refuses bad acks, compression, batch size and partitioner", () => {
    assert.throws(() => parseProducerOptions({ acks: "1" as never }), invalid(/acks must be "none", "leader" or "all", got "1"/));
    assert.throws(() => parseProducerOptions({ compression: "zstd" as never }), invalid(/compression must be "none" or "gzip", got "zstd"/));
    assert.throws(() => parseProducerOptions({ maxBatchBytes: 10 }), invalid(/maxBatchBytes must be an integer between 1024 and 33554432, got 10/));
    assert.throws(() => parseProducerOptions({ partitioner: "sticky" as never }), invalid(/partitioner must be one of "default", "round-robin", "key-hash", "random" or a function/));
    assert.throws(() => parseProducerOptions({ linger: 5 } as never), invalid(/unknown producer option "linger"/));
  });

  it("are checked when the producer is created, before anything connects", async () => {
    const sluice = new Sluice({ nameservers: ["127.0.0.1:1"] });
    try {
      assert.throws(() => sluice.producer({ acks: "most" as never }), (e: unknown) => e instanceof SluiceError && e.code === "INVALID_ARGUMENT");
      assert.throws(() => sluice.consumer({ maxBytesInFlight: 1 }), invalid(/maxBytesInFlight must be an integer between 65536 and/));
    } finally {
      await sluice.close();
    }
  });
});

describe("consumer options", () => {
  it("defaults to reading new messages with 8 MiB in flight", () => {
    assert.deepEqual(parseConsumerOptions(), { fromBeginning: false, maxBytesInFlight: 8 * 1024 * 1024 });
  });

  it("refuses a malformed group and bad flags", () => {
    assert.throws(() => parseConsumerOptions({ group: "bad group!" }), { code: "INVALID_ARGUMENT" });
    assert.throws(() => parseConsumerOptions({ fromBeginning: "yes" as never }), invalid(/fromBeginning must be true or false/));
  });

  it("checks subscribe partitions and offsets", () => {
    assert.deepEqual(parseSubscribeOptions({ partitions: [2, 0, 2], offsets: { 0: 5 } }), {
      partitions: [2, 0],
      offsets: new Map([[0, 5]]),
    });
    assert.throws(() => parseSubscribeOptions({ partitions: [] }), invalid(/non-empty array/));
    assert.throws(() => parseSubscribeOptions({ partitions: [-1] }), invalid(/subscribe partition must be an integer >= 0, got -1/));
    assert.throws(() => parseSubscribeOptions({ partitions: [0], offsets: { 1: 0 } }), invalid(/offsets name partition 1, which is not in partitions \[0\]/));
    assert.throws(() => parseSubscribeOptions({ offsets: { 0: -5 } }), invalid(/offset of partition 0 must be an integer >= 0/));
  });
});

describe("calls on a client", () => {
  it("refuse invalid topic names before any request", async () => {
    const sluice = new Sluice({ nameservers: ["127.0.0.1:1"] });
    try {
      const producer = sluice.producer();
      await assert.rejects(producer.send("bad topic", [{ value: "x" }]), (e: unknown) => e instanceof SluiceError && e.code === "INVALID_TOPIC_NAME");
      await assert.rejects(sluice.admin().createTopic(".."), (e: unknown) => e instanceof SluiceError && e.code === "INVALID_TOPIC_NAME");
      await assert.rejects(sluice.admin().createTopic("t", { partitions: 0 }), invalid(/partitions must be an integer between 1 and 10000, got 0/));
      assert.throws(() => sluice.consumer().subscribe("a/b"), (e: unknown) => e instanceof SluiceError && e.code === "INVALID_TOPIC_NAME");
      assert.deepEqual(await producer.send("fine", []), [], "an empty send resolves at once");
    } finally {
      await sluice.close();
    }
  });

  it("fail with CLOSED after close", async () => {
    const sluice = new Sluice({ nameservers: ["127.0.0.1:1"] });
    const producer = sluice.producer();
    await sluice.close();
    await assert.rejects(producer.send("t", [{ value: "x" }]), (e: unknown) => e instanceof SluiceError && e.code === "CLOSED");
    assert.throws(() => sluice.producer(), (e: unknown) => e instanceof SluiceError && e.code === "CLOSED");
  });
});
