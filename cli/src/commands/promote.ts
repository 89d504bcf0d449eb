/**
 * `sluice broker promote --name GROUP --id N [--force]`: makes broker N its group's master at the
 * next epoch, through a name server's PromoteBroker (over etcd it rewrites the group record;
 * without etcd it calls the broker's Promote). Prints the new master and its epoch.
 *
 * `--name`, `--id` and `--cluster` are also `sluice broker`'s flags and commander hands them to
 * the parent command wherever they stand, so they are read from the merged options. So are the
 * connection flags (`--user`, `--password-file`, `--tls-*`): global, or `sluice broker`'s own
 * TLS flags when written after `broker`.
 */
import { Metadata } from "@grpc/grpc-js";
import type { Command } from "commander";
import { InvalidArgumentError, SluiceError } from "../../../common/src/errors.js";
import { fromServiceError } from "../../../common/src/grpc/errors.js";
import { PROTOCOL_VERSION } from "../../../common/src/protocol.js";
import type { SecureChannels } from "../../../common/src/grpc/channel-security.js";
import { NameServerClient, type GroupMaster, type PromoteBrokerRequest } from "../../../proto/gen/sluice/v1/nameserver.js";
import { callerChannels, type ConnectionFlags } from "../client.js";
import { action, emit, type GlobalOptions } from "../output.js";

/** Long enough for the name server's own call to the promoted broker (5 s). */
const PROMOTE_TIMEOUT_MS = 10_000;

export function promoteCommand(broker: Command, globals: () => GlobalOptions): void {
  broker
    .command("promote")
    .description("make broker --id of group --name the master at the next epoch (hand failover; over etcd too)")
    .option("--name <group>", "broker group name")
    .option("--id <n>", "id of the broker to promote")
    .option("--force", "promote even a slave outside the in-sync set (it may lack acknowledged messages)")
    .option("--cluster <name>", "cluster of the group, when several share the name servers")
    .action(
      action(async (_flags: unknown, command: Command) => {
        const o = command.optsWithGlobals<Record<string, unknown>>();
        const group = typeof o.name === "string" ? o.name : "";
        if (group === "") throw new InvalidArgumentError("--name is required: the broker group whose master changes");
        const brokerId = Number(o.id);
        if (o.id === undefined || !Number.isSafeInteger(brokerId) || brokerId < 0) {
          throw new InvalidArgumentError(`--id is required: the id of the broker to promote (an integer ≥ 0), got ${String(o.id)}`);
        }
        const g = globals();
        const request: PromoteBrokerRequest = {
          header: { clientId: "sluice-cli", protocolVersion: PROTOCOL_VERSION },
          group,
          brokerId,
          force: o.force === true,
          cluster: typeof o.cluster === "string" ? o.cluster : "",
        };
        const channels = callerChannels(connectionFlags(o));
        const master = await promoteThroughAny(g.nameserver.split(",").map((s) => s.trim()).filter(Boolean), request, channels);
        const result = { group, master: master.brokerId, epoch: master.epoch, address: master.address };
        emit(g.json, result, () => `${group}/${master.brokerId} is master of group ${group} at epoch ${master.epoch} (${master.address})\n`);
      }),
    );
}

function connectionFlags(o: Record<string, unknown>): ConnectionFlags {
  const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);
  return { user: text(o.user), passwordFile: text(o.passwordFile), tlsCa: text(o.tlsCa), tlsCert: text(o.tlsCert), tlsKey: text(o.tlsKey) };
}

/** Asks each name server in turn; only "cannot reach it" moves on to the next. */
async function promoteThroughAny(nameservers: string[], request: PromoteBrokerRequest, channels: SecureChannels): Promise<GroupMaster> {
  let lastError: SluiceError | undefined;
  for (const address of nameservers) {
    const client = new NameServerClient(address, channels.credentials, channels.options());
    try {
      const response = await new Promise<{ master?: GroupMaster }>((resolve, reject) => {
        client.promoteBroker(request, new Metadata(), { deadline: Date.now() + PROMOTE_TIMEOUT_MS }, (err, answer) =>
          err ? reject(fromServiceError(err, `name server ${address}`)) : resolve(answer),
        );
      });
      if (response.master === undefined) throw new SluiceError("INTERNAL", `name server ${address} answered without the new master`);
      return response.master;
    } catch (err) {
      lastError = err instanceof SluiceError ? err : fromServiceError(err, `name server ${address}`);
      if (lastError.code !== "BROKER_UNAVAILABLE" || !lastError.message.startsWith("cannot reach name server")) throw lastError;
    } finally {
      client.close();
    }
  }
  throw lastError ?? new InvalidArgumentError("no name server given: pass --nameserver host:port");
}
