import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { encodeBatch } from "../../common/src/batch/builder.js";
import { decodeRecords } from "../../common/src/batch/reader.js";
import { InvalidArgumentError, NotCoordinatorError, StorageFullError } from "../../common/src/errors.js";
import {
  GROUP_STATE_TOPIC,
  SNAPSHOT_BATCH_BYTES,
  SNAPSHOT_MARKER_KEY,
  encodeSnapshot,
  groupKey,
  groupPrefix,
  kindPrefix,
  offsetKey,
  parseKey,
  windowKey,
  type OffsetRecord,
} from "../../broker/src/groups/state-keys.js";
import { GroupStateStore } from "../../broker/src/groups/state-store.js";
import { PartitionLog } from "../../broker/src/storage/partition-log.js";
import type { StorageIo } from "../../broker/src/storage/storage-io.js";
import { FailingIo, makeBatch, readAll, tempDir, testConfig } from "./storage-fixtures.js";

const offset = (value: number): OffsetRecord => ({ offset: value, metadata: "", commitTimeMs: 1_700_000_000_000 + value });

describe("group state keys", () => {
  it("builds keys that parse back to their parts", () => {
    assert.equal(offsetKey("billing", "orders", 3), "o\u0000billing\u0000orders\u00003");
    assert.equal(groupKey("billing"), "g\u0000billing");
    assert.equal(windowKey("billing", "orders", 12), "q\u0000billing\u0000orders\u000012");
    assert.deepEqual(parseKey(offsetKey("billing", "orders", 3)), { kind: "offset", group: "billing", topic: "orders", partition: 3 });
    assert.deepEqual(parseKey(windowKey("b", "%DLQ%b", 0)), { kind: "window", group: "b", topic: "%DLQ%b", partition: 0 });
    assert.deepEqual(parseKey(groupKey("billing")), { kind: "group", group: "billing" });
    assert.equal(groupPrefix("billing", "offset"), "o\u0000billing\u0000");
    assert.equal(groupPrefix("billing", "window", "orders"), "q\u0000billing\u0000orders\u0000");
    assert.equal(kindPrefix("group"), "g\u0000");
    assert.ok(offsetKey("billing", "orders", 3).startsWith(groupPrefix("billing", "offset", "orders")));
    assert.equal(GROUP_STATE_TOPIC, "%groups");
  });

  it("refuses names that would make a key ambiguous, and parses nothing that is not a state key", () => {
    assert.throws(() => offsetKey("a\u0000b", "t", 0), InvalidArgumentError);
    assert.throws(() => windowKey("g", "", 0), InvalidArgumentError);
    assert.throws(() => offsetKey("g", "t", -1), InvalidArgumentError);
    assert.throws(() => groupKey(""), InvalidArgumentError);
    for (const key of ["", "x", "g\u0000", "g\u0000a\u0000b", "o\u0000g\u0000t\u0000", "o\u0000g\u0000t\u000001", "o\u0000g\u0000t\u00001x", "q\u0000g\u0000t", SNAPSHOT_MARKER_KEY]) {
      assert.equal(parseKey(key), undefined, JSON.stringify(key));
    }
  });

  it("encodes a snapshot in batches of at most 1 MiB with the marker last, and an empty one as the marker alone", () => {
    const padding = "x".repeat(300 * 1024);
    const live = Array.from({ length: 8 }, (_, i): [string, Record<string, unknown>] => [groupKey(`g${i}`), { i, padding }]);
    const batches = encodeSnapshot(live, 1_700_000_000_000);
    assert.equal(batches.length, 3);
    for (const batch of batches) assert.ok(batch.length <= SNAPSHOT_BATCH_BYTES, `${batch.length} bytes`);
    const records = batches.flatMap((batch) => decodeRecords(batch));
    assert.deepEqual(records.map((r) => r.key!.toString()), [...live.map(([key]) => key), SNAPSHOT_MARKER_KEY]);
    assert.deepEqual(JSON.parse(records[3]!.value!.toString()), live[3]![1]);
    assert.deepEqual(JSON.parse(records[8]!.value!.toString()), { keys: 8, createdAtMs: 1_700_000_000_000 });
    const empty = encodeSnapshot([], 5);
    assert.equal(empty.length, 1);
    assert.deepEqual(decodeRecords(empty[0]!).map((r) => r.key!.toString()), [SNAPSHOT_MARKER_KEY]);
  });
});

