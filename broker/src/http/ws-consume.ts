/**
 * Push delivery over WebSocket on the broker's HTTP port, for browsers and scripts: JSON
 * text frames, one frame per message, and message credit so that a consumer is never sent
 * more than it asked for and a slow one never holds up the others.
 *
 * URL: ws://<broker-http>/ws/consume. Client → broker:
 *
 *   first frame, queue mode (a queue group: each message goes to one consumer, which settles it):
 *     {"op":"open","mode":"queue","group":"workers","topic":"jobs",
 *      "invisibleMs":30000,"maxDeliveries":5,"keyOrdering":false,"fromBeginning":false,"clientId":"x"}
 *     The broker must coordinate the group: it asks the name servers (which also creates the
 *     group's internal topics on first use) and otherwise answers NOT_COORDINATOR naming the
 *     right broker's URL.
 *   first frame, tail mode (an ephemeral reader of partitions hosted on this broker; no group):
 *     {"op":"open","mode":"tail","topic":"orders","partitions":[0,1],"from":"latest"}
 *     partitions: optional, default every partition of the topic hosted here.
 *     from: "latest" (default) | "earliest" | {"0": 42, "1": 7} (unnamed partitions: latest).
 *   {"op":"credit","messages":N}          adds N (1..1000000) to the messages the broker may send
 *   queue mode only, settling a delivered message (leaseId from its message frame):
 *     {"op":"ack","partition":0,"offset":12,"leaseId":3,"id":1}
 *     {"op":"nack","partition":0,"offset":12,"leaseId":3,"delayMs":1000,"error":"why","id":2}
 *     {"op":"extend","partition":0,"offset":12,"leaseId":3,"extendMs":60000,"id":3}
 *     id is optional: with one, the broker answers once the settle is durable.
 *
 * Broker → client:
 *   {"type":"opened","mode":"queue","group","topic","memberId","invisibleMs","maxDeliveries"}
 *   {"type":"opened","mode":"tail","topic","partitions":[{"partition","offset"}]}  (start positions)
 *   {"type":"message","topic","partition","offset","timestamp","key","value","headers":{k: v},
 *    "deliveryCount","leaseId"}   key, value and header values in base64 (key/value may be null);
 *                                  deliveryCount and leaseId in queue mode only. Each uses 1 credit.
 *   {"type":"settled","id","errors":[{"partition","offset","code","message","retriable"}]}
 *                                  errors empty = done; UNKNOWN_LEASE = the lease had expired
 *   {"type":"error","code","message","retriable"}, then the broker closes the socket: 1008 for
 *   bad input (malformed JSON, unknown op, missing or invalid field, a frame over 64 KiB, a
 *   binary frame, a second open, a revoked permission), 1011 for the broker's own failure, 1001
 *   at broker shutdown. Only an `open` refused for want of permission leaves the socket open.
 *
 * Security: an upgrade whose `Origin` names another host:port than its `Host` (a page of
 * another site, which the browser would send with the operator's cached credentials) is
 * refused with `403` before anything else (ws-origin.ts). The upgrade request is authenticated
 * like every HTTP request (Basic credentials or a client certificate; with --auth a failure is
 * answered `401` with a Basic challenge and no upgrade). Each `open` needs consume on the topic, and in queue mode consume on the group;
 * a refused `open` is answered {"type":"error","code":"NOT_AUTHORIZED",...} and the socket
 * stays open and unopened, so the client may `open` a topic it is allowed (frames other than
 * `open` sent after the refused one are dropped: they were meant for it). An open subscription
 * whose permission is revoked at run time ends with a NOT_AUTHORIZED error frame and close 1008
 * within ACCESS_RECHECK_MS of the broker learning of the change (ws-access.ts).
 *
 * Flow control: besides credit, the broker stops sending to a socket holding more than
 * 1 MiB unsent (ws-peer.ts), so a consumer that stops reading costs bounded memory. Sockets
 * are pinged every PING_INTERVAL_MS and dropped when the previous ping went unanswered, so a
 * vanished queue consumer's leases go back to the group.
 */
