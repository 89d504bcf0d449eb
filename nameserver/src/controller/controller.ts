/**
 * The failover controller (etcd mode only). Every name server on the etcd campaigns in one
 * etcd election; the elected one watches every group record and alive key, and when a group's
 * master is gone (failover-choice.ts) it asks the candidate slaves what they hold (ReplicaState,
 * 1 s each), chooses one, and compare-and-swaps the record to
 * `{master: chosen, epoch: e + 1, masterLease: its lease, inSync: the other in-sync slaves}`.
 * The chosen broker's role manager sees the record name it under its own lease and becomes
 * master; the others follow it.
 *
 * Safety does not depend on there being one controller: every promotion is a compare-and-swap on
 * the record's mod revision, so two controllers (a leader that lost its lease and has not
 * noticed yet) can at worst race, and one of them loses. The election only avoids doing the
 * work twice. With no candidate the controller warns once per situation and tries again every
 * 500 ms.
 */
import type { Campaign, Election, Watcher } from "etcd3";
import { systemClock, type Clock } from "../../../common/src/clock.js";
import type { Logger } from "../../../common/src/logger.js";
import { promotedRecord } from "../../../common/src/registry/group-record.js";
import { chooseNewMaster, failoverCandidates, masterIsGone, type ReplicaAnswer } from "./failover-choice.js";
import type { GroupRecords, GroupState } from "./group-records.js";
import { totalLogEnd, type ReplicaCalls } from "./replica-calls.js";

/** How often the leader looks at every group besides the watch, and retries a stuck failover. */
export const DEFAULT_FAILOVER_RETRY_MS = 500;
/** How long a slave has to answer ReplicaState. */
export const DEFAULT_REPLICA_STATE_TIMEOUT_MS = 1000;
/** TTL of the controller's election lease: a dead leader is replaced this fast. */
export const DEFAULT_ELECTION_TTL_SECONDS = 2;
const ELECTION_NAME = "controller";

export interface ControllerOptions {
  records: GroupRecords;
  brokers: ReplicaCalls;
  /** This name server in the election (its gRPC address). */
  candidateId: string;
  /** @defaultValue 500 */
  retryIntervalMs?: number;
  /** @defaultValue 1000 */
  replicaStateTimeoutMs?: number;
  /** @defaultValue 2 */
  electionTtlSeconds?: number;
  clock?: Clock;
  logger: Logger;
}

export class Controller {
  private readonly options: ControllerOptions;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly retryIntervalMs: number;
  private readonly election: Election;
  private campaign: Campaign | undefined;
  private leading = false;
  private stopped = false;
  private watchers: Watcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  private recampaignTimer: NodeJS.Timeout | undefined;
  private passRunning: Promise<void> | undefined;
  private passAgain = false;
  /** Set while campaigning keeps failing (etcd down): one warning per outage, not one per retry. */
  private campaignFailing = false;
  /** The last warning per group, so a stuck group is reported once per situation. */
  private readonly warned = new Map<string, string>();

  constructor(options: ControllerOptions) {
    this.options = options;
    this.logger = options.logger.child({ component: "controller" });
    this.clock = options.clock ?? systemClock;
    this.retryIntervalMs = options.retryIntervalMs ?? DEFAULT_FAILOVER_RETRY_MS;
    this.election = options.records.namespace.election(ELECTION_NAME, options.electionTtlSeconds ?? DEFAULT_ELECTION_TTL_SECONDS);
  }

  /** True while this name server is the elected controller. */
  get isLeader(): boolean {
    return this.leading;
  }

  /** Starts campaigning; returns at once (leadership comes when etcd grants it). */
  start(): void {
    this.runCampaign();
  }

