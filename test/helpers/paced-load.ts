/**
 * A producer that offers a fixed rate (messages per second, in 10 ms ticks) to one topic, the
 * way an application with a bounded number of unacknowledged messages would: it never has more
 * than `maxOutstanding` waiting. Values are `<sequence>` padded to `valueBytes`, so a reader
 * can check order and completeness. Errors reaching the application are recorded, not retried.
 */
import { Sluice } from "../../clients/src/index.js";

export interface PacedResult {
  sent: number;
  acked: number;
  /** [ack time ms, messages acknowledged then]. */
  ackEvents: [number, number][];
  errors: { code: string; message: string }[];
}

export interface PacedLoad {
  readonly result: PacedResult;
  /** Messages per second acknowledged in [fromMs, toMs). */
  rate(fromMs: number, toMs: number): number;
  stop(): Promise<PacedResult>;
}

const TICK_MS = 10;

export function startPacedLoad(options: {
  nameserver: string;
  topic: string;
  messagesPerSecond: number;
  maxOutstanding?: number;
  valueBytes?: number;
  clientId?: string;
  requestTimeoutMs?: number;
}): PacedLoad {
  const sluice = new Sluice({
    nameservers: [options.nameserver],
    clientId: options.clientId ?? `paced-${options.topic}`,
    ...(options.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: options.requestTimeoutMs }),
  });
  const producer = sluice.producer({ lingerMs: 5 });
  const result: PacedResult = { sent: 0, acked: 0, ackEvents: [], errors: [] };
  const maxOutstanding = options.maxOutstanding ?? options.messagesPerSecond;
  const valueBytes = options.valueBytes ?? 100;
  const startedMs = Date.now();
  let outstanding = 0;
  const pending = new Set<Promise<unknown>>();
  const timer = setInterval(() => {
    const due = Math.floor(((Date.now() - startedMs) * options.messagesPerSecond) / 1000) - result.sent;
    const n = Math.min(due, maxOutstanding - outstanding);
    if (n <= 0) return;
    const messages = [];
    for (let i = 0; i < n; i++) messages.push({ value: String(result.sent + i).padEnd(valueBytes, ".") });
    result.sent += n;
    outstanding += n;
    const sending = producer.send(options.topic, messages).then(
      () => {
        result.acked += n;
        result.ackEvents.push([Date.now(), n]);
      },
      (err: { code?: string; message?: string }) => {
        result.errors.push({ code: err.code ?? "?", message: err.message ?? String(err) });
      },
    );
    pending.add(sending);
    void sending.finally(() => {
      outstanding -= n;
      pending.delete(sending);
    });
  }, TICK_MS);
  return {
    result,
    rate: (fromMs, toMs) => {
      let n = 0;
      for (const [at, count] of result.ackEvents) if (at >= fromMs && at < toMs) n += count;
      return (n * 1000) / (toMs - fromMs);
    },
    stop: async () => {
      clearInterval(timer);
      await Promise.all([...pending]);
      await sluice.close();
      return result;
    },
  };
}

/** Reads a one-partition topic from the start; returns the sequence numbers in log order. */
export async function readSequences(nameserver: string, topic: string): Promise<number[]> {
  const sluice = new Sluice({ nameservers: [nameserver], clientId: "paced-check" });
  try {
    const end = (await sluice.admin().listOffsets(topic, "latest")).get(0) ?? 0;
    const out: number[] = [];
    if (end === 0) return out;
    const consumer = sluice.consumer({ fromBeginning: true });
    for await (const m of consumer.subscribe(topic)) {
      out.push(Number.parseInt(m.value!.toString(), 10));
      if (m.offset >= end - 1) break;
    }
    await consumer.close();
    return out;
  } finally {
    await sluice.close();
  }
}
