/**
 * The name servers as one service. Name servers are independent replicas (every broker
 * registers with each), so any of them can answer: a call goes to the one that answered
 * last, and moves on to the next when that one cannot be reached. Answers such as "no such
 * topic" are final and are not asked of the others.
 */
import { Metadata, type ClientReadableStream } from "@grpc/grpc-js";
import { BrokerUnavailableError, ClosedError, SluiceError, type ErrorCode } from "../../../common/src/errors.js";
import type { Logger } from "../../../common/src/logger.js";
import type { RequestHeader } from "../../../proto/gen/sluice/v1/common.js";
import {
  NameServerClient as GeneratedNameServerClient,
  type CreateTopicRequest,
  type CreateTopicResponse,
  type FindCoordinatorResponse,
  type GetRoutesResponse,
  type NsCreatePartitionsRequest,
  type NsCreatePartitionsResponse,
  type ListBrokersResponse,
  type ListTopicsResponse,
  type NsDeleteTopicRequest,
  type NsDeleteTopicResponse,
  type RouteChange,
} from "../../../proto/gen/sluice/v1/nameserver.js";
import {
  SecurityClient as GeneratedSecurityClient,
  type CreateAclResponse,
  type CreateUserRequest,
  type CreateUserResponse,
  type DeleteAclResponse,
  type DeleteUserResponse,
  type AclEntry as WireAclEntry,
  type ListAclsResponse,
  type ListUsersResponse,
} from "../../../proto/gen/sluice/v1/security.js";
import { PLAIN_CHANNELS, type SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { callUnary, channelArgs, type UnaryMethod } from "./grpc.js";

/** Failures that say "this name server cannot answer now", not "the answer is no". */
const FAILOVER_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "BROKER_UNAVAILABLE",
  "REQUEST_TIMED_OUT",
  "NOT_READY",
  "SHUTTING_DOWN",
]);

export interface NameServerContext {
  readonly header: RequestHeader;
  readonly logger: Logger;
  /** TLS and credentials of every name-server channel. @defaultValue plain text, anonymous */
  readonly channels?: SecureChannels;
}

type Method<Req, Res> = (client: GeneratedNameServerClient) => UnaryMethod<Req, Res>;
type SecurityMethod<Req, Res> = (client: GeneratedSecurityClient) => UnaryMethod<Req, Res>;

export class NameServerClient {
  private readonly clients: GeneratedNameServerClient[];
  /** Security service stubs, made on first use, sharing each name server's channel. */
  private securityClients: GeneratedSecurityClient[] | undefined;
  /** Index of the name server that answered last; calls start there. */
  private preferred = 0;
  private closed = false;
  private readonly channels: SecureChannels;

  constructor(
    readonly addresses: readonly string[],
    private readonly context: NameServerContext,
  ) {
    this.channels = context.channels ?? PLAIN_CHANNELS;
    this.clients = addresses.map((address) => new GeneratedNameServerClient(address, ...channelArgs(this.channels)));
  }

  getRoutes(topics: string[], deadlineMs: number): Promise<GetRoutesResponse> {
    return this.call((c) => c.getRoutes, { header: this.context.header, topics }, deadlineMs);
  }

  findCoordinator(group: string, queue: boolean, deadlineMs: number): Promise<FindCoordinatorResponse> {
    return this.call((c) => c.findCoordinator, { header: this.context.header, group, queue }, deadlineMs);
  }

  createTopic(request: Omit<CreateTopicRequest, "header">, deadlineMs: number): Promise<CreateTopicResponse> {
    return this.call((c) => c.createTopic, { ...request, header: this.context.header }, deadlineMs);
  }

  createPartitions(request: Omit<NsCreatePartitionsRequest, "header">, deadlineMs: number): Promise<NsCreatePartitionsResponse> {
    return this.call((c) => c.createPartitions, { ...request, header: this.context.header }, deadlineMs);
  }

  deleteTopic(request: Omit<NsDeleteTopicRequest, "header">, deadlineMs: number): Promise<NsDeleteTopicResponse> {
    return this.call((c) => c.deleteTopic, { ...request, header: this.context.header }, deadlineMs);
  }

  listTopics(deadlineMs: number): Promise<ListTopicsResponse> {
    return this.call((c) => c.listTopics, { header: this.context.header }, deadlineMs);
  }

