/**
 * What a broker says about itself (its BrokerInfo), validated and turned into the registry
 * record the cluster state keeps, and how two such records compare.
 */
import { InvalidArgumentError } from "../../common/src/errors.js";
import type { BrokerInfo } from "../../proto/gen/sluice/v1/nameserver.js";
import type { BrokerRecord } from "./registry/store.js";

/** Validates what a broker says about itself and turns it into a registry record. */
export function toBrokerRecord(info: BrokerInfo | undefined, registeredAtMs: number): BrokerRecord {
  if (info === undefined) throw new InvalidArgumentError("the request has no broker: set `broker` to this broker's BrokerInfo");
  if (info.group === "") throw new InvalidArgumentError("the broker has no group: start it with --name GROUP");
  if (!/^[^\s:]+:\d+$/.test(info.address) && !/^\[[0-9a-fA-F:.]+\]:\d+$/.test(info.address)) {
    throw new InvalidArgumentError(`broker ${info.group}/${info.brokerId} gave address "${info.address}"; expected "host:port"`);
  }
  if (info.role !== "master" && info.role !== "slave") {
    throw new InvalidArgumentError(`broker ${info.group}/${info.brokerId} gave role "${info.role}"; expected "master" or "slave"`);
  }
  return {
    cluster: info.cluster,
    group: info.group,
    brokerId: info.brokerId,
    address: info.address,
    httpAddress: info.httpAddress,
    version: info.version,
    role: info.role,
    epoch: info.epoch,
    weight: info.weight === 0 ? 1 : info.weight,
    registeredAtMs,
  };
}

/** True when a heartbeat changes what routes are built from (and so must be written). */
export function brokerChanged(a: BrokerRecord, b: BrokerRecord): boolean {
  return (
    a.address !== b.address ||
    a.httpAddress !== b.httpAddress ||
    a.version !== b.version ||
    a.role !== b.role ||
    a.epoch !== b.epoch ||
    a.weight !== b.weight
  );
}

/** By group, then broker id: the order brokers are listed and routed in. */
export function compareBrokers(a: BrokerRecord, b: BrokerRecord): number {
  if (a.group !== b.group) return a.group < b.group ? -1 : 1;
  return a.brokerId - b.brokerId;
}
