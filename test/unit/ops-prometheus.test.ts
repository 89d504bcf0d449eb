/**
 * The shipped monitoring files (ops/prometheus, ops/grafana) are valid and speak the metric
 * names the processes export: promtool accepts the config and rules, the alert unit tests in
 * alerts.test.yml pass (and fail when an alert is broken), every PromQL expression in the
 * rules and the dashboard names only known metrics, and the dashboard shows all of them.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, describe, it } from "node:test";
import { parse, stringify } from "yaml";
import { promqlMetricNames, promtoolSkipReason, runPromtool } from "../helpers/prometheus.js";

const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PROMETHEUS_DIR = join(REPO_ROOT, "ops", "prometheus");
const CONFIG_FILE = join(PROMETHEUS_DIR, "prometheus.yml");
const RULES_FILE = join(PROMETHEUS_DIR, "alerts.yml");
const RULE_TESTS_FILE = join(PROMETHEUS_DIR, "alerts.test.yml");
const DASHBOARD_FILE = join(REPO_ROOT, "ops", "grafana", "sluice-dashboard.json");

/**
 * Every metric a shipped query may name: the list of /work/notes/issue7-design.md ("Metric
 * names"), plus three prom-client defaults the dashboard shows (event-loop p99, open and max
 * file descriptors) and Prometheus's own `up` and `ALERTS`.
 */
