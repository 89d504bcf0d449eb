/**
 * Route push against real processes: a client whose refresh timer is 10 minutes away learns a
 * newly created topic and a killed broker's removal from the name server's WatchRoutes
 * stream, with no GetRoutes call after its first lookup; and the stream never keeps a
 * program alive after `sluice.close()`.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, it } from "node:test";
import { silentLogger } from "../../common/src/logger.js";
import type { GetRoutesResponse } from "../../proto/gen/sluice/v1/nameserver.js";
import { Sluice } from "../../clients/src/index.js";
import { RouteCache } from "../../clients/src/routing/route-cache.js";
import { requestHeader } from "../../clients/src/transport/grpc.js";
import { NameServerClient } from "../../clients/src/transport/nameserver-client.js";
import { REPO_ROOT, startBroker, startNameServer, tempDir } from "../helpers/processes.js";

/** Short heartbeats so an expiry takes well under a second: 3 × 200 ms. */
const HEARTBEAT_INTERVAL_MS = 200;
const EXPIRY_MS = 3 * HEARTBEAT_INTERVAL_MS;
const TEN_MINUTES_MS = 600_000;

/** Counts GetRoutes calls: everything after the first lookup must come by push. */
class CountingNameServerClient extends NameServerClient {
  getRoutesCalls = 0;

  override getRoutes(topics: string[], deadlineMs: number): Promise<GetRoutesResponse> {
    this.getRoutesCalls++;
    return super.getRoutes(topics, deadlineMs);
  }
}

async function eventually(what: string, check: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (check()) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting until ${what}`);
}

describe("route push", () => {
  it("a client with a 10-minute refresh timer learns a new topic and a killed broker's removal by push", async () => {
    const ns = await startNameServer(["--heartbeat-interval-ms", String(HEARTBEAT_INTERVAL_MS)]);
    const brokerFlags = ["--heartbeat-interval-ms", String(HEARTBEAT_INTERVAL_MS)];
    const b1 = await startBroker({ nameservers: [ns.address], name: "b1", extra: brokerFlags });
    const b2 = await startBroker({ nameservers: [ns.address], name: "b2", extra: brokerFlags });
    const admin = new Sluice({ nameservers: [ns.address], clientId: "route-push-admin" });
    const client = new CountingNameServerClient([ns.address], { header: requestHeader("route-push-client"), logger: silentLogger });
    const routes = new RouteCache(client, { refreshMs: TEN_MINUTES_MS, requestTimeoutMs: 5000, logger: silentLogger });
    try {
      await admin.admin().createTopic("spread", { partitions: 2 });
      const first = await routes.get("spread");
      assert.equal(client.getRoutesCalls, 1);
      assert.ok(first.leaders.every((address) => address !== undefined), "both partitions have a master");
      const b2Partition = first.partitions.find((p) => p.group === "b2")!.partition;

      await admin.admin().createTopic("created-later", { partitions: 3 });
      const pushedInMs = await eventually("the new topic's route is pushed", () => routes.peek("created-later") !== undefined, 3000);
      assert.equal(routes.peek("created-later")!.partitionCount, 3);

      b2.process.child.kill("SIGKILL");
      const removedInMs = await eventually(
        "the killed broker's partition loses its master",
        () => routes.peek("spread")?.leaders[b2Partition] === undefined,
        2 * EXPIRY_MS + 2000,
      );
      assert.ok(removedInMs <= 2 * EXPIRY_MS + HEARTBEAT_INTERVAL_MS, `removed ${removedInMs} ms after SIGKILL; expiry window ${EXPIRY_MS} ms`);
      assert.notEqual(routes.peek("spread")!.leaders[1 - b2Partition], undefined, "the live broker's partition keeps its master");
      assert.equal(client.getRoutesCalls, 1, "no GetRoutes after the first: the rest came by push");
      console.log(`route push: new topic in ${pushedInMs} ms, killed broker removed in ${removedInMs} ms (expiry ${EXPIRY_MS} ms)`);
    } finally {
      routes.close();
      client.close();
      await admin.close();
      await b1.process.stop();
      await ns.process.stop();
    }
  });

  it("the route watch does not keep a program alive after sluice.close()", async () => {
    const ns = await startNameServer();
    const b1 = await startBroker({ nameservers: [ns.address], name: "b1" });
    const script = join(tempDir(), "produce-and-close.mjs");
    const sdk = pathToFileURL(join(REPO_ROOT, "dist", "clients", "src", "index.js")).href;
    writeFileSync(
      script,
      `import { Sluice } from ${JSON.stringify(sdk)};
const sluice = new Sluice({ nameservers: [${JSON.stringify(ns.address)}], routeRefreshMs: ${TEN_MINUTES_MS} });
await sluice.admin().createTopic("exit-check", { partitions: 1 });
await sluice.producer().send("exit-check", [{ value: "x" }]);
// Give the watch stream time to open and deliver before closing.
await new Promise((resolve) => setTimeout(resolve, 300));
await sluice.close();
console.log("closed");
`,
    );
    try {
      const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
      const started = Date.now();
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          resolve(null);
        }, 10_000);
        child.once("exit", (exitCode) => {
          clearTimeout(timer);
          resolve(exitCode);
        });
      });
      assert.equal(code, 0, `the program must exit by itself after close(); output:\n${output}`);
      assert.match(output, /closed/);
      assert.ok(Date.now() - started < 10_000);
    } finally {
      await b1.process.stop();
      await ns.process.stop();
    }
  });
});
