// Costs: daily cost by model (stacked), the cost trend and month projection, what drives the
// cost, recommendations with their estimated savings, and up to four models side by side
// (chosen in the page, kept in the URL as compare=). One GraphQL request, and one for the
// OpenRouter connection's last sync (provider.js) when the workspace has one.
import { gql } from "../api.js";
import { stackedBars } from "../charts.js";
import { errorBox, figure, h, skeleton } from "../dom.js";
import { emptyState } from "../empty.js";
import { DASH, fmtDay, fmtInt, fmtMs, fmtPct, fmtUsd } from "../format.js";
import { MAX_COMPARE, eventFilter, timeRange } from "../state.js";
import { providerPanel } from "../provider.js";

const TOP_MODELS = 7; // the palette's colours; the rest are summed as "other models"

const SHARE = "key provider costUsd requests share";
const QUERY = `query ConsoleCosts($range: TimeRangeInput!, $filter: EventFilter,
    $compare: [ModelRefInput!]!, $comparing: Boolean!) {
  costInsights(range: $range, filter: $filter) {
    totalUsd
    trend { currentUsd previousUsd direction percent percentNote }
    projectedMonth { daysWithData dailyAverageUsd projectedUsd previousProjectedUsd changePercent changeNote }
    topModels { ${SHARE} }
    topUsers { ${SHARE} }
    topAgents { ${SHARE} }
    byRequestType { ${SHARE} }
    recommendations { kind title estimatedSavingUsd provider model suggestedModel }
  }
  daily: dailyCostByModel(range: $range, filter: $filter, top: ${TOP_MODELS}) {
    buckets totals series { model isOther values totalUsd }
  }
  comparison: modelComparison(models: $compare, range: $range, filter: $filter) @include(if: $comparing) {
    provider model contextWindow requests errorRate costUsd avgCostPerRequestUsd
    avgInputTokens avgOutputTokens avgLatencyMs p95LatencyMs avgTtftMs
    price { source inputPerMtok outputPerMtok cacheReadPerMtok }
  }
}`;

const NOTES = {
  NO_VALUE: "no figure to compare",
  NO_BASELINE: "nothing in the previous period to compare",
  NEGLIGIBLE_BASELINE: "previous period too small to compare",
};

function signedPercent(percent) {
  const sign = percent > 0 ? "+" : percent < 0 ? "−" : "±";
  return `${sign}${Math.abs(percent).toFixed(1)} %`;
}

function card(label, metric, value, text, note) {
  return h("article", { class: "kpi", "aria-label": label },
    h("h3", {}, label), figure("p", metric, value, text, { class: "kpi-value" }),
    note ? h("p", { class: "kpi-note" }, note) : null);
}

function shareTable(title, label, shares, noKey) {
  return h("section", { class: "panel" }, h("h2", {}, title),
    shares.length === 0 ? h("p", { class: "muted" }, "Nothing in this range.") :
      h("table", { class: "data" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, label),
          ["Cost", "Share", "Requests"].map((c) => h("th", { scope: "col", class: "num" }, c)))),
        h("tbody", {}, shares.map((s) => h("tr", {},
          h("th", { scope: "row" }, s.key ?? h("span", { class: "muted" }, noKey),
            s.provider ? h("span", { class: "muted" }, ` ${s.provider}`) : ""),
          figure("td", "costUsd", s.costUsd, fmtUsd(s.costUsd), { class: "num" }),
          figure("td", "share", s.share, fmtPct(s.share), { class: "num" }),
          figure("td", "requests", s.requests, fmtInt(s.requests), { class: "num" }))))));
}

// [field, label, formatter] of the comparison table's rows
const COMPARE_ROWS = [
  ["provider", "Provider", (v) => v ?? DASH],
  ["requests", "Requests", fmtInt],
  ["costUsd", "Cost", fmtUsd],
  ["avgCostPerRequestUsd", "Cost per request", fmtUsd],
  ["errorRate", "Error rate", fmtPct],
  ["avgInputTokens", "Avg input tokens", fmtInt],
  ["avgOutputTokens", "Avg output tokens", fmtInt],
  ["avgLatencyMs", "Avg latency", fmtMs],
  ["p95LatencyMs", "p95 latency", fmtMs],
  ["avgTtftMs", "Avg time to first token", fmtMs],
  ["contextWindow", "Context window (tokens)", fmtInt],
  ["price.inputPerMtok", "Input price (USD per million tokens)", fmtUsd],
  ["price.outputPerMtok", "Output price (USD per million tokens)", fmtUsd],
  ["price.cacheReadPerMtok", "Cache read price (USD per million tokens)", fmtUsd],
];

function pick(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? o : o[k]), obj);
}

