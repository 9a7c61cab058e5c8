// Requests: the request log under the global range and filters, paged by cursor, and a
// drawer with one request's detail and payloads (its id kept in the URL, so it can be shared).
import { gql } from "../api.js";
import { errorBox, figure, h, skeleton } from "../dom.js";
import { emptyState } from "../empty.js";
import { DASH, fmtBytes, fmtDateTime, fmtInt, fmtMs, fmtUsd } from "../format.js";
import { eventFilter, timeRange } from "../state.js";

const PAGE = 50;

const LIST = `query ConsoleRequests($range: TimeRangeInput, $filter: EventFilter, $after: String) {
  requests(range: $range, filter: $filter, first: ${PAGE}, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      id timestamp kind status errorType provider model tool userId agentId
      totalTokens costUsd latencyMs
    }
  }
}`;

const DETAIL = `query ConsoleRequest($id: ID!) {
  request(id: $id) {
    id timestamp receivedAt kind status statusCode errorType errorMessage
    policyId policyName policyDescription userId apiKeyId callerIp agentId agentInstanceId
    sessionId traceId parentId runId node provider model tool mcpServer gateway protocol
    requestType billingMode isByok inputTokens outputTokens cacheReadTokens cacheWriteTokens
    reasoningTokens totalTokens costUsd costSource latencyMs ttftMs requestBytes responseBytes
    tags metadata hasPayload payload { request response }
  }
}`;

function statusBadge(status) {
  return h("span", { class: `badge status-${status.toLowerCase()}` }, status.toLowerCase());
}

function row(node, state, open) {
  return h("tr", {},
    h("td", {}, h("button", {
      type: "button",
      class: "link",
      "aria-label": `Open request ${node.id}`,
      onclick: (event) => open(node.id, event.currentTarget),
    }, fmtDateTime(node.timestamp, state.tz))),
    h("td", {}, node.kind.toLowerCase().replaceAll("_", " ")),
    h("td", {}, statusBadge(node.status), node.errorType ? ` ${node.errorType.toLowerCase()}` : ""),
    h("td", {}, node.model || node.tool || DASH, node.provider ? h("span", { class: "muted" }, ` ${node.provider}`) : ""),
    h("td", {}, node.userId || DASH),
    h("td", {}, node.agentId || DASH),
    figure("td", "totalTokens", node.totalTokens, fmtInt(node.totalTokens), { class: "num" }),
    figure("td", "costUsd", node.costUsd, fmtUsd(node.costUsd), { class: "num" }),
    figure("td", "latencyMs", node.latencyMs, fmtMs(node.latencyMs), { class: "num" }));
}

// [field, label, formatter] of the drawer's figures and facts
const DETAIL_FIELDS = [
  ["timestamp", "Time", "time"], ["receivedAt", "Received", "time"], ["kind", "Kind"],
  ["status", "Status"], ["statusCode", "HTTP status"], ["errorType", "Error type"],
  ["errorMessage", "Error message"], ["policyName", "Policy"], ["policyDescription", "Policy says"],
  ["provider", "Provider"], ["model", "Model"], ["tool", "Tool"], ["mcpServer", "MCP server"],
  ["gateway", "Gateway"], ["protocol", "Protocol"], ["requestType", "Request type"],
  ["billingMode", "Billing mode"], ["isByok", "Own provider key (BYOK)"],
  ["userId", "User"], ["apiKeyId", "API key"], ["callerIp", "Caller IP"], ["agentId", "Agent"],
  ["agentInstanceId", "Agent instance"], ["sessionId", "Session"], ["traceId", "Trace"],
  ["parentId", "Parent"], ["runId", "Run"], ["node", "Node"],
  ["inputTokens", "Input tokens", fmtInt], ["outputTokens", "Output tokens", fmtInt],
  ["cacheReadTokens", "Cache read tokens", fmtInt], ["cacheWriteTokens", "Cache write tokens", fmtInt],
  ["reasoningTokens", "Reasoning tokens", fmtInt], ["totalTokens", "Total tokens", fmtInt],
  ["costUsd", "Cost", fmtUsd], ["costSource", "Cost source"], ["latencyMs", "Latency", fmtMs],
  ["ttftMs", "Time to first token", fmtMs], ["requestBytes", "Request size", fmtBytes],
  ["responseBytes", "Response size", fmtBytes],
];

const ENUMS = new Set(["kind", "status", "errorType", "costSource"]);

function detailList(request, tz) {
  const items = [];
  for (const [field, label, format] of DETAIL_FIELDS) {
    const value = request[field];
    if (value == null || value === "") continue;
    let shown;
    if (format === "time") shown = h("dd", {}, fmtDateTime(value, tz));
    else if (typeof format === "function") shown = figure("dd", field, value, format(value));
    else if (ENUMS.has(field)) shown = h("dd", {}, value.toLowerCase().replaceAll("_", " "));
    else shown = h("dd", {}, typeof value === "boolean" ? (value ? "yes" : "no") : String(value));
    items.push(h("dt", {}, label), shown);
  }
  if (request.tags.length) items.push(h("dt", {}, "Tags"), h("dd", {}, request.tags.join(", ")));
  return h("dl", { class: "facts" }, items);
}

