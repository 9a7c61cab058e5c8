// Errors: how many events failed and their share, by error type and by model, and over time
// (errors by type and the error rate per bucket). One GraphQL request (errors and timeseries).
import { stackedBars, timeChart } from "../charts.js";
import { h } from "../dom.js";
import { emptyState } from "../empty.js";
import { fmtCompact, fmtDateTime, fmtDay, fmtInt, fmtPct, fmtTime } from "../format.js";
import { eventFilter, timeRange } from "../state.js";
import { card, dataTable, label, load, panel } from "../tables.js";

const QUERY = `query ConsoleErrors($range: TimeRangeInput!, $filter: EventFilter) {
  errors(range: $range, filter: $filter) {
    totalErrors errorRate
    byType { type count }
    byModel { model provider errors errorRate }
  }
  overTime: timeseries(metrics: [ERRORS, ERROR_RATE], range: $range, filter: $filter) {
    granularity buckets series { metric values }
  }
  byType: timeseries(metrics: [ERRORS], range: $range, filter: $filter, groupBy: ERROR_TYPE,
                     limitGroups: 6) {
    buckets series { group isOther values }
  }
}`;

export default {
  id: "errors",
  label: "Errors",
  async render(ctx) {
    const { state } = ctx;
    await load(ctx, "Errors", QUERY, { range: timeRange(state), filter: eventFilter(state) }, ({ errors: e, overTime, byType }) => {
      const byMetric = Object.fromEntries(overTime.series.map((s) => [s.metric, s.values]));
      const any = byMetric.ERROR_RATE.some((v) => v != null);
      if (!any) return emptyState(state, ctx);
      const kpis = h("section", { class: "kpis", "aria-label": "Error figures" },
        card("Errors", "totalErrors", e.totalErrors, fmtInt(e.totalErrors), "events with status error"),
        card("Error rate", "errorRate", e.errorRate, fmtPct(e.errorRate), "of all events"));
      if (e.totalErrors === 0) {
        return [kpis, h("div", { class: "empty", role: "status" },
          h("h2", {}, "No errors in this range"), h("p", {}, "Every event in this range and under these filters succeeded or was blocked."))];
      }
      const formatX = (iso) => fmtDateTime(iso, state.tz, false);
      const per = overTime.granularity.toLowerCase();
      // events that did not fail have no error type: their group counts no error
      const typed = byType.series.filter((s) => s.values.some((v) => v));
      const charts = [
        stackedBars({
          title: `Errors per ${per} by type`, buckets: byType.buckets, timeZone: state.tz,
          // the axis names each bar's bucket: its day, or its time within a short range
          formatX: ["MINUTE", "HOUR"].includes(overTime.granularity) ? (iso) => fmtTime(iso, state.tz) : (iso) => fmtDay(iso, state.tz),
          format: fmtCompact, integer: true,
          series: typed.map((s) => ({
            label: s.isOther ? "Other types" : s.group ? s.group.toLowerCase().replaceAll("_", " ") : "(not given)",
            values: s.values, format: fmtCompact, other: s.isOther,
          })),
        }),
        timeChart({
          title: `Error rate per ${per}`, buckets: overTime.buckets, timeZone: state.tz, formatX,
          series: [{ label: "Error rate", values: byMetric.ERROR_RATE, format: fmtPct }],
        }),
      ];
      ctx.onLeave(() => charts.forEach((c) => c.dispose()));
      return [
        kpis,
        h("section", { class: "charts" }, charts),
        h("section", { class: "tops" },
          panel("By error type", e.byType, dataTable({
            caption: "Errors by type", cls: "errors-by-type", rows: e.byType,
            columns: [
              { label: "Error type", cell: (t) => label(t.type && t.type.toLowerCase().replaceAll("_", " "), "(not given)") },
              { label: "Errors", metric: "count", get: (t) => t.count, format: fmtInt },
              { label: "Share", metric: "share", get: (t) => t.count / e.totalErrors, format: fmtPct },
            ],
          })),
          panel("By model", e.byModel, dataTable({
            caption: "Errors by model", cls: "errors-by-model", rows: e.byModel,
            columns: [
              { label: "Model", cell: (m) => [label(m.model, "(no model: tools, runs)"), m.provider ? h("span", { class: "muted" }, ` ${m.provider}`) : ""] },
              { label: "Errors", metric: "errors", get: (m) => m.errors, format: fmtInt },
              { label: "Error rate", metric: "errorRate", get: (m) => m.errorRate, format: fmtPct },
            ],
          }))),
      ];
    });
  },
};
