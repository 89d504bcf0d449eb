/**
 * Picks the role manager for a broker's options: etcd mode when the broker holds an etcd lease
 * (`--etcd`), local mode (role.json + name server answers) otherwise.
 */
import type { Clock } from "../../../common/src/clock.js";
import type { Logger } from "../../../common/src/logger.js";
import type { BrokerOptions } from "../options.js";
import type { BrokerLease } from "../registration/etcd-lease.js";
import { EtcdRoleManager } from "./etcd-role-manager.js";
import { LocalRoleManager } from "./local-role-manager.js";
import { promoteThroughNameServers } from "./nameserver-promotion.js";
import type { RoleManager } from "./role-manager.js";

export interface RoleManagerInput {
  options: Pick<BrokerOptions, "group" | "brokerId" | "cluster" | "dataDir" | "nameservers" | "replication" | "fenceMarginMs" | "peerChannels">;
  /** The broker's started lease with `--etcd`, else undefined. */
  lease: BrokerLease | undefined;
  /** gRPC host:port this broker bound (slaves replicate from it). */
  address: string;
  httpAddress: string;
  clock: Clock;
  logger: Logger;
}

export function createRoleManager(input: RoleManagerInput): RoleManager {
  const { options, lease, logger } = input;
  if (lease !== undefined) {
    return new EtcdRoleManager({
      group: options.group,
      brokerId: options.brokerId,
      address: input.address,
      httpAddress: input.httpAddress,
      lease,
      cluster: options.cluster,
      replication: options.replication,
      fenceMarginMs: options.fenceMarginMs,
      clock: input.clock,
      logger,
    });
  }
  return new LocalRoleManager({
    group: options.group,
    brokerId: options.brokerId,
    dataDir: options.dataDir,
    requestPromotion: promoteThroughNameServers({
      nameservers: options.nameservers,
      cluster: options.cluster,
      group: options.group,
      clientId: `broker-${options.group}-${options.brokerId}`,
      channels: options.peerChannels,
    }),
    logger,
  });
}
