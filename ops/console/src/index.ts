/**
 * The admin REST API (/api/v1/…) and web console (/console) that `sluice broker` and
 * `sluice dev` mount on the broker's HTTP port. They read the cluster through the SDK's
 * admin client, so any broker shows the whole cluster. /docs/json (common/src/http) lists
 * every route with its schemas.
 *
 * Security: the HTTP server authenticates every request (401 with a Basic challenge, which
 * makes browsers prompt for the console); each route then checks the caller's ACLs (403
 * NOT_AUTHORIZED) before its client reads or changes anything. The client itself talks to
 * the cluster with the credentials in `client` (the broker's own, `admin`, with --auth), so
 * what a caller sees is decided here, by the caller's ACLs, not by the client's.
 */
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import type { HttpPlugin } from "../../../common/src/http/server.js";
import { silentLogger, type Logger } from "../../../common/src/logger.js";
import { Sluice, type Admin, type SluiceOptions } from "../../../clients/src/index.js";
import { readEndOffsets } from "./cluster-reads.js";
import { registerClusterRoutes } from "./cluster-routes.js";
import { registerGroupRoutes } from "./group-routes.js";
import { ThroughputSampler } from "./throughput.js";
import { registerTopicRoutes } from "./topic-routes.js";
import { WEB_FOLDER, findPackageRoot, registerConsoleFiles } from "./web-files.js";

export interface AdminConsoleOptions {
  /** Name servers of the cluster this broker belongs to ("host:port"). */
  readonly nameservers: readonly string[];
  /** "group/id" of the broker serving the console, shown in its header. */
  readonly broker: string;
  /** For the throughput sampler's failed readings (debug). @defaultValue a silent logger */
  readonly logger?: Logger;
  /**
   * More options of the console's client (TLS, credentials for a cluster with --auth);
   * nameservers, clientId, requestTimeoutMs and logger are the console's own.
   * @defaultValue none
   */
  readonly client?: SluiceOptions;
}

export const CONSOLE_CLIENT_ID = "sluice-console";
/**
 * An API call gives up after this, retries included: a console refreshing every 2 s is
 * better served by an error it can show than by an answer 30 s (the SDK default) late.
 */
export const CONSOLE_REQUEST_TIMEOUT_MS = 10_000;

export function adminConsole(options: AdminConsoleOptions): HttpPlugin {
  const logger = options.logger ?? silentLogger;
  return (app: FastifyInstance) => {
    // One client for all requests, made on first use: a broker whose console nobody opens
    // never connects to its own cluster as a client.
    let sluice: Sluice | undefined;
    const admin = (): Admin => {
      sluice ??= new Sluice({
        ...options.client,
        nameservers: [...options.nameservers],
        clientId: CONSOLE_CLIENT_ID,
        requestTimeoutMs: CONSOLE_REQUEST_TIMEOUT_MS,
        logger,
      });
      return sluice.admin();
    };
    const sampler = new ThroughputSampler({
      readEndOffsets: () => readEndOffsets(admin()),
      onError: (err) => logger.debug({ err: (err as Error).message }, "throughput reading failed"),
    });

    registerClusterRoutes(app, { admin, broker: options.broker, sampler });
    registerTopicRoutes(app, { admin });
    registerGroupRoutes(app, { admin });
    registerConsoleFiles(app, join(findPackageRoot(import.meta.url), WEB_FOLDER));

    app.addHook("onClose", async () => {
      sampler.stop();
      await sluice?.close();
    });
  };
}