const KNOWN_METRICS: readonly string[] = [
  // Process metrics of every broker and name server (prom-client defaults, prefixed sluice_).
  "sluice_process_cpu_seconds_total",
  "sluice_process_resident_memory_bytes",
  "sluice_nodejs_eventloop_lag_seconds",
  "sluice_nodejs_eventloop_lag_p99_seconds",
  "sluice_nodejs_heap_size_used_bytes",
  "sluice_process_open_fds",
  "sluice_process_max_fds",
  // Broker.
  "sluice_produce_requests_total",
  "sluice_produced_messages_total",
  "sluice_produced_bytes_total",
  "sluice_fetch_responses_total",
  "sluice_fetched_bytes_total",
  "sluice_fetched_messages_total",
  "sluice_active_streams",
  "sluice_log_size_bytes",
  "sluice_log_segments",
  "sluice_partitions",
  "sluice_flow_requests_total",
  "sluice_flow_bytes_total",
  "sluice_flow_available",
  "sluice_flow_queued_requests",
  "sluice_flow_in_flight_requests",
  "sluice_consumer_group_lag_messages",
  "sluice_consumer_group_lag_seconds",
  "sluice_requests_total",
  "sluice_broker_info",
  "sluice_broker_is_master",
  "sluice_broker_epoch",
  "sluice_replication_lag_messages",
  "sluice_replication_lag_bytes",
  "sluice_replication_lag_seconds",
  "sluice_replication_slave_in_sync",
  "sluice_under_replicated_partitions",
  "sluice_write_gate_open",
  "sluice_queue_in_flight_messages",
  "sluice_queue_redelivered_total",
  "sluice_queue_dead_lettered_total",
  "sluice_queue_dead_letters",
  "sluice_data_disk_free_bytes",
  "sluice_data_disk_total_bytes",
  // Broker, behind --metrics-per-partition.
  "sluice_partition_end_offset",
  "sluice_partition_size_bytes",
  "sluice_consumer_group_partition_lag_messages",
  // Name server.
  "sluice_nameserver_heartbeats_received_total",
  "sluice_nameserver_broker_registrations_total",
  "sluice_nameserver_broker_expiries_total",
  "sluice_nameserver_live_brokers",
  "sluice_nameserver_heartbeat_age_seconds",
  "sluice_nameserver_topics",
  "sluice_nameserver_broker_suspicion",
  "sluice_nameserver_broker_state",
  // Prometheus itself: scrape health and the alerts it evaluates.
  "up",
  "ALERTS",
];
/** Histograms: a query names their _bucket, _sum or _count series. */
const KNOWN_HISTOGRAMS: readonly string[] = [
  "sluice_produce_latency_seconds",
  "sluice_fetch_latency_seconds",
  "sluice_end_to_end_latency_seconds",
  "sluice_flow_delay_seconds",
  "sluice_nodejs_gc_duration_seconds",
];
const KNOWN_SERIES = new Set([...KNOWN_METRICS, ...KNOWN_HISTOGRAMS.flatMap((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`])]);
/** The base metric a series belongs to (a histogram's series → the histogram). */
const baseMetric = (series: string): string => KNOWN_HISTOGRAMS.find((h) => series.startsWith(`${h}_`)) ?? series;

/** The alerts issue #7 asks for: broker down, under-replicated partitions, write gate closed, consumer lag growing for 5 min, DLQ growing, disk filling. */
const REQUIRED_ALERTS = [
  "SluiceBrokerDown",
  "SluiceUnderReplicatedPartitions",
  "SluiceWriteGateClosed",
  "SluiceConsumerLagGrowing",
  "SluiceDeadLettersGrowing",
  "SluiceDiskFilling",
];
const SEVERITIES = ["critical", "warning"];

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}
interface RuleTests {
  tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: { expr: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown; definition?: string }[] };
  annotations: { list: { expr?: string }[] };
}

const rules = (parse(readFileSync(RULES_FILE, "utf8")) as RuleFile).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert !== undefined);
const recorded = new Set(rules.flatMap((r) => (r.record === undefined ? [] : [r.record])));
const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as Dashboard;
const allPanels = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
const queryPanels = allPanels(dashboard.panels).filter((p) => p.type !== "row");

/** Each expression's names that are neither known metrics nor recorded by alerts.yml. */
function unknownNames(exprs: { where: string; expr: string }[]): string[] {
  return exprs.flatMap(({ where, expr }) =>
    [...promqlMetricNames(expr)].filter((n) => !KNOWN_SERIES.has(n) && !recorded.has(n)).map((n) => `${where}: ${n}`),
  );
}

/** Every PromQL expression of the dashboard: panels, template variables, annotations. */
function dashboardExprs(): { where: string; expr: string }[] {
  const panelExprs = queryPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr })));
  const variableExprs = dashboard.templating.list
    .filter((v) => v.type === "query")
    .map((v) => {
      // label_values(metric, label): only the first argument is a metric.
      const definition = v.definition ?? "";
      const labelValues = /^label_values\(\s*([^,]+),\s*\w+\s*\)$/.exec(definition);
      return { where: `variable ${v.name}`, expr: labelValues ? (labelValues[1] as string) : definition };
    });
  const annotationExprs = dashboard.annotations.list.flatMap((a) => (a.expr ? [{ where: "annotation", expr: a.expr }] : []));
  return [...panelExprs, ...variableExprs, ...annotationExprs];
}

describe("ops/prometheus checked by promtool", { skip: promtoolSkipReason }, () => {
  const scratch = mkdtempSync(join(tmpdir(), "sluice-promtool-"));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it("promtool check config accepts prometheus.yml and the rule file it loads", () => {
    const result = runPromtool(["check", "config", CONFIG_FILE]);
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /SUCCESS: 1 rule files found/);
  });

  it("promtool check rules accepts alerts.yml", () => {
    const result = runPromtool(["check", "rules", RULES_FILE]);
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, new RegExp(`SUCCESS: ${rules.length} rules found`));
  });

  it("promtool test rules: every alert fires when it should and stays quiet otherwise (alerts.test.yml)", () => {
    const result = runPromtool(["test", "rules", RULE_TESTS_FILE]);
    assert.equal(result.code, 0, result.output);
  });

  it("alerts.test.yml covers every alert, each both firing and quiet", () => {
    const cases = (parse(readFileSync(RULE_TESTS_FILE, "utf8")) as RuleTests).tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const { alert } of alerts) {
      const mine = cases.filter((c) => c.alertname === alert);
      assert.ok(mine.some((c) => c.exp_alerts.length > 0), `no test case where ${alert} fires`);
      assert.ok(mine.some((c) => c.exp_alerts.length === 0), `no test case where ${alert} stays quiet`);
    }
  });

  it("the alert tests can fail: a lag alert without its 5 minutes fires too early and promtool test rules says so", () => {
    const broken = parse(readFileSync(RULES_FILE, "utf8")) as RuleFile;
    const lag = broken.groups.flatMap((g) => g.rules).find((r) => r.alert === "SluiceConsumerLagGrowing");
    assert.ok(lag?.for, "SluiceConsumerLagGrowing has a for: duration");
    delete lag.for;
    writeFileSync(join(scratch, "alerts.yml"), stringify(broken));
    copyFileSync(RULE_TESTS_FILE, join(scratch, "alerts.test.yml"));
    const result = runPromtool(["test", "rules", "alerts.test.yml"], scratch);
    assert.notEqual(result.code, 0, result.output);
    assert.match(result.output, /alertname: SluiceConsumerLagGrowing, time: 5m/);
  });
});

describe("ops/prometheus/alerts.yml", () => {
  it("has the alerts the issue asks for", () => {
    const names = alerts.map((a) => a.alert);
    for (const name of REQUIRED_ALERTS) assert.ok(names.includes(name), `missing alert ${name}`);
  });

  it("gives every alert a severity, a summary and a description of what to do", () => {
    for (const { alert, labels, annotations } of alerts) {
      assert.ok(SEVERITIES.includes(labels?.severity ?? ""), `${alert}: severity ${labels?.severity} is not one of ${SEVERITIES.join(", ")}`);
      assert.ok((annotations?.summary ?? "").length > 10, `${alert}: no summary`);
      const description = annotations?.description ?? "";
      // What happened, then what to do: at least two sentences.
      assert.ok(description.split(/[.:] /).length >= 2 && description.length > annotations!.summary!.length, `${alert}: description too thin: ${description}`);
    }
  });

  it("names only metrics the brokers and name servers export, or rules recorded here", () => {
    assert.deepEqual(unknownNames(rules.map((r) => ({ where: r.alert ?? r.record ?? "?", expr: r.expr }))), []);
    for (const r of rules) assert.ok(promqlMetricNames(r.expr).size > 0, `${r.alert ?? r.record}: no metric found in ${r.expr}`);
  });

  it("selects only the job names prometheus.yml scrapes", () => {
    const config = parse(readFileSync(CONFIG_FILE, "utf8")) as { scrape_configs: { job_name: string }[] };
    const jobs = config.scrape_configs.map((s) => s.job_name);
    for (const r of rules) {
      for (const [, job] of r.expr.matchAll(/\bjob="([^"]+)"/g)) assert.ok(jobs.includes(job as string), `${r.alert ?? r.record}: job ${job} is not scraped`);
    }
  });
});

describe("ops/prometheus/prometheus.yml", () => {
  it("scrapes brokers (sluice dev's 127.0.0.1:8080, name server series included) as sluice-broker, has a sluice-nameserver job for separate name servers, and loads alerts.yml", () => {
    const config = parse(readFileSync(CONFIG_FILE, "utf8")) as {
      rule_files: string[];
      scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    assert.deepEqual(config.rule_files, ["alerts.yml"]);
    const job = (name: string) => config.scrape_configs.find((s) => s.job_name === name);
    assert.deepEqual(job("sluice-broker")?.static_configs.flatMap((s) => s.targets), ["127.0.0.1:8080"]);
    // Empty until an operator lists separate name servers: sluice dev has no name-server port.
    assert.deepEqual(job("sluice-nameserver")?.static_configs.flatMap((s) => s.targets), []);
    for (const scrape of config.scrape_configs) assert.equal(scrape.metrics_path ?? "/metrics", "/metrics");
  });
});

describe("ops/grafana/sluice-dashboard.json", () => {
  it("picks its Prometheus through a data-source variable that every panel uses", () => {
    const variable = dashboard.templating.list.find((v) => v.type === "datasource");
    assert.equal(variable?.query, "prometheus");
    const uid = `\${${variable?.name}}`;
    assert.ok(queryPanels.length >= 30, `only ${queryPanels.length} panels`);
    for (const panel of queryPanels) {
      assert.equal(panel.datasource?.uid, uid, `panel "${panel.title}"`);
      assert.ok((panel.targets ?? []).length > 0, `panel "${panel.title}" has no query`);
      for (const target of panel.targets ?? []) assert.equal(target.datasource?.uid, uid, `panel "${panel.title}"`);
    }
  });

  it("lays panels out with unique ids inside the 24-column grid", () => {
    const ids = allPanels(dashboard.panels).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, "duplicate panel ids");
    for (const { title, gridPos } of allPanels(dashboard.panels)) {
      assert.ok(gridPos.x >= 0 && gridPos.w > 0 && gridPos.x + gridPos.w <= 24, `panel "${title}" at x ${gridPos.x} w ${gridPos.w}`);
    }
  });

  it("queries only metrics the brokers and name servers export", () => {
    const exprs = dashboardExprs();
    assert.deepEqual(unknownNames(exprs), []);
    for (const { where, expr } of exprs) assert.ok(promqlMetricNames(expr).size > 0, `${where}: no metric found in ${expr}`);
  });

  it("shows every metric of the design note", () => {
    const shown = new Set(dashboardExprs().flatMap(({ expr }) => [...promqlMetricNames(expr)].map(baseMetric)));
    const missing = [...KNOWN_METRICS, ...KNOWN_HISTOGRAMS].filter((m) => !shown.has(m));
    assert.deepEqual(missing, []);
  });
});

describe("the PromQL name check", () => {
  it("finds metric names, and only them, in the shapes the shipped queries use", () => {
    assert.deepEqual(
      [...promqlMetricNames('sum by (group, le) (rate(sluice_bogus_seconds_bucket{instance=~"$instance", topic="a{b}"}[$__rate_interval])) / on (job) group_left sluice_other offset 10m > 0.5 and sluice_third')].sort(),
      ["sluice_bogus_seconds_bucket", "sluice_other", "sluice_third"],
    );
    assert.deepEqual([...promqlMetricNames("histogram_quantile(0.99, sum(rate(x_bucket[5m])) by (le)) * 1e3")], ["x_bucket"]);
    assert.deepEqual([...promqlMetricNames("count(up == 0) or vector(0)")], ["up"]);
  });

  it("reports a name no process exports", () => {
    assert.deepEqual(unknownNames([{ where: "probe", expr: "rate(sluice_produced_mesages_total[1m])" }]), ["probe: sluice_produced_mesages_total"]);
  });
});
