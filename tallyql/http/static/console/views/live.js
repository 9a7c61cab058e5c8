// Live: requests and errors as they are committed, a running cost ticker and budget limit
// warnings, over one graphql-transport-ws subscription (graphql-ws, vendored). The client
// reconnects with exponential backoff; a Lagged item (the server dropped items because this
// page fell behind) is shown with the count dropped.
import { getKey } from "../api.js";
import { errorBox, figure, h } from "../dom.js";
import { DASH, fmtDateTime, fmtInt, fmtMs, fmtPct, fmtUsd } from "../format.js";
import { eventFilter } from "../state.js";

const FEED_LIMIT = 200;
const TICK_SECONDS = 5;

const EVENT_FIELDS = `id timestamp kind status model provider tool userId agentId
  totalTokens costUsd latencyMs`;

const SUBSCRIPTION = `subscription ConsoleLive($filter: EventFilter, $timezone: String!) {
  events(filter: $filter, types: [REQUEST, ERROR, COST_UPDATE, LIMIT_WARNING],
         interval: ${TICK_SECONDS}, timezone: $timezone) {
    __typename
    ... on RequestEvent { ${EVENT_FIELDS} }
    ... on ErrorEvent { ${EVENT_FIELDS} errorType errorMessage }
    ... on CostUpdate {
      at since
      sinceStart { requests errors costUsd totalTokens }
      today { requests errors costUsd totalTokens }
    }
    ... on LimitWarning { budgetName threshold percentUsed spendUsd limitUsd period }
    ... on Lagged { count }
  }
}`;

// 1 s, 2 s, 4 s … up to 30 s, each with jitter so that many tabs do not reconnect at once
function backoff(retries) {
  const base = Math.min(30000, 1000 * 2 ** retries);
  return new Promise((resolve) => setTimeout(resolve, base / 2 + Math.random() * base / 2));
}

function websocketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/graphql`;
}

export default {
  id: "live",
  label: "Live",
  render(ctx) {
    const { main, state } = ctx;
    const status = h("p", { class: "live-status", role: "status" }, "Connecting…");
    const lagged = h("p", { class: "warning", role: "alert", hidden: true });
    const warnings = h("ul", { class: "warnings", "aria-label": "Budget limit warnings" });
    const ticker = h("section", { class: "kpis ticker", "aria-label": "Running cost" },
      h("p", { class: "muted" }, "Waiting for the first cost update…"));
    const feed = h("tbody", {});
    const empty = h("tr", { class: "feed-empty" }, h("td", { colspan: 8, class: "muted" },
      "No requests yet since this page opened. Events appear here as soon as they are committed."));
    feed.append(empty);
    let droppedTotal = 0;

    const filterNote = eventFilter(state)
      ? "Only events matching the filters are shown; the time range does not apply to a live feed."
      : "The time range does not apply to a live feed.";
    main.replaceChildren(
      h("h1", {}, "Live"),
      h("p", { class: "muted" }, filterNote),
      status, lagged, warnings, ticker,
      h("div", { class: "table-wrap" }, h("table", { class: "data live-feed" },
        h("caption", { class: "sr-only" }, "Requests and errors as they arrive, newest first"),
        h("thead", {}, h("tr", {},
          ["Time", "Kind", "Status", "Model or tool", "User"].map((c) => h("th", { scope: "col" }, c)),
          ["Tokens", "Cost", "Latency"].map((c) => h("th", { scope: "col", class: "num" }, c)))),
        feed)));

    const onEvent = (item) => {
      switch (item.__typename) {
        case "RequestEvent":
        case "ErrorEvent":
          addRow(item);
          break;
        case "CostUpdate":
          showTotals(item);
          break;
        case "LimitWarning":
          warnings.prepend(h("li", { class: "warning" },
            `Budget ${item.budgetName} reached ${item.threshold} % of its ${item.period.toLowerCase()} limit: `,
            `${fmtUsd(item.spendUsd)} of ${fmtUsd(item.limitUsd)} (${fmtPct(item.percentUsed / 100)}).`));
          break;
        case "Lagged":
          droppedTotal += item.count;
          lagged.hidden = false;
          lagged.replaceChildren(
            "This page fell behind and the server dropped ",
            figure("strong", "Lagged.count", droppedTotal, fmtInt(droppedTotal)),
            " items; the feed has gaps, the cost ticker does not.");
          break;
      }
    };

    const addRow = (event) => {
      empty.remove();
      const isError = event.__typename === "ErrorEvent";
      feed.prepend(h("tr", { class: isError ? "is-error" : "", "data-id": event.id },
        h("td", {}, fmtDateTime(event.timestamp, state.tz)),
        h("td", {}, event.kind.toLowerCase().replaceAll("_", " ")),
        h("td", {}, h("span", { class: `badge status-${event.status.toLowerCase()}` }, event.status.toLowerCase()),
          isError && event.errorType ? ` ${event.errorType.toLowerCase()}` : ""),
        h("td", {}, event.model || event.tool || DASH),
        h("td", {}, event.userId || DASH),
        figure("td", "totalTokens", event.totalTokens, fmtInt(event.totalTokens), { class: "num" }),
        figure("td", "costUsd", event.costUsd, fmtUsd(event.costUsd), { class: "num" }),
        figure("td", "latencyMs", event.latencyMs, fmtMs(event.latencyMs), { class: "num" })));
      while (feed.rows.length > FEED_LIMIT) feed.lastElementChild.remove();
    };

    const card = (label, metric, value, text) => h("article", { class: "kpi" },
      h("h3", {}, label), figure("p", metric, value, text, { class: "kpi-value" }));
    const showTotals = (update) => {
      ticker.replaceChildren(
        card("Cost today", "today.costUsd", update.today.costUsd, fmtUsd(update.today.costUsd)),
        card("Requests today", "today.requests", update.today.requests, fmtInt(update.today.requests)),
        card("Errors today", "today.errors", update.today.errors, fmtInt(update.today.errors)),
        card("Cost since this page opened", "sinceStart.costUsd", update.sinceStart.costUsd, fmtUsd(update.sinceStart.costUsd)),
        card("Requests since this page opened", "sinceStart.requests", update.sinceStart.requests, fmtInt(update.sinceStart.requests)),
      );
    };

    let retries = 0;
    const client = graphqlWs.createClient({
      url: websocketUrl(),
      connectionParams: { Authorization: `Bearer ${getKey()}` },
      retryAttempts: Infinity,
      // a closed socket (server restart, network) is retried; a refused key (4403) is not
      shouldRetry: (closeEvent) => !(closeEvent && closeEvent.code === 4403),
      retryWait: async (count) => {
        retries = count + 1;
        status.textContent = `Disconnected; reconnecting (attempt ${retries})…`;
        status.className = "live-status down";
        await backoff(count);
      },
      on: {
        connected: () => {
          status.textContent = retries ? "Connected again: live (events sent while disconnected are not replayed; the Requests view has them)." : "Connected: live.";
          status.className = "live-status up";
        },
        closed: (event) => {
          if (event && event.code === 4403) {
            status.textContent = "The server refused this key for subscriptions.";
            status.className = "live-status down";
          }
        },
      },
    });
    const unsubscribe = client.subscribe(
      { query: SUBSCRIPTION, variables: { filter: eventFilter(state), timezone: state.tz } },
      {
        next: (message) => {
          if (message.errors) main.prepend(errorBox(new Error(message.errors.map((e) => e.message).join(" "))));
          else onEvent(message.data.events);
        },
        error: (error) => {
          const text = Array.isArray(error) ? error.map((e) => e.message).join(" ")
            : error instanceof Error ? error.message : `connection closed (${error.code || "?"} ${error.reason || ""})`;
          status.textContent = `The subscription ended: ${text}`;
          status.className = "live-status down";
        },
        complete: () => {},
      });
    ctx.onLeave(() => {
      unsubscribe();
      client.dispose();
    });
  },
};
