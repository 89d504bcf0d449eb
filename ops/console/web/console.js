// The Sluice console: reads the admin REST API of the broker that served this page every
// REFRESH_MS and redraws. No framework and no build step. Every piece of data reaches the
// page through textContent, createTextNode or setAttribute — never as markup — so a topic
// or header named "<script>" shows as text (the page's Content-Security-Policy forbids
// inline script as a second line of defence). API errors show as their message only.
//
// Authentication: on a broker with --auth the page itself is answered 401 with a Basic
// challenge, so the browser asks for a user and password and then sends them with every
// same-origin request, these fetches included (credentials: "same-origin", relative URLs).
// A 403 shows as the API's message, which names the ACL the user lacks.

const REFRESH_MS = 2000;
/** Dead letters listed per queue group. */
const DEAD_LETTERS_SHOWN = 20;
/** Characters of a dead letter's value and error shown in the table (all of it on hover). */
const PREVIEW_CHARS = 120;
const SVG_NS = "http://www.w3.org/2000/svg";
/** Characters of a "topic/partition" label that fit beside a lag bar. */
const LAG_LABEL_CHARS = 24;

const numberFormat = new Intl.NumberFormat("en-US");
const rateFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

/** Topics whose partition table is open; kept across redraws. */
const expandedTopics = new Set();
/** The last topics and throughput read, to redraw at once when a toggle changes. */
const latest = { topics: [], throughput: undefined };

class ApiError extends Error {}

// ---- DOM helpers: data only ever becomes text nodes or attribute values ----

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  appendChildren(node, children);
  return node;
}

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attributes);
  appendChildren(node, children);
  return node;
}

function setAttributes(node, attributes) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    node.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
  }
}