describe("group state store", () => {
  let dataDir: string;
  let cleanup: () => void;
  const opened: { close(): Promise<void> }[] = [];
  beforeEach(() => ({ dir: dataDir, cleanup } = tempDir()));
  afterEach(async () => {
    for (const resource of opened.splice(0).reverse()) await resource.close().catch(() => undefined);
    cleanup();
  });

  const logDir = (root = dataDir): string => path.join(root, "logs", `${GROUP_STATE_TOPIC}-0`);
  const openLog = async (options: { root?: string; segmentBytes?: number; recover?: boolean; io?: StorageIo } = {}): Promise<PartitionLog> => {
    const log = await PartitionLog.open({
      dir: logDir(options.root),
      topic: GROUP_STATE_TOPIC,
      partition: 0,
      config: testConfig({ segmentBytes: options.segmentBytes ?? 1024 * 1024 }),
      recover: options.recover ?? false,
      io: options.io,
    });
    opened.push(log);
    return log;
  };
  const openStore = (root = dataDir): GroupStateStore => {
    const store = GroupStateStore.open(root);
    opened.push(store);
    return store;
  };
  /** Closes the store first, then the log, as the broker does. */
  const closeBoth = async (store: GroupStateStore, log: PartitionLog): Promise<void> => {
    await store.close();
    await log.close();
  };
  const everything = (store: GroupStateStore): Array<[string, unknown]> => store.scan("");
  /** Record keys in the log from its start, in order (the snapshot marker included). */
  const keysInLog = (log: PartitionLog): string[] => decodeRecords(readAll(log, log.logStartOffset)).map((r) => r.key!.toString("utf8"));

  /** Twenty groups' offsets, rewritten `rounds` times, then a third of them deleted. */
  async function churn(store: GroupStateStore, rounds: number): Promise<void> {
    for (let round = 0; round < rounds; round++) {
      const writes = [];
      for (let g = 0; g < 20; g++) writes.push({ key: offsetKey(`group-${g}`, "orders", g % 3), value: offset(round * 100 + g) });
      await store.write(0, writes);
    }
    await store.write(0, [{ key: groupKey("group-0"), value: { kind: "consumer", epoch: 4, members: [] } }]);
    await store.write(0, [0, 3, 6, 9, 12, 15, 18].map((g) => ({ key: offsetKey(`group-${g}`, "orders", g % 3), value: null })));
  }

  it("writes, reads, scans in key order and deletes with tombstones", async () => {
    const log = await openLog();
    const store = openStore();
    assert.deepEqual(await store.load(0, log), { replayedRecords: 0, fromOffset: 0 });
    const committed = offset(7);
    await store.write(0, [
      { key: offsetKey("billing", "orders", 1), value: committed },
      { key: offsetKey("billing", "orders", 0), value: offset(5) },
      { key: offsetKey("audit", "orders", 0), value: offset(9) },
      { key: groupKey("billing"), value: { kind: "queue" } },
    ]);
    committed.offset = 1000; // the store keeps its own copy
    assert.deepEqual(store.get<OffsetRecord>(offsetKey("billing", "orders", 1)), offset(7));
    assert.deepEqual(store.get(groupKey("billing")), { kind: "queue" });
    assert.equal(store.get(groupKey("audit")), undefined);
    assert.deepEqual(
      store.scan<OffsetRecord>(groupPrefix("billing", "offset")).map(([key, value]) => [key, value.offset]),
      [[offsetKey("billing", "orders", 0), 5], [offsetKey("billing", "orders", 1), 7]],
    );
    await store.write(0, [{ key: offsetKey("billing", "orders", 0), value: null }]);
    assert.equal(store.get(offsetKey("billing", "orders", 0)), undefined);
    assert.deepEqual(store.scan(groupPrefix("billing", "offset")).map(([key]) => key), [offsetKey("billing", "orders", 1)]);
    assert.equal(log.logEndOffset, 5, "one record per write in the log");

    await assert.rejects(store.write(1, [{ key: groupKey("x"), value: {} }]), NotCoordinatorError);
    await assert.rejects(store.write(0, [{ key: "not a state key", value: {} }]), InvalidArgumentError);
    await assert.rejects(store.write(0, [{ key: SNAPSHOT_MARKER_KEY, value: {} }]), InvalidArgumentError);
    await assert.rejects(store.write(0, [{ key: groupKey("x"), value: [1, 2] }]), InvalidArgumentError);
    assert.equal(log.logEndOffset, 5, "refused writes append nothing");

    store.unload(0);
    assert.equal(store.get(offsetKey("billing", "orders", 1)), undefined);
    assert.deepEqual(store.scan(""), []);
    await assert.rejects(store.write(0, [{ key: groupKey("x"), value: {} }]), NotCoordinatorError);
  });

  it("applies concurrent writes in append order, and a rebuild from the log agrees", async () => {
    const log = await openLog();
    let store = openStore();
    await store.load(0, log);
    const key = offsetKey("g", "t", 0);
    await Promise.all(Array.from({ length: 100 }, (_, i) => store.write(0, [{ key, value: offset(i) }, { key: offsetKey("g", "t", 1 + (i % 5)), value: offset(i) }])));
    assert.equal(store.get<OffsetRecord>(key)!.offset, 99);
    const before = everything(store);
    assert.equal(before.length, 6);
    await store.close();
    fs.rmSync(path.join(dataDir, "groups"), { recursive: true });
    store = openStore();
    assert.deepEqual(await store.load(0, log), { replayedRecords: 200, fromOffset: 0 });
    assert.deepEqual(everything(store), before);
  });

  it("unloaded with writes in flight: they still reach LMDB before the partition loads again", async () => {
    const log = await openLog();
    const store = openStore();
    await store.load(0, log);
    const writes = Array.from({ length: 20 }, (_, i) => store.write(0, [{ key: offsetKey("g", "t", i), value: offset(i) }]));
    store.unload(0);
    assert.deepEqual(await store.load(0, log), { replayedRecords: 0, fromOffset: 20 }, "the load waited for them");
    await Promise.all(writes);
    assert.equal(store.scan(groupPrefix("g", "offset")).length, 20);
    await assert.rejects(store.load(0, log), /already loaded/);
  });

  it("reopened: replays nothing new and shows the same view", async () => {
    let log = await openLog();
    let store = openStore();
    await store.load(0, log);
    await churn(store, 5);
    const before = everything(store);
    const end = log.logEndOffset;
    await closeBoth(store, log);
    log = await openLog();
    store = openStore();
    assert.deepEqual(await store.load(0, log), { replayedRecords: 0, fromOffset: end });
    assert.deepEqual(everything(store), before);
  });

  it("rebuilds the same view from the log when the LMDB directory is gone", async () => {
    let log = await openLog();
    let store = openStore();
    await store.load(0, log);
    await churn(store, 5);
    const before = everything(store);
    const records = log.logEndOffset;
    await closeBoth(store, log);
    fs.rmSync(path.join(dataDir, "groups"), { recursive: true });
    log = await openLog();
    store = openStore();
    assert.deepEqual(await store.load(0, log), { replayedRecords: records, fromOffset: 0 });
    assert.deepEqual(everything(store), before);
  });

  it("replays only the records LMDB has not applied", async () => {
    let log = await openLog();
    let store = openStore();
    await store.load(0, log);
    await churn(store, 2);
    const applied = log.logEndOffset;
    await closeBoth(store, log);
    // Another writer (a replica catching up, say) appended while the store was away.
    log = await openLog();
    await log.append(encodeBatch([
      { key: offsetKey("late", "orders", 0), value: JSON.stringify(offset(42)) },
      { key: offsetKey("group-1", "orders", 1), value: null },
    ]));
    store = openStore();
    assert.deepEqual(await store.load(0, log), { replayedRecords: 2, fromOffset: applied });
    assert.deepEqual(store.get(offsetKey("late", "orders", 0)), offset(42));
    assert.equal(store.get(offsetKey("group-1", "orders", 1)), undefined);
    assert.deepEqual(store.get(offsetKey("group-2", "orders", 2)), offset(102));
  });

  it("rebuilds when the log lost its tail or was replaced by a different history", async () => {
    let log = await openLog();
    let store = openStore();
    await store.load(0, log);
    await churn(store, 3);
    await closeBoth(store, log);

    // A tail lost: the log is now shorter than what LMDB applied.
    fs.rmSync(logDir(), { recursive: true });
    log = await openLog();
    store = openStore();
    assert.deepEqual(await store.load(0, log), { replayedRecords: 0, fromOffset: 0 });
    assert.deepEqual(everything(store), []);
    await store.write(0, [{ key: groupKey("only"), value: { kind: "consumer" } }]);
    await closeBoth(store, log);

    // A divergent history as long as what LMDB applied: same offsets, other batches.
    fs.rmSync(logDir(), { recursive: true });
    log = await openLog();
    await log.append(encodeBatch([{ key: groupKey("other"), value: JSON.stringify({ kind: "queue" }) }]));
    await log.append(encodeBatch([{ key: offsetKey("other", "t", 0), value: JSON.stringify(offset(3)) }]));
    store = openStore();
    assert.deepEqual(await store.load(0, log), { replayedRecords: 2, fromOffset: 0 });
    assert.deepEqual(everything(store).map(([key]) => key), [groupKey("other"), offsetKey("other", "t", 0)]);
  });

  it("a write whose append fails changes nothing, and the next one works", async () => {
    const io = new FailingIo();
    let log = await openLog({ io });
    let store = openStore();
    await store.load(0, log);
    await store.write(0, [{ key: offsetKey("g", "t", 0), value: offset(1) }]);
    io.failNextWrite(0);
    await assert.rejects(store.write(0, [{ key: offsetKey("g", "t", 0), value: offset(2) }, { key: groupKey("g"), value: {} }]), StorageFullError);
    assert.deepEqual(store.get(offsetKey("g", "t", 0)), offset(1));
    assert.equal(store.get(groupKey("g")), undefined);
    await store.write(0, [{ key: offsetKey("g", "t", 1), value: offset(3) }]);
    const before = everything(store);
    await closeBoth(store, log);
    log = await openLog();
    store = openStore();
    assert.equal((await store.load(0, log)).replayedRecords, 0);
    assert.deepEqual(everything(store), before);
  });

  it("compaction shrinks the log to a snapshot and the view survives reload and rebuild", async () => {
    let log = await openLog({ segmentBytes: 4096 });
    let store = openStore();
    await store.load(0, log);
    await churn(store, 60);
    const before = everything(store);
    const sizeBefore = log.sizeBytes;
    assert.ok(log.segmentCount > 10, `${log.segmentCount} segments`);
    assert.deepEqual(await store.compact(0), { compacted: false, bytesFreed: 0 }, "below the default 16 MiB");

    const result = await store.compact(0, { minBytes: 0, ratio: 2 });
    assert.equal(result.compacted, true);
    assert.ok(result.bytesFreed > sizeBefore / 2, `freed ${result.bytesFreed} of ${sizeBefore}`);
    assert.ok(log.sizeBytes < sizeBefore / 4, `${log.sizeBytes} bytes left of ${sizeBefore}`);
    assert.ok(log.logStartOffset > 0);
    assert.ok(keysInLog(log).includes(SNAPSHOT_MARKER_KEY));
    assert.deepEqual(everything(store), before);
    assert.deepEqual(await store.compact(0, { minBytes: 0, ratio: 2 }), { compacted: false, bytesFreed: 0 }, "nothing left to gain");

    const end = log.logEndOffset;
    await closeBoth(store, log);
    log = await openLog({ segmentBytes: 4096 });
    store = openStore();
    assert.deepEqual(await store.load(0, log), { replayedRecords: 0, fromOffset: end });
    assert.deepEqual(everything(store), before);
    await store.close();

    fs.rmSync(path.join(dataDir, "groups"), { recursive: true });
    store = openStore();
    const rebuilt = await store.load(0, log);
    assert.equal(rebuilt.fromOffset, log.logStartOffset);
    assert.deepEqual(everything(store), before);
  });

  it("writes issued while a compaction runs land after the snapshot", async () => {
    const log = await openLog({ segmentBytes: 4096 });
    let store = openStore();
    await store.load(0, log);
    await churn(store, 40);
    const compaction = store.compact(0, { minBytes: 0, ratio: 2 });
    const during = [
      store.write(0, [{ key: offsetKey("group-1", "orders", 1), value: null }]),
      store.write(0, [{ key: offsetKey("group-2", "orders", 2), value: offset(-1) }]),
      store.write(0, [{ key: groupKey("newcomer"), value: { kind: "queue" } }]),
    ];
    assert.equal((await compaction).compacted, true);
    await Promise.all(during);
    assert.equal(store.get(offsetKey("group-1", "orders", 1)), undefined);
    assert.deepEqual(store.get(offsetKey("group-2", "orders", 2)), offset(-1));
    const keys = keysInLog(log);
    assert.ok(keys.indexOf(SNAPSHOT_MARKER_KEY) < keys.lastIndexOf(groupKey("newcomer")), "the held write follows the snapshot");
    const before = everything(store);
    await store.close();
    fs.rmSync(path.join(dataDir, "groups"), { recursive: true });
    store = openStore();
    await store.load(0, log);
    assert.deepEqual(everything(store), before);
  });

  it("a snapshot of an empty state leaves an empty view", async () => {
    const log = await openLog({ segmentBytes: 1024 });
    let store = openStore();
    await store.load(0, log);
    await churn(store, 20);
    await store.write(0, store.scan("").map(([key]) => ({ key, value: null })));
    assert.deepEqual(everything(store), []);
    assert.equal((await store.compact(0, { minBytes: 0, ratio: 1 })).compacted, true);
    await store.close();
    fs.rmSync(path.join(dataDir, "groups"), { recursive: true });
    store = openStore();
    await store.load(0, log);
    assert.deepEqual(everything(store), []);
  });

  it("crash images: right after a compaction, and with LMDB from before it", async () => {
    const log = await openLog({ segmentBytes: 4096 });
    const store = openStore();
    await store.load(0, log);
    await churn(store, 40);
    const lmdbBefore = path.join(dataDir, "lmdb-before");
    fs.cpSync(path.join(dataDir, "groups"), lmdbBefore, { recursive: true });
    assert.equal((await store.compact(0, { minBytes: 0, ratio: 2 })).compacted, true);
    const expected = everything(store);

    // The disk as a crash would leave it, nothing closed: copied while the store and log are open.
    const crashed = path.join(dataDir, "crashed");
    fs.cpSync(path.join(dataDir, "groups"), path.join(crashed, "groups"), { recursive: true });
    fs.cpSync(logDir(), logDir(crashed), { recursive: true });
    const crashedLog = await openLog({ root: crashed, segmentBytes: 4096, recover: true });
    const crashedStore = openStore(crashed);
    assert.deepEqual(await crashedStore.load(0, crashedLog), { replayedRecords: 0, fromOffset: log.logEndOffset });
    assert.deepEqual(everything(crashedStore), expected);

    // LMDB's mark is below the new log start: it must rebuild from what is left.
    const stale = path.join(dataDir, "stale");
    fs.cpSync(lmdbBefore, path.join(stale, "groups"), { recursive: true });
    fs.cpSync(logDir(), logDir(stale), { recursive: true });
    const staleLog = await openLog({ root: stale, segmentBytes: 4096, recover: true });
    const staleStore = openStore(stale);
    assert.equal((await staleStore.load(0, staleLog)).fromOffset, staleLog.logStartOffset);
    assert.ok(staleLog.logStartOffset > 0);
    assert.deepEqual(everything(staleStore), expected);
  });
});

