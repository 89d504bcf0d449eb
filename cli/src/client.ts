/** The SDK client every data and admin command uses, built from the global flags. */
import { Sluice } from "../../clients/src/index.js";
import type { GlobalOptions } from "./output.js";

export function connect(globals: GlobalOptions, clientId = "sluice-cli"): Sluice {
  const nameservers = globals.nameserver.split(",").map((s) => s.trim()).filter(Boolean);
  return new Sluice({ nameservers, clientId });
}

/** Runs `fn` with a client that is always closed afterwards. */
export async function withClient<T>(globals: GlobalOptions, fn: (sluice: Sluice) => Promise<T>): Promise<T> {
  const sluice = connect(globals);
  try {
    return await fn(sluice);
  } finally {
    await sluice.close();
  }
}
