/** Handshake, offsets and topic administration RPCs of the broker. */
import { toWireError } from "../../../common/src/grpc/errors.js";
import { InvalidArgumentError } from "../../../common/src/errors.js";
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import {
  OffsetSpec,
  type CreatePartitionsRequest,
  type CreatePartitionsResponse,
  type DeleteTopicRequest,
  type DeleteTopicResponse,
  type DescribePartitionsRequest,
  type DescribePartitionsResponse,
  type HandshakeRequest,
  type HandshakeResponse,
  type ListOffsetsRequest,
  type ListOffsetsResponse,
  type PartitionDescription,
  type PartitionOffset,
} from "../../../proto/gen/sluice/v1/broker.js";
import { checkHeader, type BrokerContext } from "./context.js";

export const SERVER_VERSION = "0.1.0";

export function handleHandshake(context: BrokerContext, grpcAddress: () => string, httpAddress: () => string) {
  return (request: HandshakeRequest): HandshakeResponse => {
    const clientMin = request.minProtocolVersion || 1;
    const clientMax = request.maxProtocolVersion || clientMin;
    const version = Math.min(clientMax, PROTOCOL_VERSION);
    if (version < Math.max(clientMin, MIN_PROTOCOL_VERSION)) {
      checkHeader({ clientId: request.header?.clientId ?? "", protocolVersion: clientMin });
    }
    return {
      protocolVersion: version,
      minProtocolVersion: MIN_PROTOCOL_VERSION,
      maxProtocolVersion: PROTOCOL_VERSION,
      broker: {
        group: context.options.group,
        brokerId: context.options.brokerId,
        address: grpcAddress(),
        httpAddress: httpAddress(),
      },
      serverVersion: SERVER_VERSION,
    };
  };
}

export function handleListOffsets(context: BrokerContext) {
  return (request: ListOffsetsRequest): ListOffsetsResponse => {
    checkHeader(request.header);
    const partitions: PartitionOffset[] = request.partitions.map((wanted) => {
      try {
        const log = context.topics.log(request.topic, wanted.partition);
        switch (wanted.spec) {
          case OffsetSpec.OFFSET_SPEC_EARLIEST:
            return { partition: wanted.partition, offset: log.logStartOffset, timestampMs: -1 };
          case OffsetSpec.OFFSET_SPEC_TIMESTAMP: {
            const found = log.offsetForTimestamp(wanted.timestampMs);
            return found
              ? { partition: wanted.partition, offset: found.offset, timestampMs: found.timestampMs }
              : { partition: wanted.partition, offset: -1, timestampMs: -1 };
          }
          case OffsetSpec.OFFSET_SPEC_LATEST:
            // Kafka's answer too: the end of what consumers may read, not of what is written.
            return { partition: wanted.partition, offset: log.highWatermark, timestampMs: -1 };
          default:
            throw new InvalidArgumentError(`offset spec ${wanted.spec} is unknown: use latest, earliest or timestamp`);
        }
      } catch (err) {
        return { partition: wanted.partition, offset: -1, timestampMs: -1, error: toWireError(err) };
      }
    });
    return { topic: request.topic, partitions };
  };
}

export function handleCreatePartitions(context: BrokerContext) {
  return async (request: CreatePartitionsRequest): Promise<CreatePartitionsResponse> => {
    checkHeader(request.header);
    const count = request.partitionCount || Math.max(...request.partitions, -1) + 1;
    const settings = {
      retentionMs: request.config?.retentionMs,
      retentionBytes: request.config?.retentionBytes,
      segmentBytes: request.config?.segmentBytes,
      maxMessageBytes: request.config?.maxMessageBytes,
    };
    if (request.grow) {
      const { created, changed } = await context.topics.growTopic(request.topic, request.partitions, count, settings);
      if (changed) {
        context.logger.info({ topic: request.topic, partitions: created, partitionCount: count }, "grew topic");
        // The count is in every heartbeat's partition list: tell the name servers now.
        context.announce();
      }
      return { created };
    }
    const created = await context.topics.createPartitions(request.topic, request.partitions, count, settings);
    if (created.length > 0) {
      context.logger.info({ topic: request.topic, partitions: created }, "created partitions");
      context.announce();
    }
    return { created };
  };
}

export function handleDeleteTopic(context: BrokerContext) {
  return async (request: DeleteTopicRequest): Promise<DeleteTopicResponse> => {
    checkHeader(request.header);
    await context.topics.deleteTopic(request.topic);
    context.logger.info({ topic: request.topic }, "deleted topic");
    context.announce();
    return {};
  };
}

export function handleDescribePartitions(context: BrokerContext) {
  return (request: DescribePartitionsRequest): DescribePartitionsResponse => {
    checkHeader(request.header);
    const records = request.topic ? [context.topics.topic(request.topic)].filter((r) => r !== undefined) : context.topics.topics();
    if (request.topic && records.length === 0) context.topics.log(request.topic, 0); // throws UNKNOWN_TOPIC
    const partitions: PartitionDescription[] = [];
    for (const record of records) {
      for (const partition of record.partitions) {
        const log = context.topics.logs.get(record.topic, partition);
        if (!log) continue;
        partitions.push({
          topic: record.topic,
          partition,
          logStartOffset: log.logStartOffset,
          logEndOffset: log.logEndOffset,
          highWatermark: log.highWatermark,
          sizeBytes: log.sizeBytes,
          segments: log.segmentCount,
          config: {
            retentionMs: record.settings.retentionMs,
            retentionBytes: record.settings.retentionBytes,
            segmentBytes: record.settings.segmentBytes,
            maxMessageBytes: record.settings.maxMessageBytes,
          },
        });
      }
    }
    return { partitions };
  };
}
