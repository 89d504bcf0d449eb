/**
 * End offsets of partitions hosted by other broker groups, for the lag the coordinator of a
 * consumer group reports on /metrics. A group's committed positions live with its coordinator,
 * but a topic placed on several broker groups (`sluice topic create --brokers b1,b2`, or
 * automatic placement) has partitions whose high watermark only their own master knows. This
 * asks the name servers the broker registered with for those partitions' masters (GetRoutes),
 * then each master for its log start and high watermark (ListOffsets "earliest" and "latest"),
 * with one gRPC client per master address, reused.
 *
 * Lag is read at scrape time, so the answers are cached: a topic's partitions are asked again
 * once their answer is `cacheTtlMs` old, a scrape waits at most `refreshTimeoutMs` for a
 * refresh (a slower one still fills the cache for the next scrape), and an answer that could
 * not be refreshed is served until `maxStaleMs` old; after that, or when no answer ever came,
 * the partition is left out of the lag (logged at debug, once per attempt).
 *
 * Not here: the age of the oldest unconsumed message. ListOffsets has no "timestamp of the
 * record at offset N", and reading the batch through Fetch would move up to a whole batch per
 * partition per scrape and count as a delivery in the master's own fetch and end-to-end metrics.
 */
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { monotonicClock, type Clock } from "../../../common/src/clock.js";
import { ClosedError, InvalidConfigError, NoBrokersAvailableError, SluiceError } from "../../../common/src/errors.js";
import { fromWireError } from "../../../common/src/grpc/errors.js";
import { callUnary } from "../../../common/src/grpc/unary-call.js";
import type { Logger } from "../../../common/src/logger.js";
import { PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import { BrokerClient, OffsetSpec } from "../../../proto/gen/sluice/v1/broker.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import { NameServerClient, type GetRoutesResponse } from "../../../proto/gen/sluice/v1/nameserver.js";
import type { TopicPartition } from "./assignors.js";

/** A partition's bounds as its master reported them. */
export interface RemotePartitionEnd {
  logStartOffset: number;
  /** The end of what consumers may read: lag is measured to it. */
  highWatermark: number;
}

/** What lag computation needs (GroupOffsets depends on this, tests on fakes of it). */
export interface RemoteEndLookup {
  /** Known ends of the wanted partitions, keyed by `remoteKey`; partitions without one are absent. */
  lookup(wanted: readonly TopicPartition[]): Promise<Map<string, RemotePartitionEnd>>;
}

/** How the cache reaches the cluster: gRPC below, fakes in unit tests. */
export interface RemoteOffsetsTransport {
  /** Each partition's master gRPC address ("host:port"); partitions without a live master are absent. */
  masters(topic: string, deadlineMs: number): Promise<Map<number, string>>;
  /** The partitions' ends on the master at `address`; partitions it refused are absent. */
  endOffsets(address: string, topic: string, partitions: readonly number[], deadlineMs: number): Promise<Map<number, RemotePartitionEnd>>;
  close(): void;
}

/** An answer this young is served without asking again. */
export const DEFAULT_REMOTE_END_CACHE_TTL_MS = 5_000;
/** Longest a scrape waits for a refresh; also the gRPC deadline of each refresh call. */
export const DEFAULT_REMOTE_END_REFRESH_TIMEOUT_MS = 1_000;
/** An answer that could not be refreshed is still served until this old. */
export const DEFAULT_REMOTE_END_MAX_STALE_MS = 30_000;
/** A master client unused this long is closed (masters move; addresses change with restarts). */
const IDLE_CLIENT_MS = 10 * 60_000;
/** Master answers change quickly after a restart: reconnect on this scale, not grpc-js's 120 s. */
const MAX_RECONNECT_BACKOFF_MS = 5_000;

export interface RemoteEndOffsetsOptions {
  transport: RemoteOffsetsTransport;
  logger: Logger;
  /** Measures answer ages. @defaultValue monotonicClock */
  clock?: Clock;
  /** @defaultValue DEFAULT_REMOTE_END_CACHE_TTL_MS */
  cacheTtlMs?: number;
  /** @defaultValue DEFAULT_REMOTE_END_REFRESH_TIMEOUT_MS */
  refreshTimeoutMs?: number;
  /** @defaultValue DEFAULT_REMOTE_END_MAX_STALE_MS */
  maxStaleMs?: number;
}

/** What the cache holds per topic. */
interface TopicState {
  /** Partitions the latest refresh asked for, and when (clock ms). */
  asked: Set<number>;
  askedAtMs: number;
  refreshing: Promise<void> | undefined;
  answers: Map<number, { end: RemotePartitionEnd; answeredAtMs: number }>;
  /** Last lookup that wanted this topic: topics nobody wants any more are forgotten. */
  wantedAtMs: number;
}

/** The key `lookup` answers under. */
export function remoteKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

export class RemoteEndOffsets implements RemoteEndLookup {
  private readonly transport: RemoteOffsetsTransport;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly cacheTtlMs: number;
  private readonly refreshTimeoutMs: number;
  private readonly maxStaleMs: number;
  private readonly topics = new Map<string, TopicState>();
  private closed = false;

  constructor(options: RemoteEndOffsetsOptions) {
    this.transport = options.transport;
    this.logger = options.logger;
    this.clock = options.clock ?? monotonicClock;
    this.cacheTtlMs = positive("cacheTtlMs", options.cacheTtlMs ?? DEFAULT_REMOTE_END_CACHE_TTL_MS);
    this.refreshTimeoutMs = positive("refreshTimeoutMs", options.refreshTimeoutMs ?? DEFAULT_REMOTE_END_REFRESH_TIMEOUT_MS);
    this.maxStaleMs = Math.max(this.cacheTtlMs, positive("maxStaleMs", options.maxStaleMs ?? DEFAULT_REMOTE_END_MAX_STALE_MS));
  }

  /** Over gRPC: routes from `nameservers`, ends from each partition's master. */
  static connect(options: Omit<RemoteEndOffsetsOptions, "transport"> & { nameservers: readonly string[]; clientId: string; channels?: SecureChannels }): RemoteEndOffsets {
    const header = { clientId: options.clientId, protocolVersion: PROTOCOL_VERSION };
    return new RemoteEndOffsets({ ...options, transport: new GrpcRemoteOffsetsTransport(options.nameservers, header, options.channels ?? PLAIN_CHANNELS) });
  }

  async lookup(wanted: readonly TopicPartition[]): Promise<Map<string, RemotePartitionEnd>> {
    const out = new Map<string, RemotePartitionEnd>();
    if (this.closed || wanted.length === 0) return out;
    const nowMs = this.clock.now();
    const byTopic = new Map<string, Set<number>>();
    for (const { topic, partition } of wanted) {
      const set = byTopic.get(topic);
      if (set === undefined) byTopic.set(topic, new Set([partition]));
      else set.add(partition);
    }
    const refreshes: Promise<void>[] = [];
    for (const [topic, partitions] of byTopic) {
      let state = this.topics.get(topic);
      if (state === undefined) {
        state = { asked: new Set(), askedAtMs: -Infinity, refreshing: undefined, answers: new Map(), wantedAtMs: nowMs };
        this.topics.set(topic, state);
      }
      state.wantedAtMs = nowMs;
      const due = nowMs - state.askedAtMs >= this.cacheTtlMs || [...partitions].some((p) => !state.asked.has(p));
      if (state.refreshing === undefined && due) {
        const refreshed = state;
        refreshed.refreshing = this.refresh(topic, refreshed, partitions).finally(() => (refreshed.refreshing = undefined));
      }
      if (state.refreshing !== undefined) refreshes.push(state.refreshing);
    }
    if (refreshes.length > 0) await waitAtMost(Promise.all(refreshes), this.refreshTimeoutMs);
    this.forgetUnwanted(nowMs);
    const servedAtMs = this.clock.now();
    for (const [topic, partitions] of byTopic) {
      const answers = this.topics.get(topic)?.answers;
      for (const partition of partitions) {
        const answer = answers?.get(partition);
        if (answer !== undefined && servedAtMs - answer.answeredAtMs <= this.maxStaleMs) out.set(remoteKey(topic, partition), answer.end);
      }
    }
    return out;
  }

  /** Closes the master and name server clients; later lookups answer nothing. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.topics.clear();
    this.transport.close();
  }

  /** Asks for the topic's routes, then each master for its partitions; never throws. */
  private async refresh(topic: string, state: TopicState, partitions: ReadonlySet<number>): Promise<void> {
    state.asked = new Set(partitions);
    state.askedAtMs = this.clock.now();
    // gRPC deadlines are wall-clock instants, whatever clock measures the cache's ages.
    const deadlineMs = Date.now() + this.refreshTimeoutMs;
    let masters: Map<number, string>;
    try {
      masters = await this.transport.masters(topic, deadlineMs);
    } catch (err) {
      this.logger.debug({ topic, err: (err as Error).message }, "no route for remote partitions' lag (last answer used while under maxStaleMs, then left out)");
      return;
    }
    const byAddress = new Map<string, number[]>();
    for (const partition of partitions) {
      const address = masters.get(partition);
      if (address === undefined) {
        this.logger.debug({ topic, partition }, "a remote partition has no live master; its end offset is not refreshed");
        continue;
      }
      const list = byAddress.get(address);
      if (list === undefined) byAddress.set(address, [partition]);
      else list.push(partition);
    }
    await Promise.all(
      [...byAddress].map(async ([address, list]) => {
        try {
          const ends = await this.transport.endOffsets(address, topic, list, deadlineMs);
          const answeredAtMs = this.clock.now();
          for (const [partition, end] of ends) state.answers.set(partition, { end, answeredAtMs });
          const refused = list.filter((partition) => !ends.has(partition));
          if (refused.length > 0) this.logger.debug({ topic, partitions: refused, master: address }, "a master refused remote partitions' end offsets; not refreshed");
        } catch (err) {
          this.logger.debug({ topic, partitions: list, master: address, err: (err as Error).message }, "end offsets of remote partitions unavailable; not refreshed");
        }
      }),
    );
  }

  private forgetUnwanted(nowMs: number): void {
    for (const [topic, state] of this.topics) {
      if (state.refreshing === undefined && nowMs - state.wantedAtMs > this.maxStaleMs) this.topics.delete(topic);
    }
  }
}

/** Routes from whichever name server answers first; end offsets from each master. */
export class GrpcRemoteOffsetsTransport implements RemoteOffsetsTransport {
  private readonly nameServers: Array<{ address: string; client: NameServerClient }>;
  private readonly masterClients = new Map<string, { client: BrokerClient; usedAtMs: number }>();
  private closed = false;

  constructor(
    nameservers: readonly string[],
    private readonly header: RequestHeader,
    private readonly channels: SecureChannels = PLAIN_CHANNELS,
  ) {
    this.nameServers = nameservers.map((address) => ({ address, client: new NameServerClient(address, channels.credentials, channels.options(CHANNEL_OPTIONS)) }));
  }

  async masters(topic: string, deadlineMs: number): Promise<Map<number, string>> {
    this.checkOpen();
    let response: GetRoutesResponse;
    try {
      // Name servers are independent and every broker registers with each: any one will do,
      // and asking all at once keeps one that hangs from eating the deadline.
      response = await Promise.any(
        this.nameServers.map(({ address, client }) =>
          callUnary(client.getRoutes, client, { header: this.header, topics: [topic] }, deadlineMs, `name server ${address}`),
        ),
      );
    } catch (err) {
      // Every one failed: an answer (UNKNOWN_TOPIC) says more than an unreachable name server.
      const errors = (err instanceof AggregateError ? err.errors : [err]).filter((e): e is SluiceError => e instanceof SluiceError);
      const answered = errors.find((e) => e.code !== "BROKER_UNAVAILABLE" && e.code !== "REQUEST_TIMED_OUT");
      throw answered ?? errors[0] ?? new NoBrokersAvailableError(`no name server answered for "${topic}"`, { cause: err });
    }
    const masters = new Map<number, string>();
    for (const route of response.routes) {
      if (route.topic !== topic) continue;
      for (const p of route.partitions) if (p.master?.address) masters.set(p.partition, p.master.address);
    }
    return masters;
  }

  async endOffsets(address: string, topic: string, partitions: readonly number[], deadlineMs: number): Promise<Map<number, RemotePartitionEnd>> {
    const client = this.masterClient(address);
    // Both bounds in one call: lag counts from max(committed, log start), as for local partitions.
    const request = {
      header: this.header,
      topic,
      partitions: partitions.flatMap((partition) => [
        { partition, spec: OffsetSpec.OFFSET_SPEC_EARLIEST, timestampMs: 0 },
        { partition, spec: OffsetSpec.OFFSET_SPEC_LATEST, timestampMs: 0 },
      ]),
    };
    const response = await callUnary(client.listOffsets, client, request, deadlineMs, `broker ${address}`);
    // Answers come in request order: per partition, earliest first, then latest.
    const offsets = new Map<number, number[]>();
    const refused = new Map<number, SluiceError>();
    for (const answer of response.partitions) {
      if (answer.error !== undefined) {
        refused.set(answer.partition, fromWireError(answer.error));
        continue;
      }
      const list = offsets.get(answer.partition);
      if (list === undefined) offsets.set(answer.partition, [answer.offset]);
      else list.push(answer.offset);
    }
    // A master that refuses some partitions (NOT_LEADER after a move) still answers the others;
    // only when it refused every one is the call a failure.
    const [firstRefusal] = refused;
    if (firstRefusal !== undefined && refused.size >= new Set(partitions).size) {
      const [partition, err] = firstRefusal;
      throw new SluiceError(err.code, `broker ${address} refused ${topic}/${partition}: ${err.message}`, { cause: err });
    }
    const ends = new Map<number, RemotePartitionEnd>();
    for (const [partition, [logStartOffset, highWatermark]] of offsets) {
      if (logStartOffset === undefined || highWatermark === undefined || refused.has(partition)) continue;
      ends.set(partition, { logStartOffset, highWatermark });
    }
    return ends;
  }

  close(): void {
    this.closed = true;
    for (const { client } of this.nameServers) client.close();
    for (const { client } of this.masterClients.values()) client.close();
    this.masterClients.clear();
  }

  private masterClient(address: string): BrokerClient {
    this.checkOpen();
    const nowMs = Date.now();
    for (const [other, entry] of this.masterClients) {
      if (other !== address && nowMs - entry.usedAtMs > IDLE_CLIENT_MS) {
        entry.client.close();
        this.masterClients.delete(other);
      }
    }
    let entry = this.masterClients.get(address);
    if (entry === undefined) {
      entry = { client: new BrokerClient(address, this.channels.credentials, this.channels.options(CHANNEL_OPTIONS)), usedAtMs: nowMs };
      this.masterClients.set(address, entry);
    }
    entry.usedAtMs = nowMs;
    return entry.client;
  }

  private checkOpen(): void {
    if (this.closed) throw new ClosedError("the remote end-offsets client");
  }
}

const CHANNEL_OPTIONS = {
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": MAX_RECONNECT_BACKOFF_MS,
};


/** Resolves when `work` settles or after `ms`, whichever is first; `work` goes on either way. */
function waitAtMost(work: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    void work.finally(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new InvalidConfigError(`${name} must be a positive number of milliseconds, got ${value}`);
  return value;
}