import { STATUS_CODES, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import type { TLSSocket } from "node:tls";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { InvalidArgumentError, NotAuthorizedError, ShuttingDownError, toSluiceError } from "../../../common/src/errors.js";
import { BASIC_CHALLENGE } from "../../../common/src/http/permissions.js";
import type { Principal } from "../../../common/src/security/types.js";
import type { QueueGroups } from "../groups/queue-groups.js";
import type { BrokerContext } from "../grpc/context.js";
import { CoordinatorLookup } from "./coordinator-lookup.js";
import { ConsumeAccess, type ConsumeGrant, type WebSocketAuth } from "./ws-access.js";
import { errorFrame, parseClientFrame, type ClientFrame } from "./ws-frames.js";
import { crossOriginRefusal } from "./ws-origin.js";
import { ConsumePeer, type ConsumeMode } from "./ws-peer.js";
import { openQueueMode } from "./ws-queue.js";
import { openTailMode } from "./ws-tail.js";

export const WS_CONSUME_PATH = "/ws/consume";
/** Largest client frame accepted; a larger one is answered with an error frame. */
export const MAX_CLIENT_FRAME_BYTES = 64 * 1024;
/** Frames over this are cut by the ws library itself (close 1009, no error frame). */
const HARD_MAX_FRAME_BYTES = 1024 * 1024;
/** Frames a client may send while its queue group opens, before the broker refuses more. */
const MAX_EARLY_FRAMES = 10_000;
export const PING_INTERVAL_MS = 30_000;

export interface WebSocketConsumeOptions {
  context: BrokerContext;
  queues: QueueGroups;
  /** Authenticates upgrades and checks ACLs: the HTTP server the socket is attached to (createHttpServer). */
  auth: WebSocketAuth;
}

export interface WebSocketConsume {
  /** Stops accepting sockets and drops those still open (after streamClosers asked them to go). */
  close(): void;
}

export function attachWebSocketConsume(server: Server, options: WebSocketConsumeOptions): WebSocketConsume {
  const { context, queues, auth } = options;
  const access = new ConsumeAccess(auth.securityGuard);
  const coordinators = new CoordinatorLookup({
    nameservers: context.options.nameservers,
    channels: context.options.peerChannels,
    brokerGroup: context.options.group,
    brokerId: context.options.brokerId,
    consumePath: WS_CONSUME_PATH,
    logger: context.logger,
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: HARD_MAX_FRAME_BYTES });
  const peers = new Set<ConsumePeer>();
  const alive = new WeakMap<WebSocket, boolean>();

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = (request.url ?? "").split("?")[0];
    if (path !== WS_CONSUME_PATH) {
      // Another upgrade handler may own this path; with none, say so rather than hang.
      if (server.listenerCount("upgrade") === 1) refuseUpgrade(socket, "404 Not Found");
      return;
    }
    if (context.shuttingDown()) {
      refuseUpgrade(socket, "503 Service Unavailable");
      return;
    }
    // Before authentication: a browser page of another site gets nothing, not even a password check.
    const crossOrigin = crossOriginRefusal(request.headers, (request.socket as Partial<TLSSocket>).encrypted === true);
    if (crossOrigin !== undefined) {
      context.logger.debug({ origin: request.headers.origin, host: request.headers.host }, "cross-origin WebSocket upgrade refused");
      refuseWithError(socket, new NotAuthorizedError(crossOrigin));
      return;
    }
    // The HTTP server stopped listening for socket errors when it handed the socket over; until
    // ws takes it, a client that hangs up during authentication must not crash the broker.
    const ignoreError = (): void => undefined;
    socket.on("error", ignoreError);
    auth.authenticateHeaders(request.headers, request.socket).then(
      (principal) => {
        socket.off("error", ignoreError);
        if (socket.destroyed) return;
        if (context.shuttingDown()) {
          refuseUpgrade(socket, "503 Service Unavailable");
          return;
        }
        wss.handleUpgrade(request, socket, head, (ws) => {
          alive.set(ws, true);
          ws.on("pong", () => alive.set(ws, true));
          const peer = new ConsumePeer(ws);
          peers.add(peer);
          peer.onClose(() => peers.delete(peer));
          serveConsumer(ws, peer, { context, queues, coordinators, access, principal });
        });
      },
      (err: unknown) => {
        socket.off("error", ignoreError);
        refuseWithError(socket, err);
      },
    );
  };
  server.on("upgrade", onUpgrade);

  const pinger = setInterval(() => {
    for (const ws of wss.clients) {
      if (alive.get(ws) === false) {
        ws.terminate();
        continue;
      }
      alive.set(ws, false);
      ws.ping();
    }
  }, PING_INTERVAL_MS);
  pinger.unref();

  return {
    close: () => {
      server.off("upgrade", onUpgrade);
      clearInterval(pinger);
      for (const peer of [...peers]) peer.terminate();
      wss.close();
      coordinators.close();
      access.close();
    },
  };
}

