// Usage: one dimension's breakdown (user, group, department, model, provider, agent, tool, MCP
// server, gateway, billing mode; chosen as dim= in the URL), sortable by any of its metrics
// (sort=), paged by cursor, and the same rows as CSV through /v1/export/breakdown. One
// GraphQL request a page.
import { download } from "../api.js";
import { h } from "../dom.js";
import { emptyState } from "../empty.js";
import { fmtInt, fmtMs, fmtPct, fmtUsd } from "../format.js";
import { eventFilter, exportParams, timeRange } from "../state.js";
import { dataTable, label, load, pager, parseSort } from "../tables.js";

const PAGE = 25;
export const DIMENSIONS = [
  ["USER", "User"], ["GROUP", "Group"], ["DEPARTMENT", "Department"], ["MODEL", "Model"],
  ["PROVIDER", "Provider"], ["AGENT", "Agent"], ["TOOL", "Tool"], ["MCP_SERVER", "MCP server"],
  ["GATEWAY", "Gateway"], ["BILLING_MODE", "Billing mode"],
];
// [Metric, label, formatter]
export const METRICS = [
  ["REQUESTS", "Requests", fmtInt],
  ["ERRORS", "Errors", fmtInt],
  ["ERROR_RATE", "Error rate", fmtPct],
  ["INPUT_TOKENS", "Input tokens", fmtInt],
  ["OUTPUT_TOKENS", "Output tokens", fmtInt],
  ["TOTAL_TOKENS", "Total tokens", fmtInt],
  ["COST_USD", "Cost", fmtUsd],
  ["AVG_LATENCY_MS", "Avg latency", fmtMs],
  ["P95_LATENCY_MS", "p95 latency", fmtMs],
];
const METRIC_NAMES = METRICS.map(([m]) => m);

const QUERY = `query ConsoleUsage($dimension: Dimension!, $metrics: [Metric!]!, $range: TimeRangeInput!,
    $filter: EventFilter, $orderBy: Metric, $descending: Boolean!, $after: String) {
  usage: breakdown(dimension: $dimension, metrics: $metrics, range: $range, filter: $filter,
                   orderBy: $orderBy, descending: $descending, first: ${PAGE}, after: $after) {
    totalCount rowsOverlap hasNextPage endCursor nodes { key values }
  }
}`;

export function usageDimension(state) {
  return DIMENSIONS.some(([d]) => d === state.dim) ? state.dim : DIMENSIONS[0][0];
}

export default {
  id: "usage",
  label: "Usage",
  async render(ctx) {
    const { state } = ctx;
    const dimension = usageDimension(state);
    const dimLabel = DIMENSIONS.find(([d]) => d === dimension)[1];
    const sort = parseSort(state.sort, METRIC_NAMES, "COST_USD");
    const cursors = [null];
    const tabs = h("nav", { class: "tabs", "aria-label": "Break usage down by" },
      DIMENSIONS.map(([d, l]) => h("button", {
        type: "button", "aria-pressed": String(d === dimension), "data-dim": d,
        onclick: () => ctx.navigate({ dim: d, sort: state.sort }),
      }, l)));
    const exportStatus = h("span", { class: "muted small", role: "status" });
    const csv = h("button", {
      type: "button", class: "csv",
      onclick: async () => {
        const params = exportParams(state);
        params.set("format", "csv");
        params.set("dimension", dimension);
        params.set("metrics", METRIC_NAMES.join(","));
        params.set("orderBy", sort.orderBy);
        params.set("descending", String(sort.descending));
        exportStatus.textContent = "Preparing the CSV…";
        try {
          const name = await download("/v1/export/breakdown", params);
          exportStatus.textContent = `Downloaded ${name}.`;
        } catch (error) {
          exportStatus.textContent = `The export failed: ${error.message}`;
        }
      },
    }, "Download CSV");
    const show = (page) => load(ctx, "Usage", QUERY, {
      dimension, metrics: METRIC_NAMES, range: timeRange(state), filter: eventFilter(state),
      orderBy: sort.orderBy, descending: sort.descending, after: cursors[page],
    }, ({ usage }) => {
      if (usage.totalCount === 0) return [tabs, emptyState(state, ctx)];
      if (usage.hasNextPage) cursors[page + 1] = usage.endCursor;
      const connection = {
        nodes: usage.nodes, totalCount: usage.totalCount, pageInfo: { hasNextPage: usage.hasNextPage },
      };
      return [
        tabs,
        h("div", { class: "toolbar" },
          pager(`Pages of ${dimLabel.toLowerCase()}s`, page, PAGE, connection, show),
          csv, exportStatus),
        usage.rowsOverlap ? h("p", { class: "muted small" },
          `An event may count under several ${dimLabel.toLowerCase()}s: the rows overlap and do not add up to the total.`) : null,
        dataTable({
          caption: `Usage by ${dimLabel.toLowerCase()}`, cls: "usage", sort, ctx,
          columns: [
            { label: dimLabel, cell: (n) => label(n.key, `(no ${dimLabel.toLowerCase()})`) },
            ...METRICS.map(([metric, l, format], i) => ({
              label: l, metric, format, order: metric, get: (n) => n.values[i],
            })),
          ],
          rows: usage.nodes,
          rowAttrs: (n) => ({ "data-key": n.key ?? "" }),
        }),
      ];
    }, 10);
    await show(0);
  },
};
