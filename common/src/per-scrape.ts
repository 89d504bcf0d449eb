/**
 * One computation per Prometheus scrape, shared by every gauge that reads it: the first
 * collect of a scrape starts it, the others reuse it, and the next scrape computes afresh.
 * The series then come from one snapshot (a broker's state and suspicion from the same
 * instant), and work such as reading logs or asking other servers is done once.
 */
export function perScrape<T>(compute: () => Promise<T>): () => Promise<T> {
  let current: Promise<T> | undefined;
  return () => {
    // prom-client runs a scrape's collects in one go: forgetting on the next macrotask ends it.
    current ??= compute().finally(() => setImmediate(() => (current = undefined)));
    return current;
  };
}
