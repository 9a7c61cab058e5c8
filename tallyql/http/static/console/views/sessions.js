// Sessions: P50/avg/P95 of the sessions in the range, the ranked list (sortable, paged), and
// a session's page (?session=ID): its figures, cumulative cost over its timeline, models,
// how it compares with the median session, and its requests. One GraphQL request each.
import { gql } from "../api.js";
import { timeChart } from "../charts.js";
import { errorBox, figure, h, skeleton } from "../dom.js";
import { emptyState } from "../empty.js";
import { DASH, fmtDateTime, fmtInt, fmtMs, fmtUsd } from "../format.js";
import { eventFilter, timeRange, toSearch } from "../state.js";

const PAGE = 25;
const ORDERS = [
  ["COST", "Cost"], ["TOKENS", "Tokens"], ["REQUESTS", "Requests"], ["DURATION", "Duration"],
  ["RECENT", "Last activity"],
];

const LIST = `query ConsoleSessions($range: TimeRangeInput!, $filter: EventFilter,
    $orderBy: SessionOrder!, $descending: Boolean!, $after: String) {
  sessionStats(range: $range, filter: $filter) {
    sessions
    costUsd { p50 avg p95 } totalTokens { p50 avg p95 }
    durationMs { p50 avg p95 } requests { p50 avg p95 }
  }
  sessions(range: $range, filter: $filter, orderBy: $orderBy, descending: $descending,
           first: ${PAGE}, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes { id userId agentId lastTimestamp durationMs requestCount errorCount totalTokens costUsd }
  }
}`;

const DETAIL = `query ConsoleSession($id: ID!, $range: TimeRangeInput, $filter: EventFilter) {
  session(id: $id, range: $range, filter: $filter) {
    id userId agentId firstTimestamp lastTimestamp durationMs requestCount errorCount
    inputTokens outputTokens cacheReadTokens reasoningTokens totalTokens costUsd avgLatencyMs
    models { provider model requests errors totalTokens costUsd avgLatencyMs }
    timeline(buckets: 30) { buckets cumulativeCostUsd requests }
    comparison {
      baselineSessions
      costUsd { value median ratio rank top5Percent }
      totalTokens { value median ratio rank top5Percent }
      durationMs { value median ratio rank top5Percent }
      requests { value median ratio rank top5Percent }
    }
    requests(first: 100) {
      totalCount
      nodes { id timestamp kind status errorType model tool totalTokens costUsd latencyMs }
    }
  }
}`;

// "COST" or "COST:asc" in the URL
function parseSort(sort) {
  const [order, direction] = (sort || "COST").split(":");
  return {
    orderBy: ORDERS.some(([o]) => o === order) ? order : "COST",
    descending: direction !== "asc",
  };
}

const MEASURES = [
  ["requests", "Requests per session", fmtInt],
  ["totalTokens", "Tokens per session", fmtInt],
  ["costUsd", "Cost per session", fmtUsd],
  ["durationMs", "Duration", fmtMs],
];

function statCard([field, label, format], stats) {
  const d = stats[field];
  return h("article", { class: "kpi", "aria-label": label },
    h("h3", {}, label),
    h("dl", { class: "stat" },
      ["p50", "avg", "p95"].map((q) => [
        h("dt", {}, q === "avg" ? "Avg" : q.toUpperCase()),
        figure("dd", `sessionStats.${field}.${q}`, d[q], format(d[q])),
      ])));
}

function sortHeader(label, order, current, ctx) {
  const active = current.orderBy === order;
  const nextDirection = active && current.descending ? "asc" : "desc";
  return h("th", {
    scope: "col", class: "num",
    "aria-sort": active ? (current.descending ? "descending" : "ascending") : null,
  }, h("button", {
    type: "button", class: "sort",
    "aria-label": `Sort by ${label.toLowerCase()}, ${nextDirection === "asc" ? "smallest" : "largest"} first`,
    onclick: () => ctx.navigate({ sort: nextDirection === "asc" ? `${order}:asc` : order }),
  }, label, active ? (current.descending ? " ▼" : " ▲") : ""));
}

