// Overview: the headline figures with the previous period's change, volume and cost over
// time, top models and users. One GraphQL request.
import { gql } from "../api.js";
import { timeChart } from "../charts.js";
import { errorBox, figure, h, skeleton } from "../dom.js";
import { emptyState } from "../empty.js";
import {
  fmtCompact, fmtDateTime, fmtInt, fmtMs, fmtPct, fmtSignedPct, fmtSignedPoints, fmtUsd,
} from "../format.js";
import { eventFilter, timeRange } from "../state.js";

const QUERY = `query ConsoleOverview($range: TimeRangeInput!, $filter: EventFilter) {
  overview(range: $range, filter: $filter) {
    totalRequests successRate p95LatencyMs totalTokens costUsd
    activeUsers activeAgents activeTools activeGateways start end
    changes { field current previous absolute relative relativeNote }
  }
  volume: timeseries(metrics: [REQUESTS, ERRORS, COST_USD], range: $range, filter: $filter) {
    granularity buckets series { metric values }
  }
  topModels: breakdown(dimension: MODEL, metrics: [COST_USD, REQUESTS, TOTAL_TOKENS],
                       range: $range, filter: $filter, first: 5) { nodes { key values } }
  topUsers: breakdown(dimension: USER, metrics: [COST_USD, REQUESTS, TOTAL_TOKENS],
                      range: $range, filter: $filter, first: 5) { nodes { key values } }
}`;

// [Overview field, label, formatter, note]
const KPIS = [
  ["totalRequests", "Requests", fmtCompact, "events of every kind"],
  ["successRate", "Success rate", fmtPct, "share of events with status success"],
  ["p95LatencyMs", "p95 latency", fmtMs, "LLM calls only"],
  ["totalTokens", "Total tokens", fmtCompact, "input plus output"],
  ["costUsd", "Cost", fmtUsd, "USD"],
  ["activeUsers", "Active users", fmtInt, "distinct end users"],
  ["activeAgents", "Agents", fmtInt, "distinct agents"],
  ["activeTools", "Tools", fmtInt, "distinct tools called"],
  ["activeGateways", "Gateways", fmtInt, "distinct gateways"],
];

const NOTES = {
  NO_VALUE: "no figure to compare",
  NO_BASELINE: "nothing in the previous period to compare",
  NEGLIGIBLE_BASELINE: "previous period too small to compare",
};

function changeText(field, change) {
  if (!change) return null;
  if (field === "successRate") {
    if (change.absolute == null) return change.previous == null ? NOTES.NO_BASELINE : NOTES.NO_VALUE;
    return `${fmtSignedPoints(change.absolute)} vs previous period`;
  }
  if (change.relative == null) return NOTES[change.relativeNote] || NOTES.NO_VALUE;
  return `${fmtSignedPct(change.relative)} vs previous period`;
}

function kpiCard([field, label, format, note], overview, change) {
  const value = overview[field];
  const delta = changeText(field, change);
  const direction = change && (field === "successRate" ? change.absolute : change.relative);
  return h("article", { class: "kpi", "aria-label": label },
    h("h3", {}, label),
    figure("p", field, value, format(value), { class: "kpi-value", title: String(value ?? "") }),
    h("p", { class: "kpi-note" }, note),
    delta && h("p", {
      class: `kpi-change ${direction > 0 ? "up" : direction < 0 ? "down" : ""}`,
      "data-metric": `${field}.previous`,
      "data-value": change.previous == null ? "" : String(change.previous),
    }, `${direction > 0 ? "▲ " : direction < 0 ? "▼ " : ""}${delta}`));
}

function topTable(title, dimensionLabel, connection, ctx) {
  const nodes = connection.nodes;
  return h("section", { class: "panel" },
    h("h2", {}, title),
    nodes.length === 0 ? h("p", { class: "muted" }, "Nothing in this range.") :
      h("table", { class: "data" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, dimensionLabel),
          h("th", { scope: "col", class: "num" }, "Cost"),
          h("th", { scope: "col", class: "num" }, "Requests"),
          h("th", { scope: "col", class: "num" }, "Tokens"))),
        h("tbody", {}, nodes.map((node) => h("tr", {},
          h("th", { scope: "row" }, node.key ?? h("span", { class: "muted" }, `(no ${dimensionLabel.toLowerCase()})`)),
          figure("td", "COST_USD", node.values[0], fmtUsd(node.values[0]), { class: "num" }),
          figure("td", "REQUESTS", node.values[1], fmtInt(node.values[1]), { class: "num" }),
          figure("td", "TOTAL_TOKENS", node.values[2], fmtInt(node.values[2]), { class: "num" }))))));
}

export default {
  id: "overview",
  label: "Overview",
  async render(ctx) {
    const { main, state } = ctx;
    main.replaceChildren(h("h1", {}, "Overview"), skeleton(6));
    let data;
    try {
      data = await gql(QUERY, { range: timeRange(state), filter: eventFilter(state) });
    } catch (error) {
      main.replaceChildren(h("h1", {}, "Overview"), errorBox(error));
      return;
    }
    if (ctx.stale()) return;
    const { overview, volume } = data;
    const changes = Object.fromEntries(overview.changes.map((c) => [c.field, c]));
    const header = h("h1", {}, "Overview");
    const window = h("p", { class: "muted" },
      `${fmtDateTime(overview.start, state.tz, false)} to ${fmtDateTime(overview.end, state.tz, false)} (${state.tz})`);
    if (overview.totalRequests === 0) {
      main.replaceChildren(header, window, emptyState(state, ctx));
      return;
    }
    const byMetric = Object.fromEntries(volume.series.map((s) => [s.metric, s.values]));
    const formatX = (iso) => fmtDateTime(iso, state.tz, false);
    const charts = [
      timeChart({
        title: `Requests per ${volume.granularity.toLowerCase()}`,
        buckets: volume.buckets,
        series: [
          { label: "Requests", values: byMetric.REQUESTS, format: fmtCompact },
          { label: "Errors", values: byMetric.ERRORS, format: fmtCompact },
        ],
        timeZone: state.tz,
        formatX,
      }),
      timeChart({
        title: `Cost per ${volume.granularity.toLowerCase()} (USD)`,
        buckets: volume.buckets,
        series: [{ label: "Cost", values: byMetric.COST_USD, format: fmtUsd }],
        timeZone: state.tz,
        formatX,
        kind: "bars",
      }),
    ];
    ctx.onLeave(() => charts.forEach((c) => c.dispose()));
    main.replaceChildren(
      header,
      window,
      h("section", { class: "kpis", "aria-label": "Key figures" },
        KPIS.map((kpi) => kpiCard(kpi, overview, changes[kpi[0]]))),
      h("p", { class: "muted small" },
        "Latency covers LLM calls only: one percentile over model calls, tool calls and agent runs would describe none of them."),
      h("section", { class: "charts" }, charts),
      h("section", { class: "tops" },
        topTable("Top models by cost", "Model", data.topModels, ctx),
        topTable("Top users by cost", "User", data.topUsers, ctx)),
    );
  },
};
