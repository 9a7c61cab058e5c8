// The filter bar: the chosen values of each EventFilter field as removable chips, and a form
// to add one. Values are suggested from the workspace's data in the current range (a
// breakdown of the field's dimension, asked when that field is first chosen), or are the
// schema's own values for enum fields; metadata is filtered by key and value.
import { gql } from "./api.js";
import { h } from "./dom.js";
import { FILTERS, timeRange } from "./state.js";

const SUGGESTIONS = 100;
const cache = new Map(); // JSON of [range, dimension, metadata key] -> Promise of [values]

function ask(state, dimension, metadataKey = null) {
  const range = timeRange(state);
  const key = JSON.stringify([range, dimension, metadataKey]);
  if (!cache.has(key)) {
    const query = `query ConsoleFilterValues($range: TimeRangeInput!, $key: String) {
  values: breakdown(dimension: ${dimension}, metrics: [REQUESTS], range: $range, metadataKey: $key,
                    first: ${SUGGESTIONS}) { nodes { key } }
}`;
    const answer = gql(query, { range, key: metadataKey })
      .then((data) => data.values.nodes.map((n) => n.key).filter((k) => k != null && k !== ""));
    answer.catch(() => cache.delete(key)); // ask again next time
    cache.set(key, answer);
  }
  return cache.get(key);
}

// the values to offer for a field (a Promise), or null when it has no source of values
export function suggestions(state, filter, metadataKey = null) {
  if (filter.type === "enum" || filter.type === "bool") return Promise.resolve(filter.values);
  if (filter.type === "metadata") return metadataKey ? ask(state, "METADATA", metadataKey) : null;
  return filter.dimension ? ask(state, filter.dimension) : null;
}

export function valueLabel(filter, value) {
  if (filter.type === "enum") return value.toLowerCase().replaceAll("_", " ");
  if (filter.type === "bool") return value === "true" ? "yes" : "no";
  if (filter.type === "metadata") return value.replace(":", " = ");
  return value;
}

export function filterBar(state, go, enabled = true) {
  const chips = [];
  for (const filter of FILTERS) {
    const { field, label } = filter;
    for (const value of state.filters[field] || []) {
      chips.push(h("li", { class: "chip", "data-filter": field, "data-value": value },
        h("span", {}, h("span", { class: "muted" }, `${label}: `), valueLabel(filter, value)),
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
  const choice = h("select", { id: "filter-choice", "aria-label": "Value", hidden: true });
  const metaKey = h("input", {
    id: "filter-key", autocomplete: "off", "aria-label": "Metadata key", placeholder: "key",
    size: 10, hidden: true,
  });
  const options = h("datalist", { id: "filter-values" });
  const status = h("span", { class: "muted small", role: "status" });
  const current = () => FILTERS.find((f) => f.field === dimension.value);
  const fill = async () => {
    const filter = current();
    const fixed = filter.type === "enum" || filter.type === "bool";
    choice.hidden = !fixed;
    value.hidden = fixed;
    value.required = !fixed;
    metaKey.hidden = filter.type !== "metadata";
    metaKey.required = filter.type === "metadata";
    const chosen = new Set(state.filters[filter.field] || []);
    if (fixed) {
      choice.replaceChildren(...filter.values.filter((v) => !chosen.has(v))
        .map((v) => h("option", { value: v }, valueLabel(filter, v))));
      status.textContent = "";
      return;
    }
    const pending = suggestions(state, filter, metaKey.value.trim() || null);
    options.replaceChildren();
    if (!pending) {
      status.textContent = filter.type === "metadata" ? "type a key for its values" : "";
      return;
    }
    status.textContent = "Loading values…";
    try {
      const prefix = filter.type === "metadata" ? `${metaKey.value.trim()}:` : "";
      const values = (await pending).filter((v) => !chosen.has(prefix + v));
      options.replaceChildren(...values.map((v) => h("option", { value: v })));
      status.textContent = values.length ? `${values.length} values in this range` : "no values in this range";
    } catch (error) {
      status.textContent = `Values could not be loaded: ${error.message}`;
    }
  };
  dimension.addEventListener("change", () => {
    value.value = "";
    fill();
  });
  metaKey.addEventListener("change", fill);
  value.addEventListener("focus", fill, { once: true });
  const form = h("form", {
    class: "add-filter",
    onsubmit: (event) => {
      event.preventDefault();
      const filter = current();
      let v = (filter.type === "enum" || filter.type === "bool" ? choice.value : value.value).trim();
      if (!v) return;
      if (filter.type === "metadata") {
        const key = metaKey.value.trim();
        if (!key) return;
        v = `${key}:${v}`;
      }
      if (filter.type === "int" && !/^[0-9]{1,3}$/.test(v)) {
        status.textContent = "An HTTP status is a number such as 429.";
        return;
      }
      const values = filter.type === "bool" ? [v] : [...new Set([...(state.filters[filter.field] || []), v])];
      go({ filters: { ...state.filters, [filter.field]: values } });
    },
  }, dimension, metaKey, value, choice, options, h("button", { type: "submit" }, "Add filter"), status);
  return h("section", { class: "filters", "aria-label": "Filters" },
    h("ul", { class: "chips" }, chips.length ? chips : h("li", { class: "muted" }, enabled ? "No filters: every event counts." : "No filters.")),
    form,
    chips.length ? h("button", { type: "button", class: "link", onclick: () => go({ filters: {} }) }, "Clear all") : null);
}
