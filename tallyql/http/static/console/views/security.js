// Security: calls blocked by policies, their share of all requests and their trend; the
// policies that blocked most, and the tools, MCP servers, agent instances and users blocked
// most. One GraphQL request (security).
import { timeChart } from "../charts.js";
import { h } from "../dom.js";
import { emptyState } from "../empty.js";
import { DASH, fmtCompact, fmtDateTime, fmtInt, fmtPct } from "../format.js";
import { eventFilter, timeRange } from "../state.js";
import { card, dataTable, label, load, panel } from "../tables.js";

const TOP = 10;
const ROW = "calls errors errorRate";
const QUERY = `query ConsoleSecurity($range: TimeRangeInput!, $filter: EventFilter) {
  security(range: $range, filter: $filter) {
    blockedCalls totalRequests blockedRate
    blockedOverTime { granularity buckets series { metric values } }
    topPolicies(first: ${TOP}) { nodes { policyId policyName policyDescription blockedCalls } }
    topBlockedTools(first: ${TOP}) { nodes { tool mcpServer ${ROW} } }
    topBlockedMcpServers(first: ${TOP}) { nodes { mcpServer tools ${ROW} } }
    topBlockedAgentInstances(first: ${TOP}) { nodes { agentInstanceId agentId ${ROW} } }
    topBlockedUsers(first: ${TOP}) { nodes { userId ${ROW} } }
  }
}`;

// in these rows `calls` counts the blocked calls
const BLOCKED = { label: "Blocked calls", metric: "calls", get: (r) => r.calls, format: fmtInt };

export default {
  id: "security",
  label: "Security",
  async render(ctx) {
    const { state } = ctx;
    await load(ctx, "Security", QUERY, { range: timeRange(state), filter: eventFilter(state) }, ({ security: s }) => {
      if (s.totalRequests === 0) return emptyState(state, ctx);
      const kpis = h("section", { class: "kpis", "aria-label": "Security figures" },
        card("Blocked calls", "blockedCalls", s.blockedCalls, fmtInt(s.blockedCalls), "status blocked"),
        card("Blocked share", "blockedRate", s.blockedRate, fmtPct(s.blockedRate), "of all requests"),
        card("Requests", "totalRequests", s.totalRequests, fmtCompact(s.totalRequests), "in this range"));
      if (s.blockedCalls === 0) {
        return [kpis, h("div", { class: "empty", role: "status" },
          h("h2", {}, "No call was blocked in this range"),
          h("p", {}, "Calls stopped by a policy arrive with status blocked and a policy_id (and policy_name); they appear here with the policy that stopped them."))];
      }
      const over = s.blockedOverTime;
      const chart = timeChart({
        title: `Blocked calls per ${over.granularity.toLowerCase()}`,
        buckets: over.buckets,
        series: over.series.slice(0, 1).map((x) => ({ label: "Blocked calls", values: x.values, format: fmtCompact })),
        timeZone: state.tz,
        formatX: (iso) => fmtDateTime(iso, state.tz, false),
        kind: "bars",
      });
      ctx.onLeave(() => chart.dispose());
      const policies = s.topPolicies.nodes;
      const tools = s.topBlockedTools.nodes;
      const servers = s.topBlockedMcpServers.nodes;
      const instances = s.topBlockedAgentInstances.nodes;
      const users = s.topBlockedUsers.nodes;
      return [
        kpis,
        h("section", { class: "tops" },
          chart,
          panel("Top policies", policies, dataTable({
            caption: "Policies by blocked calls", cls: "top-policies", rows: policies,
            columns: [
              { label: "Policy", cell: (p) => [p.policyName || p.policyId, p.policyName ? h("span", { class: "muted" }, ` ${p.policyId}`) : ""] },
              { label: "What it checks", cell: (p) => p.policyDescription || DASH },
              { label: "Blocked calls", metric: "blockedCalls", get: (p) => p.blockedCalls, format: fmtInt },
            ],
          })),
          panel("Most blocked tools", tools, dataTable({
            caption: "Tools by blocked calls", cls: "blocked-tools", rows: tools,
            columns: [{ label: "Tool", cell: (r) => r.tool }, { label: "MCP server", cell: (r) => r.mcpServer || DASH }, BLOCKED],
          })),
          panel("Most blocked MCP servers", servers, dataTable({
            caption: "MCP servers by blocked calls", cls: "blocked-mcp", rows: servers,
            columns: [{ label: "MCP server", cell: (r) => r.mcpServer }, BLOCKED],
          })),
          panel("Most blocked agent instances", instances, dataTable({
            caption: "Agent instances by blocked calls", cls: "blocked-instances", rows: instances,
            columns: [{ label: "Agent instance", cell: (r) => r.agentInstanceId },
              { label: "Agent", cell: (r) => label(r.agentId, "(none)") }, BLOCKED],
          })),
          panel("Most blocked users", users, dataTable({
            caption: "Users by blocked calls", cls: "blocked-users", rows: users,
            columns: [{ label: "User", cell: (r) => r.userId }, BLOCKED],
          }))),
      ];
    });
  },
};
