// Ask: a question in plain words, answered by GraphQL's ask. The page shows what was
// understood (in words, and as the metrics query, which "Open as query" puts in GraphiQL),
// the summary, the chart the server draws (/v1/ask.png) and the rows; a question that was not
// understood gets questions to try, one click each. The question is kept in the URL (q=).
import { ApiError, getKey, gql } from "../api.js";
import { errorBox, figure, h, skeleton } from "../dom.js";
import { fmtDateTime } from "../format.js";

const QUERY = `query ConsoleAsk($question: String!, $timezone: String!) {
  ask(question: $question, timezone: $timezone) {
    understood interpretation notes summary suggestions query
    result { metrics dimensions totalRows truncated rows { bucket keys values } }
  }
}`;
const METRICS_QUERY = `query Metrics($query: MetricsQueryInput!) {
  metrics(query: $query) { metrics dimensions rows { bucket keys values } }
}`;
const EXAMPLES = [
  "cost by model this month",
  "top 5 users by cost last 7 days",
  "p95 latency by model for llm calls today",
  "requests per day over the last 30 days",
];

function format(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? value.toLocaleString("en-US")
    : value.toLocaleString("en-US", { maximumFractionDigits: 4 });
}

// the server's picture of the answer, fetched with the key (an <img src> cannot carry it)
async function chartImage(question, timeZone, onLeave) {
  const params = new URLSearchParams({ q: question, timezone: timeZone });
  const response = await fetch(`/v1/ask.png?${params}`, {
    headers: { authorization: `Bearer ${getKey()}` },
  });
  if (!response.ok) throw new ApiError(`The chart failed with HTTP ${response.status}.`, "CHART", response.status);
  const url = URL.createObjectURL(await response.blob());
  onLeave(() => URL.revokeObjectURL(url));
  return h("img", { class: "ask-chart", src: url, alt: `Chart: ${question}` });
}

function rowsTable(result, timeZone) {
  const timed = result.rows.some((r) => r.bucket);
  const head = [...(timed ? ["Time"] : []), ...result.dimensions, ...result.metrics];
  return h("div", { class: "table-wrap" }, h("table", { class: "data ask-rows" },
    h("caption", { class: "sr-only" }, "The answer's rows"),
    h("thead", {}, h("tr", {}, head.map((c, i) => h("th", {
      scope: "col", class: i >= head.length - result.metrics.length ? "num" : null,
    }, c)))),
    h("tbody", {}, result.rows.map((row) => h("tr", {},
      timed ? h("td", {}, fmtDateTime(row.bucket, timeZone, false)) : null,
      row.keys.map((k) => h("td", {}, k ?? "(none)")),
      row.values.map((v, i) => figure("td", result.metrics[i], v, format(v), { class: "num" })))))));
}

// GraphiQL at /graphql with the metrics query and its variables filled in (not ?query=,
// which /graphql answers by running the query)
function graphiqlLink(query) {
  const params = new URLSearchParams({
    document: METRICS_QUERY,
    variables: JSON.stringify({ query }, null, 2),
  });
  return h("a", { class: "button", href: `/graphql?${params}`, target: "_blank", rel: "noopener" },
    "Open as query");
}

export default {
  id: "ask",
  label: "Ask",
  usesFilters: false,
  usesRange: false,
  async render(ctx) {
    const { state, main } = ctx;
    const question = state.q || "";
    const input = h("input", {
      id: "ask-question", name: "q", type: "search", value: question, maxlength: "300",
      placeholder: "e.g. what did each team spend on gpt-4o this month?",
      "aria-label": "Your question",
    });
    const form = h("form", {
      class: "ask-form", role: "search",
      onsubmit: (event) => {
        event.preventDefault();
        ctx.navigate({ q: input.value.trim() || null });
      },
    }, input, h("button", { type: "submit" }, "Ask"));
    const heading = h("h1", {}, "Ask");
    const note = h("p", { class: "muted" },
      `Answered from tallyql's own metrics; days are counted in ${state.tz}.`);
    const ask = (text) => () => ctx.navigate({ q: text });
    if (!question) {
      main.replaceChildren(heading, form, note, h("section", { class: "panel" },
        h("h2", {}, "Try"), h("ul", { class: "suggestions" },
          EXAMPLES.map((e) => h("li", {}, h("button", { type: "button", class: "link", onclick: ask(e) }, e))))));
      input.focus();
      return;
    }
    main.replaceChildren(heading, form, note, skeleton(6));
    let data;
    try {
      data = await gql(QUERY, { question, timezone: state.tz });
    } catch (error) {
      if (!ctx.stale()) main.replaceChildren(heading, form, errorBox(error));
      return;
    }
    if (ctx.stale()) return;
    const a = data.ask;
    if (!a.understood) {
      main.replaceChildren(heading, form, h("div", { class: "empty", role: "status" },
        h("h2", {}, "That question was not understood"),
        a.notes.length ? h("p", {}, a.notes.join(" ")) : null,
        h("p", {}, "Questions it can answer:"),
        h("ul", { class: "suggestions" }, a.suggestions.map((s) =>
          h("li", {}, h("button", { type: "button", class: "link", onclick: ask(s) }, s))))));
      return;
    }
    const understood = h("section", { class: "panel ask-understood" },
      h("h2", {}, "Understood as"),
      h("p", { class: "ask-interpretation" }, a.interpretation),
      a.notes.length ? h("ul", { class: "muted" }, a.notes.map((n) => h("li", {}, n))) : null,
      h("details", {}, h("summary", {}, "The query"), h("pre", {}, JSON.stringify(a.query, null, 2))),
      graphiqlLink(a.query));
    const summary = h("p", { class: "ask-summary", role: "status" }, a.summary);
    const picture = h("section", { class: "panel" }, h("h2", {}, "Chart"), skeleton(4));
    main.replaceChildren(heading, form, summary, understood, picture,
      h("section", { class: "panel" }, h("h2", {}, "Rows"), rowsTable(a.result, state.tz),
        a.result.truncated ? h("p", { class: "muted" }, `The first rows of ${a.result.totalRows}.`) : null));
    try {
      const img = await chartImage(question, state.tz, ctx.onLeave);
      if (!ctx.stale()) picture.replaceChildren(h("h2", {}, "Chart"), img);
    } catch (error) {
      if (!ctx.stale()) picture.replaceChildren(h("h2", {}, "Chart"), errorBox(error));
    }
  },
};
