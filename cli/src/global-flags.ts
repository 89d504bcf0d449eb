/**
 * The CLI's global flags, and where they may stand on the command line.
 *
 * Global flags (`--nameserver`, `--json`, `--user`, `--password-file`, `--tls-*`) work
 * anywhere: `sluice --json topic list` and `sluice topic list --json` are the same. A
 * command may also declare a flag of the same name for its own meaning, and then the flag
 * belongs to the command when it stands after the command's name:
 *
 *   sluice --user admin --password-file admin.pw user add bob --password-file bob.pw
 *          └────── the caller (global) ─────────┘            └── bob's (user add's) ──┘
 *
 * Commander has no notion of global options: without positional options a program takes its
 * known options wherever they stand (so `user add` would never see its `--password-file`),
 * and with them it stops at the subcommand (so `topic list --json` would fail). So the
 * program parses positionally, and `hoistGlobalFlags` first moves each global flag found
 * after a subcommand name, and not declared by a command on the way to it, to before the
 * first subcommand name. Everything else keeps its place and order.
 */
import { Option, type Command } from "commander";
import type { CliGlobals } from "./client.js";

export const DEFAULT_NAMESERVER = "127.0.0.1:9876";

/** Declares the global flags on `program`. No help text shows a secret: only file names are taken. */
export function addGlobalFlags(program: Command): Command {
  return program
    .addOption(new Option("--nameserver <addresses>", "name servers, host:port[,host:port...]").env("SLUICE_NAMESERVER").default(DEFAULT_NAMESERVER))
    .option("--json", "print exactly one JSON document on stdout", false)
    .addOption(new Option("--user <name>", "authenticate as this password user (needs --password-file)").env("SLUICE_USER"))
    .addOption(
      new Option("--password-file <file>", "file whose first line is --user's password (never a flag: it would show in ps and shell history)").env(
        "SLUICE_PASSWORD_FILE",
      ),
    )
    .addOption(new Option("--tls-ca <file>", "connect over TLS, trusting the servers' certificates signed by this CA (PEM)").env("SLUICE_TLS_CA"))
    .addOption(new Option("--tls-cert <file>", "client certificate for mutual TLS (PEM; needs --tls-key)").env("SLUICE_TLS_CERT"))
    .addOption(new Option("--tls-key <file>", "private key of --tls-cert (PEM)").env("SLUICE_TLS_KEY"));
}

/** The global flags as parsed (flags win over environment variables, commander's rule). */
export function readGlobals(program: Command): CliGlobals {
  const o = program.opts<{ nameserver: string; json: boolean; user?: string; passwordFile?: string; tlsCa?: string; tlsCert?: string; tlsKey?: string }>();
  return {
    nameserver: o.nameserver,
    json: o.json === true,
    user: o.user,
    passwordFile: o.passwordFile,
    tlsCa: o.tlsCa,
    tlsCert: o.tlsCert,
    tlsKey: o.tlsKey,
  };
}

/**
 * `args` (argv without node and the script) with every global flag that stands after a
 * subcommand name moved before the first one, unless a command between the program and that
 * point declares the same flag (then it is the command's). Stops at `--`.
 */
export function hoistGlobalFlags(program: Command, args: readonly string[]): string[] {
  const kept: string[] = [];
  const hoisted: string[] = [];
  /** Commands named so far, program excluded, innermost last. */
  const path: Command[] = [];
  let firstCommandAt = -1;
  let operandsStarted = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--") {
      kept.push(...args.slice(i));
      break;
    }
    if (arg.length > 1 && arg.startsWith("-")) {
      const flag = arg.startsWith("--") && arg.includes("=") ? arg.slice(0, arg.indexOf("=")) : arg;
      const owner = [...path].reverse().find((command) => findOption(command, flag)) ?? (findOption(program, flag) ? program : undefined);
      const option = owner === undefined ? undefined : findOption(owner, flag);
      const tokens = [arg];
      if (option !== undefined && flag === arg && takesNextArgument(option, args[i + 1])) tokens.push(args[++i] as string);
      if (owner === program && path.length > 0) hoisted.push(...tokens);
      else kept.push(...tokens);
      continue;
    }
    const current = path.at(-1) ?? program;
    const sub = operandsStarted ? undefined : current.commands.find((c) => c.name() === arg || c.aliases().includes(arg));
    if (sub !== undefined) {
      if (firstCommandAt < 0) firstCommandAt = kept.length;
      path.push(sub);
    } else {
      operandsStarted = true;
    }
    kept.push(arg);
  }
  if (hoisted.length === 0 || firstCommandAt < 0) return kept;
  return [...kept.slice(0, firstCommandAt), ...hoisted, ...kept.slice(firstCommandAt)];
}

function findOption(command: Command, flag: string): Option | undefined {
  return command.options.find((option) => option.long === flag || option.short === flag);
}

/** Commander's rule: a required value is the next argument; an optional one unless it looks like a flag. */
function takesNextArgument(option: Option, next: string | undefined): boolean {
  if (next === undefined) return false;
  if (option.required) return true;
  return option.optional && !(next.length > 1 && next.startsWith("-"));
}
