/**
 * A client of the WebSocket consume endpoint for tests: connects with optional HTTP headers
 * (credentials), gives back the HTTP answer when the upgrade is refused, keeps every frame it
 * receives and waits for the ones a test expects.
 */
import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http";
import { WebSocket } from "ws";

export const WS_CONSUME_PATH = "/ws/consume";

export type Frame = { type: string; [field: string]: unknown };

/** What a refused upgrade answered. */
export interface RefusedUpgrade {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export class ConsumeClient {
  readonly frames: Frame[] = [];
  /** When the socket closed, with its close code. */
  readonly closed: Promise<{ code: number; atMs: number }>;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
      for (const wake of [...this.waiters]) wake();
    });
    this.closed = new Promise((resolve) => ws.on("close", (code) => resolve({ code, atMs: Date.now() })));
  }

  /** Connects to ws://<http>/ws/consume; resolves with the client, or with the answer of a refused upgrade. */
  static attempt(http: string, headers: Record<string, string> = {}): Promise<ConsumeClient | RefusedUpgrade> {
    const ws = new WebSocket(`ws://${http}${WS_CONSUME_PATH}`, { headers });
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(new ConsumeClient(ws)));
      ws.once("unexpected-response", (_request, response) => {
        let body = "";
        response.on("data", (chunk: Buffer) => (body += chunk.toString()));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }));
      });
      ws.once("error", reject);
    });
  }

  /** Connects and fails the test when the upgrade is refused. */
  static async connect(http: string, headers: Record<string, string> = {}): Promise<ConsumeClient> {
    const result = await ConsumeClient.attempt(http, headers);
    assert.ok(result instanceof ConsumeClient, `upgrade refused: ${JSON.stringify(result)}`);
    return result;
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  messages(): Frame[] {
    return this.frames.filter((f) => f.type === "message");
  }

  /** The first frame (received already or coming) that matches. */
  next(match: (frame: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.frames.find(match);
        if (found === undefined) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no matching frame in ${timeoutMs} ms; last frames: ${JSON.stringify(this.frames.slice(-3))}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves once `count` messages have arrived. */
  async waitForMessages(count: number, timeoutMs = 10_000): Promise<Frame[]> {
    await this.next(() => this.messages().length >= count, timeoutMs);
    return this.messages();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** `Authorization: Basic …` for a user. */
export function basicAuth(user: string, password: string): { authorization: string } {
  return { authorization: `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}` };
}
