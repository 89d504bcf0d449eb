/**
 * Flow control's Prometheus series. Labels are the rule's scope as written (a glob stays a
 * glob) and its limiter, so cardinality is bounded by the number of rules, not of topics or
 * clients.
 *
 * - sluice_flow_requests_total{scope,limiter,result}: admitted (at once), delayed (held, then
 *   admitted), refused (THROTTLED).
 * - sluice_flow_bytes_total{scope,limiter,result}: the batch bytes of those requests.
 * - sluice_flow_delay_seconds: how long held requests waited.
 * - sluice_flow_available{scope,limiter}: tokens (token bucket) or stored permits (warm-up).
 * - sluice_flow_queued_requests{scope,limiter}: requests a rule is holding now.
 * - sluice_flow_in_flight_requests{scope,limiter}: a concurrency rule's requests in flight.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { FlowRule } from "../../../common/src/flow/rules.js";
import type { FlowController, FlowObserver } from "./flow-controller.js";

export class FlowMetrics implements FlowObserver {
  private readonly requests: Counter<"scope" | "limiter" | "result">;
  private readonly bytes: Counter<"scope" | "limiter" | "result">;
  private readonly delay: Histogram;

  constructor(registry: Registry, controller: () => FlowController | undefined) {
    this.requests = new Counter({
      name: "sluice_flow_requests_total",
      help: "Produce requests decided by each flow rule: admitted at once, delayed then admitted, or refused",
      labelNames: ["scope", "limiter", "result"],
      registers: [registry],
    });
    this.bytes = new Counter({
      name: "sluice_flow_bytes_total",
      help: "Batch bytes of the produce requests decided by each flow rule, by result",
      labelNames: ["scope", "limiter", "result"],
      registers: [registry],
    });
    this.delay = new Histogram({
      name: "sluice_flow_delay_seconds",
      help: "How long flow control held produce requests before admitting them",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    const gauge = (name: string, help: string, pick: (state: { available?: number; queued: number; inFlight?: number }) => number | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: ["scope", "limiter"],
        registers: [registry],
        collect() {
          // Rules come and go at run time: a deleted rule's series must not linger.
          this.reset();
          for (const rule of controller()?.list() ?? []) {
            const value = pick(rule.state);
            if (value !== undefined) this.set({ scope: rule.scope, limiter: rule.limiter }, value);
          }
        },
      });
    };
    gauge("sluice_flow_available", "Tokens in a token bucket, or stored permits of a warm-up rule (negative: in debt)", (s) => s.available);
    gauge("sluice_flow_queued_requests", "Produce requests a flow rule is holding", (s) => s.queued);
    gauge("sluice_flow_in_flight_requests", "Produce requests in flight under a concurrency rule", (s) => s.inFlight);
  }

  decided(rule: FlowRule, result: "admitted" | "delayed" | "refused", bytes: number): void {
    const labels = { scope: rule.scope, limiter: rule.limiter, result };
    this.requests.inc(labels);
    this.bytes.inc(labels, bytes);
  }

  held(waitMs: number): void {
    this.delay.observe(waitMs / 1000);
  }
}
