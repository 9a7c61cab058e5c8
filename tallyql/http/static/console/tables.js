// What the later views share: a view's load (skeleton, the API's error, a stale answer
// dropped), KPI cards, tables whose figure cells carry data-metric/data-value, sortable
// column headers kept in the URL (sort=ORDER or ORDER:asc) and a cursor pager.
import { gql } from "./api.js";
import { errorBox, figure, h, skeleton } from "./dom.js";
import { fmtInt } from "./format.js";

// one request, then draw(data) unless the view was left meanwhile
export async function load(ctx, title, query, variables, draw, lines = 8) {
  const { main } = ctx;
  const heading = h("h1", {}, title);
  main.replaceChildren(heading, skeleton(lines));
  let data;
  try {
    data = await gql(query, variables);
  } catch (error) {
    if (!ctx.stale()) main.replaceChildren(heading, errorBox(error));
    return;
  }
  if (ctx.stale()) return;
  main.replaceChildren(heading, ...[draw(data)].flat(2).filter(Boolean));
}

export function card(label, metric, value, text, note) {
  return h("article", { class: "kpi", "aria-label": label },
    h("h3", {}, label), figure("p", metric, value, text, { class: "kpi-value", title: String(value ?? "") }),
    note ? h("p", { class: "kpi-note" }, note) : null);
}

// "COST" or "COST:asc" in the URL; orders: the allowed values, first the default
export function parseSort(sort, orders, fallback = orders[0]) {
  const [order, direction] = (sort || fallback).split(":");
  return { orderBy: orders.includes(order) ? order : fallback, descending: direction !== "asc" };
}

function sortHeader(label, order, current, ctx) {
  const active = current.orderBy === order;
  const nextDirection = active && current.descending ? "asc" : "desc";
  return h("th", {
    scope: "col", class: "num",
    "aria-sort": active ? (current.descending ? "descending" : "ascending") : null,
  }, h("button", {
    type: "button", class: "sort", "data-order": order,
    "aria-label": `Sort by ${label.toLowerCase()}, ${nextDirection === "asc" ? "smallest" : "largest"} first`,
    onclick: () => ctx.navigate({ sort: nextDirection === "asc" ? `${order}:asc` : order }),
  }, label, active ? (current.descending ? " ▼" : " ▲") : ""));
}

// columns: {label, cell(row)} for text cells, or {label, metric, get(row), format, order}
// for figures (order: the sort value its header sets, when the list sorts by it)
export function dataTable({ caption, cls = "", columns, rows, sort = null, ctx = null, rowAttrs = null }) {
  return h("div", { class: "table-wrap" }, h("table", { class: `data ${cls}` },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => {
      if (c.order && sort) return sortHeader(c.label, c.order, sort, ctx);
      return h("th", { scope: "col", class: c.metric ? "num" : null }, c.label);
    }))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c, i) => {
      if (!c.metric) {
        return h(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}, c.cell(row));
      }
      const value = c.get(row);
      return figure("td", c.metric, value, c.format(value), { class: "num" });
    }))))));
}

// a titled panel holding a table, or a line saying the range has nothing
export function panel(title, rows, table, empty = "Nothing in this range.") {
  return h("section", { class: "panel" }, h("h2", {}, title),
    rows.length === 0 ? h("p", { class: "muted" }, empty) : table);
}

// Previous / Next over a connection: cursors[page] is the `after` of each page seen
export function pager(label, page, size, connection, go) {
  const first = page * size + 1;
  const last = page * size + connection.nodes.length;
  return h("nav", { class: "pager", "aria-label": label },
    h("button", { type: "button", disabled: page === 0, onclick: () => go(page - 1) }, "← Previous"),
    h("span", { role: "status" }, connection.nodes.length ? `${fmtInt(first)}–${fmtInt(last)} of ` : "0 of ",
      figure("span", "totalCount", connection.totalCount, fmtInt(connection.totalCount))),
    h("button", { type: "button", disabled: !connection.pageInfo.hasNextPage, onclick: () => go(page + 1) }, "Next →"));
}

export function label(value, none) {
  return value ?? h("span", { class: "muted" }, none);
}
