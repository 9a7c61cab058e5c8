// Budgets and alerts: the budgets with their spend, projection and status, and the alert
// rules with their state; admins create, edit and delete budgets, admins and members alert
// rules (the API's own permissions; other roles see no edit controls). One GraphQL request
// for both lists; each change is one mutation, and its user errors are shown at its field.
import { gql } from "../api.js";
import { figure, h } from "../dom.js";
import { DASH, fmtDateTime, fmtInt, fmtPct, fmtUsd } from "../format.js";
import { eventFilter } from "../state.js";
import { dataTable, load } from "../tables.js";

const BUDGET_FIELDS = `id name amountUsd period timezone scope scopeValue filter thresholds
  currentSpendUsd percentUsed projectedSpendUsd daysRemaining status periodStart periodEnd
  crossedThresholds`;
const RULE_FIELDS = `id name metric health windowMinutes filter operator threshold cooldownMinutes
  enabled state lastValue lastEvaluatedAt lastFiredAt`;
const QUERY = `query ConsoleBudgets {
  budgets(first: 100) { totalCount nodes { ${BUDGET_FIELDS} } }
  alertRules(first: 100) { totalCount nodes { ${RULE_FIELDS} } }
}`;
const USER_ERRORS = "userErrors { field message code }";
const MUTATIONS = {
  createBudget: `mutation ConsoleCreateBudget($input: BudgetInput!) {
    result: createBudget(input: $input) { budget { id } ${USER_ERRORS} } }`,
  updateBudget: `mutation ConsoleUpdateBudget($id: ID!, $input: BudgetPatch!) {
    result: updateBudget(id: $id, input: $input) { budget { id } ${USER_ERRORS} } }`,
  deleteBudget: `mutation ConsoleDeleteBudget($id: ID!) {
    result: deleteBudget(id: $id) { deletedId ${USER_ERRORS} } }`,
  createAlertRule: `mutation ConsoleCreateAlertRule($input: AlertRuleInput!) {
    result: createAlertRule(input: $input) { alertRule { id } ${USER_ERRORS} } }`,
  updateAlertRule: `mutation ConsoleUpdateAlertRule($id: ID!, $input: AlertRulePatch!) {
    result: updateAlertRule(id: $id, input: $input) { alertRule { id } ${USER_ERRORS} } }`,
  deleteAlertRule: `mutation ConsoleDeleteAlertRule($id: ID!) {
    result: deleteAlertRule(id: $id) { deletedId ${USER_ERRORS} } }`,
};

const PERIODS = ["DAY", "WEEK", "MONTH"];
// and FILTER: the events the filter bar selects (offered when it selects some)
const SCOPES = ["WORKSPACE", "USER", "GROUP", "API_KEY", "MODEL", "PROVIDER"];
// a health rule's condition (the server itself, every replica), in words with its unit
const HEALTH = {
  WRITER_STALL_SECONDS: "writer stalled (s)",
  WRITER_BACKLOG_EVENTS: "writer backlog (events)",
  COMPACTION_LAG_SECONDS: "compaction behind (s)",
  JOBS_DEGRADED: "jobs degraded",
};
const OPERATORS = [["GT", ">"], ["GTE", "≥"], ["LT", "<"], ["LTE", "≤"], ["EQ", "="]];
const RULE_METRICS = ["COST_USD", "REQUESTS", "ERRORS", "ERROR_RATE", "BLOCKED", "TOTAL_TOKENS",
  "AVG_LATENCY_MS", "P95_LATENCY_MS", "P99_LATENCY_MS", "UNIQUE_USERS"];
const STATUS = { OK: "ok", AT_RISK: "at risk", WARNING: "warning", EXCEEDED: "exceeded" };

function words(v) {
  return v.toLowerCase().replaceAll("_", " ");
}

function field(id, labelText, control, hint) {
  return h("div", { class: "field", "data-field": id },
    h("label", { for: control.id }, labelText), control,
    hint ? h("span", { class: "muted small" }, hint) : null,
    h("span", { class: "field-error error-inline", role: "alert" }));
}

function select(id, values, current, label = words) {
  return h("select", { id, name: id },
    values.map((v) => h("option", { value: v, selected: v === current }, label(v))));
}

// run a mutation; user errors go next to their fields (or at the top), true when it worked
async function mutate(form, name, variables) {
  form.querySelectorAll(".field-error, .form-error").forEach((el) => { el.textContent = ""; });
  const top = form.querySelector(".form-error");
  try {
    const { result } = await gql(MUTATIONS[name], variables);
    if (!result.userErrors.length) return true;
    for (const e of result.userErrors) {
      const name = e.field.split(".").pop();
      const at = form.querySelector(`[data-field='${name}'] .field-error`);
      (at || top).textContent = `${(at ? "" : `${e.field}: `)}${e.message}`;
    }
  } catch (error) {
    top.textContent = error.message;
  }
  return false;
}

