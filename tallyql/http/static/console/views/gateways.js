// Gateways: each gateway's requests, distinct callers, bandwidth, errors, blocked calls,
// latency and cost, sortable (sort=) and paged. One GraphQL request a page.
import { h } from "../dom.js";
import { emptyState } from "../empty.js";
import { fmtBytes, fmtInt, fmtMs, fmtPct, fmtUsd } from "../format.js";
import { eventFilter, timeRange } from "../state.js";
import { dataTable, load, pager, parseSort } from "../tables.js";

const PAGE = 25;
const ORDERS = ["REQUESTS", "BANDWIDTH", "ERROR_RATE", "UNIQUE_CALLERS", "COST"];
const QUERY = `query ConsoleGateways($range: TimeRangeInput!, $filter: EventFilter, $orderBy: GatewayOrder!,
    $descending: Boolean!, $after: String) {
  gateways(range: $range, filter: $filter, orderBy: $orderBy, descending: $descending,
           first: ${PAGE}, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      gateway requests uniqueCallers requestBytes responseBytes bandwidthBytes errors errorRate
      blocked avgLatencyMs costUsd
    }
  }
}`;

export default {
  id: "gateways",
  label: "Gateways",
  async render(ctx) {
    const { state } = ctx;
    const sort = parseSort(state.sort, ORDERS);
    const cursors = [null];
    const show = (page) => load(ctx, "Gateways", QUERY, {
      range: timeRange(state), filter: eventFilter(state), ...sort, after: cursors[page],
    }, ({ gateways }) => {
      if (gateways.totalCount === 0) {
        return [h("p", { class: "muted" }, "Gateways are named by the gateway field of the events that passed through one."),
          emptyState(state, ctx)];
      }
      if (gateways.pageInfo.hasNextPage) cursors[page + 1] = gateways.pageInfo.endCursor;
      return [
        pager("Pages of gateways", page, PAGE, gateways, show),
        dataTable({
          caption: "Gateways", cls: "gateways", sort, ctx, rows: gateways.nodes,
          rowAttrs: (g) => ({ "data-key": g.gateway }),
          columns: [
            { label: "Gateway", cell: (g) => g.gateway },
            { label: "Requests", metric: "requests", get: (g) => g.requests, format: fmtInt, order: "REQUESTS" },
            { label: "Callers", metric: "uniqueCallers", get: (g) => g.uniqueCallers, format: fmtInt, order: "UNIQUE_CALLERS" },
            { label: "Sent", metric: "requestBytes", get: (g) => g.requestBytes, format: fmtBytes },
            { label: "Received", metric: "responseBytes", get: (g) => g.responseBytes, format: fmtBytes },
            { label: "Bandwidth", metric: "bandwidthBytes", get: (g) => g.bandwidthBytes, format: fmtBytes, order: "BANDWIDTH" },
            { label: "Errors", metric: "errors", get: (g) => g.errors, format: fmtInt },
            { label: "Error rate", metric: "errorRate", get: (g) => g.errorRate, format: fmtPct, order: "ERROR_RATE" },
            { label: "Blocked", metric: "blocked", get: (g) => g.blocked, format: fmtInt },
            { label: "Avg latency", metric: "avgLatencyMs", get: (g) => g.avgLatencyMs, format: fmtMs },
            { label: "Cost", metric: "costUsd", get: (g) => g.costUsd, format: fmtUsd, order: "COST" },
          ],
        }),
      ];
    }, 10);
    await show(0);
  },
};
