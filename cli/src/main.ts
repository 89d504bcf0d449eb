/**
 * The `sluice` command line. Global flags (global-flags.ts; anywhere on the line): --nameserver
 * (env SLUICE_NAMESERVER), --json (exactly one JSON document on stdout), and how to connect:
 * --user, --password-file, --tls-ca, --tls-cert, --tls-key (env SLUICE_USER,
 * SLUICE_PASSWORD_FILE, SLUICE_TLS_CA, SLUICE_TLS_CERT, SLUICE_TLS_KEY; flags win).
 * Exit 0 only on full success.
 */
import { Command } from "commander";
import type { CliGlobals } from "./client.js";
import { benchCommand } from "./commands/bench.js";
import { clusterCommand } from "./commands/cluster.js";
import { consumeCommand } from "./commands/consume.js";
import { dlqCommands } from "./commands/dlq.js";
import { flowCommand } from "./commands/flow.js";
import { groupCommands } from "./commands/group.js";
import { messageCommands } from "./commands/message.js";
import { produceCommand } from "./commands/produce.js";
import { securityCommands } from "./commands/security.js";
import { serverCommands } from "./commands/servers.js";
import { topicCommands } from "./commands/topic.js";
import { addGlobalFlags, hoistGlobalFlags, readGlobals } from "./global-flags.js";
import { EXIT_USAGE, reportError } from "./output.js";

// grpc-js sends the target's host as the TLS server name (SNI) even when it is an IP address,
// and Node flags that with DEP0123, two lines on stderr on every TLS run against
// `--nameserver 127.0.0.1:…`. The certificate is still checked against the address; the
// warning says nothing a user can act on. Every other warning is printed as before.
const printWarning = process.listeners("warning");
process.removeAllListeners("warning");
process.on("warning", (warning: Error & { code?: string }) => {
  if (warning.code !== "DEP0123") for (const print of printWarning) print(warning);
});

const program = new Command();
addGlobalFlags(
  program
    .name("sluice")
    .description("Sluice message broker: servers, topics, produce, consume and benchmarks")
    .version("0.1.0"),
)
  // Subcommands inherit this (off): a command with subcommands of its own (broker promote)
  // still takes its options wherever they stand. The program itself turns positional below.
  .enablePositionalOptions(false)
  .showHelpAfterError()
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  });

const globals = (): CliGlobals => readGlobals(program);

serverCommands(program, globals);
topicCommands(program, globals);
produceCommand(program, globals);
consumeCommand(program, globals);
messageCommands(program, globals);
groupCommands(program, globals);
dlqCommands(program, globals);
clusterCommand(program, globals);
flowCommand(program, globals);
securityCommands(program, globals);
benchCommand(program, globals);

// The program's own options end at the subcommand's name, so a command's flag that shares a
// global flag's name (`user add --password-file`) is the command's; global flags written after
// the subcommand are moved before it first (global-flags.ts).
program.enablePositionalOptions(true);

// Option parsers (parseInteger) throw while commander parses, outside any action's error
// handling: report those as one line too, never as a stack trace.
try {
  await program.parseAsync(hoistGlobalFlags(program, process.argv.slice(2)), { from: "user" });
} catch (err) {
  process.exitCode = reportError(err);
}
