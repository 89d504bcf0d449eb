/**
 * The calls a consumer-group member makes to its group's coordinator, behind a small
 * interface so the member's loop can be tested against a fake coordinator.
 *
 * Heartbeats are single attempts: the member's loop decides when to try again (a heartbeat
 * retried for the whole request timeout would outlive the session it keeps alive). Offset
 * calls use the client's retry policy. Both find the coordinator again when it moved.
 */
import { toSluiceError } from "../../../common/src/errors.js";
import type {
  CommitOffsetsResponse,
  FetchOffsetsResponse,
  GroupHeartbeatRequest,
  GroupHeartbeatResponse,
  OffsetCommit,
  TopicPartitions,
} from "../../../proto/gen/sluice/v1/groups.js";
import { deadlineFromNow, type ClientContext } from "../context.js";
import { GroupCoordinator } from "../groups/coordinator.js";

export type HeartbeatFields = Omit<GroupHeartbeatRequest, "header" | "group">;

export interface CommitFields {
  memberId: string;
  memberEpoch: number;
  offsets: OffsetCommit[];
}

export interface GroupRpc {
  heartbeat(request: HeartbeatFields): Promise<GroupHeartbeatResponse>;
  commitOffsets(request: CommitFields): Promise<CommitOffsetsResponse>;
  fetchOffsets(partitions: TopicPartitions[]): Promise<FetchOffsetsResponse>;
}

export class CoordinatorRpc implements GroupRpc {
  private readonly coordinator: GroupCoordinator;

  constructor(
    private readonly context: ClientContext,
    readonly group: string,
    /** Longest wait for one heartbeat answer: a fraction of the session timeout. */
    private readonly heartbeatTimeoutMs: number,
  ) {
    this.coordinator = new GroupCoordinator(context, group);
  }

  async heartbeat(request: HeartbeatFields): Promise<GroupHeartbeatResponse> {
    const deadlineMs = Date.now() + Math.min(this.heartbeatTimeoutMs, this.context.options.requestTimeoutMs);
    try {
      const connection = await this.coordinator.connection(deadlineMs);
      return await connection.groupHeartbeat({ ...request, header: this.context.header, group: this.group }, deadlineMs);
    } catch (err) {
      if (GroupCoordinator.movedError(err)) this.coordinator.forget();
      throw toSluiceError(err);
    }
  }

  commitOffsets(request: CommitFields): Promise<CommitOffsetsResponse> {
    const deadlineMs = deadlineFromNow(this.context);
    return this.coordinator.run(
      (connection) => connection.commitOffsets({ ...request, header: this.context.header, group: this.group }, deadlineMs),
      deadlineMs,
    );
  }

  fetchOffsets(partitions: TopicPartitions[]): Promise<FetchOffsetsResponse> {
    const deadlineMs = deadlineFromNow(this.context);
    return this.coordinator.run(
      (connection) => connection.fetchOffsets({ header: this.context.header, group: this.group, partitions }, deadlineMs),
      deadlineMs,
    );
  }
}