function budgetForm(ctx, budget, close) {
  const b = budget || {};
  const name = h("input", { id: "budget-name", required: true, value: b.name || "", autocomplete: "off" });
  const amount = h("input", { id: "budget-amountUsd", type: "number", min: "0.01", step: "0.01", required: true, value: b.amountUsd ?? "" });
  const period = select("budget-period", PERIODS, b.period || "MONTH");
  const timezone = h("input", { id: "budget-timezone", value: b.timezone || ctx.state.tz, list: "zones", required: true });
  // a FILTER budget keeps its filter; a new one takes the filter bar's
  const fixedScope = b.scope === "FILTER";
  const barFilter = eventFilter(ctx.state);
  const scopes = fixedScope ? ["FILTER"] : barFilter ? [...SCOPES, "FILTER"] : SCOPES;
  const scope = select("budget-scope", scopes, b.scope || "WORKSPACE",
    (v) => (v === "FILTER" ? (fixedScope ? "its filter" : "the events the filters above select") : words(v)));
  scope.disabled = fixedScope;
  const scopeValue = h("input", { id: "budget-scopeValue", value: b.scopeValue || "", autocomplete: "off" });
  const thresholds = h("input", {
    id: "budget-thresholds", value: (b.thresholds || [50, 80, 100]).join(", "), pattern: "[0-9, ]*",
  });
  const syncScope = () => { scopeValue.disabled = ["WORKSPACE", "FILTER"].includes(scope.value); };
  scope.addEventListener("change", syncScope);
  syncScope();
  const form = h("form", {
    class: "panel editor budget-form", "aria-label": budget ? `Edit budget ${b.name}` : "New budget",
    onsubmit: async (event) => {
      event.preventDefault();
      const input = {
        name: name.value.trim(),
        amountUsd: Number(amount.value),
        period: period.value,
        timezone: timezone.value.trim(),
        thresholds: thresholds.value.split(",").map((t) => t.trim()).filter(Boolean).map(Number),
      };
      if (!fixedScope) {
        input.scope = scope.value;
        input.scopeValue = scopeValue.disabled ? null : scopeValue.value.trim() || null;
        if (scope.value === "FILTER") input.filter = barFilter;
      }
      const ok = budget
        ? await mutate(form, "updateBudget", { id: b.id, input })
        : await mutate(form, "createBudget", { input });
      if (ok) ctx.navigate({});
    },
  },
  h("h2", {}, budget ? `Edit budget “${b.name}”` : "New budget"),
  h("div", { class: "fields" },
    field("name", "Name", name),
    field("amountUsd", "Limit (USD)", amount),
    field("period", "Period", period),
    field("timezone", "Time zone", timezone, "where the period starts"),
    field("scope", "Covers", scope),
    field("scopeValue", "Which one", scopeValue, "user, group, API key, model or provider id"),
    field("thresholds", "Warn at (%)", thresholds, "e.g. 50, 80, 100")),
  h("p", { class: "form-error error-inline", role: "alert" }),
  h("div", { class: "actions" },
    h("button", { type: "submit", class: "primary" }, budget ? "Save" : "Create budget"),
    h("button", { type: "button", onclick: close }, "Cancel")));
  return form;
}

