/**
 * The socket side of one WebSocket consumer: sends frames, says when the socket is full
 * (so the broker stops producing frames instead of buffering them), and ends the
 * connection with an error frame and a close code.
 *
 * `ws` has no "drain" event: a full socket is polled every ROOM_CHECK_MS until its buffer
 * is below half the limit (the gap keeps a socket near the limit from flapping).
 */
import { WebSocket } from "ws";
import { toSluiceError } from "../../../common/src/errors.js";
import { errorFrame, type SettleFrame } from "./ws-frames.js";

/** Bytes queued on a socket above which the broker stops sending to it. */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** How often a full socket is checked for room. */
export const ROOM_CHECK_MS = 10;

/** WebSocket close codes (RFC 6455 §7.4.1). */
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_SERVER_ERROR = 1011;

/** What the endpoint drives once a socket is open, whichever the mode (queue or tail). */
export interface ConsumeMode {
  /** More messages the client can take. */
  grant(messages: number): void;
  settle(frame: SettleFrame): void;
  /** The socket is gone: release what it held. */
  close(): void;
}

export class ConsumePeer {
  private isClosed = false;
  private readonly closeListeners: Array<() => void> = [];
  private roomTimer: NodeJS.Timeout | undefined;
  private resume: (() => void) | undefined;

  constructor(private readonly ws: WebSocket) {
    // The ws library closes the socket itself after an error (bad frame, oversized frame).
    ws.on("close", () => this.closed());
    ws.on("error", () => this.closed());
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Runs once when the connection ends, however it ends. */
  onClose(listener: () => void): void {
    if (this.isClosed) listener();
    else this.closeListeners.push(listener);
  }

  send(frame: string): void {
    if (!this.isClosed && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
  }

  hasRoom(): boolean {
    return this.ws.bufferedAmount < MAX_BUFFERED_BYTES;
  }

  /** Calls `resume` once the socket has drained below half the limit (one waiter: the last). */
  whenRoom(resume: () => void): void {
    this.resume = resume;
    if (this.roomTimer !== undefined || this.isClosed) return;
    this.roomTimer = setInterval(() => {
      if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES / 2) return;
      this.stopRoomTimer();
      const waiting = this.resume;
      this.resume = undefined;
      waiting?.();
    }, ROOM_CHECK_MS);
  }

  /**
   * Sends an error frame and closes: 1008 for what the client got wrong (4xx errors),
   * 1001 when the broker is going away, 1011 for the broker's own failures.
   */
  fail(err: unknown): void {
    if (this.isClosed) return;
    const error = toSluiceError(err);
    this.send(errorFrame(error));
    const code =
      error.code === "SHUTTING_DOWN" ? CLOSE_GOING_AWAY : error.httpStatus < 500 ? CLOSE_POLICY_VIOLATION : CLOSE_SERVER_ERROR;
    // The reason is limited to 123 bytes; the error frame carries the whole message.
    this.ws.close(code, error.code);
    this.closed();
  }

  /** Drops the connection without a closing handshake (the broker is stopping). */
  terminate(): void {
    this.ws.terminate();
    this.closed();
  }

  private stopRoomTimer(): void {
    clearInterval(this.roomTimer);
    this.roomTimer = undefined;
  }

  private closed(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.stopRoomTimer();
    this.resume = undefined;
    for (const listener of this.closeListeners.splice(0)) listener();
  }
}
