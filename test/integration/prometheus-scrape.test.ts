/**
 * A real Prometheus (Debian's package) with the shipped scrape config and alert rules watches a
 * real `sluice dev`: it scrapes the produced-message count after real traffic, evaluates every
 * shipped rule without error (the recording rules with the right values), accepts every query
 * of the shipped Grafana dashboard, and fires SluiceBrokerDown once the broker is killed.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { Sluice } from "../../clients/src/index.js";
import { eventually, prometheusSkipReason, startPrometheus, type PrometheusProcess } from "../helpers/prometheus.js";
import { REPO_ROOT, startDev, type Cluster } from "../helpers/processes.js";

const TOPIC = "scraped-orders";
const MESSAGES = 25;
const FIRST_ROUND = 10;
/** Long enough for a few 1 s scrapes and evaluations on a loaded 2-core machine. */
const WAIT_MS = 20_000;
/**
 * The shipped `for:` durations (1 minute for a broker down) would keep this test waiting for
 * minutes; 2 s still proves the rule goes pending and then fires, with its expression unchanged.
 */
const SHORT_FOR = "2s";

interface ScrapeConfig {
  global?: Record<string, unknown>;
  rule_files: string[];
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
}
interface Panel {
  title: string;
  targets?: { expr: string }[];
  panels?: Panel[];
}
const allPanels = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
interface RuleFile {
  groups: { name: string; rules: { alert?: string; record?: string; for?: string }[] }[];
}

/**
 * The shipped prometheus.yml with this test's broker as the only target, scraped and evaluated
 * every second (the shipped 15 s would stretch every wait here by as much). `sluice dev` serves
 * no name-server HTTP port, so the name-server job goes.
 */