function refuseUpgrade(socket: Duplex, status: string, headers = "", body = ""): void {
  socket.on("error", () => undefined);
  socket.end(`HTTP/1.1 ${status}\r\n${headers}Connection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/**
 * A refused upgrade (bad credentials, a cross-origin page): the error JSON every HTTP route
 * answers, with its HTTP status, and a Basic challenge for a 401.
 */
function refuseWithError(socket: Duplex, err: unknown): void {
  if (socket.destroyed) return;
  const error = toSluiceError(err);
  const status = error.httpStatus;
  const challenge = status === 401 ? `WWW-Authenticate: ${BASIC_CHALLENGE}\r\n` : "";
  refuseUpgrade(socket, `${status} ${STATUS_CODES[status] ?? "Error"}`, `${challenge}Content-Type: application/json; charset=utf-8\r\n`, JSON.stringify(error.toJSON()));
}

interface ConsumerServices {
  context: BrokerContext;
  queues: QueueGroups;
  coordinators: CoordinatorLookup;
  access: ConsumeAccess;
  /** Who authenticated the upgrade. */
  principal: Principal;
}

/** One socket: waits for `open`, then feeds credit and settles to the mode it opened. */
function serveConsumer(ws: WebSocket, peer: ConsumePeer, services: ConsumerServices): void {
  const { context } = services;
  let state: "new" | "opening" | "open" = "new";
  /** The last `open` was refused for want of permission: what follows it until the next `open` is dropped. */
  let refused = false;
  let mode: ConsumeMode | undefined;
  /** Frames that arrived while the queue group opened, applied in order once it is open. */
  const early: ClientFrame[] = [];
  context.metrics.activeStreams.inc({ kind: "websocket" });

  const apply = (frame: ClientFrame): void => {
    if (frame.op === "open") throw new InvalidArgumentError("this socket is already open: send `open` once, as the first frame");
    if (frame.op === "credit") mode!.grant(frame.messages);
    else mode!.settle(frame.settle);
  };

  const opened = (openedMode: ConsumeMode, openedFrame: string): void => {
    mode = openedMode;
    state = "open";
    if (!peer.isOpen) {
      openedMode.close();
      return;
    }
    peer.send(openedFrame);
    for (const frame of early.splice(0)) apply(frame);
  };

  const open = (frame: ClientFrame): void => {
    if (frame.op !== "open") {
      if (refused) return;
      throw new InvalidArgumentError(`the first frame must be {"op":"open",...}, not "${frame.op}"`);
    }
    const group = frame.open.mode === "queue" ? frame.open.group : undefined;
    let grant: ConsumeGrant;
    try {
      // Before anything else, so a refused caller learns nothing of the topic (not even whether it exists).
      grant = services.access.grant(services.principal, frame.open.topic, group, (err) => peer.fail(err));
    } catch (err) {
      if (!(err instanceof NotAuthorizedError)) throw err;
      refused = true;
      peer.send(errorFrame(err));
      return;
    }
    refused = false;
    peer.onClose(() => grant.release());
    if (frame.open.mode === "tail") {
      const tail = openTailMode(peer, frame.open, context, grant);
      opened(tail.mode, tail.openedFrame);
      return;
    }
    state = "opening";
    openQueueMode(peer, frame.open, { queues: services.queues, coordinators: services.coordinators, logger: context.logger }, grant).then(
      (queue) => {
        try {
          opened(queue.mode, queue.openedFrame);
        } catch (err) {
          peer.fail(err);
        }
      },
      (err: unknown) => {
        context.logger.debug({ code: toSluiceError(err).code, err }, "WebSocket queue consumer refused");
        peer.fail(err);
      },
    );
  };

  ws.on("message", (data: RawData, isBinary: boolean) => {
    if (!peer.isOpen) return;
    try {
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (isBinary) throw new InvalidArgumentError("send JSON text frames, not binary ones");
      if (bytes.length > MAX_CLIENT_FRAME_BYTES) {
        throw new InvalidArgumentError(`a frame is at most ${MAX_CLIENT_FRAME_BYTES} bytes; this one has ${bytes.length}`);
      }
      const frame = parseClientFrame(bytes.toString("utf8"));
      if (state === "new") open(frame);
      else if (state === "opening") {
        if (early.length >= MAX_EARLY_FRAMES) throw new InvalidArgumentError(`at most ${MAX_EARLY_FRAMES} frames may wait for the queue group to open`);
        early.push(frame);
      } else apply(frame);
    } catch (err) {
      peer.fail(err);
    }
  });

  const closeAtShutdown = (): void => peer.fail(new ShuttingDownError());
  context.streamClosers.add(closeAtShutdown);
  peer.onClose(() => {
    context.streamClosers.delete(closeAtShutdown);
    mode?.close();
    context.metrics.activeStreams.dec({ kind: "websocket" });
  });
}
