/**
 * The SDK client every data and admin command uses, built from the global flags: where the
 * cluster is (`--nameserver`), and how to reach it safely: TLS (`--tls-ca`, and `--tls-cert`
 * `--tls-key` for mutual TLS) and a password user (`--user`, `--password-file`). Secrets are
 * only ever read from files, and no message names more than the file.
 */
import { Sluice, type SluiceOptions } from "../../clients/src/index.js";
import { channelSecurity, parseCredentials, parseTlsOptions } from "../../clients/src/security-options.js";
import { InvalidConfigError } from "../../common/src/errors.js";
import { SecureChannels } from "../../common/src/grpc/channel-security.js";
import { readPasswordFile } from "../../common/src/security/password.js";
import { loadClientTls } from "../../common/src/security/tls-files.js";
import type { GlobalOptions } from "./output.js";

/** The global flags (or SLUICE_* variables) that say as whom and over what the CLI connects. */
export interface ConnectionFlags {
  /** `--user` / SLUICE_USER */
  user?: string | undefined;
  /** `--password-file` / SLUICE_PASSWORD_FILE: the caller's password, first line. */
  passwordFile?: string | undefined;
  /** `--tls-ca` / SLUICE_TLS_CA */
  tlsCa?: string | undefined;
  /** `--tls-cert` / SLUICE_TLS_CERT */
  tlsCert?: string | undefined;
  /** `--tls-key` / SLUICE_TLS_KEY */
  tlsKey?: string | undefined;
}

/**
 * What main.ts's `globals()` returns. Commands see it as GlobalOptions and hand it on whole
 * to `connect`/`withClient`, which read the connection flags from it.
 */
export type CliGlobals = GlobalOptions & ConnectionFlags;

/**
 * The SDK's `tls` and `credentials` for the connection flags, files read now. Throws
 * InvalidConfigError (exit 2) naming the flag and file: a user without a password file, a
 * password file without a user, an unreadable file, a file that is not PEM.
 */
export function callerSecurity(flags: ConnectionFlags): Pick<SluiceOptions, "tls" | "credentials"> {
  const out: Pick<SluiceOptions, "tls" | "credentials"> = {};
  const { user, passwordFile } = flags;
  if (user !== undefined && passwordFile === undefined) {
    throw new InvalidConfigError(`--user ${user} needs --password-file FILE (or SLUICE_PASSWORD_FILE): a file whose first line is the password`);
  }
  if (passwordFile !== undefined && user === undefined) {
    throw new InvalidConfigError(`--password-file ${passwordFile} needs --user NAME (or SLUICE_USER): the user whose password it holds`);
  }
  if (user !== undefined && passwordFile !== undefined) out.credentials = { username: user, password: readPasswordFile(passwordFile) };
  const tls = loadClientTls({ caFile: flags.tlsCa, certFile: flags.tlsCert, keyFile: flags.tlsKey });
  if (tls !== undefined) out.tls = tls;
  return out;
}

/** Channel security for the few commands that call a server without the SDK (`broker promote`). */
export function callerChannels(flags: ConnectionFlags): SecureChannels {
  const security = callerSecurity(flags);
  return new SecureChannels(channelSecurity(parseTlsOptions(security.tls), parseCredentials(security.credentials)));
}

export function connect(globals: CliGlobals, clientId = "sluice-cli"): Sluice {
  const nameservers = globals.nameserver.split(",").map((s) => s.trim()).filter(Boolean);
  return new Sluice({ nameservers, clientId, ...callerSecurity(globals) });
}

/** Runs `fn` with a client that is always closed afterwards. */
export async function withClient<T>(globals: CliGlobals, fn: (sluice: Sluice) => Promise<T>): Promise<T> {
  const sluice = connect(globals);
  try {
    return await fn(sluice);
  } finally {
    await sluice.close();
  }
}
