/**
 * HTTPS from tests to a server started with `--tls-cert`: a GET trusting the test CA (with an
 * optional Basic credential), and the readiness wait of processes.ts's `waitReady` over HTTPS
 * (its global fetch cannot trust a private CA).
 */
import { request as httpsRequest } from "node:https";

export interface HttpsAnswer {
  status: number;
  body: string;
}

/** GET https://address/path trusting `ca`; `auth` is "user:password" for a Basic credential. */
export function httpsGet(ca: Buffer, address: string, path: string, auth?: string): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, `https://${address}`);
    const headers: Record<string, string> = auth === undefined ? {} : { authorization: `Basic ${Buffer.from(auth).toString("base64")}` };
    const request = httpsRequest(url, { ca, agent: false, headers }, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      response.on("error", reject);
    });
    request.on("error", reject);
    request.end();
  });
}

/** Polls GET https://address/readyz (open with `--open-metrics`) until it answers 200. */
export async function waitReadyTls(ca: Buffer, address: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const { status, body } = await httpsGet(ca, address, "/readyz");
      if (status === 200) return;
      last = `${status} ${body}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${address} not ready over HTTPS after ${timeoutMs} ms: ${last}`);
}