function appendChildren(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function byTestId(id) {
  return document.querySelector(`[data-testid="${id}"]`);
}

// ---- formatting ----

/** -1 is how the API says "nobody could report this". */
function known(value) {
  return typeof value === "number" && value >= 0;
}

function count(value) {
  return known(value) ? numberFormat.format(value) : "–";
}

function bytes(value) {
  if (!known(value)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit++;
  }
  return unit === 0 ? `${scaled} B` : `${scaled.toFixed(1)} ${units[unit]}`;
}

function duration(ms) {
  if (!known(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function rate(value) {
  return rateFormat.format(value);
}

/** `text` cut to `max` characters, its middle elided so the partition number stays visible. */
function shorten(text, max) {
  if (text.length <= max) return text;
  const tail = Math.floor((max - 1) / 2);
  return `${text.slice(0, max - 1 - tail)}…${text.slice(text.length - tail)}`;
}

function sum(values) {
  return values.reduce((total, value) => total + value, 0);
}

// ---- API ----

async function api(path) {
  let response;
  try {
    // Relative paths only: the Basic credentials the browser holds are for this origin.
    response = await fetch(path, { headers: { accept: "application/json" }, credentials: "same-origin" });
  } catch {
    throw new ApiError(`cannot reach the broker at ${location.host}`);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`${path} answered ${response.status} without a JSON body`);
  }
  if (!response.ok) {
    const message = body && typeof body.message === "string" ? body.message : `${path} answered ${response.status}`;
    throw new ApiError(body && typeof body.code === "string" ? `${body.code}: ${message}` : message);
  }
  return body;
}

/** What a failed section shows: the API's message, never a stack. */
function messageOf(reason) {
  return reason instanceof ApiError ? reason.message : "unexpected error while reading the API";
}

// ---- charts (inline SVG) ----

/** The smallest of 1, 2, 5 × 10^n at or above `value`: a y-axis top that reads well. */
function niceCeiling(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/** Points of a polyline over [fromMs, toMs] × [0, top] in a width × height box. */
function linePoints(points, fromMs, toMs, top, width, height, pad) {
  const span = Math.max(1, toMs - fromMs);
  return points
    .map((p) => {
      const x = pad.left + ((p.atMs - fromMs) / span) * (width - pad.left - pad.right);
      const y = pad.top + (1 - p.messagesPerSecond / top) * (height - pad.top - pad.bottom);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(" ");
}

function throughputChart(report) {
  const width = 960;
  const height = 180;
  const pad = { left: 56, right: 12, top: 10, bottom: 22 };
  const windowMs = report.intervalMs * 60;
  const toMs = report.total.length > 0 ? report.total[report.total.length - 1].atMs : Date.now();
  const fromMs = toMs - windowMs;
  const top = niceCeiling(Math.max(0, ...report.total.map((p) => p.messagesPerSecond)));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "messages per second, all user topics" });
  for (const fraction of [0, 0.5, 1]) {
    const y = pad.top + (1 - fraction) * (height - pad.top - pad.bottom);
    chart.append(
      svg("line", { className: "grid", x1: pad.left, x2: width - pad.right, y1: y, y2: y }),
      svg("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" }, rate(top * fraction)),
    );
  }
  chart.append(
    svg("text", { x: pad.left, y: height - 6 }, `−${Math.round(windowMs / 60_000)} min`),
    svg("text", { x: width - pad.right, y: height - 6, "text-anchor": "end" }, "now"),
  );
  if (report.total.length >= 2) {
    const line = linePoints(report.total, fromMs, toMs, top, width, height, pad);
    const first = line.split(" ")[0].split(",")[0];
    const last = line.split(" ").at(-1).split(",")[0];
    const floor = height - pad.bottom;
    chart.append(
      svg("polygon", { className: "area", points: `${first},${floor} ${line} ${last},${floor}` }),
      svg("polyline", { className: "line", points: line, "data-testid": "throughput-line" }),
    );
  }
  return chart;
}

function sparkline(points) {
  const width = 120;
  const height = 24;
  const pad = { left: 1, right: 1, top: 2, bottom: 2 };
  const chart = svg("svg", { className: "sparkline", width, height, viewBox: `0 0 ${width} ${height}`, "data-testid": "sparkline", "aria-hidden": "true" });
  if (points.length < 2) return chart;
  // A sparkline spans the readings there are (a young sampler has only a few), not a fixed window.
  const fromMs = points[0].atMs;
  const toMs = points[points.length - 1].atMs;
  const top = niceCeiling(Math.max(...points.map((p) => p.messagesPerSecond)));
  chart.append(svg("polyline", { className: "line", points: linePoints(points, fromMs, toMs, top, width, height, pad) }));
  return chart;
}

/** One horizontal bar per partition, its length the partition's share of the largest lag. */
function lagChart(partitions) {
  const rowHeight = 20;
  const labelWidth = 150;
  const barWidth = 220;
  const width = labelWidth + barWidth + 70;
  const height = Math.max(1, partitions.length) * rowHeight + 4;
  const largest = Math.max(1, ...partitions.map((p) => (known(p.lag) ? p.lag : 0)));
  const chart = svg("svg", { className: "lag-chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "lag per partition", "data-testid": "lag-chart" });
  partitions.forEach((p, index) => {
    const y = index * rowHeight + 2;
    const length = known(p.lag) ? Math.max(p.lag > 0 ? 2 : 0, (p.lag / largest) * barWidth) : 0;
    chart.append(
      svg(
        "g",
        { "data-testid": "lag-bar", "data-topic": p.topic, "data-partition": p.partition, "data-lag": p.lag },
        svg("title", {}, `${p.topic}/${p.partition}: lag ${count(p.lag)}`),
        svg("text", { className: "bar-label", x: 0, y: y + 13 }, shorten(`${p.topic}/${p.partition}`, LAG_LABEL_CHARS)),
        svg("rect", { className: "bar-track", x: labelWidth, y: y + 3, width: barWidth, height: rowHeight - 6, rx: 2 }),
        svg("rect", { className: "bar", x: labelWidth, y: y + 3, width: length.toFixed(1), height: rowHeight - 6, rx: 2 }),
        svg("text", { className: "bar-label", x: labelWidth + barWidth + 8, y: y + 13 }, count(p.lag)),
      ),
    );
  });
  return chart;
}

// ---- sections ----

function table(headers, rows, attributes = {}) {
  return el(
    "table",
    attributes,
    el("thead", {}, el("tr", {}, headers.map(([label, numeric]) => el("th", { className: numeric ? "num" : undefined }, label)))),
    el("tbody", {}, rows),
  );
}

function cell(value, numeric = false) {
  return el("td", { className: numeric ? "num" : undefined }, value);
}

function badge(text) {
  return el("span", { className: `badge ${String(text).replace(/[^a-z-]/gi, "")}` }, text);
}

function replication(broker) {
  if (broker.role !== "slave" || broker.inSync === null) return "–";
  const lag = `lag ${duration(broker.lagMs ?? 0)} / ${bytes(broker.lagBytes ?? 0)}`;
  return `${broker.inSync ? "in sync" : "behind"} · ${lag}`;
}

function renderCluster(cluster) {
  byTestId("served-by").textContent = cluster.servedBy;
  const rows = cluster.brokers.map((b) =>
    el(
      "tr",
      { "data-testid": "broker-row", "data-broker": `${b.group}/${b.id}` },
      cell(b.group),
      cell(b.id),
      el("td", {}, badge(b.role)),
      el("td", {}, badge(b.state)),
      cell(b.address),
      cell(b.httpAddress || "–"),
      cell(b.epoch, true),
      cell(known(b.heartbeatAgeMs) ? `${duration(b.heartbeatAgeMs)} ago` : "–", true),
      cell(b.partitions, true),
      cell(replication(b)),
    ),
  );
  byTestId("cluster-table").tBodies[0].replaceChildren(...(rows.length > 0 ? rows : [el("tr", {}, el("td", { colspan: 10, className: "empty" }, "no broker registered"))]));
}

function topicTotals(topic) {
  const reported = topic.partitions.filter((p) => known(p.startOffset));
  return {
    start: reported.length > 0 ? sum(reported.map((p) => p.startOffset)) : -1,
    end: reported.length > 0 ? sum(reported.map((p) => p.endOffset)) : -1,
    messages: sum(reported.map((p) => p.endOffset - p.startOffset)),
    size: reported.length > 0 ? sum(reported.map((p) => p.sizeBytes)) : -1,
  };
}

function partitionTable(topic) {
  return table(
    [["Partition", true], ["Broker group"], ["Master"], ["Start", true], ["End", true], ["High watermark", true], ["Size", true], ["Segments", true], ["Problem"]],
    topic.partitions.map((p) =>
      el(
        "tr",
        { "data-testid": "partition-row", "data-partition": p.partition },
        cell(p.partition, true),
        cell(p.group),
        cell(p.master ?? "no live master"),
        cell(count(p.startOffset), true),
        cell(count(p.endOffset), true),
        cell(count(p.highWatermark), true),
        cell(bytes(p.sizeBytes), true),
        cell(count(p.segments), true),
        cell(p.error ?? ""),
      ),
    ),
  );
}

function renderTopics(topics, throughput) {
  const showInternal = byTestId("show-internal").checked;
  const rates = new Map((throughput?.topics ?? []).map((t) => [t.topic, t]));
  const rows = [];
  for (const topic of topics.filter((t) => showInternal || !t.internal)) {
    const totals = topicTotals(topic);
    const traffic = rates.get(topic.topic);
    const open = expandedTopics.has(topic.topic);
    const toggle = el("button", { type: "button", className: "expand", "aria-expanded": String(open) }, topic.topic);
    toggle.addEventListener("click", () => {
      if (expandedTopics.has(topic.topic)) expandedTopics.delete(topic.topic);
      else expandedTopics.add(topic.topic);
      redrawTopics();
    });
    rows.push(
      el(
        "tr",
        { "data-testid": "topic-row", "data-topic": topic.topic, className: topic.internal ? "internal" : undefined },
        el("td", {}, toggle),
        cell(topic.partitions.length, true),
        cell(count(totals.start), true),
        cell(count(totals.end), true),
        el("td", { className: "num", "data-testid": "topic-messages", "data-value": totals.messages }, count(totals.messages)),
        cell(bytes(totals.size), true),
        el("td", { className: "num", "data-testid": "topic-rate" }, traffic ? rate(traffic.messagesPerSecond) : "–"),
        el("td", {}, sparkline(traffic?.points ?? [])),
      ),
    );
    if (open) rows.push(el("tr", { className: "details" }, el("td", { colspan: 8 }, partitionTable(topic))));
  }
  const body = byTestId("topics-table").tBodies[0];
  body.replaceChildren(...(rows.length > 0 ? rows : [el("tr", {}, el("td", { colspan: 8, className: "empty" }, "no topics yet"))]));
}

function redrawTopics() {
  renderTopics(latest.topics, latest.throughput);
}

function renderThroughput(report) {
  const latest = report.total.at(-1);
  byTestId("throughput-total").textContent = latest
    ? `${rate(latest.messagesPerSecond)} msg/s now, all user topics`
    : "sampling every 2 s — the chart starts with the second reading";
  byTestId("throughput-chart").replaceChildren(throughputChart(report));
}

function figure(label, value, attributes = {}) {
  return el("div", { className: "figure" }, el("span", { className: "label" }, label), el("span", { className: "value", ...attributes }, value));
}

/** The group's lag: the sum over partitions whose lag is known; -1 when none is. */
function totalLag(group) {
  const lags = group.partitions.map((p) => p.lag).filter(known);
  return lags.length > 0 ? sum(lags) : -1;
}

function groupHeading(group) {
  const members = `${group.members.length} member${group.members.length === 1 ? "" : "s"}`;
  return el("h3", {}, group.group, " ", badge(group.state), el("span", { className: "hint" }, members));
}

function membersTable(group) {
  if (group.members.length === 0) return el("p", { className: "empty" }, "no members: nothing is consuming now");
  return table(
    [["Member"], ["Client"], ["Assigned partitions"]],
    group.members.map((m) =>
      el(
        "tr",
        { "data-testid": "member-row" },
        cell(m.memberId),
        cell(m.instanceId ? `${m.clientId} (${m.instanceId})` : m.clientId),
        cell(m.assignments.map((a) => `${a.topic}/${a.partition}`).join(", ") || "–"),
      ),
    ),
  );
}

function lagFigures(group) {
  const lag = totalLag(group);
  const oldest = Math.max(-1, ...group.partitions.map((p) => p.lagMs));
  return [
    figure("Lag (messages)", count(lag), { "data-testid": "group-lag", "data-value": lag, className: lag > 0 ? "value lagging" : "value" }),
    figure("Oldest unconsumed", duration(oldest)),
  ];
}

function groupCard(group) {
  return el(
    "article",
    { className: "card", "data-testid": "group", "data-group": group.group },
    groupHeading(group),
    el("div", { className: "figures" }, lagFigures(group)),
    membersTable(group),
    group.partitions.length > 0 ? lagChart(group.partitions) : el("p", { className: "empty" }, "no committed offsets yet"),
  );
}

function deadLetterTable(letters) {
  return table(
    [["DLQ offset", true], ["From"], ["Deliveries", true], ["Error"], ["Value"]],
    letters.deadLetters.map((d) =>
      el(
        "tr",
        { "data-testid": "dead-letter-row" },
        cell(d.offset, true),
        cell(`${d.source.topic}/${d.source.partition} @ ${d.source.offset}`),
        cell(d.deliveries, true),
        previewCell(d.error || "lease expired"),
        previewCell(d.value === null ? "(null)" : d.valueEncoding === "base64" ? `base64:${d.value}` : d.value),
      ),
    ),
  );
}

function previewCell(text) {
  const shown = text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}…` : text;
  return el("td", { className: "preview", title: text.length > PREVIEW_CHARS ? text : undefined }, shown);
}

function queueCard(group, letters) {
  const windows = group.queue;
  const dlqCount = letters.ok ? `${letters.value.deadLetters.length}${letters.value.truncated ? "+" : ""}` : "–";
  return el(
    "article",
    { className: "card wide", "data-testid": "queue-group", "data-group": group.group },
    groupHeading(group),
    el(
      "div",
      { className: "figures" },
      figure("In flight", count(sum(windows.map((q) => q.inFlight))), { "data-testid": "queue-in-flight" }),
      figure("Delayed", count(sum(windows.map((q) => q.delayed)))),
      figure("Redelivered", count(sum(windows.map((q) => q.redelivered)))),
      figure("Dead-lettered", count(sum(windows.map((q) => q.deadLettered)))),
      figure("In the DLQ", dlqCount, { "data-testid": "dlq-count" }),
      lagFigures(group),
    ),
    windows.length > 0
      ? table(
          [["Partition"], ["Window start", true], ["End", true], ["In flight", true], ["Delayed", true], ["Dead pending", true]],
          windows.map((q) =>
            el("tr", {}, cell(`${q.topic}/${q.partition}`), cell(count(q.startOffset), true), cell(count(q.endOffset), true), cell(q.inFlight, true), cell(q.delayed, true), cell(q.deadPending, true)),
          ),
        )
      : el("p", { className: "empty" }, "no partition assigned yet"),
    letters.ok
      ? letters.value.deadLetters.length > 0
        ? [el("p", { className: "subhead" }, `Dead letters, oldest first (up to ${DEAD_LETTERS_SHOWN})`), deadLetterTable(letters.value)]
        : el("p", { className: "empty" }, "dead-letter queue empty")
      : el("p", { className: "section-error" }, `dead letters: ${letters.message}`),
  );
}

function renderGroups(described) {
  const consumers = [];
  const queues = [];
  for (const entry of described) {
    if (!entry.ok) {
      consumers.push(el("p", { className: "section-error" }, `${entry.name}: ${entry.message}`));
    } else if (entry.group.kind === "queue") {
      queues.push(queueCard(entry.group, entry.letters));
    } else {
      consumers.push(groupCard(entry.group));
    }
  }
  byTestId("groups").replaceChildren(...(consumers.length > 0 ? consumers : [el("p", { className: "empty" }, "no consumer groups")]));
  byTestId("queue-groups").replaceChildren(...(queues.length > 0 ? queues : [el("p", { className: "empty" }, "no queue groups")]));
}

// ---- refresh loop ----

async function settle(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (reason) {
    return { ok: false, message: messageOf(reason) };
  }
}

async function describeGroups(listing) {
  return Promise.all(
    listing.groups.map(async ({ group: name, kind }) => {
      const described = await settle(api(`/api/v1/groups/${encodeURIComponent(name)}`));
      if (!described.ok) return { ok: false, name, message: described.message };
      const letters = kind === "queue" ? await settle(api(`/api/v1/groups/${encodeURIComponent(name)}/dead-letters?max=${DEAD_LETTERS_SHOWN}`)) : undefined;
      return { ok: true, group: described.value, letters };
    }),
  );
}

let refreshing = false;

async function refresh() {
  if (refreshing) return;
  refreshing = true;
  try {
    const [cluster, topics, throughput, groups] = await Promise.all([
      settle(api("/api/v1/cluster")),
      settle(api("/api/v1/topics")),
      settle(api("/api/v1/throughput")),
      settle(api("/api/v1/groups").then(describeGroups)),
    ]);
    const problems = [];
    if (cluster.ok) renderCluster(cluster.value);
    else problems.push(`brokers: ${cluster.message}`);
    if (throughput.ok) renderThroughput(throughput.value);
    else problems.push(`throughput: ${throughput.message}`);
    if (throughput.ok) latest.throughput = throughput.value;
    if (topics.ok) {
      latest.topics = topics.value.topics;
      redrawTopics();
    } else {
      problems.push(`topics: ${topics.message}`);
    }
    if (groups.ok) renderGroups(groups.value);
    else problems.push(`groups: ${groups.message}`);
    const banner = byTestId("error-banner");
    banner.textContent = problems.join("\n");
    banner.hidden = problems.length === 0;
    byTestId("updated-at").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
  } finally {
    refreshing = false;
  }
}

// A render that throws (an answer shaped in a way the page did not expect) is shown and
// logged, and the next refresh still comes: one bad answer must not freeze the page.
async function loop() {
  try {
    await refresh();
  } catch (err) {
    console.error("console refresh failed", err);
    const banner = byTestId("error-banner");
    banner.textContent = `the page could not show the latest data: ${err instanceof Error ? err.message : String(err)}`;
    banner.hidden = false;
  } finally {
    setTimeout(loop, REFRESH_MS);
  }
}

byTestId("show-internal").addEventListener("change", redrawTopics);
loop();
