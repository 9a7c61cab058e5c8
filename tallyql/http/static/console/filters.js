// The filter bar: the chosen values of each EventFilter dimension as removable chips, and a
// form to add one, with values suggested from the workspace's data in the current range (one
// breakdown per dimension, all in one request, asked only when the form is first used).
import { gql } from "./api.js";
import { h } from "./dom.js";
import { FILTERS, timeRange } from "./state.js";

const SUGGESTIONS = 100;
const cache = new Map(); // JSON of the range -> Promise of {field: [values]}

function suggestionQuery() {
  const fields = FILTERS.map(({ field, dimension }) =>
    `${field}: breakdown(dimension: ${dimension}, metrics: [REQUESTS], range: $range, first: ${SUGGESTIONS}) { nodes { key } }`);
  return `query ConsoleFilterValues($range: TimeRangeInput!) {\n  ${fields.join("\n  ")}\n}`;
}

export function suggestions(state) {
  const range = timeRange(state);
  const key = JSON.stringify(range);
  if (!cache.has(key)) {
    const answer = gql(suggestionQuery(), { range }).then((data) => Object.fromEntries(
      FILTERS.map(({ field }) => [field, data[field].nodes.map((n) => n.key).filter((k) => k != null)])));
    answer.catch(() => cache.delete(key)); // ask again next time
    cache.set(key, answer);
  }
  return cache.get(key);
}

export function filterBar(state, go, enabled = true) {
  const chips = [];
  for (const { field, label } of FILTERS) {
    for (const value of state.filters[field] || []) {
      chips.push(h("li", { class: "chip", "data-filter": field, "data-value": value },
        h("span", {}, h("span", { class: "muted" }, `${label}: `), value),
        h("button", {
          type: "button",
          "aria-label": `Remove the filter ${label} ${value}`,
          onclick: () => {
            const rest = (state.filters[field] || []).filter((v) => v !== value);
            go({ filters: { ...state.filters, [field]: rest } });
          },
        }, "×")));
    }
  }
  const dimension = h("select", { id: "filter-dimension", "aria-label": "Filter on" },
    FILTERS.map(({ field, label }) => h("option", { value: field }, label)));
  const value = h("input", {
    id: "filter-value", list: "filter-values", autocomplete: "off", required: true,
    "aria-label": "Value", placeholder: "value",
  });
  const options = h("datalist", { id: "filter-values" });
  const status = h("span", { class: "muted small", role: "status" });
  const fill = async () => {
    status.textContent = "Loading values…";
    try {
      const byField = await suggestions(state);
      const chosen = new Set(state.filters[dimension.value] || []);
      const values = byField[dimension.value].filter((v) => !chosen.has(v));
      options.replaceChildren(...values.map((v) => h("option", { value: v })));
      status.textContent = values.length ? `${values.length} values in this range` : "no values in this range";
    } catch (error) {
      status.textContent = `Values could not be loaded: ${error.message}`;
    }
  };
  dimension.addEventListener("change", fill);
  value.addEventListener("focus", fill, { once: true });
  const form = h("form", {
    class: "add-filter",
    onsubmit: (event) => {
      event.preventDefault();
      const v = value.value.trim();
      if (!v) return;
      const field = dimension.value;
      const values = [...new Set([...(state.filters[field] || []), v])];
      go({ filters: { ...state.filters, [field]: values } });
    },
  }, dimension, value, options, h("button", { type: "submit" }, "Add filter"), status);
  return h("section", { class: "filters", "aria-label": "Filters" },
    h("ul", { class: "chips" }, chips.length ? chips : h("li", { class: "muted" }, enabled ? "No filters: every event counts." : "No filters.")),
    form,
    chips.length ? h("button", { type: "button", class: "link", onclick: () => go({ filters: {} }) }, "Clear all") : null);
}
