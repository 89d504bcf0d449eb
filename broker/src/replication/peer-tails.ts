/**
 * What a newly promoted master does before it takes produce: reads from the live members of
 * the recorded in-sync set whatever part of their logs it lacks (ZAB's discovery phase, in
 * small). Under `quorum:k` an acknowledged batch is on k in-sync slaves, but no single slave
 * need hold every acknowledged batch of every partition: the controller heard from enough of
 * them to know each batch is on one of the live ones, and this is where the new master
 * collects them. Under `sync` every in-sync slave already holds everything, so nothing moves.
 *
 * A peer's tail is adopted only if this broker's log is a prefix of the peer's (their
 * leader-epoch histories agree up to this log's end): both followed the same master, so a
 * longer log there is this log plus batches that master appended. Batches are appended as
 * stored (`appendReplicated`), before the new epoch is assigned.
 */
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { Metadata } from "@grpc/grpc-js";
import type { Clock } from "../../../common/src/clock.js";
import type { Logger } from "../../../common/src/logger.js";
import { MAX_GRPC_MESSAGE_BYTES, PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import { ReplicationClient, type ReadTailResponse, type ReplicaStateResponse } from "../../../proto/gen/sluice/v1/replication.js";
import { divergencePoint } from "../storage/divergence.js";
import type { PartitionLog } from "../storage/partition-log.js";

/** Longest the new master spends collecting tails before it opens for produce anyway. */
export const PEER_TAILS_DEADLINE_MS = 3000;
const READ_TAIL_BYTES = 1024 * 1024;

export interface PeerTailsOptions {
  /** TLS and credentials for calls to other servers. @defaultValue plain text, anonymous */
  channels?: SecureChannels;
  peers: { brokerId: number; address: string }[];
  logOf: (topic: string, partition: number) => PartitionLog | undefined;
  clientId: string;
  clock: Clock;
  logger: Logger;
  deadlineMs?: number;
}

/** Appends to local logs what the peers hold beyond them; returns the offsets adopted in total. */
export async function adoptPeerTails(options: PeerTailsOptions): Promise<number> {
  const deadline = options.clock.now() + (options.deadlineMs ?? PEER_TAILS_DEADLINE_MS);
  const header = { clientId: options.clientId, protocolVersion: PROTOCOL_VERSION };
  let adopted = 0;
  for (const peer of options.peers) {
    const client = new ReplicationClient(peer.address, (options.channels ?? PLAIN_CHANNELS).credentials, (options.channels ?? PLAIN_CHANNELS).options({
      "grpc.max_receive_message_length": MAX_GRPC_MESSAGE_BYTES,
    }));
    try {
      const state = await new Promise<ReplicaStateResponse>((resolve, reject) =>
        client.replicaState({ header }, new Metadata(), { deadline: Math.min(deadline, options.clock.now() + 1000) }, (err, response) => (err ? reject(err) : resolve(response))),
      );
      for (const position of state.partitions) {
        const log = options.logOf(position.topic, position.partition);
        if (log === undefined || position.logEndOffset <= log.logEndOffset) continue;
        const mine = { entries: log.leaderEpochs.entries(), logEndOffset: log.logEndOffset };
        const theirs = { entries: position.epochs.map((e) => ({ epoch: e.epoch, startOffset: e.startOffset })), logEndOffset: position.logEndOffset };
        if (divergencePoint(theirs, mine) < log.logEndOffset) {
          options.logger.warn({ peer: peer.brokerId, topic: position.topic, partition: position.partition }, "a peer's log diverges from this one; its tail is not adopted");
          continue;
        }
        const from = log.logEndOffset;
        while (log.logEndOffset < position.logEndOffset && options.clock.now() < deadline) {
          const tail = await new Promise<ReadTailResponse>((resolve, reject) =>
            client.readTail(
              { header, topic: position.topic, partition: position.partition, offset: log.logEndOffset, maxBytes: READ_TAIL_BYTES },
              new Metadata(),
              { deadline },
              (err, response) => (err ? reject(err) : resolve(response)),
            ),
          );
          if (tail.records.length === 0) break;
          await log.appendReplicated(tail.records);
        }
        adopted += log.logEndOffset - from;
        options.logger.info({ peer: peer.brokerId, topic: position.topic, partition: position.partition, from, to: log.logEndOffset }, "adopted a peer's tail before taking produce");
      }
    } catch (err) {
      options.logger.warn({ peer: peer.brokerId, address: peer.address, err: (err as Error).message }, "could not read a peer's tail; going on without it");
    } finally {
      client.close();
    }
  }
  return adopted;
}
