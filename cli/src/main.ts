/**
 * The `sluice` command line. Global flags: --nameserver (env SLUICE_NAMESERVER) and --json
 * (exactly one JSON document on stdout). Exit 0 only on full success.
 */
import { Command, Option } from "commander";
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
import { EXIT_USAGE, reportError, type GlobalOptions } from "./output.js";

const program = new Command();
program
  .name("sluice")
  .description("Sluice message broker: servers, topics, produce, consume and benchmarks")
  .version("0.1.0")
  .addOption(
    new Option("--nameserver <addresses>", "name servers, host:port[,host:port...]")
      .env("SLUICE_NAMESERVER")
      .default("127.0.0.1:9876"),
  )
  .option("--json", "print exactly one JSON document on stdout", false)
  .enablePositionalOptions(false)
  .showHelpAfterError()
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  });

const globals = (): GlobalOptions => {
  const o = program.opts<{ nameserver: string; json: boolean }>();
  return { nameserver: o.nameserver, json: o.json === true };
};

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

// Option parsers (parseInteger) throw while commander parses, outside any action's error
// handling: report those as one line too, never as a stack trace.
try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = reportError(err);
}