  /** Stops leading and resigns, so another name server takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.recampaignTimer);
    await this.stopLeading();
    const campaign = this.campaign;
    this.campaign = undefined;
    await campaign?.resign().catch(() => undefined);
    await this.passRunning;
  }

  private runCampaign(): void {
    if (this.stopped) return;
    const campaign = this.election.campaign(this.options.candidateId);
    this.campaign = campaign;
    campaign.on("elected", () => {
      this.campaignFailing = false;
      if (this.campaign === campaign && !this.stopped) void this.lead();
    });
    campaign.on("error", (err: Error) => {
      if (this.campaign !== campaign || this.stopped) return;
      this.campaign = undefined;
      if (this.leading || !this.campaignFailing) {
        this.logger.warn({ err: err.message, leading: this.leading }, "controller election lost (lease or etcd gone); campaigning again");
      }
      this.campaignFailing = true;
      void this.stopLeading();
      campaign.resign().catch(() => undefined);
      this.recampaignTimer = setTimeout(() => this.runCampaign(), this.retryIntervalMs);
      this.recampaignTimer.unref();
    });
  }

  private async lead(): Promise<void> {
    this.leading = true;
    this.logger.info({ candidate: this.options.candidateId }, "elected failover controller");
    try {
      this.watchers = await this.options.records.watch(() => this.schedulePass());
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, "cannot watch group records; relying on the periodic pass");
    }
    if (!this.leading) {
      await this.cancelWatchers();
      return;
    }
    this.timer = setInterval(() => this.schedulePass(), this.retryIntervalMs);
    this.timer.unref();
    this.schedulePass();
  }

  private async stopLeading(): Promise<void> {
    if (this.leading) this.logger.info("no longer the failover controller");
    this.leading = false;
    clearInterval(this.timer);
    this.timer = undefined;
    await this.cancelWatchers();
  }

  private async cancelWatchers(): Promise<void> {
    const watchers = this.watchers;
    this.watchers = [];
    await Promise.all(watchers.map((watcher) => watcher.cancel().catch(() => undefined)));
  }

  /** One pass at a time; a change during a pass makes another one follow it. */
  private schedulePass(): void {
    if (!this.leading) return;
    if (this.passRunning !== undefined) {
      this.passAgain = true;
      return;
    }
    this.passRunning = this.pass()
      .catch((err: unknown) => this.warnOnce("*", `cannot read group records from etcd (${(err as Error).message}); retrying`))
      .finally(() => {
        this.passRunning = undefined;
        if (this.passAgain) {
          this.passAgain = false;
          this.schedulePass();
        }
      });
  }

  private async pass(): Promise<void> {
    const { groups, unreadable } = await this.options.records.readAll();
    this.warned.delete("*");
    for (const { key, error } of unreadable) this.warnOnce(key, error);
    await Promise.all(groups.filter((state) => masterIsGone(state.record, state.alive)).map((state) => this.failOver(state)));
    for (const state of groups) {
      if (!masterIsGone(state.record, state.alive)) this.warned.delete(state.group);
    }
  }

  private async failOver(state: GroupState): Promise<void> {
    const { group, record, alive } = state;
    const candidates = failoverCandidates(record, alive);
    const answers = new Map<number, ReplicaAnswer>();
    const offsets: Record<string, number> = {};
    const timeoutMs = this.options.replicaStateTimeoutMs ?? DEFAULT_REPLICA_STATE_TIMEOUT_MS;
    await Promise.all(
      candidates.map(async (brokerId) => {
        const address = alive.get(brokerId)?.address ?? "";
        try {
          const answer = await this.options.brokers.replicaState(address, timeoutMs);
          // A broker at that address that is not this slave (a restart on a reused port) does not count.
          if (answer.group !== group || answer.brokerId !== brokerId) return;
          const totalOffset = totalLogEnd(answer);
          answers.set(brokerId, { brokerId, totalOffset });
          offsets[String(brokerId)] = totalOffset;
        } catch (err) {
          this.logger.debug({ group, brokerId, address, err: (err as Error).message }, "candidate did not answer ReplicaState");
        }
      }),
    );
    const choice = chooseNewMaster(record, candidates, answers);
    if (choice.kind === "wait") {
      this.warnOnce(group, `group ${group} has no live master (was ${record.master} at epoch ${record.epoch}) and none can be promoted yet: ${choice.reason}; retrying every ${this.retryIntervalMs} ms`);
      return;
    }
    const chosen = alive.get(choice.brokerId);
    if (chosen === undefined || !this.leading) return;
    const next = promotedRecord(record, choice.brokerId, chosen.leaseId, this.clock.now());
    if (!(await this.options.records.swap(group, next, state.modRevision))) {
      this.logger.debug({ group }, "group record changed during failover; the next pass decides again");
      return;
    }
    this.warned.delete(group);
    this.logger.info(
      { group, from: record.master, to: choice.brokerId, epoch: next.epoch, offsets, inSync: next.inSync, mode: record.mode },
      "promoted",
    );
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.get(key) === message) return;
    this.warned.set(key, message);
    this.logger.warn({ key }, message);
  }
}
