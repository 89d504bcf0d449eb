/**
 * Reads a process's Prometheus `/metrics` for tests: every sample as "name{labels}" → value,
 * with labels in the order the process wrote them.
 */
export type Samples = Map<string, number>;

export async function scrape(http: string): Promise<Samples> {
  const response = await fetch(`http://${http}/metrics`);
  if (!response.ok) throw new Error(`GET /metrics on ${http}: ${response.status}`);
  return parseSamples(await response.text());
}

export function parseSamples(text: string): Samples {
  const samples: Samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

/** The value of `name` with exactly `labels` (in any order), or undefined when absent. */
export function sample(samples: Samples, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(",");
  for (const [key, value] of samples) {
    const brace = key.indexOf("{");
    const metric = brace < 0 ? key : key.slice(0, brace);
    if (metric !== name) continue;
    const labelText = brace < 0 ? "" : key.slice(brace + 1, -1);
    if (labelText.split(",").filter(Boolean).sort().join(",") === wanted) return value;
  }
  return undefined;
}

/** Every series of `name`, with its labels parsed. */
export function series(samples: Samples, name: string): Array<{ labels: Record<string, string>; value: number }> {
  const out: Array<{ labels: Record<string, string>; value: number }> = [];
  for (const [key, value] of samples) {
    const brace = key.indexOf("{");
    if ((brace < 0 ? key : key.slice(0, brace)) !== name) continue;
    const labels: Record<string, string> = {};
    if (brace >= 0) {
      for (const match of key.slice(brace + 1, -1).matchAll(/(\w+)="([^"]*)"/g)) labels[match[1]!] = match[2]!;
    }
    out.push({ labels, value });
  }
  return out;
}
