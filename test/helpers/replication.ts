/**
 * Helpers for replication tests: a broker group of real processes over a real etcd, a load
 * of idempotent `acks: "all"` producers that records exactly what was acknowledged, and a
 * reader that fetches every message of a topic back.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Sluice } from "../../clients/src/index.js";
import { requestHeader } from "../../clients/src/transport/grpc.js";
import { NameServerClient } from "../../clients/src/transport/nameserver-client.js";
import { silentLogger } from "../../common/src/logger.js";
import type { BrokerStatus } from "../../proto/gen/sluice/v1/nameserver.js";
import { startBroker, startNameServer, tempDir, type ServerProcess } from "./processes.js";

export interface GroupBroker {
  id: number;
  dataDir: string;
  address: string;
  http: string;
  process: ServerProcess;
}

export interface BrokerGroup {
  nameserver: string;
  nameserverProcess: ServerProcess;
  /** The name server's HTTP address (/metrics). */
  nameserverHttp: string;
  brokers: Map<number, GroupBroker>;
  /** Starts (or restarts, on its old data) broker `id`. */
  start(id: number): Promise<GroupBroker>;
}

/** A name server (over etcd when given) and brokers b1/0..n-1, id 0 first so it becomes master. */
export async function startBrokerGroup(options: {
  etcd?: string;
  size?: number;
  /** Flags for every broker, e.g. ["--replication", "sync"]. */
  brokerArgs?: string[];
  nameserverArgs?: string[];
}): Promise<BrokerGroup> {
  const etcdArgs = options.etcd ? ["--etcd", options.etcd] : [];
  const ns = await startNameServer([...etcdArgs, "--heartbeat-interval-ms", "200", ...(options.nameserverArgs ?? [])]);
  const brokers = new Map<number, GroupBroker>();
  const dataDirs = new Map<number, string>();
  const start = async (id: number): Promise<GroupBroker> => {
    const dataDir = dataDirs.get(id) ?? tempDir(`sluice-b1-${id}-`);
    dataDirs.set(id, dataDir);
    const started = await startBroker({
      nameservers: [ns.address],
      name: "b1",
      id,
      dataDir,
      extra: [...etcdArgs, "--heartbeat-interval-ms", "200", ...(options.brokerArgs ?? [])],
    });
    const broker: GroupBroker = { id, dataDir, address: started.address, http: started.http, process: started.process };
    brokers.set(id, broker);
    return broker;
  };
  for (let id = 0; id < (options.size ?? 3); id++) await start(id);
  return { nameserver: ns.address, nameserverProcess: ns.process, nameserverHttp: ns.http, brokers, start };
}

export async function listBrokers(nameserver: string): Promise<BrokerStatus[]> {
  const client = new NameServerClient([nameserver], { header: requestHeader("replication-probe"), logger: silentLogger });
  try {
    return (await client.listBrokers(Date.now() + 2000)).brokers;
  } finally {
    client.close();
  }
}

/** The live master of b1 as the name server sees it. */
export async function masterOf(nameserver: string): Promise<{ id: number; epoch: number; address: string } | undefined> {
  const masters = (await listBrokers(nameserver)).filter((b) => b.broker?.role === "master" && b.state === "alive");
  masters.sort((a, b) => Number(b.broker!.epoch) - Number(a.broker!.epoch));
  const master = masters[0]?.broker;
  return master === undefined ? undefined : { id: master.brokerId, epoch: Number(master.epoch), address: master.address };
}

/** Polls `check` every 50 ms until it returns a value; fails naming `what` after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

/** Waits until `count` slaves of b1 are reported in sync by their master. */
export function waitInSync(nameserver: string, count: number, timeoutMs = 20_000): Promise<BrokerStatus[]> {
  return eventually(`${count} slaves in sync`, async () => {
    const slaves = (await listBrokers(nameserver)).filter((b) => b.broker?.role === "slave" && b.replication?.inSync === true);
    return slaves.length >= count ? slaves : undefined;
  }, timeoutMs);
}

export interface LoadResult {
  /** Every acknowledged key, with the time its send started and was acknowledged. */
  acked: Map<string, { startedMs: number; ackedMs: number }>;
  errors: { key: string; code: string; message: string; atMs: number }[];
}

