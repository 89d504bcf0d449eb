// Keyed messages must land on the partition Kafka's Java client would pick: murmur2 is
// checked against Kafka's own test vectors and against kafkajs's (Java-compatible) port.
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import path from "node:path";
import { describe, it } from "node:test";
import { keyHashPartition, murmur2, murmur2Key } from "../../common/src/murmur2.js";

const requireFromRoot = createRequire(path.join(process.cwd(), "package.json"));
const kafkajsMurmur2 = requireFromRoot("kafkajs/src/producer/partitioners/default/murmur2.js") as (key: string | Buffer) => number;

// From Apache Kafka's UtilsTest.testMurmur2.
const KAFKA_VECTORS: [string, number][] = [
  ["21", -973932308],
  ["foobar", -790332482],
  ["a-little-bit-long-string", -985981536],
  ["a-little-bit-longer-string", -1486304829],
  ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
  ["abc", 479470107],
];

describe("murmur2", () => {
  it("matches Kafka's published vectors, as bytes and as strings", () => {
    for (const [input, expected] of KAFKA_VECTORS) {
      assert.equal(murmur2(Buffer.from(input)), expected, `murmur2(${input}) over bytes`);
      assert.equal(murmur2Key(input), expected, `murmur2(${input}) over a string`);
    }
  });

  it("maps keys to Kafka's partitions: (hash & 0x7fffffff) % count", () => {
    // toPositive(-790332482) = 1357151166; 1357151166 % 50 = 16.
    assert.equal(keyHashPartition("foobar", 50), 16);
    assert.equal(keyHashPartition(Buffer.from("foobar"), 50), 16);
  });

  it("agrees with kafkajs's port for every tail length, non-ASCII and long keys", () => {
    const keys: string[] = [""];
    for (let length = 1; length <= 64; length++) keys.push("k".repeat(length - 1) + String.fromCharCode(97 + (length % 26)));
    keys.push("ключ-заказа", "注文-42", "emoji-🚀-key", "x".repeat(5000), "é".repeat(2000));
    for (let i = 0; i < 200; i++) keys.push(`order-${i * 7919}-${(i * 104729) % 997}`);
    for (const key of keys) {
      assert.equal(murmur2Key(key), kafkajsMurmur2(key), `string key of length ${key.length}`);
      const bytes = Buffer.from(key);
      assert.equal(murmur2(bytes), kafkajsMurmur2(bytes), `byte key of length ${bytes.length}`);
    }
  });

  it("hashes a key the same way as a string and as its UTF-8 bytes", () => {
    for (const key of ["a", "ab", "abc", "abcd", "ключ", "x".repeat(4096)]) {
      assert.equal(murmur2Key(key), murmur2(Buffer.from(key, "utf8")));
    }
  });
});