function scrapeConfig(brokerHttp: string): string {
  const config = parse(readFileSync(join(REPO_ROOT, "ops", "prometheus", "prometheus.yml"), "utf8")) as ScrapeConfig;
  config.global = { ...config.global, scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" };
  const broker = config.scrape_configs.find((s) => s.job_name === "sluice-broker");
  assert.ok(broker, "prometheus.yml has a sluice-broker job");
  broker.static_configs = [{ targets: [brokerHttp] }];
  config.scrape_configs = [broker];
  return stringify(config);
}

/** The shipped alerts.yml with every `for:` shortened to SHORT_FOR. */
function alertRules(): { yaml: string; ruleCount: number } {
  const file = parse(readFileSync(join(REPO_ROOT, "ops", "prometheus", "alerts.yml"), "utf8")) as RuleFile;
  let ruleCount = 0;
  for (const rule of file.groups.flatMap((g) => g.rules)) {
    ruleCount++;
    if (rule.for !== undefined) rule.for = SHORT_FOR;
  }
  return { yaml: stringify(file), ruleCount };
}

describe("Prometheus scrapes a running broker and evaluates the shipped rules", { skip: prometheusSkipReason }, () => {
  let cluster: Cluster;
  let prometheus: PrometheusProcess;
  let ruleCount = 0;

  before(async () => {
    cluster = await startDev();
    const rules = alertRules();
    ruleCount = rules.ruleCount;
    prometheus = await startPrometheus({ "prometheus.yml": scrapeConfig(cluster.http), "alerts.yml": rules.yaml });
  });
  after(async () => {
    await prometheus?.stop();
    await cluster?.process.stop("SIGKILL");
  });

  const value = async (expr: string): Promise<number | undefined> => (await prometheus.query(expr))[0]?.value;
  const log = () => `prometheus output:\n${prometheus.output()}\nbroker stderr:\n${cluster.process.stderr()}`;

  it("scrapes sluice_produced_messages_total after real traffic, with the recording rules following", async () => {
    const up = `up{job="sluice-broker", instance="${cluster.http}"}`;
    await eventually(`${up} == 1`, async () => ((await value(up)) === 1 ? true : undefined), WAIT_MS, log);
    // Seen at 0 before the traffic, so the rates below have a starting point.
    await eventually("sluice_produced_messages_total at 0", async () => ((await value("sluice_produced_messages_total")) === 0 ? true : undefined), WAIT_MS, log);

    // Two rounds, each seen by a scrape: a labelled counter such as
    // sluice_requests_total{api="produce",result="ok"} appears at its first increment, which
    // rate() cannot see, so the availability ratio needs the second round.
    const produced = `sluice_produced_messages_total{job="sluice-broker", instance="${cluster.http}"}`;
    let last: number | undefined;
    const scraped = (count: number) =>
      eventually(`${produced} == ${count}`, async () => ((last = await value(produced)) === count ? true : undefined), WAIT_MS, () => `last value ${last}\n${log()}`);
    const sluice = new Sluice({ nameservers: [cluster.nameserver], clientId: "prometheus-scrape" });
    try {
      await sluice.admin().createTopic(TOPIC, { partitions: 2 });
      const producer = sluice.producer({ lingerMs: 1 });
      const send = (from: number, count: number) =>
        producer.send(TOPIC, Array.from({ length: count }, (_, i) => ({ key: `k${from + i}`, value: `order ${from + i}` })));
      await send(0, FIRST_ROUND);
      await scraped(FIRST_ROUND);
      await send(FIRST_ROUND, MESSAGES - FIRST_ROUND);
    } finally {
      await sluice.close();
    }
    await scraped(MESSAGES);

    const rate = `instance:sluice_produced_messages:rate1m{instance="${cluster.http}"}`;
    await eventually(`${rate} > 0`, async () => (((await value(rate)) ?? 0) > 0 ? true : undefined), WAIT_MS, log);
    // Every request so far succeeded: 100 % available.
    const availability = 'job:sluice_requests_availability:ratio_rate5m{job="sluice-broker"}';
    await eventually(`${availability} == 1`, async () => ((await value(availability)) === 1 ? true : undefined), WAIT_MS, log);
  });

  it("evaluates every shipped rule without an error", async () => {
    const rules = await eventually(
      "every rule evaluated at least once",
      async () => {
        const all = await prometheus.rules();
        return all.length === ruleCount && all.every((r) => r.health !== "unknown") ? all : undefined;
      },
      WAIT_MS,
      log,
    );
    assert.deepEqual(rules.filter((r) => r.health !== "ok").map((r) => `${r.name}: ${r.health} ${r.lastError ?? ""}`), []);
    const alerts = await prometheus.alerts();
    assert.equal(alerts.find((a) => a.labels.alertname === "SluiceBrokerDown"), undefined, "SluiceBrokerDown while the broker runs");
  });

  it("accepts every query of the Grafana dashboard", async () => {
    const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, "ops", "grafana", "sluice-dashboard.json"), "utf8")) as { panels: Panel[] };
    const exprs = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
    assert.ok(exprs.length > 30, `only ${exprs.length} queries`);
    const refused: string[] = [];
    for (const { title, expr } of exprs) {
      // Grafana's variables, as Grafana fills them in with "All" brokers selected.
      const query = expr.replaceAll("$__rate_interval", "1m").replaceAll("$instance", ".*");
      try {
        await prometheus.query(query);
      } catch (err) {
        refused.push(`${title}: ${String(err)}`);
      }
    }
    assert.deepEqual(refused, []);
  });

  it("fires SluiceBrokerDown once the broker is killed", async () => {
    await cluster.process.stop("SIGKILL");
    const firing = await eventually(
      "SluiceBrokerDown firing",
      async () => (await prometheus.alerts()).find((a) => a.labels.alertname === "SluiceBrokerDown" && a.state === "firing"),
      WAIT_MS,
      log,
    );
    assert.deepEqual(firing.labels, { alertname: "SluiceBrokerDown", severity: "critical", job: "sluice-broker", instance: cluster.http });
    assert.equal(firing.annotations.summary, `Sluice broker ${cluster.http} is down`);
    assert.match(firing.annotations.description ?? "", /sluice broker promote/);
  });
});
