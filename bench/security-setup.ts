/**
 * What the security runs (issue #8) need around a `sluice dev`: development certificates, the
 * password files of `admin` and of `alice` (a user with ACLs), the server and client flags that
 * use them, and alice's user and ACLs, created through the CLI as a user would.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT, runCli, type CliRun, type DevServer } from "./processes.js";

const run = promisify(execFile);

const MAKE_CERTS_SCRIPT = join(REPO_ROOT, "ops", "tls", "make-dev-certs.sh");
const MAKE_CERTS_TIMEOUT_MS = 30_000;
const ADMIN_CALL_TIMEOUT_MS = 30_000;
/** Brokers learn ACL changes through WatchSecurity within a second; allow for a loaded box. */
const ACL_PROPAGATION_TIMEOUT_MS = 20_000;
const ACL_PROBE_PAUSE_MS = 500;
/** The error codes a probe sees while the broker has not yet learned of alice or her ACLs. */
const STILL_PROPAGATING = /\[(NOT_AUTHORIZED|AUTHENTICATION_FAILED)\]/;
/** The smallest produce the bench client runs (plan.ts MIN_MESSAGES): proves alice may produce. */
const ACL_PROBE_MESSAGES = 1_000;
/** The ACL'd user of the runs, and the topics it may write: every bench topic is `bench-…`. */
export const ACL_USER = "alice";
export const ACL_TOPIC_PATTERN = "topic:bench*";

export interface SecurityFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** First line: the password; mode 0600, as a server expects of a secret. */
  adminPasswordFile: string;
  alicePasswordFile: string;
}

/** A random password in a file only its owner may read. */
function writePasswordFile(path: string): void {
  writeFileSync(path, `${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
}

/** Makes certificates (ops/tls/make-dev-certs.sh) and both password files under `dir`. */
export async function prepareSecurityFiles(dir: string): Promise<SecurityFiles> {
  const certs = join(dir, "certs");
  try {
    await run("bash", [MAKE_CERTS_SCRIPT, certs], { cwd: REPO_ROOT, timeout: MAKE_CERTS_TIMEOUT_MS });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? "";
    throw new Error(`${MAKE_CERTS_SCRIPT} ${certs} failed: ${(err as Error).message.split("\n")[0]} ${stderr.trim()}`);
  }
  const files: SecurityFiles = {
    caFile: join(certs, "ca.crt"),
    certFile: join(certs, "server.crt"),
    keyFile: join(certs, "server.key"),
    adminPasswordFile: join(dir, "admin.password"),
    alicePasswordFile: join(dir, "alice.password"),
  };
  writePasswordFile(files.adminPasswordFile);
  writePasswordFile(files.alicePasswordFile);
  return files;
}

/** `sluice dev` flags of the secured server: TLS (with the CA, for mTLS), --auth, admin's password, probes left open. */
export function securedServerArgs(files: SecurityFiles): string[] {
  return [
    "--tls-cert", files.certFile, "--tls-key", files.keyFile, "--tls-ca", files.caFile,
    "--auth", "--admin-password-file", files.adminPasswordFile, "--open-metrics",
  ];
}

/** Global CLI flags of a client of the secured server, authenticated as `user`. */
export function clientFlagsAs(files: SecurityFiles, user: "admin" | "alice"): string[] {
  const passwordFile = user === "admin" ? files.adminPasswordFile : files.alicePasswordFile;
  return ["--tls-ca", files.caFile, "--user", user, "--password-file", passwordFile];
}

/** The line of a failed CLI call's stderr that says why (its error line, not the usage text or a warning). */
function whyFailed(result: CliRun): string {
  const lines = result.stderrTail.split("\n").map((line) => line.trim()).filter((line) => line !== "" && !/DeprecationWarning|--trace-deprecation/.test(line));
  return lines.find((line) => /^(sluice:|error:)/i.test(line)) ?? lines.pop() ?? (result.timedOut ? "timed out" : "no stderr");
}

/** One CLI call as the server's superuser (dev.cliFlags); throws with its stderr when it fails. */
async function asAdmin(dev: DevServer, args: string[]): Promise<void> {
  const result = await runCli([...dev.cliFlags, "--nameserver", dev.info.nameserver, ...args], { timeoutMs: ADMIN_CALL_TIMEOUT_MS });
  if (result.code !== 0) throw new Error(`sluice ${args.join(" ")} exited with ${result.code ?? "a signal"}: ${whyFailed(result)}`);
}

/**
 * Creates alice with `produce` and `describe` on every bench topic (`sluice user add`, `sluice
 * acl add`, as admin), then waits until the broker lets her produce: it learns ACLs through
 * WatchSecurity, so the name server knowing them is not enough. The probe is a small `bench
 * produce` as alice on a topic admin creates (she may not create topics) and deletes.
 */
export async function grantAlice(dev: DevServer, files: SecurityFiles): Promise<void> {
  await asAdmin(dev, ["user", "add", ACL_USER, "--password-file", files.alicePasswordFile]);
  for (const operation of ["produce", "describe"]) {
    await asAdmin(dev, ["acl", "add", "--principal", `User:${ACL_USER}`, "--operation", operation, "--resource", ACL_TOPIC_PATTERN]);
  }
  const probeTopic = `bench-acl-probe-${Date.now().toString(36)}`;
  await asAdmin(dev, ["topic", "create", probeTopic, "--partitions", "1"]);
  try {
    const probe = [
      ...clientFlagsAs(files, ACL_USER), "--nameserver", dev.info.nameserver, "--json",
      "bench", "produce", "--topic", probeTopic, "--messages", String(ACL_PROBE_MESSAGES), "--partitions", "1",
    ];
    const deadline = Date.now() + ACL_PROPAGATION_TIMEOUT_MS;
    for (;;) {
      const result = await runCli(probe, { timeoutMs: ADMIN_CALL_TIMEOUT_MS });
      if (result.code === 0) return;
      // Until the broker has the new snapshot it does not know alice (or her ACLs); anything
      // else (no connection, a bad flag) will not pass by waiting.
      const why = whyFailed(result);
      if (!STILL_PROPAGATING.test(why)) throw new Error(`${ACL_USER}'s first produce failed: ${why}`);
      if (Date.now() > deadline) {
        throw new Error(`${ACL_USER} still cannot produce to ${probeTopic} ${ACL_PROPAGATION_TIMEOUT_MS} ms after the ACLs were added: ${whyFailed(result)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, ACL_PROBE_PAUSE_MS));
    }
  } finally {
    await asAdmin(dev, ["topic", "delete", probeTopic]).catch((err: unknown) => {
      process.stderr.write(`bench: warning: could not delete topic ${probeTopic}: ${(err as Error).message}\n`);
    });
  }
}
