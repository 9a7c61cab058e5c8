// Agents: each agent's runs, success rate, run duration, requests, errors, tokens, cost and
// instances, sortable (sort=) and paged, with each agent's nodes (steps of its graph) one
// click away. One GraphQL request a page.
import { figure, h } from "../dom.js";
import { emptyState } from "../empty.js";
import { fmtInt, fmtMs, fmtPct, fmtUsd } from "../format.js";
import { eventFilter, timeRange } from "../state.js";
import { dataTable, load, pager, parseSort } from "../tables.js";

const PAGE = 25;
const ORDERS = ["RUNS", "REQUESTS", "COST", "TOKENS", "SUCCESS_RATE", "AVG_RUN_DURATION"];
const QUERY = `query ConsoleAgents($range: TimeRangeInput!, $filter: EventFilter, $orderBy: AgentOrder!,
    $descending: Boolean!, $after: String) {
  agents(range: $range, filter: $filter, orderBy: $orderBy, descending: $descending,
         first: ${PAGE}, after: $after) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      agentId runs successRate avgRunDurationMs requests errors inputTokens outputTokens
      totalTokens costUsd instances
      nodes { node requests errors errorRate costUsd avgLatencyMs avgRunDurationMs }
    }
  }
}`;

function nodesOf(agent) {
  if (!agent.nodes.length) return agent.agentId;
  return h("details", {},
    h("summary", {}, agent.agentId, h("span", { class: "muted" }, ` · ${agent.nodes.length} nodes`)),
    h("table", { class: "data nodes" },
      h("caption", { class: "sr-only" }, `Nodes of agent ${agent.agentId}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Node"),
        ["Requests", "Errors", "Error rate", "Cost", "Avg latency", "Avg run"].map((l) => h("th", { scope: "col", class: "num" }, l)))),
      h("tbody", {}, agent.nodes.map((n) => h("tr", { "data-node": n.node },
        h("th", { scope: "row" }, n.node),
        figure("td", "node.requests", n.requests, fmtInt(n.requests), { class: "num" }),
        figure("td", "node.errors", n.errors, fmtInt(n.errors), { class: "num" }),
        figure("td", "node.errorRate", n.errorRate, fmtPct(n.errorRate), { class: "num" }),
        figure("td", "node.costUsd", n.costUsd, fmtUsd(n.costUsd), { class: "num" }),
        figure("td", "node.avgLatencyMs", n.avgLatencyMs, fmtMs(n.avgLatencyMs), { class: "num" }),
        figure("td", "node.avgRunDurationMs", n.avgRunDurationMs, fmtMs(n.avgRunDurationMs), { class: "num" }))))));
}

export default {
  id: "agents",
  label: "Agents",
  async render(ctx) {
    const { state } = ctx;
    const sort = parseSort(state.sort, ORDERS);
    const cursors = [null];
    const show = (page) => load(ctx, "Agents", QUERY, {
      range: timeRange(state), filter: eventFilter(state), ...sort, after: cursors[page],
    }, ({ agents }) => {
      if (agents.totalCount === 0) {
        return [h("p", { class: "muted" }, "Agents are named by the agent_id of their events; a run is an event of kind agent_run."),
          emptyState(state, ctx)];
      }
      if (agents.pageInfo.hasNextPage) cursors[page + 1] = agents.pageInfo.endCursor;
      return [
        h("p", { class: "muted" }, "Success rate and duration are over agent runs; requests, tokens and cost over every event of the agent. Open an agent for its nodes."),
        pager("Pages of agents", page, PAGE, agents, show),
        dataTable({
          caption: "Agents", cls: "agents", sort, ctx, rows: agents.nodes,
          rowAttrs: (a) => ({ "data-key": a.agentId }),
          columns: [
            { label: "Agent", cell: nodesOf },
            { label: "Runs", metric: "runs", get: (a) => a.runs, format: fmtInt, order: "RUNS" },
            { label: "Success rate", metric: "successRate", get: (a) => a.successRate, format: fmtPct, order: "SUCCESS_RATE" },
            { label: "Avg run", metric: "avgRunDurationMs", get: (a) => a.avgRunDurationMs, format: fmtMs, order: "AVG_RUN_DURATION" },
            { label: "Requests", metric: "requests", get: (a) => a.requests, format: fmtInt, order: "REQUESTS" },
            { label: "Errors", metric: "errors", get: (a) => a.errors, format: fmtInt },
            { label: "Tokens", metric: "totalTokens", get: (a) => a.totalTokens, format: fmtInt, order: "TOKENS" },
            { label: "Cost", metric: "costUsd", get: (a) => a.costUsd, format: fmtUsd, order: "COST" },
            { label: "Instances", metric: "instances", get: (a) => a.instances, format: fmtInt },
          ],
        }),
      ];
    }, 10);
    await show(0);
  },
};