function comparison(state, ctx, models, rows) {
  const chosen = new Set(state.compare);
  const boxes = models.filter((m) => m.key != null).map((m) => h("label", { class: "check" },
    h("input", {
      type: "checkbox", name: "compare", value: m.key, checked: chosen.has(m.key),
      disabled: !chosen.has(m.key) && chosen.size >= MAX_COMPARE,
      onchange: (event) => {
        const next = event.target.checked ? [...state.compare, m.key] : state.compare.filter((k) => k !== m.key);
        ctx.navigate({ compare: next });
      },
    }), ` ${m.key}`));
  const section = h("section", { class: "panel compare", "aria-label": "Model comparison" },
    h("h2", {}, `Compare models (up to ${MAX_COMPARE})`),
    h("fieldset", {}, h("legend", { class: "sr-only" }, "Models to compare"), boxes));
  if (!rows || rows.length === 0) {
    section.append(h("p", { class: "muted" }, "Tick models above to see them side by side over this range."));
    return section;
  }
  section.append(h("div", { class: "table-wrap" }, h("table", { class: "data comparison" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Figure"),
      rows.map((r) => h("th", { scope: "col", class: "num" }, r.model)))),
    h("tbody", {}, COMPARE_ROWS.map(([field, label, format]) => h("tr", {},
      h("th", { scope: "row" }, label),
      rows.map((r) => field === "provider"
        ? h("td", { class: "num" }, format(r.provider))
        : figure("td", field, pick(r, field), format(pick(r, field)), { class: "num", "data-model": r.model }))))))));
  return section;
}

export default {
  id: "costs",
  label: "Costs",
  async render(ctx) {
    const { main, state } = ctx;
    const title = h("h1", {}, "Costs");
    main.replaceChildren(title, skeleton(8));
    let data;
    let provider;
    try {
      [data, provider] = await Promise.all([gql(QUERY, {
        range: timeRange(state),
        filter: eventFilter(state),
        compare: state.compare.map((model) => ({ model })),
        comparing: state.compare.length > 0,
      }), providerPanel(ctx)]);
    } catch (error) {
      main.replaceChildren(title, errorBox(error));
      return;
    }
    if (ctx.stale()) return;
    const { costInsights: insights, daily } = data;
    if (daily.series.length === 0 && insights.totalUsd === 0) {
      main.replaceChildren(title, emptyState(state, ctx), provider ?? "");
      return;
    }
    const trend = insights.trend;
    const month = insights.projectedMonth;
    const chart = stackedBars({
      title: "Cost per day by model (USD)",
      buckets: daily.buckets,
      series: daily.series.map((s) => ({
        label: s.isOther ? "Other models" : s.model ?? "(no model)",
        values: s.values,
        format: fmtUsd,
        other: s.isOther,
      })),
      timeZone: state.tz,
      formatX: (iso) => fmtDay(iso, state.tz),
      format: fmtUsd,
    });
    ctx.onLeave(() => chart.dispose());
    const recommendations = insights.recommendations;
    main.replaceChildren(title,
      h("section", { class: "kpis", "aria-label": "Cost figures" },
        card("Cost in range", "totalUsd", insights.totalUsd, fmtUsd(insights.totalUsd)),
        card("Previous period", "trend.previousUsd", trend.previousUsd, fmtUsd(trend.previousUsd),
          trend.percent == null ? NOTES[trend.percentNote] : `${signedPercent(trend.percent)} now (${trend.direction.toLowerCase()})`),
        card("Average per day with cost", "projectedMonth.dailyAverageUsd", month.dailyAverageUsd,
          fmtUsd(month.dailyAverageUsd), `over ${fmtInt(month.daysWithData)} days`),
        card("Projected month", "projectedMonth.projectedUsd", month.projectedUsd, fmtUsd(month.projectedUsd),
          month.changePercent == null ? NOTES[month.changeNote] || "daily average × 30"
            : `${signedPercent(month.changePercent)} vs the previous period's projection`)),
      chart,
      h("section", { class: "panel recommendations" },
        h("h2", {}, "Recommendations"),
        recommendations.length === 0 ? h("p", { class: "muted" }, "No way to spend less stands out in this range.") :
          h("ul", {}, recommendations.map((r) => h("li", {},
            r.title.replace(/\.?$/, "."), " Saves about ",
            figure("strong", "estimatedSavingUsd", r.estimatedSavingUsd, fmtUsd(r.estimatedSavingUsd)),
            " over this range.")))),
      h("section", { class: "tops" },
        shareTable("Cost by model", "Model", insights.topModels, "(no model)"),
        shareTable("Cost by user", "User", insights.topUsers, "(no user)"),
        shareTable("Cost by agent", "Agent", insights.topAgents, "(no agent)"),
        shareTable("Cost by request type", "Request type", insights.byRequestType, "(none)")),
      comparison(state, ctx, insights.topModels, data.comparison),
      provider ?? "");
  },
};
