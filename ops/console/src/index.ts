/**
 * The admin REST API and web console that `sluice broker` and `sluice dev` mount on the
 * broker's HTTP port. They read the cluster through the SDK's admin client, so any broker
 * shows the whole cluster.
 */
import type { FastifyInstance } from "fastify";
import type { HttpPlugin } from "../../../common/src/http/server.js";

export interface AdminConsoleOptions {
  /** Name servers of the cluster this broker belongs to ("host:port"). */
  readonly nameservers: readonly string[];
  /** "group/id" of the broker serving the console, shown in its header. */
  readonly broker: string;
}

export function adminConsole(options: AdminConsoleOptions): HttpPlugin {
  return (app: FastifyInstance) => {
    app.get("/api/v1/whoami", async () => ({ broker: options.broker, nameservers: options.nameservers }));
  };
}
