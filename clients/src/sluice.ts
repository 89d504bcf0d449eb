/**
 * The client: owns the shared transport (one channel per broker, the name servers), the
 * route cache and the retry policy, and hands out producers, consumers and the admin API.
 */
import { inspect, type InspectOptions } from "node:util";
import { ClosedError } from "../../common/src/errors.js";
import { SecureChannels } from "../../common/src/grpc/channel-security.js";
import { Admin } from "./admin/admin.js";
import { Consumer } from "./consumer/consumer.js";
import type { ConsumerOptions } from "./consumer/options.js";
import type { ClientContext } from "./context.js";
import { parseSluiceOptions, type ParsedSluiceOptions, type SluiceOptions } from "./options.js";
import type { ProducerOptions } from "./producer/options.js";
import { Producer } from "./producer/producer.js";
import type { QueueOptions } from "./queue/options.js";
import { QueueConsumer } from "./queue/queue-consumer.js";
import { RetryPolicy } from "./retry.js";
import { RouteCache } from "./routing/route-cache.js";
import { channelSecurity } from "./security-options.js";
import { BrokerPool } from "./transport/broker-pool.js";
import { requestHeader } from "./transport/grpc.js";
import { NameServerClient } from "./transport/nameserver-client.js";

export class Sluice {
  readonly options: ParsedSluiceOptions;
  private readonly context: ClientContext;
  private readonly producers = new Set<Producer>();
  private readonly consumers = new Set<Consumer>();
  private readonly queues = new Set<QueueConsumer>();
  private adminClient: Admin | undefined;
  private closing: Promise<void> | undefined;

  /**
   * Validates the options (throws InvalidArgumentError) and connects lazily, on first use.
   *
   * ```ts
   * const sluice = new Sluice({
   *   nameservers: ["ns1.internal:9876", "ns2.internal:9876"],
   *   tls: { ca: fs.readFileSync("ca.crt") },                            // or `true`: the CAs Node.js trusts
   *   credentials: { username: "alice", password: readSecret("alice") },  // Authorization: Basic, every call
   * });
   * ```
   */
  constructor(options: SluiceOptions = {}) {
    this.options = parseSluiceOptions(options);
    const { clientId, requestTimeoutMs, logger } = this.options;
    const header = requestHeader(clientId);
    // One for every channel: name servers, brokers, groups, the security service.
    const channels = new SecureChannels(channelSecurity(this.options.tls, this.options.credentials));
    const nameServers = new NameServerClient(this.options.nameservers, { header, logger, channels });
    this.context = {
      options: this.options,
      header,
      channels,
      retry: new RetryPolicy(this.options.retry),
      brokers: new BrokerPool({ header, requestTimeoutMs, logger, channels }),
      nameServers,
      routes: new RouteCache(nameServers, { refreshMs: this.options.routeRefreshMs, requestTimeoutMs, logger }),
      logger,
    };
  }

  producer(options?: ProducerOptions): Producer {
    this.checkOpen();
    const producer = new Producer(this.context, options, (p) => this.producers.delete(p));
    this.producers.add(producer);
    return producer;
  }

  consumer(options?: ConsumerOptions): Consumer {
    this.checkOpen();
    const consumer = new Consumer(this.context, options, (c) => this.consumers.delete(c));
    this.consumers.add(consumer);
    return consumer;
  }

  /**
   * A member of queue group `group` taking jobs from `topic`: iterate it for jobs and ack,
   * nack or extend each one. Validates the options (throws InvalidArgumentError); connects on
   * the first iteration.
   */
  queue(options: QueueOptions): QueueConsumer {
    this.checkOpen();
    const queue = new QueueConsumer(this.context, options, (q) => this.queues.delete(q));
    this.queues.add(queue);
    return queue;
  }

  admin(): Admin {
    this.checkOpen();
    return (this.adminClient ??= new Admin(this.context));
  }

  /** Flushes and closes every producer, closes every consumer, then the connections. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await Promise.allSettled([...this.producers].map((p) => p.close()));
      await Promise.allSettled([...this.consumers].map((c) => c.close()));
      await Promise.allSettled([...this.queues].map((q) => q.close()));
      this.context.routes.close();
      this.context.brokers.close();
      this.context.nameServers.close();
    })();
    return this.closing;
  }

  /**
   * A logged client shows its options (without secrets), not its connections and streams,
   * which are large and say nothing a user set.
   */
  toJSON(): { options: ParsedSluiceOptions } {
    return { options: this.options };
  }

  [inspect.custom](_depth: number, options: InspectOptions): string {
    return `Sluice ${inspect({ options: this.options }, options)}`;
  }

  private checkOpen(): void {
    if (this.closing !== undefined) throw new ClosedError("the Sluice client");
  }
}
