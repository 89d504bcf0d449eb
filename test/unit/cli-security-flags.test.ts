/**
 * The CLI's connection flags: `--user`, `--password-file`, `--tls-ca`, `--tls-cert`,
 * `--tls-key` and their SLUICE_* variables (flags win), reaching the cluster from every kind of
 * command; the `user add --password-file` clash resolved both ways (after `add`: the new
 * user's; before `user` or in SLUICE_PASSWORD_FILE: the caller's); global flags still working
 * after the subcommand; and no password or key in help, output or errors.
 *
 * The CLI runs from source (tsx) against an in-process recording server, plain or TLS, which
 * keeps each call's Authorization header, client-certificate CN and request.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { Command } from "commander";
import { callerSecurity, type ConnectionFlags } from "../../cli/src/client.js";
import { addGlobalFlags, hoistGlobalFlags } from "../../cli/src/global-flags.js";
import type { SluiceError } from "../../common/src/errors.js";
import { devCertificates, type DevCerts } from "../helpers/tls.js";
import { RecordingServer } from "./clients-fake-recording-server.js";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(REPO_ROOT, "cli", "src", "main.ts");
const EXIT_USAGE = 2;

const ADMIN_PASSWORD = "admin-secret-password";
const ALICE_PASSWORD = "alice-secret-password";
const BOB_PASSWORD = "bobs-brand-new-password";
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `sluice <args>` from source, with only the SLUICE_* variables given here. */
function sluice(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("SLUICE_")));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
      cwd: REPO_ROOT,
      env: { ...base, SLUICE_LOG_LEVEL: "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/** A line from the middle of a PEM key. */
function keyLine(key: Buffer): string {
  const lines = key.toString("utf8").split("\n").filter((line) => line !== "" && !line.startsWith("-----"));
  return lines[Math.floor(lines.length / 2)] as string;
}

function assertNoSecret(run: Run, secrets: string[]): void {
  for (const secret of secrets) {
    assert.ok(!run.stdout.includes(secret) && !run.stderr.includes(secret), `a secret shows in the output:\n${run.stdout}\n${run.stderr}`);
  }
}

describe("global flags on the command line", () => {
  /** The shape of the real program: a clashing `user add` flag, a parent command with flags of its own. */
  function program(seen: Record<string, unknown>): Command {
    const p = addGlobalFlags(new Command().name("sluice")).exitOverride();
    p.command("user").command("add <name>").requiredOption("--password-file <file>").action((_name: string, flags: Record<string, unknown>) => {
      seen.newUserFile = flags.passwordFile;
    });
    p.command("topic").command("create <name>").option("--partitions <n>").action(() => undefined);
    // As a server command may: its own --tls-ca (its peers' CA), and a subcommand.
    const broker = p.command("broker").option("--name <group>").option("--tls-ca <file>").action(() => undefined);
    broker.command("promote").option("--id <n>").action(() => undefined);
    return p.enablePositionalOptions(true);
  }
  const hoist = (args: string[]): string[] => hoistGlobalFlags(program({}), args);

  it("moves global flags written after a subcommand to before it, keeping everything else in place", () => {
    assert.deepEqual(hoist(["topic", "create", "orders", "--partitions", "3", "--json", "--nameserver", "h:1"]), [
      "--json", "--nameserver", "h:1", "topic", "create", "orders", "--partitions", "3",
    ]);
    assert.deepEqual(hoist(["--user", "a", "topic", "create", "--tls-ca=ca.crt", "x"]), ["--user", "a", "--tls-ca=ca.crt", "topic", "create", "x"]);
    assert.deepEqual(hoist(["topic", "create", "x", "--nameserver", "topic"]), ["--nameserver", "topic", "topic", "create", "x"]);
    assert.deepEqual(hoist(["--nameserver", "user", "topic", "create", "x"]), ["--nameserver", "user", "topic", "create", "x"]);
    assert.deepEqual(hoist(["topic", "create", "x", "--", "--json"]), ["topic", "create", "x", "--", "--json"]);
    assert.deepEqual(hoist(["nonsense", "--json"]), ["nonsense", "--json"]);
  });

  it("leaves a flag with a command on the way when that command declares it", () => {
    assert.deepEqual(hoist(["user", "add", "bob", "--password-file", "bob.pw", "--user", "admin"]), [
      "--user", "admin", "user", "add", "bob", "--password-file", "bob.pw",
    ]);
    assert.deepEqual(hoist(["broker", "--tls-ca", "peers.crt", "promote", "--tls-cert", "c.crt", "--id", "1"]), [
      "--tls-cert", "c.crt", "broker", "--tls-ca", "peers.crt", "promote", "--id", "1",
    ]);
  });

  it("gives `user add --password-file` to the new user and the one before `user` to the caller", async () => {
    const seen: Record<string, unknown> = {};
    const p = program(seen);
    await p.parseAsync(hoistGlobalFlags(p, ["--user", "admin", "--password-file", "admin.pw", "user", "add", "bob", "--password-file", "bob.pw"]), { from: "user" });
    assert.equal(seen.newUserFile, "bob.pw");
    assert.equal(p.opts().passwordFile, "admin.pw");
    assert.equal(p.opts().user, "admin");
  });
});

describe("sluice --user / --password-file / --tls-* against a server", () => {
  let certs: DevCerts;
  let plain: RecordingServer;
  let secure: RecordingServer;
  let dir: string;
  const files = { admin: "", alice: "", bob: "", missing: "" };

  before(async () => {
    certs = await devCertificates();
    dir = mkdtempSync(join(tmpdir(), "sluice-cli-security-"));
    for (const [name, password] of [["admin", ADMIN_PASSWORD], ["alice", ALICE_PASSWORD], ["bob", BOB_PASSWORD]] as const) {
      files[name] = join(dir, `${name}.pw`);
      writeFileSync(files[name], `${password}\n`, { mode: 0o600 });
    }
    files.missing = join(dir, "missing.pw");
    plain = await new RecordingServer().start();
    secure = await new RecordingServer().start({ cert: certs.server.cert, key: certs.server.key, ca: certs.caCert });
  });
  after(() => {
    plain?.stop();
    secure?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("takes the user from SLUICE_USER and SLUICE_PASSWORD_FILE, and flags over them", async () => {
    plain.calls.length = 0;
    const env = { SLUICE_USER: "alice", SLUICE_PASSWORD_FILE: files.alice, SLUICE_NAMESERVER: plain.address };
    const [fromEnv, fromFlags] = await Promise.all([
      sluice(["user", "list", "--json"], env),
      sluice(["cluster", "--json", "--user", "admin", "--password-file", files.admin], env),
    ]);
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    assert.equal(fromFlags.code, 0, fromFlags.stderr);
    assert.deepEqual(plain.callsTo("ListUsers").map((c) => c.authorization), [basic("alice", ALICE_PASSWORD)]);
    assert.deepEqual(plain.callsTo("ListBrokers").map((c) => c.authorization), [basic("admin", ADMIN_PASSWORD)]);
    assertNoSecret(fromEnv, [ALICE_PASSWORD]);
    assertNoSecret(fromFlags, [ALICE_PASSWORD, ADMIN_PASSWORD]);
  });

  it("connects over TLS with SLUICE_TLS_*, the flags winning, a client certificate included", async () => {
    secure.calls.length = 0;
    const badEnv = { SLUICE_TLS_CA: files.missing, SLUICE_NAMESERVER: secure.address };
    const mtlsEnv = {
      SLUICE_TLS_CA: certs.ca,
      SLUICE_TLS_CERT: certs.clients.alice.certPath,
      SLUICE_TLS_KEY: certs.clients.alice.keyPath,
      SLUICE_NAMESERVER: secure.address,
    };
    const [flagWins, mtls] = await Promise.all([
      sluice(["topic", "describe", "t", "--tls-ca", certs.ca, "--json"], badEnv),
      sluice(["cluster", "--json"], mtlsEnv),
    ]);
    assert.equal(flagWins.code, 0, flagWins.stderr);
    assert.equal(JSON.parse(flagWins.stdout).partitions[0].endOffset, 5);
    // Not even Node's DEP0123 (grpc-js sends the IP address as the TLS server name).
    assert.equal(flagWins.stderr, "");
    assert.equal(mtls.code, 0, mtls.stderr);
    assert.equal(JSON.parse(mtls.stdout).brokers[0].group, "b1");
    assert.ok(secure.callsTo("DescribePartitions").length > 0, "the broker channel is TLS too");
    assert.deepEqual(secure.callsTo("ListBrokers").map((c) => c.commonName), ["alice"]);
    assertNoSecret(mtls, [keyLine(certs.clients.alice.key)]);
  });

  it("user add: --password-file after `add` is the new user's, the caller's comes before `user` or from the environment", async () => {
    plain.calls.length = 0;
    const [before, fromEnv] = await Promise.all([
      sluice(["--user", "admin", "--password-file", files.admin, "user", "add", "bob", "--password-file", files.bob, "--nameserver", plain.address, "--json"]),
      sluice(["user", "add", "carol", "--password-file", files.bob, "--json"], {
        SLUICE_USER: "admin",
        SLUICE_PASSWORD_FILE: files.admin,
        SLUICE_NAMESERVER: plain.address,
      }),
    ]);
    assert.equal(before.code, 0, before.stderr);
    assert.equal(fromEnv.code, 0, fromEnv.stderr);
    const created = plain.callsTo("CreateUser").map((c) => ({ ...(c.request as { name: string; password: string }), authorization: c.authorization }));
    created.sort((a, b) => a.name.localeCompare(b.name));
    assert.deepEqual(
      created.map(({ name, password, authorization }) => ({ name, password, authorization })),
      [
        { name: "bob", password: BOB_PASSWORD, authorization: basic("admin", ADMIN_PASSWORD) },
        { name: "carol", password: BOB_PASSWORD, authorization: basic("admin", ADMIN_PASSWORD) },
      ],
    );
    assert.deepEqual(JSON.parse(before.stdout), { user: "bob", superuser: false, created: true });
    assertNoSecret(before, [ADMIN_PASSWORD, BOB_PASSWORD]);
    assertNoSecret(fromEnv, [ADMIN_PASSWORD, BOB_PASSWORD]);
  });

  it("user add: neither password file stands in for the other", async () => {
    plain.calls.length = 0;
    const [noNewPassword, noCallerPassword] = await Promise.all([
      sluice(["--user", "admin", "--password-file", files.admin, "user", "add", "bob", "--nameserver", plain.address]),
      sluice(["user", "add", "bob", "--password-file", files.bob, "--user", "admin", "--nameserver", plain.address]),
    ]);
    assert.equal(noNewPassword.code, EXIT_USAGE);
    assert.match(noNewPassword.stderr, /required option '--password-file <file>' not specified/);
    assert.equal(noCallerPassword.code, EXIT_USAGE);
    assert.match(noCallerPassword.stderr, /^sluice: --user admin needs --password-file FILE \(or SLUICE_PASSWORD_FILE\)/);
    assert.equal(noCallerPassword.stderr.trim().split("\n").length, 1, "a one-line error");
    assert.equal(plain.callsTo("CreateUser").length, 0);
  });

  it("commands that make their own clients (broker promote, bench) use the caller's TLS and credentials", async () => {
    secure.calls.length = 0;
    const caller = ["--tls-ca", certs.ca, "--user", "admin", "--password-file", files.admin, "--nameserver", secure.address];
    const [promote, bench] = await Promise.all([
      sluice(["broker", "promote", "--name", "b1", "--id", "1", ...caller, "--json"]),
      // The fake has no Produce: the run fails there, after its admin calls and the broker handshake.
      sluice([...caller, "bench", "produce", "--topic", "t", "--messages", "10", "--size", "10", "--json"]),
    ]);
    assert.equal(promote.code, 0, promote.stderr);
    assert.deepEqual(JSON.parse(promote.stdout), { group: "b1", master: 1, epoch: 2, address: secure.address });
    assert.match(bench.stderr, /UNIMPLEMENTED/);
    for (const method of ["PromoteBroker", "ListTopics", "Handshake"]) {
      assert.deepEqual(secure.callsTo(method).map((c) => c.authorization), [basic("admin", ADMIN_PASSWORD)], method);
    }
    assertNoSecret(promote, [ADMIN_PASSWORD]);
    assertNoSecret(bench, [ADMIN_PASSWORD]);
  });

  it("refuses bad connection flags naming the flag and file, never the content", () => {
    const refused: [ConnectionFlags, RegExp][] = [
      [{ user: "alice" }, /^--user alice needs --password-file FILE \(or SLUICE_PASSWORD_FILE\)/],
      [{ passwordFile: files.alice }, /^--password-file \S+alice\.pw needs --user NAME \(or SLUICE_USER\)/],
      [{ user: "alice", passwordFile: files.missing }, /^cannot read the password file \S+missing\.pw \(ENOENT\)/],
      // A password file given where a certificate belongs: named, not shown.
      [{ tlsCa: files.alice }, /^--tls-ca \S+alice\.pw: not a PEM file/],
      [{ tlsCert: certs.clients.alice.certPath }, /^a client certificate needs both --tls-cert and --tls-key/],
    ];
    for (const [flags, pattern] of refused) {
      assert.throws(() => callerSecurity(flags), (err: SluiceError) => {
        assert.equal(err.code, "INVALID_CONFIG");
        assert.match(err.message, pattern);
        assert.ok(!err.message.includes(ALICE_PASSWORD));
        return true;
      });
    }
    const security = callerSecurity({ user: "alice", passwordFile: files.alice, tlsCa: certs.ca });
    assert.deepEqual(security.credentials, { username: "alice", password: ALICE_PASSWORD });
    assert.deepEqual((security.tls as { ca: Buffer }).ca, certs.caCert);
  });

  it("prints such a refusal as one line on stderr and exits 2", async () => {
    const run = await sluice(["topic", "list", "--user", "alice", "--password-file", files.missing, "--nameserver", plain.address]);
    assert.equal(run.code, EXIT_USAGE);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /^sluice: cannot read the password file \S+missing\.pw \(ENOENT\); give a readable file whose first line is the password \[INVALID_CONFIG\]\n$/);
  });

  it("help lists the flags and their variables and shows no secret, even with the variables set", async () => {
    const env = { SLUICE_USER: "alice", SLUICE_PASSWORD_FILE: files.alice, SLUICE_TLS_KEY: certs.clients.alice.keyPath };
    const [main, userAdd] = await Promise.all([sluice(["--help"], env), sluice(["user", "add", "--help"], env)]);
    assert.equal(main.code, 0);
    for (const text of ["--user <name>", "--password-file <file>", "--tls-ca <file>", "--tls-cert <file>", "--tls-key <file>", "SLUICE_USER", "SLUICE_PASSWORD_FILE", "SLUICE_TLS_CA"]) {
      assert.ok(main.stdout.includes(text), `--help mentions ${text}`);
    }
    assert.equal(userAdd.code, 0);
    assert.match(userAdd.stdout, /--password-file <file>\s+file whose first line is the NEW user's password/);
    for (const run of [main, userAdd]) assertNoSecret(run, [ALICE_PASSWORD, keyLine(certs.clients.alice.key)]);
  });
});
