/**
 * TLS material from files: what `--tls-cert`, `--tls-key` and `--tls-ca` name. Loaded once at
 * start and checked then (a key that does not match its certificate, a file that is not PEM),
 * so a misconfigured server refuses to start with the file's name instead of failing every
 * handshake later.
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { InvalidConfigError } from "../errors.js";

/** A server's TLS identity, and the CA its clients' certificates must chain to (mTLS). */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** When set, clients are asked for a certificate and a presented one must chain to it. */
  ca?: Buffer;
}

/** What a client needs: the CA that signed the servers, and its own certificate for mTLS. */
export interface ClientTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Name to verify the server certificate against, when it differs from the address's host. */
  serverName?: string;
}

export interface TlsFiles {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  caFile?: string | undefined;
}

function readPem(file: string, flag: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new InvalidConfigError(`${flag} ${file}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  if (!bytes.includes("-----BEGIN ")) throw new InvalidConfigError(`${flag} ${file}: not a PEM file (no "-----BEGIN" line)`);
  return bytes;
}

/** Server TLS from `--tls-cert/--tls-key/--tls-ca`; undefined when none is given. */
export function loadServerTls(files: TlsFiles): ServerTls | undefined {
  if (!files.certFile && !files.keyFile && !files.caFile) return undefined;
  if (!files.certFile || !files.keyFile) {
    throw new InvalidConfigError("TLS needs both --tls-cert and --tls-key (--tls-ca alone only makes sense for clients)");
  }
  const material: ServerTls = { cert: readPem(files.certFile, "--tls-cert"), key: readPem(files.keyFile, "--tls-key") };
  if (files.caFile) material.ca = readPem(files.caFile, "--tls-ca");
  try {
    createSecureContext(material);
  } catch (err) {
    throw new InvalidConfigError(
      `--tls-cert ${files.certFile} / --tls-key ${files.keyFile}: unusable (${(err as Error).message}); the key must be the certificate's`,
      { cause: err },
    );
  }
  return material;
}

/** Client TLS from `--tls-ca` (and `--tls-cert/--tls-key` for mTLS); undefined when none is given. */
export function loadClientTls(files: TlsFiles): ClientTls | undefined {
  if (!files.certFile && !files.keyFile && !files.caFile) return undefined;
  if (Boolean(files.certFile) !== Boolean(files.keyFile)) {
    throw new InvalidConfigError("a client certificate needs both --tls-cert and --tls-key");
  }
  const material: ClientTls = {};
  if (files.caFile) material.ca = readPem(files.caFile, "--tls-ca");
  if (files.certFile && files.keyFile) {
    material.cert = readPem(files.certFile, "--tls-cert");
    material.key = readPem(files.keyFile, "--tls-key");
  }
  return material;
}
