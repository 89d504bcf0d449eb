/**
 * Plays the role the registry gives this broker in its group, and switches cleanly when it
 * changes:
 *
 *   master(epoch)  every log replicated (its high watermark set by the tracker), the epoch's
 *                  start recorded in each partition's epoch history, a tracker and the
 *                  replication sessions for this term; only then is produce accepted.
 *   slave(epoch)   produce refused at once; the term's sessions and tracker closed (waiting
 *                  produce answered NOT_LEADER), group state unloaded, and the fetcher follows
 *                  the new master (truncating a divergent tail first).
 *
 * Transitions run one at a time, in the order the role manager emits them. The class is also
 * the master write path's guard (fence, epoch, write gate, replication wait) and the adapter
 * between TopicManager and the replication data path.
 */
import { NotLeaderError, UnknownTopicError } from "../../common/src/errors.js";
import type { Clock } from "../../common/src/clock.js";
import type { Logger } from "../../common/src/logger.js";
import type { ReplicaStatus } from "../../proto/gen/sluice/v1/nameserver.js";
import type { ReplicaTopic, ReplicaTopics } from "../../proto/gen/sluice/v1/replication.js";
import type { ReplicationGuard } from "./master-append.js";
import type { BrokerOptions } from "./options.js";
import { ReplicaFetcher } from "./replication/fetcher.js";
import { adoptPeerTails } from "./replication/peer-tails.js";
import { ReplicaSessions } from "./replication/sessions.js";
import { ReplicaTracker } from "./replication/tracker.js";
import type { HostedPartition, ReplicaHost, ReplicaSource, TopicsChange } from "./replication/types.js";
import { sameRole, type RoleChange, type RoleManager } from "./roles/role-manager.js";
import type { TopicRecord } from "./metadata/topic-store.js";
import type { TopicManager } from "./topics.js";

/** Wait before a role switch that failed is tried again. */
const SWITCH_RETRY_MS = 500;
/** How often the tracker re-evaluates lag (slaves leaving the in-sync set). */
const TRACKER_TICK_MS = 100;

export interface GroupRoleOptions {
  options: BrokerOptions;
  topics: TopicManager;
  roles: RoleManager;
  clock: Clock;
  logger: Logger;
  /** Called after every switch (after the new role is in force): re-announce, unload groups... */
  onSwitched: (change: RoleChange, previous: RoleChange) => Promise<void> | void;
}

interface MasterTerm {
  epoch: number;
  tracker: ReplicaTracker;
  sessions: ReplicaSessions;
  timer: NodeJS.Timeout;
}

export class GroupRole implements ReplicationGuard {
  private readonly fetcher: ReplicaFetcher;
  private term: MasterTerm | undefined;
  /** The role in force (what produce and reads go by); lags the role manager during a switch. */
  private inForce: RoleChange = { role: "slave", epoch: 0, master: undefined };
  private switching: Promise<void> = Promise.resolve();
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(private readonly input: GroupRoleOptions) {
    this.fetcher = new ReplicaFetcher({
      group: input.options.group,
      brokerId: input.options.brokerId,
      host: this.host(),
      channels: input.options.peerChannels,
      clock: input.clock,
      logger: input.logger,
    });
  }

  /** Plays the role manager's current role and follows its changes. */
  start(): Promise<void> {
    this.unsubscribe = this.input.roles.onChange((change) => void this.enqueue(change));
    return this.enqueue(this.input.roles.current());
  }

  get role(): "master" | "slave" {
    return this.inForce.role;
  }

  get current(): RoleChange {
    return this.inForce;
  }

  /** The master this slave follows ("host:port"), for produce redirects. */
  masterAddress(): string | undefined {
    return this.inForce.role === "slave" ? this.inForce.master?.address : undefined;
  }

  // ---- ReplicationGuard -------------------------------------------------------------------

  epoch(): number {
    return this.inForce.epoch;
  }

  checkMaster(): void {
    if (this.inForce.role !== "master" || this.term === undefined) throw this.notMaster();
    this.input.roles.fence.check();
  }

  private notMaster(): NotLeaderError {
    const master = this.masterAddress();
    return new NotLeaderError(
      `broker ${this.input.options.group}/${this.input.options.brokerId} is not the master${master ? `; the master is at ${master}` : ""} (refresh routes)`,
    );
  }

