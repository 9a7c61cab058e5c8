// A small element builder: h("p", {class: "x"}, "text", child). No framework, no build.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// a figure the tests read without parsing text: data-metric names the GraphQL field or
// Metric, data-value holds the unformatted number ("" when the API gave null)
export function figure(tag, metric, value, text, attrs = {}) {
  return h(tag, {
    ...attrs,
    "data-metric": metric,
    "data-value": value == null ? "" : String(value),
  }, text);
}

export function errorBox(error) {
  return h("div", { class: "error", role: "alert" },
    h("strong", {}, "The API answered with an error: "), error.message || String(error));
}

export function skeleton(lines = 3) {
  return h("div", { class: "skeleton", "aria-busy": "true", "aria-label": "Loading" },
    Array.from({ length: lines }, () => h("div", { class: "skeleton-line" })));
}
