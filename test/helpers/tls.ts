/**
 * Development certificates for tests, made by the same script users run
 * (`ops/tls/make-dev-certs.sh --test-extras`), so the tests exercise what ships.
 *
 * The script runs at most once per test process, into a temporary directory removed when the
 * process exits; every caller of `devCertificates()` shares the one promise. A run takes about
 * 0.2 s (EC P-256 keys), so a test file pays for it once and only if it asks.
 *
 *   const certs = await devCertificates();
 *   tls.createServer({ cert: certs.server.cert, key: certs.server.key, ca: certs.caCert, requestCert: true });
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The script, found from this file so tests work from any working directory. */
export const MAKE_DEV_CERTS_SCRIPT = fileURLToPath(new URL("../../ops/tls/make-dev-certs.sh", import.meta.url));

/** Generous: the run is ~0.2 s, but the suite shares two cores with other test files. */
const MAKE_DEV_CERTS_TIMEOUT_MS = 30_000;

/** A certificate and its private key, as files and as the PEM bytes Node's TLS options take. */
export interface CertAndKey {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly certPath: string;
  readonly keyPath: string;
}

export interface DevCerts {
  /** The directory holding every file below. */
  readonly dir: string;
  /** Path of the development CA certificate (`ca.crt`), for `--tls-ca`. */
  readonly ca: string;
  /** The CA certificate's PEM bytes, for `ca:` in TLS options. */
  readonly caCert: Buffer;
  /** Shared by every broker and name server: SAN localhost, 127.0.0.1, ::1; serverAuth + clientAuth. */
  readonly server: CertAndKey;
  /** Client certificates CN=admin and CN=alice (clientAuth), signed by the CA. */
  readonly clients: { readonly admin: CertAndKey; readonly alice: CertAndKey };
  /** CN=alice, signed by the CA, valid only on 1 January 2020: refused as CERT_HAS_EXPIRED. */
  readonly expired: CertAndKey;
  /** CN=alice, signed by a CA nobody trusts: refused as an unknown issuer. */
  readonly untrusted: CertAndKey;
}

let made: Promise<DevCerts> | undefined;

/** The development certificates of this test process, made on first call. */
export function devCertificates(): Promise<DevCerts> {
  made ??= makeDevCertificates();
  return made;
}

async function makeDevCertificates(): Promise<DevCerts> {
  const dir = mkdtempSync(join(tmpdir(), "sluice-tls-"));
  // "exit" rather than node:test's after(): the certificates outlive any one test file's hooks.
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  await runScript([dir, "--test-extras"]);
  const pair = (name: string): CertAndKey => {
    const certPath = join(dir, `${name}.crt`);
    const keyPath = join(dir, `${name}.key`);
    return { cert: readFileSync(certPath), key: readFileSync(keyPath), certPath, keyPath };
  };
  const ca = join(dir, "ca.crt");
  return {
    dir,
    ca,
    caCert: readFileSync(ca),
    server: pair("server"),
    clients: { admin: pair("admin"), alice: pair("alice") },
    expired: pair("expired"),
    untrusted: pair("untrusted"),
  };
}

function runScript(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(MAKE_DEV_CERTS_SCRIPT, args, { timeout: MAKE_DEV_CERTS_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`${MAKE_DEV_CERTS_SCRIPT} ${args.join(" ")} failed: ${error.message}\n${stderr}`));
      else resolve();
    });
  });
}

/** Writes a password file (first line, mode 0600) as `--password-file` and `--admin-password-file` read it. */
export function writePasswordFile(dir: string, name: string, password: string): string {
  const path = join(dir, name);
  writeFileSync(path, password + "\n", { mode: 0o600 });
  return path;
}

/** The flags of a server with TLS from the dev CA and `--auth`; probes and /metrics left open. */
export function secureServerFlags(certs: DevCerts, adminPasswordFile: string): string[] {
  return [
    "--tls-cert", certs.server.certPath, "--tls-key", certs.server.keyPath, "--tls-ca", certs.ca,
    "--auth", "--admin-password-file", adminPasswordFile, "--open-metrics",
  ];
}