async function renderList(ctx) {
  const { main, state } = ctx;
  const sort = parseSort(state.sort);
  const cursors = [null];
  const title = h("h1", {}, "Sessions");
  const load = async (page) => {
    main.replaceChildren(title, skeleton(8));
    let data;
    try {
      data = await gql(LIST, {
        range: timeRange(state), filter: eventFilter(state), ...sort, after: cursors[page],
      });
    } catch (error) {
      main.replaceChildren(title, errorBox(error));
      return;
    }
    if (ctx.stale()) return;
    const { sessionStats: stats, sessions } = data;
    if (sessions.totalCount === 0) {
      main.replaceChildren(title, h("p", { class: "muted" },
        "Sessions group the events that carry the same session_id."), emptyState(state, ctx));
      return;
    }
    if (sessions.pageInfo.hasNextPage) cursors[page + 1] = sessions.pageInfo.endCursor;
    const first = page * PAGE + 1;
    const last = page * PAGE + sessions.nodes.length;
    const open = (id) => ctx.navigate({ session: id });
    main.replaceChildren(title,
      h("p", { class: "muted" }, figure("strong", "sessionStats.sessions", stats.sessions, fmtInt(stats.sessions)),
        " sessions with events in this range (events sharing a session_id)."),
      h("section", { class: "kpis", "aria-label": "Session distribution" }, MEASURES.map((m) => statCard(m, stats))),
      h("nav", { class: "pager", "aria-label": "Pages of sessions" },
        h("button", { type: "button", disabled: page === 0, onclick: () => load(page - 1) }, "← Previous"),
        h("span", { role: "status" }, `${fmtInt(first)}–${fmtInt(last)} of `,
          figure("span", "totalCount", sessions.totalCount, fmtInt(sessions.totalCount))),
        h("button", { type: "button", disabled: !sessions.pageInfo.hasNextPage, onclick: () => load(page + 1) }, "Next →")),
      h("div", { class: "table-wrap" }, h("table", { class: "data sessions" },
        h("caption", { class: "sr-only" }, "Sessions, ranked"),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Session"), h("th", { scope: "col" }, "User"),
          h("th", { scope: "col" }, "Agent"),
          sortHeader("Last activity", "RECENT", sort, ctx),
          sortHeader("Duration", "DURATION", sort, ctx),
          sortHeader("Requests", "REQUESTS", sort, ctx),
          h("th", { scope: "col", class: "num" }, "Errors"),
          sortHeader("Tokens", "TOKENS", sort, ctx),
          sortHeader("Cost", "COST", sort, ctx))),
        h("tbody", {}, sessions.nodes.map((s) => h("tr", {},
          h("td", {}, h("a", {
            href: toSearch({ ...state, session: s.id }),
            onclick: (event) => { event.preventDefault(); open(s.id); },
          }, s.id)),
          h("td", {}, s.userId || DASH),
          h("td", {}, s.agentId || DASH),
          h("td", { class: "num" }, fmtDateTime(s.lastTimestamp, state.tz, false)),
          figure("td", "durationMs", s.durationMs, fmtMs(s.durationMs), { class: "num" }),
          figure("td", "requestCount", s.requestCount, fmtInt(s.requestCount), { class: "num" }),
          figure("td", "errorCount", s.errorCount, fmtInt(s.errorCount), { class: "num" }),
          figure("td", "totalTokens", s.totalTokens, fmtInt(s.totalTokens), { class: "num" }),
          figure("td", "costUsd", s.costUsd, fmtUsd(s.costUsd), { class: "num" })))))));
  };
  await load(0);
}

function comparisonChip(label, value, format) {
  if (!value) return null;
  const ratio = value.ratio == null ? "no median to compare" : `${value.ratio.toFixed(1)}× the median (${format(value.median)})`;
  return h("li", { class: `chip compare${value.top5Percent ? " top" : ""}` },
    h("span", {}, h("span", { class: "muted" }, `${label}: `), ratio,
      value.rank != null ? ` · rank ${fmtInt(value.rank)}` : "",
      value.top5Percent ? " · top 5 %" : ""));
}