  checkWriteGate(topic: string, partition: number): void {
    // The fence is the append's to check (master-append.ts), once, right before it.
    if (this.term === undefined) throw this.notMaster();
    this.term.tracker.checkWriteGate(topic, partition);
  }

  waitReplicated(topic: string, partition: number, lastOffset: number): Promise<void> {
    const term = this.term;
    if (term === undefined) return Promise.reject(new NotLeaderError(`broker ${this.input.options.group}/${this.input.options.brokerId} stopped being master`));
    return term.tracker.waitReplicated(topic, partition, lastOffset);
  }

  // ---- what others read -------------------------------------------------------------------

  /** Whether this master accepts `acks: "all"` produce now; undefined on a slave. */
  writeGateOpen(): boolean | undefined {
    return this.term?.tracker.writeGateOpen();
  }

  /** The slaves as this master sees them (empty on a slave), for heartbeats and `sluice cluster`. */
  replicaStatus(): ReplicaStatus[] {
    return (this.term?.tracker.status() ?? []).map((s) => ({
      brokerId: s.brokerId,
      inSync: s.inSync,
      connected: s.connected,
      lagMessages: s.lagMessages,
      lagBytes: Math.round(s.lagBytes),
      lagMs: Math.round(s.lagMs),
    }));
  }

  /** Serves the Replicate stream (refused by the sessions when this broker is not master). */
  sessions(): ReplicaSessions | undefined {
    return this.term?.sessions;
  }