function ruleForm(ctx, rule, close) {
  const r = rule || {};
  const name = h("input", { id: "rule-name", required: true, value: r.name || "", autocomplete: "off" });
  const metric = select("rule-metric", RULE_METRICS, r.metric || "COST_USD");
  const operator = select("rule-operator", OPERATORS.map(([o]) => o), r.operator || "GT",
    (o) => OPERATORS.find(([x]) => x === o)[1]);
  const threshold = h("input", { id: "rule-threshold", type: "number", step: "any", required: true, value: r.threshold ?? "" });
  const window = h("input", { id: "rule-windowMinutes", type: "number", min: "1", step: "1", required: true, value: r.windowMinutes ?? 60 });
  const cooldown = h("input", { id: "rule-cooldownMinutes", type: "number", min: "0", step: "1", required: true, value: r.cooldownMinutes ?? 60 });
  const enabled = h("input", { id: "rule-enabled", type: "checkbox", checked: rule ? r.enabled : true });
  // a new rule may watch only the events the filter bar selects; an existing one keeps its own
  const barFilter = rule ? null : eventFilter(ctx.state);
  const filtered = barFilter ? h("input", { id: "rule-filter", type: "checkbox", checked: true }) : null;
  const form = h("form", {
    class: "panel editor rule-form", "aria-label": rule ? `Edit alert rule ${r.name}` : "New alert rule",
    onsubmit: async (event) => {
      event.preventDefault();
      const input = {
        name: name.value.trim(), metric: metric.value, operator: operator.value,
        threshold: Number(threshold.value), windowMinutes: Number(window.value),
        cooldownMinutes: Number(cooldown.value), enabled: enabled.checked,
      };
      if (filtered && filtered.checked) input.filter = barFilter;
      const ok = rule
        ? await mutate(form, "updateAlertRule", { id: r.id, input })
        : await mutate(form, "createAlertRule", { input });
      if (ok) ctx.navigate({});
    },
  },
  h("h2", {}, rule ? `Edit alert rule “${r.name}”` : "New alert rule"),
  h("div", { class: "fields" },
    field("name", "Name", name),
    field("metric", "Metric", metric),
    field("operator", "Fires when", operator),
    field("threshold", "Threshold", threshold, "in the metric's unit: a rate 0 to 1, a cost in USD"),
    field("windowMinutes", "Over the last (min)", window),
    field("cooldownMinutes", "Quiet after firing (min)", cooldown),
    field("enabled", "Enabled", enabled),
    filtered ? field("filter", "Only the filters above", filtered) : null,
    rule && Object.keys(r.filter || {}).length ? h("p", { class: "muted small" }, "Watches ", h("code", {}, JSON.stringify(r.filter))) : null),
  h("p", { class: "form-error error-inline", role: "alert" }),
  h("div", { class: "actions" },
    h("button", { type: "submit", class: "primary" }, rule ? "Save" : "Create alert rule"),
    h("button", { type: "button", onclick: close }, "Cancel")));
  return form;
}

// Edit and Delete for one row; Delete asks once more in place (not window.confirm, which
// blocks the page)
// (openForm null: Delete only)
function rowActions(ctx, what, mutation, item, openForm) {
  const slot = h("span", { class: "row-actions" });
  const idle = () => slot.replaceChildren(
    openForm ? h("button", { type: "button", class: "edit", "aria-label": `Edit ${what}`, onclick: () => openForm(item) }, "Edit") : "",
    h("button", { type: "button", class: "danger", "aria-label": `Delete ${what}`, onclick: confirming }, "Delete"));
  const confirming = () => {
    const problem = h("span", { class: "error-inline", role: "alert" });
    const confirm = h("button", {
      type: "button", class: "danger confirm", "aria-label": `Confirm deleting ${what}`,
      onclick: async () => {
        try {
          const { result } = await gql(MUTATIONS[mutation], { id: item.id });
          if (result.userErrors.length) problem.textContent = result.userErrors.map((e) => e.message).join(" ");
          else ctx.navigate({});
        } catch (error) {
          problem.textContent = error.message;
        }
      },
    }, "Delete");
    slot.replaceChildren(h("span", {}, "Delete? "), confirm,
      h("button", { type: "button", onclick: idle }, "Cancel"), problem);
    confirm.focus();
  };
  idle();
  return slot;
}

