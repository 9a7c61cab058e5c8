// Workspaces (operator admins only: admin keys of TALLYQL_OPERATOR_WORKSPACE): every
// workspace's requests, tokens and cost with its share, platform totals, daily cost by
// provider, spend on callers' own keys against the platform's, and cost anomalies. One
// GraphQL request (workspaces).
import { stackedBars } from "../charts.js";
import { h } from "../dom.js";
import { fmtCompact, fmtDay, fmtInt, fmtPct, fmtUsd } from "../format.js";
import { timeRange } from "../state.js";
import { card, dataTable, load, panel, parseSort } from "../tables.js";

const ORDERS = ["COST", "REQUESTS", "TOKENS", "NAME"];
const QUERY = `query ConsoleWorkspaces($range: TimeRangeInput!, $orderBy: WorkspaceOrder!, $descending: Boolean!) {
  workspaces(range: $range, orderBy: $orderBy, descending: $descending) {
    nodes { id name createdAt requests errors inputTokens outputTokens totalTokens costUsd costShare }
    totals { workspaces activeWorkspaces requests errors totalTokens costUsd }
    dailyCostByProvider { buckets series { group isOther values } }
    byokVsPlatform { byokCostUsd platformCostUsd byokRequests platformRequests byokShare }
    anomalies { kind workspaceId workspaceName day costUsd baselineUsd ratio }
  }
}`;

const ANOMALY = {
  HIGH_COST: "cost above twice the active workspaces' average",
  COST_JUMP: "a day's cost at least twice the day before",
};

export default {
  id: "workspaces",
  label: "Workspaces",
  usesFilters: false,
  operatorOnly: true,
  async render(ctx) {
    const { state } = ctx;
    const sort = parseSort(state.sort, ORDERS);
    await load(ctx, "Workspaces", QUERY, { range: timeRange(state), ...sort }, ({ workspaces: w }) => {
      const t = w.totals;
      const split = w.byokVsPlatform;
      const daily = w.dailyCostByProvider;
      const chart = daily.series.length ? stackedBars({
        title: "Cost per day by provider, every workspace (USD)",
        buckets: daily.buckets,
        series: daily.series.map((s) => ({ label: s.isOther ? "Other providers" : s.group ?? "(no provider)", values: s.values, format: fmtUsd, other: s.isOther })),
        timeZone: state.tz,
        formatX: (iso) => fmtDay(iso, state.tz),
        format: fmtUsd,
      }) : null;
      if (chart) ctx.onLeave(() => chart.dispose());
      return [
        h("p", { class: "muted" }, "Across every workspace of this server (your key belongs to the operator workspace). The event filters do not apply here."),
        h("section", { class: "kpis", "aria-label": "Platform totals" },
          card("Workspaces", "totals.workspaces", t.workspaces, fmtInt(t.workspaces)),
          card("Active", "totals.activeWorkspaces", t.activeWorkspaces, fmtInt(t.activeWorkspaces), "with events in range"),
          card("Requests", "totals.requests", t.requests, fmtCompact(t.requests)),
          card("Errors", "totals.errors", t.errors, fmtCompact(t.errors)),
          card("Tokens", "totals.totalTokens", t.totalTokens, fmtCompact(t.totalTokens)),
          card("Cost", "totals.costUsd", t.costUsd, fmtUsd(t.costUsd)),
          card("On callers' own keys", "byokVsPlatform.byokCostUsd", split.byokCostUsd, fmtUsd(split.byokCostUsd),
            split.byokShare == null ? "no spend" : `${fmtPct(split.byokShare)} of spend (BYOK)`),
          card("On the platform's keys", "byokVsPlatform.platformCostUsd", split.platformCostUsd, fmtUsd(split.platformCostUsd))),
        panel("Anomalies", w.anomalies, dataTable({
          caption: "Cost anomalies", cls: "anomalies", rows: w.anomalies,
          columns: [
            { label: "Workspace", cell: (a) => a.workspaceName || a.workspaceId },
            { label: "What", cell: (a) => ANOMALY[a.kind] || a.kind },
            { label: "Day", cell: (a) => (a.day ? fmtDay(a.day, state.tz) : "the whole range") },
            { label: "Cost", metric: "costUsd", get: (a) => a.costUsd, format: fmtUsd },
            { label: "Baseline", metric: "baselineUsd", get: (a) => a.baselineUsd, format: fmtUsd },
            { label: "Ratio", metric: "ratio", get: (a) => a.ratio, format: (v) => (v == null ? "—" : `${v.toFixed(1)}×`) },
          ],
        }), "No anomaly in this range."),
        chart,
        dataTable({
          caption: "Workspaces", cls: "workspaces", sort, ctx, rows: w.nodes,
          rowAttrs: (n) => ({ "data-key": n.name }),
          columns: [
            { label: "Workspace", cell: (n) => n.name },
            { label: "Requests", metric: "requests", get: (n) => n.requests, format: fmtInt, order: "REQUESTS" },
            { label: "Errors", metric: "errors", get: (n) => n.errors, format: fmtInt },
            { label: "Tokens", metric: "totalTokens", get: (n) => n.totalTokens, format: fmtInt, order: "TOKENS" },
            { label: "Cost", metric: "costUsd", get: (n) => n.costUsd, format: fmtUsd, order: "COST" },
            { label: "Share of cost", metric: "costShare", get: (n) => n.costShare, format: fmtPct },
          ],
        }),
      ];
    });
  },
};
