/**
 * An in-process stand-in for a name server and one broker on one gRPC port, plain or TLS
 * (through the servers' own GrpcListener), that records every call it receives: its method,
 * its `authorization` metadata and its request. For tests of what the SDK and the CLI send:
 * credentials on every channel (name server, broker, groups, security service), TLS, and the
 * passwords of `sluice user add`. With a CA in its TLS settings it asks for client certificates
 * and records the CN of a verified one.
 *
 * It knows one topic, `t` (one partition), and `%groups`, both mastered by itself; one broker
 * `b1/0`; and one user, `admin`. The route watch stream stays open until the client leaves.
 */
import { Server, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { toServiceError } from "../../common/src/grpc/errors.js";
import { GrpcListener } from "../../common/src/grpc/listener.js";
import { silentLogger } from "../../common/src/logger.js";
import { GROUP_STATE_TOPIC, PROTOCOL_VERSION } from "../../common/src/protocol.js";
import { UnknownTopicError } from "../../common/src/errors.js";
import type { ServerTls } from "../../common/src/security/tls-files.js";
import { BrokerService } from "../../proto/gen/sluice/v1/broker.js";
import { GroupsService } from "../../proto/gen/sluice/v1/groups.js";
import { NameServerService, type TopicRoute } from "../../proto/gen/sluice/v1/nameserver.js";
import { SecurityService } from "../../proto/gen/sluice/v1/security.js";

export interface RecordedCall {
  /** e.g. "/sluice.v1.NameServer/ListBrokers" */
  path: string;
  /** The `authorization` metadata value, or undefined when none was sent. */
  authorization: string | undefined;
  /** CN of the verified client certificate (mutual TLS), if any. */
  commonName: string | undefined;
  request: unknown;
}

const TOPICS = ["t", GROUP_STATE_TOPIC];

export class RecordingServer {
  readonly calls: RecordedCall[] = [];
  address = "";
  private readonly server = new Server();
  private listener: GrpcListener | undefined;
  /** Handshakes that failed TLS (a plain-text client, an untrusted certificate). */
  readonly handshakeFailures: string[] = [];

  /** Serves on a free loopback port; over TLS with `tls`. */
  async start(tls?: ServerTls): Promise<this> {
    this.server.addService(NameServerService, this.recorded(NameServerService, {
      getRoutes: (request: { topics: string[] }) => ({ routes: request.topics.map((topic) => this.route(topic)) }),
      listTopics: () => ({ topics: TOPICS.map((topic) => this.route(topic)) }),
      listBrokers: () => ({
        brokers: [
          {
            broker: { cluster: "c", group: "b1", brokerId: 0, address: this.address, httpAddress: "", version: "fake", role: "master", epoch: 1, weight: 1 },
            state: "alive",
            heartbeatAgeMs: 10,
            registeredAtMs: 0,
            suspicion: 0,
            partitionCount: 2,
          },
        ],
      }),
      promoteBroker: (request: { brokerId: number }) => ({ master: { brokerId: request.brokerId, epoch: 2, address: this.address } }),
    }));
    this.server.addService(BrokerService, this.recorded(BrokerService, {
      handshake: () => ({
        protocolVersion: PROTOCOL_VERSION,
        minProtocolVersion: PROTOCOL_VERSION,
        maxProtocolVersion: PROTOCOL_VERSION,
        serverVersion: "fake",
      }),
      describePartitions: (request: { topic: string }) => ({
        partitions: [{ topic: request.topic, partition: 0, logStartOffset: 0, logEndOffset: 5, highWatermark: 5, sizeBytes: 100, segments: 1 }],
      }),
    }));
    this.server.addService(GroupsService, this.recorded(GroupsService, {
      listGroups: () => ({ groups: [{ group: "billing", kind: "consumer", state: "empty", members: 0 }] }),
    }));
    this.server.addService(SecurityService, this.recorded(SecurityService, {
      createUser: () => ({ created: true }),
      listUsers: () => ({ users: [{ name: "admin", superuser: true, builtIn: true }] }),
    }));
    this.listener = await GrpcListener.listen(this.server, {
      host: "127.0.0.1",
      port: 0,
      tls,
      logger: silentLogger,
      onHandshakeFailure: (reason) => this.handshakeFailures.push(reason),
    });
    this.address = `127.0.0.1:${this.listener.port}`;
    return this;
  }

  /** Calls to one method, by its last path segment (e.g. "ListUsers"). */
  callsTo(method: string): RecordedCall[] {
    return this.calls.filter((call) => call.path.endsWith(`/${method}`));
  }

  stop(): void {
    this.listener?.close();
    this.server.forceShutdown();
  }

  private route(topic: string): TopicRoute {
    if (!TOPICS.includes(topic)) throw new UnknownTopicError(topic, " on this name server");
    const master = { group: "b1", brokerId: 0, address: this.address, httpAddress: "" };
    return { topic, partitions: [{ partition: 0, group: "b1", master, slaves: [], epoch: 1 }] };
  }

  /**
   * Handlers for `service`: each unary answer of `answers` is recorded and then answered;
   * a server stream (WatchRoutes) is recorded and left open until the client cancels it.
   */
  private recorded(
    service: Record<string, { path: string; responseStream: boolean; requestStream: boolean }>,
    answers: Record<string, (request: never) => unknown>,
  ): UntypedServiceImplementation {
    const handlers: UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(service)) {
      const record = (call: ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>): void => {
        const value = call.metadata.get("authorization")[0];
        this.calls.push({
          path: method.path,
          authorization: value === undefined ? undefined : String(value),
          commonName: commonNameOf(this.listener?.connection(call.getPeer()).verifiedCertificate?.subject?.CN),
          request: call.request,
        });
      };
      if (method.responseStream && !method.requestStream) {
        handlers[name] = (call: ServerWritableStream<unknown, unknown>) => record(call);
        continue;
      }
      const answer = answers[name];
      if (answer === undefined || method.requestStream) continue;
      handlers[name] = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
        record(call);
        try {
          callback(null, answer(call.request as never));
        } catch (err) {
          callback(toServiceError(err) as never);
        }
      };
    }
    return handlers;
  }
}

function commonNameOf(cn: string | string[] | undefined): string | undefined {
  return Array.isArray(cn) ? cn[0] : cn;
}
