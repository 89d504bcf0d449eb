/**
 * Finds the broker that coordinates a group (the name server's FindCoordinator) and runs
 * calls against it, finding it again when it moved (NOT_COORDINATOR) or cannot be reached.
 * Consumers, queue consumers and the admin share it.
 */
import { NoBrokersAvailableError, toSluiceError, type SluiceError } from "../../../common/src/errors.js";
import type { ClientContext } from "../context.js";
import type { BrokerConnection } from "../transport/broker-pool.js";

/** Errors after which the coordinator must be looked up again before retrying. */
const MOVED_CODES = new Set(["NOT_COORDINATOR", "BROKER_UNAVAILABLE", "NOT_LEADER", "SHUTTING_DOWN"]);

export class GroupCoordinator {
  private address: string | undefined;
  private lookup: Promise<string> | undefined;

  constructor(
    private readonly context: ClientContext,
    readonly group: string,
    /** A queue group: the lookup also makes sure the dead-letter topic exists. */
    private readonly queue = false,
  ) {}

  /** The coordinator's connection, looked up once and cached until `forget()`. */
  async connection(deadlineMs: number): Promise<BrokerConnection> {
    if (this.address === undefined) {
      this.lookup ??= this.find(deadlineMs).finally(() => (this.lookup = undefined));
      this.address = await this.lookup;
    }
    return this.context.brokers.get(this.address);
  }

  /** Drops the cached coordinator: the next call finds it again. */
  forget(): void {
    this.address = undefined;
  }

  /**
   * Runs `operation` against the coordinator with the client's retry policy; a retriable
   * error that says the coordinator moved drops the cached address first.
   */
  run<T>(operation: (connection: BrokerConnection) => Promise<T>, deadlineMs: number): Promise<T> {
    return this.context.retry.run(async () => operation(await this.connection(deadlineMs)), {
      deadlineMs,
      onRetry: (err: SluiceError) => {
        if (MOVED_CODES.has(err.code)) this.forget();
      },
    });
  }

  /** True when `err` means the coordinator moved or went away (the caller should forget it). */
  static movedError(err: unknown): boolean {
    return MOVED_CODES.has(toSluiceError(err).code);
  }

  private async find(deadlineMs: number): Promise<string> {
    const response = await this.context.nameServers.findCoordinator(this.group, this.queue, deadlineMs);
    const address = response.route?.master?.address;
    if (address === undefined || address === "") {
      throw new NoBrokersAvailableError(`group "${this.group}" has no live coordinator yet; retry shortly`);
    }
    return address;
  }
}
