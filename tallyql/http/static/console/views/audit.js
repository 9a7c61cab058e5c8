// Audit trail: who did what to which resource, from where, with what outcome, newest first,
// under the range and the audit trail's own filter (actions, outcomes, actor types, actors,
// resource types and ids, source IPs: kept in the URL), paged by cursor, with each event's
// details one click away and the same events as CSV through /v1/export/audit-events.
import { download } from "../api.js";
import { h } from "../dom.js";
import { DASH, fmtDateTime } from "../format.js";
import { AUDIT_FILTERS, CUSTOM, auditFilter, timeRange } from "../state.js";
import { dataTable, load, pager } from "../tables.js";

const PAGE = 50;
const QUERY = `query ConsoleAudit($range: TimeRangeInput, $filter: AuditFilter, $after: String) {
  auditEvents(range: $range, filter: $filter, first: ${PAGE}, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id timestamp actorId actorType action resourceType resourceId sourceIp outcome details }
  }
}`;

function words(value) {
  return value.toLowerCase().replaceAll("_", " ");
}

function filterForm(state, ctx) {
  const audit = state.audit || {};
  const chips = AUDIT_FILTERS.flatMap(({ field, label }) => (audit[field] || []).map((value) =>
    h("li", { class: "chip", "data-filter": field, "data-value": value },
      h("span", {}, h("span", { class: "muted" }, `${label}: `), value),
      h("button", {
        type: "button", "aria-label": `Remove the audit filter ${label} ${value}`,
        onclick: () => ctx.navigate({ audit: { ...audit, [field]: audit[field].filter((v) => v !== value) } }),
      }, "×"))));
  const field = h("select", { id: "audit-field", "aria-label": "Audit filter on" },
    AUDIT_FILTERS.map((f) => h("option", { value: f.field }, f.label)));
  const choice = h("select", { id: "audit-choice", "aria-label": "Audit filter value" });
  const text = h("input", { id: "audit-value", "aria-label": "Audit filter value", placeholder: "value", hidden: true });
  const sync = () => {
    const f = AUDIT_FILTERS.find((x) => x.field === field.value);
    choice.hidden = !f.values;
    text.hidden = !!f.values;
    if (f.values) choice.replaceChildren(...f.values.map((v) => h("option", { value: v }, words(v))));
  };
  field.addEventListener("change", sync);
  sync();
  return h("section", { class: "filters audit-filters", "aria-label": "Audit filters" },
    h("ul", { class: "chips" }, chips.length ? chips : h("li", { class: "muted" }, "Every audit event.")),
    h("form", {
      class: "add-filter",
      onsubmit: (event) => {
        event.preventDefault();
        const f = AUDIT_FILTERS.find((x) => x.field === field.value);
        const value = (f.values ? choice.value : text.value).trim();
        if (!value) return;
        ctx.navigate({ audit: { ...audit, [f.field]: [...new Set([...(audit[f.field] || []), value])] } });
      },
    }, field, choice, text, h("button", { type: "submit" }, "Add audit filter")));
}

function exportButton(state) {
  const status = h("span", { class: "muted small", role: "status" });
  return [h("button", {
    type: "button", class: "csv",
    onclick: async () => {
      const params = new URLSearchParams({ format: "csv", timezone: state.tz });
      const range = timeRange(state);
      if (state.range === CUSTOM) {
        params.set("start", range.start);
        params.set("end", range.end);
      } else params.set("preset", state.range);
      for (const [name, values] of Object.entries(auditFilter(state) || {})) {
        for (const v of values) params.append(name, v);
      }
      status.textContent = "Preparing the CSV…";
      try {
        status.textContent = `Downloaded ${await download("/v1/export/audit-events", params)}.`;
      } catch (error) {
        status.textContent = `The export failed: ${error.message}`;
      }
    },
  }, "Download CSV"), status];
}

export default {
  id: "audit",
  label: "Audit trail",
  usesFilters: false,
  async render(ctx) {
    const { state } = ctx;
    const cursors = [null];
    const show = (page) => load(ctx, "Audit trail", QUERY, {
      range: timeRange(state), filter: auditFilter(state), after: cursors[page],
    }, ({ auditEvents: events }) => {
      if (events.pageInfo.hasNextPage) cursors[page + 1] = events.pageInfo.endCursor;
      const intro = h("p", { class: "muted" }, "Changes to keys, budgets, alert rules, prices and users, exports, and calls blocked by policies, newest first. The event filters do not apply to the audit trail; these do:");
      const form = filterForm(state, ctx);
      if (events.totalCount === 0) {
        return [intro, form, h("div", { class: "empty", role: "status" },
          h("h2", {}, "No audit events match"),
          h("p", {}, "Widen the range or remove an audit filter. Your own systems may add events through POST /v1/audit-events.")) ];
      }
      return [
        intro, form,
        h("div", { class: "toolbar" }, pager("Pages of audit events", page, PAGE, events, show), exportButton(state)),
        dataTable({
          caption: "Audit events, newest first", cls: "audit", rows: events.nodes,
          rowAttrs: (e) => ({ "data-id": e.id, class: e.outcome === "SUCCESS" ? "" : "is-error" }),
          columns: [
            { label: "Time", cell: (e) => fmtDateTime(e.timestamp, state.tz) },
            { label: "Actor", cell: (e) => [e.actorId || DASH, h("span", { class: "muted" }, ` ${words(e.actorType)}`)] },
            { label: "Action", cell: (e) => words(e.action) },
            { label: "Resource", cell: (e) => [e.resourceType, e.resourceId ? h("span", { class: "muted" }, ` ${e.resourceId}`) : ""] },
            { label: "Source IP", cell: (e) => e.sourceIp || DASH },
            { label: "Outcome", cell: (e) => h("span", { class: `badge outcome-${e.outcome.toLowerCase()}` }, words(e.outcome)) },
            {
              label: "Details",
              cell: (e) => (e.details && Object.keys(e.details).length
                ? h("details", {}, h("summary", {}, "show"), h("pre", { class: "code" }, JSON.stringify(e.details, null, 2)))
                : DASH),
            },
          ],
        }),
      ];
    }, 10);
    await show(0);
  },
};
