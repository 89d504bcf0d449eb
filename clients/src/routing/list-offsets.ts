/**
 * Offsets of a topic's partitions (earliest, latest, or first at a timestamp), asked of
 * each partition's master, one request per broker, with the client's retry policy and a
 * route refresh between attempts. Used by consumers (start positions, resets, end offsets)
 * and by the admin API. Consumers may ask a slave when the master is missing or unreachable
 * (`readFromSlaves`, see read-replicas.ts): a slave answers up to its high watermark.
 */
import { NoBrokersAvailableError, UnknownPartitionError, toSluiceError } from "../../../common/src/errors.js";
import { fromWireError } from "../../../common/src/grpc/errors.js";
import { OffsetSpec, type ListOffsetsPartition } from "../../../proto/gen/sluice/v1/broker.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { partitionsByReplica } from "./read-replicas.js";
import type { CachedRoute } from "./route-cache.js";

export type OffsetQuery = "earliest" | "latest" | { timestamp: number };

export function offsetSpecOf(query: OffsetQuery): { spec: OffsetSpec; timestampMs: number } {
  if (query === "earliest") return { spec: OffsetSpec.OFFSET_SPEC_EARLIEST, timestampMs: 0 };
  if (query === "latest") return { spec: OffsetSpec.OFFSET_SPEC_LATEST, timestampMs: 0 };
  return { spec: OffsetSpec.OFFSET_SPEC_TIMESTAMP, timestampMs: query.timestamp };
}

/** Groups partitions by the address of their master; throws when one has no live master. */
export function partitionsByLeader(route: CachedRoute, partitions: readonly number[]): Map<string, number[]> {
  const byLeader = new Map<string, number[]>();
  for (const partition of partitions) {
    if (partition >= route.partitionCount) throw new UnknownPartitionError(route.topic, partition, route.partitionCount);
    const address = route.leaders[partition];
    if (address === undefined) {
      throw new NoBrokersAvailableError(`partition ${route.topic}/${partition} has no live master; retry once its broker group is back`);
    }
    let list = byLeader.get(address);
    if (list === undefined) byLeader.set(address, (list = []));
    list.push(partition);
  }
  return byLeader;
}

export interface ListOffsetsOptions {
  /** Ask a slave for a partition whose master is missing or unreachable. @defaultValue false */
  readonly readFromSlaves?: boolean;
}

/**
 * partition → offset for `partitions` (every partition when omitted). With a timestamp
 * query, a partition with no record at or after it maps to -1.
 */
export function listOffsets(
  context: ClientContext,
  topic: string,
  query: OffsetQuery,
  partitions?: readonly number[],
  options: ListOffsetsOptions = {},
): Promise<Map<number, number>> {
  const reachability = context.routes.reachability;
  const { spec, timestampMs } = offsetSpecOf(query);
  const deadlineMs = deadlineFromNow(context);
  return context.retry.run(
    async (attempt) => {
      const route = attempt === 0 ? await context.routes.get(topic) : await context.routes.refresh(topic);
      const wanted = partitions ?? route.partitions.map((p) => p.partition);
      const result = new Map<number, number>();
      const byBroker = options.readFromSlaves === true ? partitionsByReplica(route, wanted, reachability) : partitionsByLeader(route, wanted);
      const requests = [...byBroker].map(async ([address, list]) => {
        const request: ListOffsetsPartition[] = list.map((partition) => ({ partition, spec, timestampMs }));
        let response;
        try {
          response = await context.brokers.get(address).listOffsets({ header: context.header, topic, partitions: request }, deadlineMs);
        } catch (err) {
          // The next attempt asks another replica if this one cannot be reached.
          reachability.noteFailure(address, toSluiceError(err).code);
          throw err;
        }
        reachability.noteSuccess(address);
        for (const answer of response.partitions) {
          if (answer.error !== undefined) throw fromWireError(answer.error);
          result.set(answer.partition, answer.offset);
        }
      });
      await Promise.all(requests);
      return result;
    },
    // Every retry looks the route up again: the failure may be a moved master.
    { deadlineMs },
  );
}
