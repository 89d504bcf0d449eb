/**
 * How a throwaway single-member etcd is launched, shared by the tests (test/helpers/etcd.ts)
 * and the benchmarks (bench/servers.ts). No node:test hooks here, so the bench can import it.
 */
import { accessSync, constants } from "node:fs";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";

/** The `etcd` binary on PATH (Debian's etcd-server), or undefined. */
export function findEtcdBinary(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, "etcd");
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** `count` ports free on loopback right now (a race with other processes is possible: callers retry). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        const server = createServer();
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve(server));
      }),
    ),
  );
  const ports = servers.map((server) => (server.address() as { port: number }).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

/**
 * Flags of a one-member cluster on two free loopback ports. Spawn it with `env: { PATH }` only:
 * ETCDCTL_/ETCD_ variables from the developer's shell would override the flags.
 */
export async function etcdLaunch(name: string, dataDir: string): Promise<{ endpoint: string; args: string[] }> {
  const [clientPort, peerPort] = await freePorts(2);
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  return {
    endpoint,
    args: [
      "--name", name,
      "--data-dir", dataDir,
      "--listen-client-urls", endpoint,
      "--advertise-client-urls", endpoint,
      "--listen-peer-urls", peerUrl,
      "--initial-advertise-peer-urls", peerUrl,
      "--initial-cluster", `${name}=${peerUrl}`,
      "--logger", "zap",
      "--log-level", "warn",
    ],
  };
}
