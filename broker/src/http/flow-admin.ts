/**
 * The REST admin API of flow rules, on the broker's HTTP port (what `sluice flow` calls):
 *
 *   GET    /admin/flow                         → { broker, rules: [rule + source + state] }
 *   PUT    /admin/flow          body: a rule   → { broker, rule }      (adds or replaces its key)
 *   DELETE /admin/flow?scope=S&limiter=L      → { broker, deleted: { scope, limiter } }
 *
 * A change is stored (flow-rules.json) before it is applied, and a bad rule is refused with
 * 400 naming the field before either, so a refused request changes nothing. Changes apply to
 * the next request the broker decides: at once, no restart.
 *
 * Listing needs describe on the cluster, setting and deleting admin on the cluster; a refused
 * request answers 403 NOT_AUTHORIZED before the body is even parsed as a rule.
 */
import type { FastifyInstance } from "fastify";
import { parseFlowRule } from "../../../common/src/flow/rules.js";
import { CLUSTER, requirePermission } from "../../../common/src/http/permissions.js";
import type { FlowController } from "../flow/flow-controller.js";
import type { FlowRuleStore } from "../flow/rule-store.js";

export interface FlowAdminOptions {
  readonly flow: FlowController;
  readonly store: FlowRuleStore;
  /** "group/id", so answers gathered from many brokers say whose they are. */
  readonly broker: string;
}

export function registerFlowAdmin(app: FastifyInstance, options: FlowAdminOptions): void {
  const { flow, store, broker } = options;
  app.get("/admin/flow", async (request) => {
    requirePermission(request, "describe", "cluster", CLUSTER);
    return { broker, rules: flow.list() };
  });
  app.put("/admin/flow", { schema: { body: { type: "object" } } }, async (request) => {
    requirePermission(request, "admin", "cluster", CLUSTER);
    const rule = parseFlowRule(request.body, "rule");
    store.recordSet(rule);
    flow.set(rule, "runtime");
    return { broker, rule };
  });
  app.delete<{ Querystring: { scope: string; limiter: string } }>(
    "/admin/flow",
    {
      schema: {
        querystring: {
          type: "object",
          required: ["scope", "limiter"],
          properties: { scope: { type: "string", minLength: 1 }, limiter: { type: "string", minLength: 1 } },
        },
      },
    },
    async (request) => {
      requirePermission(request, "admin", "cluster", CLUSTER);
      const { scope, limiter } = request.query;
      flow.ruleFor(scope, limiter);
      store.recordDelete(scope, limiter);
      flow.delete(scope, limiter);
      return { broker, deleted: { scope, limiter } };
    },
  );
}