export default {
  id: "budgets",
  label: "Budgets & alerts",
  usesRange: false,
  async render(ctx) {
    const { state } = ctx;
    const role = ctx.me.role;
    const mayBudgets = role === "admin";
    const mayRules = role === "admin" || role === "member";
    await load(ctx, "Budgets & alerts", QUERY, {}, ({ budgets, alertRules }) => {
      const editorSlot = h("div", { class: "editor-slot" });
      const close = () => editorSlot.replaceChildren();
      const open = (form) => {
        editorSlot.replaceChildren(form);
        form.querySelector("input").focus();
      };
      const budgetColumns = [
        { label: "Budget", cell: (b) => b.name },
        { label: "Covers", cell: (b) => [words(b.scope), b.scopeValue ? h("span", { class: "muted" }, ` ${b.scopeValue}`) : "",
          b.filter ? h("code", { class: "small" }, ` ${JSON.stringify(b.filter)}`) : ""] },
        { label: "Period", cell: (b) => [words(b.period), h("span", { class: "muted small" }, ` until ${fmtDateTime(b.periodEnd, state.tz, false)}`)] },
        { label: "Limit", metric: "amountUsd", get: (b) => b.amountUsd, format: fmtUsd },
        { label: "Spent", metric: "currentSpendUsd", get: (b) => b.currentSpendUsd, format: fmtUsd },
        { label: "Used", metric: "percentUsed", get: (b) => b.percentUsed, format: (v) => fmtPct(v / 100) },
        { label: "Projected", metric: "projectedSpendUsd", get: (b) => b.projectedSpendUsd, format: fmtUsd },
        { label: "Status", cell: (b) => h("span", { class: `badge budget-${b.status.toLowerCase()}`, "data-status": b.status }, STATUS[b.status]) },
        { label: "Warn at", cell: (b) => b.thresholds.map((t) => `${t} %${b.crossedThresholds.includes(t) ? " ✓" : ""}`).join(", ") },
      ];
      if (mayBudgets) budgetColumns.push({ label: "Actions", cell: (b) => rowActions(ctx, `budget ${b.name}`, "deleteBudget", b, (x) => open(budgetForm(ctx, x, close))) });
      const ruleColumns = [
        { label: "Rule", cell: (r) => [r.name, r.enabled ? "" : h("span", { class: "muted" }, " (disabled)")] },
        { label: "Fires when", cell: (r) => [r.health
          ? [`${HEALTH[r.health] ?? r.health} ${OPERATORS.find(([o]) => o === r.operator)[1]} ${r.threshold}`, h("span", { class: "muted small" }, " (server health, every replica)")]
          : `${r.metric} ${OPERATORS.find(([o]) => o === r.operator)[1]} ${r.threshold} over ${fmtInt(r.windowMinutes)} min`,
          Object.keys(r.filter || {}).length ? h("code", { class: "small" }, ` ${JSON.stringify(r.filter)}`) : ""] },
        { label: "Threshold", metric: "threshold", get: (r) => r.threshold, format: (v) => String(v) },
        { label: "Last value", metric: "lastValue", get: (r) => r.lastValue, format: (v) => (v == null ? DASH : String(Math.round(v * 1e4) / 1e4)) },
        { label: "State", cell: (r) => h("span", { class: `badge rule-${r.state.toLowerCase()}`, "data-state": r.state }, words(r.state)) },
        { label: "Last fired", cell: (r) => fmtDateTime(r.lastFiredAt, state.tz, false) },
      ];
      // a health rule is changed through the API by the operator only; the form edits metric rules
      const ruleActions = (r) => (!r.health ? rowActions(ctx, `alert rule ${r.name}`, "deleteAlertRule", r, (x) => open(ruleForm(ctx, x, close)))
        : ctx.me.operator ? rowActions(ctx, `alert rule ${r.name}`, "deleteAlertRule", r, null) : "");
      if (mayRules) ruleColumns.push({ label: "Actions", cell: ruleActions });
      const exceeded = budgets.nodes.filter((b) => b.status !== "OK").length;
      return [
        h("p", { class: "muted" }, "The lists do not depend on the range or the filters; a new budget or alert rule may cover the events the filters above select.",
          mayBudgets ? "" : role === "member" ? " Budgets are changed by admins." : " Your role may read them, not change them."),
        editorSlot,
        h("section", { class: "panel budgets", "aria-label": "Budgets" },
          h("div", { class: "panel-head" },
            h("h2", {}, "Budgets ", figure("span", "budgets.totalCount", budgets.totalCount, `(${fmtInt(budgets.totalCount)})`),
              exceeded ? h("span", { class: "muted small" }, ` · ${exceeded} not ok`) : ""),
            mayBudgets ? h("button", { type: "button", class: "new-budget", onclick: () => open(budgetForm(ctx, null, close)) }, "New budget") : null),
          budgets.nodes.length === 0
            ? h("p", { class: "muted" }, "No budget yet. A budget watches spend over a day, week or month and warns (webhooks, the Live view) as it crosses its thresholds.")
            : dataTable({ caption: "Budgets", cls: "budgets", rows: budgets.nodes, columns: budgetColumns, rowAttrs: (b) => ({ "data-id": b.id }) })),
        h("section", { class: "panel rules", "aria-label": "Alert rules" },
          h("div", { class: "panel-head" },
            h("h2", {}, "Alert rules ", figure("span", "alertRules.totalCount", alertRules.totalCount, `(${fmtInt(alertRules.totalCount)})`)),
            mayRules ? h("button", { type: "button", class: "new-rule", onclick: () => open(ruleForm(ctx, null, close)) }, "New alert rule") : null),
          alertRules.nodes.length === 0
            ? h("p", { class: "muted" }, "No alert rule yet. A rule checks a metric over a trailing window every minute and fires its webhooks when it crosses the threshold.")
            : dataTable({ caption: "Alert rules", cls: "rules", rows: alertRules.nodes, columns: ruleColumns, rowAttrs: (r) => ({ "data-id": r.id }) })),
      ];
    });
  },
};

