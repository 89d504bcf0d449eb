/**
 * Flow rules on a secured cluster: `sluice dev` with TLS (the dev CA from ops/tls) and `--auth`.
 * The flow admin API is on the broker's HTTPS port, so `sluice flow` and the SDK's flow calls
 * must reach it over HTTPS with the client's CA and carry the caller's credentials:
 *
 * - admin sets, lists and deletes a rule with the CLI and with the SDK;
 * - a user with describe on the cluster but not admin lists the rules (its credentials reach
 *   the broker) and is refused set and delete with NOT_AUTHORIZED: exit 1, one line, nothing changed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Sluice } from "../../clients/src/index.js";
import { waitReadyTls } from "../helpers/https.js";
import { runCli, startServer, tempDir, type CliResult, type ServerProcess } from "../helpers/processes.js";
import { devCertificates, secureServerFlags, writePasswordFile, type DevCerts } from "../helpers/tls.js";

const ADMIN_PASSWORD = "admin-secret-for-flow-tests";
const ALICE_PASSWORD = "alice-secret-for-flow-tests";

interface ListedRules {
  brokers: { broker: string; rules: { scope: string; limiter: string; messagesPerSecond?: number; source: string }[] }[];
}

describe("flow rules with --auth and TLS", { timeout: 90_000 }, () => {
  let certs: DevCerts;
  let dev: ServerProcess;
  let nameserver: string;
  let adminPasswordFile: string;
  let alicePasswordFile: string;

  const as = (user: string, passwordFile: string, args: string[]): Promise<CliResult> =>
    runCli(["--nameserver", nameserver, "--tls-ca", certs.ca, "--user", user, "--password-file", passwordFile, ...args], { timeoutMs: 30_000 });
  const asAdmin = (args: string[]): Promise<CliResult> => as("admin", adminPasswordFile, args);
  const asAlice = (args: string[]): Promise<CliResult> => as("alice", alicePasswordFile, args);
  const listed = async (run: (args: string[]) => Promise<CliResult>): Promise<ListedRules> => {
    const result = await run(["flow", "list", "--json"]);
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout) as ListedRules;
  };
  const scopes = (rules: ListedRules): string[] => rules.brokers.flatMap((b) => b.rules.map((r) => `${r.scope} ${r.limiter}`));

  before(async () => {
    certs = await devCertificates();
    const dir = tempDir("sluice-flow-auth-");
    adminPasswordFile = writePasswordFile(dir, "admin.pw", ADMIN_PASSWORD);
    alicePasswordFile = writePasswordFile(dir, "alice.pw", ALICE_PASSWORD);
    dev = await startServer([
      "dev", "--data", join(dir, "data"), "--nameserver-port", "0", "--broker-port", "0", "--http-port", "0",
      ...secureServerFlags(certs, adminPasswordFile),
    ]);
    nameserver = dev.info.nameserver as string;
    await waitReadyTls(certs.caCert, dev.info.http as string);
    const added = await asAdmin(["user", "add", "alice", "--password-file", alicePasswordFile]);
    assert.equal(added.code, 0, added.stderr);
    const describeCluster = await asAdmin(["acl", "add", "--principal", "User:alice", "--operation", "describe", "--resource", "cluster"]);
    assert.equal(describeCluster.code, 0, describeCluster.stderr);
  });

  after(async () => {
    await dev?.stop();
  });

  it("admin sets, lists and deletes a rule with `sluice flow` over HTTPS", async () => {
    const set = await asAdmin(["flow", "set", "--scope", "topic:x", "--limiter", "token-bucket", "--messages-per-second", "10"]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^set topic:x token-bucket .* on 1 broker/);

    const rule = (await listed(asAdmin)).brokers[0]?.rules.find((r) => r.scope === "topic:x");
    assert.ok(rule, "the rule is listed");
    assert.equal(rule.limiter, "token-bucket");
    assert.equal(rule.messagesPerSecond, 10);
    assert.equal(rule.source, "runtime");

    const deleted = await asAdmin(["flow", "delete", "--scope", "topic:x", "--limiter", "token-bucket"]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.deepEqual(scopes(await listed(asAdmin)), []);
  });

  it("the SDK's flow calls use the client's tls and credentials", async () => {
    const sluice = new Sluice({
      nameservers: [nameserver],
      requestTimeoutMs: 10_000,
      tls: { ca: certs.caCert },
      credentials: { username: "admin", password: ADMIN_PASSWORD },
    });
    try {
      const admin = sluice.admin();
      const [change] = await admin.setFlowRule({ scope: "client:batch-*", limiter: "concurrency", maxInFlight: 4 });
      assert.equal(change?.rule?.maxInFlight, 4);
      const [broker] = await admin.listFlowRules();
      assert.deepEqual(broker?.rules.map((r) => `${r.scope} ${r.limiter} ${r.source}`), ["client:batch-* concurrency runtime"]);
      await admin.deleteFlowRule("client:batch-*", "concurrency");
      assert.deepEqual((await admin.listFlowRules())[0]?.rules, []);
    } finally {
      await sluice.close();
    }
  });

  it("a user without admin on the cluster lists rules but is refused set and delete: NOT_AUTHORIZED, exit 1, one line", async () => {
    const set = await asAdmin(["flow", "set", "--scope", "topic:kept", "--limiter", "token-bucket", "--messages-per-second", "5"]);
    assert.equal(set.code, 0, set.stderr);
    // Listing needs describe on the cluster, which alice has: her credentials reach the broker.
    assert.deepEqual(scopes(await listed(asAlice)), ["topic:kept token-bucket"]);

    for (const args of [
      ["flow", "set", "--scope", "topic:x", "--limiter", "token-bucket", "--messages-per-second", "10"],
      ["flow", "delete", "--scope", "topic:kept", "--limiter", "token-bucket"],
    ]) {
      const refused = await asAlice(args);
      assert.equal(refused.code, 1, `${args.join(" ")}: ${refused.stderr}`);
      assert.equal(refused.stdout, "");
      const lines = refused.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, refused.stderr);
      // Refused by the broker's flow route (the name server let her list brokers).
      assert.match(lines[0] ?? "", /^sluice: .*failed on 1 of 1 brokers: .*User:alice may not .*cluster.* \[NOT_AUTHORIZED\]$/);
      assert.ok(!refused.stderr.includes(ALICE_PASSWORD));
    }
    assert.deepEqual(scopes(await listed(asAdmin)), ["topic:kept token-bucket"], "nothing changed");
  });
});