  /**
   * SIGTERM on the master: waits (up to `timeoutMs`) until an in-sync slave holds everything,
   * then hands mastership to it. Returns the slave's id, or undefined when none could take it.
   */
  async handOff(timeoutMs: number): Promise<number | undefined> {
    const term = this.term;
    if (term === undefined || this.inForce.role !== "master") return undefined;
    const deadline = this.input.clock.now() + timeoutMs;
    for (;;) {
      const ready = term.tracker
        .status()
        .filter((s) => s.inSync && s.connected && s.lagMessages === 0)
        .sort((a, b) => a.brokerId - b.brokerId)[0];
      if (ready !== undefined) {
        await this.input.roles.handOff(ready.brokerId);
        return ready.brokerId;
      }
      if (this.input.clock.now() >= deadline || !term.tracker.status().some((s) => s.inSync && s.connected)) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    await this.switching.catch(() => undefined);
    await this.endTerm(new NotLeaderError("the broker is shutting down"));
    await this.fetcher.stop();
  }

  // ---- switching --------------------------------------------------------------------------

  private enqueue(change: RoleChange): Promise<void> {
    this.switching = this.switching
      .then(() => this.apply(change))
      .catch((err: unknown) => {
        // A switch that failed half-way would leave the broker holding mastership in the
        // registry while refusing produce, and no failover would ever come: try again while
        // the role manager still says the same.
        this.input.logger.error({ err, role: change.role, epoch: change.epoch }, "switching role failed; retrying");
        setTimeout(() => {
          if (!this.closed && sameRole(this.input.roles.current(), change)) void this.enqueue(change);
        }, SWITCH_RETRY_MS).unref();
      });
    return this.switching;
  }

  private async apply(change: RoleChange): Promise<void> {
    if (this.closed) return;
    const previous = this.inForce;
    if (change.role === "master") {
      if (previous.role === "master" && this.term !== undefined) {
        // Same master under a newer epoch (mastership taken back under a new lease).
        this.term.epoch = change.epoch;
        for (const log of this.input.topics.logs.all()) log.assignEpoch(change.epoch);
        this.inForce = change;
      } else {
        await this.fetcher.stop();
        // Whatever an in-sync peer holds beyond this log (quorum:k) is collected before the
        // new epoch starts, so no acknowledged batch is truncated away when the peers follow.
        const peers = await this.input.roles.inSyncPeers().catch((err: unknown) => {
          this.input.logger.warn({ err }, "could not list the in-sync peers; taking over with this log as it is");
          return [];
        });
        if (peers.length > 0) {
          await adoptPeerTails({
            peers,
            logOf: (topic, partition) => this.input.topics.logs.get(topic, partition),
            clientId: `broker-${this.input.options.group}-${this.input.options.brokerId}`,
            channels: this.input.options.peerChannels,
            clock: this.input.clock,
            logger: this.input.logger,
          });
        }
        for (const log of this.input.topics.logs.all()) log.assignEpoch(change.epoch);
        this.term = this.startTerm(change.epoch);
        this.inForce = change;
      }
      this.input.logger.info({ epoch: change.epoch, previous: previous.role }, "acting as master");
    } else {
      // Refuse produce first; then wind the term down.
      this.inForce = change;
      await this.endTerm(new NotLeaderError(`broker ${this.input.options.group}/${this.input.options.brokerId} is no longer the master (epoch ${change.epoch})`));
      if (change.master !== undefined && change.master.brokerId !== this.input.options.brokerId) {
        this.fetcher.follow(change.master, change.epoch);
      } else {
        await this.fetcher.stop();
      }
      this.input.logger.info({ epoch: change.epoch, master: change.master }, "acting as slave");
    }
    await this.input.onSwitched(change, previous);
  }

  private startTerm(epoch: number): MasterTerm {
    const { options, clock, logger, roles } = this.input;
    const tracker = new ReplicaTracker({
      group: options.group,
      mode: options.replication,
      minInSyncSlaves: options.minInSyncSlaves,
      maxSlaveLagMs: options.maxSlaveLagMs,
      recordInSync: (ids) => roles.recordInSync(ids),
      clock,
      logger,
      initialInSync: roles.recordedInSync,
    });
    const sessions = new ReplicaSessions({
      group: options.group,
      brokerId: options.brokerId,
      epoch: () => this.term?.epoch ?? epoch,
      isMaster: () => this.inForce.role === "master",
      logs: this.source(),
      tracker,
      throttleBytesPerSecond: options.replicationThrottleBytesPerSecond,
      clock,
      logger,
      onStaleEpoch: (newerEpoch, slaveId) =>
        logger.warn({ newerEpoch, slaveId, epoch }, "a slave knows a newer epoch: this broker was deposed; waiting for the registry to say so"),
    });
    const timer = setInterval(() => tracker.tick(), TRACKER_TICK_MS);
    timer.unref();
    return { epoch, tracker, sessions, timer };
  }

  private async endTerm(reason: NotLeaderError): Promise<void> {
    const term = this.term;
    if (term === undefined) return;
    this.term = undefined;
    clearInterval(term.timer);
    term.tracker.close(reason);
    await term.sessions.close();
  }

  // ---- adapters between TopicManager and replication --------------------------------------

  private hosted(): HostedPartition[] {
    return this.input.topics.logs.all().map((log) => ({ topic: log.topic, partition: log.partition, log }));
  }

  private source(): ReplicaSource {
    const topics = this.input.topics;
    return {
      partitions: () => this.hosted(),
      topics: () => topics.topics().map(toReplicaTopic),
      onTopicsChanged: (listener: (change: TopicsChange) => void) =>
        topics.onChange((change) =>
          listener(change.kind === "created" ? { topics: [toReplicaTopic(change.record)], deleted: [] } : { topics: [], deleted: [change.topic] }),
        ),
    };
  }

  private host(): ReplicaHost {
    const topics = this.input.topics;
    return {
      partitions: () => this.hosted(),
      log: (topic, partition) => topics.logs.get(topic, partition),
      applyTopics: async (change: ReplicaTopics) => {
        for (const topic of change.topics) await topics.mirrorTopic(fromReplicaTopic(topic));
        for (const name of change.deleted) {
          // The name server deletes on every broker of the group too: whoever comes second finds nothing.
          if (topics.topic(name) !== undefined) await topics.deleteTopic(name).catch((err: unknown) => {
            if (!(err instanceof UnknownTopicError)) throw err;
          });
        }
      },
    };
  }
}

function toReplicaTopic(record: TopicRecord): ReplicaTopic {
  return {
    topic: record.topic,
    partitionCount: record.partitionCount,
    partitions: record.partitions,
    config: {
      retentionMs: record.settings.retentionMs,
      retentionBytes: record.settings.retentionBytes,
      segmentBytes: record.settings.segmentBytes,
      maxMessageBytes: record.settings.maxMessageBytes,
    },
  };
}

function fromReplicaTopic(topic: ReplicaTopic): TopicRecord {
  const config = topic.config;
  return {
    topic: topic.topic,
    partitionCount: topic.partitionCount,
    partitions: [...topic.partitions],
    settings: {
      retentionMs: config?.retentionMs ?? 0,
      retentionBytes: config?.retentionBytes ?? 0,
      segmentBytes: config?.segmentBytes ?? 0,
      maxMessageBytes: config?.maxMessageBytes ?? 0,
    },
    createdAtMs: Date.now(),
  };
}