async function renderSession(ctx) {
  const { main, state } = ctx;
  const back = h("a", {
    href: toSearch({ ...state, session: null }),
    onclick: (event) => { event.preventDefault(); ctx.navigate({ session: null }); },
  }, "← All sessions");
  const title = h("h1", {}, "Session ", h("code", {}, state.session));
  main.replaceChildren(back, title, skeleton(10));
  let data;
  try {
    data = await gql(DETAIL, { id: state.session, range: timeRange(state), filter: eventFilter(state) });
  } catch (error) {
    main.replaceChildren(back, title, errorBox(error));
    return;
  }
  if (ctx.stale()) return;
  const s = data.session;
  if (!s) {
    main.replaceChildren(back, title, h("p", { role: "alert" },
      "No such session with events in this range and under these filters."));
    return;
  }
  const card = (label, metric, value, text) => h("article", { class: "kpi", "aria-label": label },
    h("h3", {}, label), figure("p", metric, value, text, { class: "kpi-value" }));
  const chart = timeChart({
    title: "Cumulative cost (USD)",
    buckets: s.timeline.buckets,
    series: [{ label: "Cumulative cost", values: s.timeline.cumulativeCostUsd, format: fmtUsd }],
    timeZone: state.tz,
    formatX: (iso) => fmtDateTime(iso, state.tz),
  });
  ctx.onLeave(() => chart.dispose());
  const c = s.comparison;
  main.replaceChildren(back, title,
    h("p", { class: "muted" }, `${fmtDateTime(s.firstTimestamp, state.tz)} to ${fmtDateTime(s.lastTimestamp, state.tz)}`,
      s.userId ? ` · user ${s.userId}` : "", s.agentId ? ` · agent ${s.agentId}` : ""),
    h("section", { class: "kpis", "aria-label": "Session figures" },
      card("Cost", "costUsd", s.costUsd, fmtUsd(s.costUsd)),
      card("Requests", "requestCount", s.requestCount, fmtInt(s.requestCount)),
      card("Errors", "errorCount", s.errorCount, fmtInt(s.errorCount)),
      card("Total tokens", "totalTokens", s.totalTokens, fmtInt(s.totalTokens)),
      card("Duration", "durationMs", s.durationMs, fmtMs(s.durationMs)),
      card("Avg latency", "avgLatencyMs", s.avgLatencyMs, fmtMs(s.avgLatencyMs))),
    c ? h("section", { "aria-label": "Compared with the median session" },
      h("h2", {}, `Compared with the ${fmtInt(c.baselineSessions)} sessions of this range and filters`),
      h("ul", { class: "chips" },
        comparisonChip("Cost", c.costUsd, fmtUsd),
        comparisonChip("Tokens", c.totalTokens, fmtInt),
        comparisonChip("Duration", c.durationMs, fmtMs),
        comparisonChip("Requests", c.requests, fmtInt)))
      : h("p", { class: "muted" }, "Too few other sessions in this range to compare with."),
    h("section", { class: "tops" },
      chart,
      h("section", { class: "panel" }, h("h2", {}, "Models"),
        h("table", { class: "data" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Model"),
            ["Requests", "Errors", "Tokens", "Cost", "Avg latency"].map((l) => h("th", { scope: "col", class: "num" }, l)))),
          h("tbody", {}, s.models.map((m) => h("tr", {},
            h("th", { scope: "row" }, m.model || h("span", { class: "muted" }, "(no model: tools, runs)"),
              m.provider ? h("span", { class: "muted" }, ` ${m.provider}`) : ""),
            figure("td", "requests", m.requests, fmtInt(m.requests), { class: "num" }),
            figure("td", "errors", m.errors, fmtInt(m.errors), { class: "num" }),
            figure("td", "totalTokens", m.totalTokens, fmtInt(m.totalTokens), { class: "num" }),
            figure("td", "costUsd", m.costUsd, fmtUsd(m.costUsd), { class: "num" }),
            figure("td", "avgLatencyMs", m.avgLatencyMs, fmtMs(m.avgLatencyMs), { class: "num" }))))))),
    h("h2", {}, `Requests (${fmtInt(s.requests.nodes.length)} of ${fmtInt(s.requests.totalCount)}, newest first)`),
    h("div", { class: "table-wrap" }, h("table", { class: "data session-requests" },
      h("thead", {}, h("tr", {}, ["Time", "Kind", "Status", "Model or tool"].map((l) => h("th", { scope: "col" }, l)),
        ["Tokens", "Cost", "Latency"].map((l) => h("th", { scope: "col", class: "num" }, l)))),
      h("tbody", {}, s.requests.nodes.map((r) => h("tr", {},
        h("td", {}, h("a", { href: toSearch({ ...state, view: "requests", session: null, sort: null, request: r.id }) }, fmtDateTime(r.timestamp, state.tz))),
        h("td", {}, r.kind.toLowerCase().replaceAll("_", " ")),
        h("td", {}, h("span", { class: `badge status-${r.status.toLowerCase()}` }, r.status.toLowerCase()),
          r.errorType ? ` ${r.errorType.toLowerCase()}` : ""),
        h("td", {}, r.model || r.tool || DASH),
        figure("td", "totalTokens", r.totalTokens, fmtInt(r.totalTokens), { class: "num" }),
        figure("td", "costUsd", r.costUsd, fmtUsd(r.costUsd), { class: "num" }),
        figure("td", "latencyMs", r.latencyMs, fmtMs(r.latencyMs), { class: "num" })))))));
}

export default {
  id: "sessions",
  label: "Sessions",
  render(ctx) {
    return ctx.state.session ? renderSession(ctx) : renderList(ctx);
  },
};
