/**
 * Sends a subscription's partitions back to their master (RocketMQ's rule: read from a slave
 * only while the master is gone). Every MASTER_CHECK_INTERVAL_MS, for each partition read
 * elsewhere than from the master its route names now — from a slave because the master was
 * missing or unreachable, or from a former master after a failover (a frozen one never
 * breaks its stream) —
 *
 * - the route names a master this client does not hold as unreachable: the partition moves
 *   there, resuming after the last data received (no gap, no duplicate);
 * - the route names a master marked unreachable: it is probed with a small ListOffsets
 *   (MASTER_PROBE_TIMEOUT_MS); an answer clears the mark, and the next check moves it.
 *
 * A round reads only the cached route (no request unless it probes); the timer is unref'd.
 */
import { toSluiceError } from "../../../common/src/errors.js";
import { OffsetSpec } from "../../../proto/gen/sluice/v1/broker.js";
import type { ClientContext } from "../context.js";

export const MASTER_CHECK_INTERVAL_MS = 1_000;
export const MASTER_PROBE_TIMEOUT_MS = 1_000;

export interface MasterCheckHooks {
  /** partition → address of the broker each attached partition is read from now. */
  readers(): Iterable<readonly [partition: number, address: string]>;
  /** Moves these partitions to the replica the route and reachability now choose. */
  move(partitions: number[]): void;
}

export class MasterCheck {
  private timer: NodeJS.Timeout | undefined;
  private readonly probing = new Set<string>();

  constructor(
    private readonly context: ClientContext,
    private readonly topic: string,
    private readonly hooks: MasterCheckHooks,
    private readonly intervalMs = MASTER_CHECK_INTERVAL_MS,
  ) {}

  /** Starts the checks (once); stop() ends them. */
  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One round; exposed for tests. */
  check(): void {
    const route = this.context.routes.peek(this.topic);
    if (route === undefined) return;
    const reachability = this.context.routes.reachability;
    const moving: number[] = [];
    for (const [partition, address] of this.hooks.readers()) {
      const master = route.leaders[partition];
      if (master === undefined || master === address) continue;
      if (!reachability.isDown(master)) moving.push(partition);
      else this.probe(master, partition);
    }
    if (moving.length > 0) {
      this.context.logger.debug({ topic: this.topic, partitions: moving }, "the partitions' master is reachable: reading from it again");
      this.hooks.move(moving);
    }
  }

  private probe(address: string, partition: number): void {
    if (this.probing.has(address)) return;
    this.probing.add(address);
    const { context } = this;
    const request = { header: context.header, topic: this.topic, partitions: [{ partition, spec: OffsetSpec.OFFSET_SPEC_LATEST, timestampMs: 0 }] };
    let connection;
    try {
      connection = context.brokers.get(address);
    } catch {
      this.probing.delete(address);
      return; // the client is closing
    }
    connection.listOffsets(request, Date.now() + MASTER_PROBE_TIMEOUT_MS).then(
      (response) => {
        this.probing.delete(address);
        // A master that answers but does not serve the partition yet is no better than the slave.
        if (response.partitions.every((p) => p.error === undefined)) context.routes.reachability.noteSuccess(address);
      },
      (err: unknown) => {
        this.probing.delete(address);
        context.routes.reachability.noteFailure(address, toSluiceError(err).code);
      },
    );
  }
}