describe("partition log: advanceLogStart", () => {
  let dir: string;
  let cleanup: () => void;
  let log: PartitionLog | undefined;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(async () => {
    await log?.close();
    log = undefined;
    cleanup();
  });
  const open = async (): Promise<PartitionLog> =>
    (log = await PartitionLog.open({ dir: path.join(dir, "t-0"), topic: "t", partition: 0, config: testConfig({ segmentBytes: 300 }), recover: false }));

  it("deletes the whole segments below the offset, never the active one, and the start survives a reopen", async () => {
    let current = await open();
    for (let i = 0; i < 20; i++) await current.append(makeBatch({ records: 2, seed: i, payloadBytes: 80 }));
    const segments = current.segmentCount;
    assert.ok(segments >= 5);
    const size = current.sizeBytes;
    assert.equal(await current.advanceLogStart(0), 0);
    assert.equal(await current.advanceLogStart(13), size - current.sizeBytes);
    // Batches of 2 records, 2 batches per segment: offsets 12..15 form the segment holding 13.
    assert.equal(current.logStartOffset, 12);
    assert.deepEqual(current.read(12, 1).records.subarray(61), makeBatch({ records: 2, seed: 6, payloadBytes: 80 }).subarray(61));
    assert.ok(!fs.existsSync(path.join(dir, "t-0", "00000000000000000000.log")));
    const end = current.logEndOffset;
    const freed = await current.advanceLogStart(end);
    assert.ok(freed > 0);
    assert.equal(current.segmentCount, 1, "the active segment stays");
    await assert.rejects(current.advanceLogStart(end + 1), InvalidArgumentError);
    await current.close();
    current = await open();
    assert.equal(current.logStartOffset, end - 4);
    assert.equal(current.logEndOffset, end);
  });
});
