/**
 * A newly promoted master collects what its in-sync peers hold beyond its own log (quorum:k:
 * no single slave need hold every acknowledged batch), over a real gRPC server on loopback,
 * and refuses a peer whose log diverges from its own.
 */
import assert from "node:assert/strict";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { after, before, describe, it } from "node:test";
import { adoptPeerTails } from "../../broker/src/replication/peer-tails.js";
import type { PartitionLog } from "../../broker/src/storage/partition-log.js";
import { systemClock } from "../../common/src/clock.js";
import { unary } from "../../common/src/grpc/errors.js";
import { silentLogger } from "../../common/src/logger.js";
import { ReplicationService, type ReadTailRequest } from "../../proto/gen/sluice/v1/replication.js";
import { LogSet, appendBatches, segmentFiles } from "./replication-fixtures.js";
import { tempDir, testConfig } from "./storage-fixtures.js";

/** Copies `log`'s batches below `upTo` into `into`, byte for byte (what replication does). */
async function copyPrefix(log: PartitionLog, into: PartitionLog, upTo: number): Promise<void> {
  while (into.logEndOffset < upTo) {
    const { records } = log.read(into.logEndOffset, 1, "logEnd"); // one batch at a time
    await into.appendReplicated(records);
  }
}

describe("adopting in-sync peers' tails at promotion", () => {
  const dirs = [tempDir(), tempDir()];
  const peer = new LogSet(dirs[0]!.dir, testConfig());
  const mine = new LogSet(dirs[1]!.dir, testConfig());
  const server = new Server();
  let address = "";

  before(async () => {
    server.addService(ReplicationService, {
      replicate: () => undefined,
      promote: unary(async () => ({ epoch: 0 })),
      replicaState: unary(async () => ({
        group: "b1",
        brokerId: 2,
        role: "slave",
        epoch: 1,
        partitions: [...peer.logs.values()].map((log) => ({ topic: log.topic, partition: log.partition, logEndOffset: log.logEndOffset, epochs: log.leaderEpochs.entries() })),
      })),
      readTail: unary(async (request: ReadTailRequest) => {
        const log = peer.get(request.topic, request.partition);
        return { records: log.read(request.offset, request.maxBytes, "logEnd").records, logEndOffset: log.logEndOffset };
      }),
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  after(async () => {
    server.forceShutdown();
    await peer.close();
    await mine.close();
    for (const d of dirs) d.cleanup();
  });

  it("appends what a peer holds beyond this log, byte for byte, and leaves a diverged peer's tail alone", async () => {
    // a/0: the peer got 3 batches more from the old master; a/1: both alike.
    const [peerA0, peerA1, myA0, myA1] = [await peer.open("a", 0), await peer.open("a", 1), await mine.open("a", 0), await mine.open("a", 1)];
    await appendBatches(peerA0, 10, { epoch: 1, seed: 1 });
    await appendBatches(peerA1, 6, { epoch: 1, seed: 2 });
    await copyPrefix(peerA0, myA0, 14);
    await copyPrefix(peerA1, myA1, peerA1.logEndOffset);
    // b/0: this broker was master at epoch 2 for a while (a tail the peer never saw); the
    // peer has more of epoch 1: their histories disagree past offset 8.
    const [peerB, myB] = [await peer.open("b", 0), await mine.open("b", 0)];
    await appendBatches(peerB, 8, { epoch: 1, seed: 3 });
    await copyPrefix(peerB, myB, 8);
    await appendBatches(peerB, 4, { epoch: 1, seed: 4 });
    await appendBatches(myB, 2, { epoch: 2, seed: 5 });
    const myBBefore = myB.logEndOffset;

    const adopted = await adoptPeerTails({
      peers: [{ brokerId: 2, address }],
      logOf: (topic, partition) => mine.logs.get(`${topic}/${partition}`),
      clientId: "test",
      clock: systemClock,
      logger: silentLogger,
    });

    assert.equal(adopted, 6, "the three 2-record batches of a/0");
    assert.deepEqual(segmentFiles(mine.partitionDir("a", 0)), segmentFiles(peer.partitionDir("a", 0)));
    assert.deepEqual(segmentFiles(mine.partitionDir("a", 1)), segmentFiles(peer.partitionDir("a", 1)));
    assert.equal(myB.logEndOffset, myBBefore, "a diverged peer's tail is not adopted");
  });

  it("goes on without a peer that cannot be reached", async () => {
    const adopted = await adoptPeerTails({
      peers: [{ brokerId: 3, address: "127.0.0.1:1" }],
      logOf: (topic, partition) => mine.logs.get(`${topic}/${partition}`),
      clientId: "test",
      clock: systemClock,
      logger: silentLogger,
      deadlineMs: 500,
    });
    assert.equal(adopted, 0);
  });
});