/**
 * `producers` producers, each sending one message at a time per slot (`inFlight` slots), keys
 * `<producer>-<n>`, until `stop()`. Nothing is retried here: the SDK's own retries are what
 * is under test, and an error reaching this loop is recorded.
 */
export function startLoad(options: {
  nameserver: string;
  topic: string;
  producers?: number;
  inFlight?: number;
  acks?: "leader" | "all";
  idempotent?: boolean;
  sendTimeoutMs?: number;
}): { stop(): Promise<LoadResult>; result: LoadResult } {
  const result: LoadResult = { acked: new Map(), errors: [] };
  let stopping = false;
  const clients: Sluice[] = [];
  const loops: Promise<void>[] = [];
  for (let p = 0; p < (options.producers ?? 2); p++) {
    const sluice = new Sluice({ nameservers: [options.nameserver], clientId: `load-${p}`, ...(options.sendTimeoutMs ? { requestTimeoutMs: options.sendTimeoutMs } : {}) });
    clients.push(sluice);
    const producer = sluice.producer({ lingerMs: 1, acks: options.acks ?? "all", idempotent: options.idempotent ?? true });
    let n = 0;
    for (let slot = 0; slot < (options.inFlight ?? 8); slot++) {
      loops.push(
        (async () => {
          while (!stopping) {
            const key = `p${p}-${n++}`;
            const startedMs = Date.now();
            try {
              await producer.send(options.topic, [{ key, value: key }]);
              result.acked.set(key, { startedMs, ackedMs: Date.now() });
            } catch (err) {
              const e = err as { code?: string; message?: string };
              result.errors.push({ key, code: e.code ?? "?", message: e.message ?? String(err), atMs: Date.now() });
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
          }
        })(),
      );
    }
  }
  return {
    result,
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      await Promise.all(clients.map((c) => c.close()));
      return result;
    },
  };
}

/** Reads every message of `topic` (all partitions, up to their current end) as key → count. */
export async function readAllKeys(nameserver: string, topic: string): Promise<Map<string, number>> {
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "replication-check" });
  try {
    const ends = await sluice.admin().listOffsets(topic, "latest");
    const counts = new Map<string, number>();
    let remaining = [...ends.values()].reduce((a, b) => a + b, 0);
    if (remaining === 0) return counts;
    const seen = new Map<number, number>();
    const consumer = sluice.consumer({ fromBeginning: true });
    const deadline = Date.now() + 30_000;
    for await (const m of consumer.subscribe(topic)) {
      if (m.offset < (ends.get(m.partition) ?? 0) && (seen.get(m.partition) ?? -1) < m.offset) {
        seen.set(m.partition, m.offset);
        const key = m.key?.toString() ?? "";
        counts.set(key, (counts.get(key) ?? 0) + 1);
        remaining--;
      }
      if (remaining <= 0 || Date.now() > deadline) break;
    }
    await consumer.close();
    return counts;
  } finally {
    await sluice.close();
  }
}

/** Acknowledged keys missing from `counts`, and keys stored more than once. */
export function checkAcked(acked: Iterable<string>, counts: Map<string, number>): { lost: string[]; duplicated: string[] } {
  const lost: string[] = [];
  for (const key of acked) if (!counts.has(key)) lost.push(key);
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([k]) => k);
  return { lost, duplicated };
}

/** Waits until b1's master is a broker other than `formerId`; resolves with it. */
export function newMasterOtherThan(nameserver: string, formerId: number, timeoutMs = 15_000): Promise<{ id: number; epoch: number; address: string }> {
  return eventually(`a master other than b1/${formerId}`, async () => {
    const master = await masterOf(nameserver);
    return master !== undefined && master.id !== formerId ? master : undefined;
  }, timeoutMs);
}

export async function createTopic(nameserver: string, topic: string, partitions: number): Promise<void> {
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "replication-admin" });
  try {
    await sluice.admin().createTopic(topic, { partitions });
  } finally {
    await sluice.close();
  }
}

/** Every .log file of a partition, concatenated in offset order: the partition's bytes as stored. */
export function partitionBytes(dataDir: string, topic: string, partition: number): Buffer {
  const dir = join(dataDir, "logs", `${topic}-${partition}`);
  const files = readdirSync(dir).filter((f) => f.endsWith(".log")).sort();
  return Buffer.concat(files.map((f) => readFileSync(join(dir, f))));
}