function json(value) {
  return h("pre", { class: "code" }, JSON.stringify(value, null, 2));
}

function drawerBody(request, tz) {
  if (!request) return h("p", { role: "alert" }, "This request does not exist in this workspace (or retention removed it).");
  const metadata = request.metadata && Object.keys(request.metadata).length;
  return [
    detailList(request, tz),
    metadata ? [h("h3", {}, "Metadata"), json(request.metadata)] : null,
    h("h3", {}, "Payloads"),
    request.hasPayload && request.payload
      ? [h("h4", {}, "Request"), json(request.payload.request),
         h("h4", {}, "Response"), json(request.payload.response)]
      : h("p", { class: "muted" }, "No payload was stored for this request (send `request` and `response` with the event to keep them)."),
  ];
}

// a modal dialog: Tab and Shift+Tab cycle through its own controls
function keepFocusInside(dialog, event) {
  const focusable = [...dialog.querySelectorAll("button, a[href], input, select, [tabindex='0']")];
  if (!focusable.length) return;
  const first = focusable[0];
  const last = focusable[focusable.length - 1];
  if (event.shiftKey && document.activeElement === first) {
    event.preventDefault();
    last.focus();
  } else if (!event.shiftKey && document.activeElement === last) {
    event.preventDefault();
    first.focus();
  }
}

async function openDrawer(ctx, id, opener) {
  const { state } = ctx;
  const close = () => {
    backdrop.remove();
    drawer.remove();
    ctx.navigate({ request: null }, { replace: true, rerender: false });
    if (opener && opener.isConnected) opener.focus();
  };
  const body = h("div", { class: "drawer-body" }, skeleton(8));
  const closeButton = h("button", { type: "button", class: "close", onclick: close, "aria-label": "Close the request detail" }, "×");
  const drawer = h("aside", {
    class: "drawer", role: "dialog", "aria-modal": "true", "aria-labelledby": "drawer-title",
    onkeydown: (event) => {
      if (event.key === "Escape") close();
      else if (event.key === "Tab") keepFocusInside(drawer, event);
    },
  },
  h("header", {}, h("h2", { id: "drawer-title" }, "Request ", h("code", {}, id)), closeButton),
  body);
  const backdrop = h("div", { class: "backdrop", onclick: close });
  document.querySelectorAll(".drawer, .backdrop").forEach((el) => el.remove());
  document.body.append(backdrop, drawer);
  ctx.onLeave(() => { backdrop.remove(); drawer.remove(); });
  closeButton.focus();
  try {
    const data = await gql(DETAIL, { id });
    body.replaceChildren(...[drawerBody(data.request, state.tz)].flat(3).filter(Boolean));
  } catch (error) {
    body.replaceChildren(errorBox(error));
  }
}

export default {
  id: "requests",
  label: "Requests",
  async render(ctx) {
    const { main, state } = ctx;
    const cursors = [null]; // the `after` of each page seen, for Previous
    const title = h("h1", {}, "Requests");
    const open = (id, opener) => {
      ctx.navigate({ request: id }, { rerender: false });
      openDrawer(ctx, id, opener);
    };
    if (state.request) openDrawer(ctx, state.request);

    const load = async (page) => {
      main.replaceChildren(title, skeleton(10));
      let data;
      try {
        data = await gql(LIST, {
          range: timeRange(state), filter: eventFilter(state), after: cursors[page],
        });
      } catch (error) {
        main.replaceChildren(title, errorBox(error));
        return;
      }
      if (ctx.stale()) return;
      const { requests } = data;
      if (requests.totalCount === 0) {
        main.replaceChildren(title, emptyState(state, ctx));
        return;
      }
      if (requests.pageInfo.hasNextPage) cursors[page + 1] = requests.pageInfo.endCursor;
      const first = page * PAGE + 1;
      const last = page * PAGE + requests.nodes.length;
      const pager = h("nav", { class: "pager", "aria-label": "Pages of requests" },
        h("button", { type: "button", disabled: page === 0, onclick: () => load(page - 1) }, "← Newer"),
        h("span", { role: "status" }, `${fmtInt(first)}–${fmtInt(last)} of `,
          figure("span", "totalCount", requests.totalCount, fmtInt(requests.totalCount))),
        h("button", { type: "button", disabled: !requests.pageInfo.hasNextPage, onclick: () => load(page + 1) }, "Older →"));
      main.replaceChildren(title,
        h("p", { class: "muted" }, "Newest first. Open a request for its detail and payloads."),
        pager,
        h("div", { class: "table-wrap" }, h("table", { class: "data requests" },
          h("caption", { class: "sr-only" }, "Requests, newest first"),
          h("thead", {}, h("tr", {},
            ["Time", "Kind", "Status", "Model or tool", "User", "Agent"].map((c) => h("th", { scope: "col" }, c)),
            ["Tokens", "Cost", "Latency"].map((c) => h("th", { scope: "col", class: "num" }, c)))),
          h("tbody", {}, requests.nodes.map((node) => row(node, state, open))))));
    };
    await load(0);
  },
};