  listBrokers(deadlineMs: number): Promise<ListBrokersResponse> {
    return this.call((c) => c.listBrokers, { header: this.context.header }, deadlineMs);
  }

  createUser(request: Omit<CreateUserRequest, "header">, deadlineMs: number): Promise<CreateUserResponse> {
    return this.callSecurity((c) => c.createUser, { ...request, header: this.context.header }, deadlineMs);
  }

  deleteUser(name: string, deadlineMs: number): Promise<DeleteUserResponse> {
    return this.callSecurity((c) => c.deleteUser, { header: this.context.header, name }, deadlineMs);
  }

  listUsers(deadlineMs: number): Promise<ListUsersResponse> {
    return this.callSecurity((c) => c.listUsers, { header: this.context.header }, deadlineMs);
  }

  createAcl(acl: WireAclEntry, deadlineMs: number): Promise<CreateAclResponse> {
    return this.callSecurity((c) => c.createAcl, { header: this.context.header, acl }, deadlineMs);
  }

  deleteAcl(acl: WireAclEntry, deadlineMs: number): Promise<DeleteAclResponse> {
    return this.callSecurity((c) => c.deleteAcl, { header: this.context.header, acl }, deadlineMs);
  }

  /** Every entry, or those naming exactly `principal` ("" for all). */
  listAcls(principal: string, deadlineMs: number): Promise<ListAclsResponse> {
    return this.callSecurity((c) => c.listAcls, { header: this.context.header, principal }, deadlineMs);
  }

  /**
   * Opens a WatchRoutes stream (route push) on one name server: the preferred one when
   * `attempt` is 0, the next listed one for each further attempt, so a watcher that lost its
   * stream fails over by counting its attempts. No topics = every topic.
   */
  watchRoutes(topics: readonly string[], attempt: number): { address: string; stream: ClientReadableStream<RouteChange> } {
    if (this.closed) throw new ClosedError("the Sluice client");
    const index = (this.preferred + attempt) % this.clients.length;
    const stream = this.clients[index]!.watchRoutes({ header: this.context.header, topics: [...topics] }, new Metadata());
    return { address: this.addresses[index]!, stream };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const client of this.clients) client.close();
  }

  private call<Req, Res>(method: Method<Req, Res>, request: Req, deadlineMs: number): Promise<Res> {
    return this.callAny(this.clients, method, request, deadlineMs);
  }

  private callSecurity<Req, Res>(method: SecurityMethod<Req, Res>, request: Req, deadlineMs: number): Promise<Res> {
    if (this.closed) throw new ClosedError("the Sluice client");
    // The same connection as the name server's other calls: a second stub, not a second
    // channel. Interceptors belong to the stub, so it gets the Authorization header its own way.
    this.securityClients ??= this.clients.map(
      (client, i) => new GeneratedSecurityClient(this.addresses[i]!, ...channelArgs(this.channels, { channelOverride: client.getChannel() })),
    );
    return this.callAny(this.securityClients, method, request, deadlineMs);
  }

  /** Tries each name server once, starting with the preferred one. */
  private async callAny<C extends object, Req, Res>(clients: readonly C[], method: (client: C) => UnaryMethod<Req, Res>, request: Req, deadlineMs: number): Promise<Res> {
    if (this.closed) throw new ClosedError("the Sluice client");
    const failures: string[] = [];
    let lastError: SluiceError | undefined;
    for (let tried = 0; tried < clients.length; tried++) {
      const index = (this.preferred + tried) % clients.length;
      const client = clients[index]!;
      const address = this.addresses[index]!;
      try {
        const response = await callUnary(method(client), client, request, deadlineMs, `name server ${address}`);
        this.preferred = index;
        return response;
      } catch (err) {
        const error = err as SluiceError;
        if (!FAILOVER_CODES.has(error.code) || this.closed) throw error;
        lastError = error;
        failures.push(`${address}: ${error.message}`);
        this.context.logger.debug({ nameserver: address, code: error.code }, "name server unavailable, trying the next");
      }
    }
    if (clients.length === 1 && lastError !== undefined) throw lastError;
    throw new BrokerUnavailableError(`no name server could answer (${failures.join("; ")})`, { cause: lastError });
  }
}
