// Tools & MCP: tool executions, errors and blocked calls, latency, distinct tools, agent
// instances, users and MCP servers; executions over time; the busiest tools, MCP servers,
// agent instances and users. One GraphQL request (toolUsage).
import { timeChart } from "../charts.js";
import { h } from "../dom.js";
import { emptyState } from "../empty.js";
import { DASH, fmtCompact, fmtDateTime, fmtInt, fmtMs, fmtPct } from "../format.js";
import { eventFilter, timeRange } from "../state.js";
import { card, dataTable, label, load, panel } from "../tables.js";

const TOP = 10;
const QUERY = `query ConsoleTools($range: TimeRangeInput!, $filter: EventFilter) {
  toolUsage(range: $range, filter: $filter) {
    executions errors errorRate blocked avgLatencyMs uniqueTools activeAgentInstances
    activeUsers mcpServers
    executionsOverTime { granularity buckets series { metric values } }
    topTools(first: ${TOP}) { nodes { tool mcpServer calls errors errorRate avgLatencyMs } }
    topMcpServers(first: ${TOP}) { nodes { mcpServer tools calls errors errorRate avgLatencyMs } }
    topAgentInstances(first: ${TOP}) { nodes { agentInstanceId agentId userId users calls errors errorRate } }
    topUsers(first: ${TOP}) { nodes { userId calls errors errorRate } }
  }
}`;

const CALLS = [
  { label: "Calls", metric: "calls", get: (r) => r.calls, format: fmtInt },
  { label: "Errors", metric: "errors", get: (r) => r.errors, format: fmtInt },
  { label: "Error rate", metric: "errorRate", get: (r) => r.errorRate, format: fmtPct },
];
const LATENCY = { label: "Avg latency", metric: "avgLatencyMs", get: (r) => r.avgLatencyMs, format: fmtMs };

export default {
  id: "tools",
  label: "Tools & MCP",
  async render(ctx) {
    const { state } = ctx;
    await load(ctx, "Tools & MCP", QUERY, { range: timeRange(state), filter: eventFilter(state) }, ({ toolUsage: t }) => {
      if (t.executions === 0) {
        return [h("p", { class: "muted" }, "Tool calls are events of kind tool_call (MCP servers are named by mcp_server)."),
          emptyState(state, ctx)];
      }
      const over = t.executionsOverTime;
      const chart = timeChart({
        title: `Tool executions per ${over.granularity.toLowerCase()}`,
        buckets: over.buckets,
        series: over.series.map((s) => ({ label: s.metric === "ERRORS" ? "Errors" : "Executions", values: s.values, format: fmtCompact })),
        timeZone: state.tz,
        formatX: (iso) => fmtDateTime(iso, state.tz, false),
      });
      ctx.onLeave(() => chart.dispose());
      const tools = t.topTools.nodes;
      const servers = t.topMcpServers.nodes;
      const instances = t.topAgentInstances.nodes;
      const users = t.topUsers.nodes;
      return [
        h("section", { class: "kpis", "aria-label": "Tool figures" },
          card("Executions", "executions", t.executions, fmtCompact(t.executions), "tool calls"),
          card("Errors", "errors", t.errors, fmtInt(t.errors)),
          card("Error rate", "errorRate", t.errorRate, fmtPct(t.errorRate)),
          card("Blocked", "blocked", t.blocked, fmtInt(t.blocked), "stopped by a policy"),
          card("Avg latency", "avgLatencyMs", t.avgLatencyMs, fmtMs(t.avgLatencyMs)),
          card("Tools", "uniqueTools", t.uniqueTools, fmtInt(t.uniqueTools), "distinct tools called"),
          card("MCP servers", "mcpServers", t.mcpServers, fmtInt(t.mcpServers)),
          card("Agent instances", "activeAgentInstances", t.activeAgentInstances, fmtInt(t.activeAgentInstances)),
          card("Users", "activeUsers", t.activeUsers, fmtInt(t.activeUsers), "calling tools")),
        h("section", { class: "charts" }, chart),
        h("section", { class: "tops" },
          panel("Top tools", tools, dataTable({
            caption: "Top tools by calls", cls: "top-tools", rows: tools,
            columns: [
              { label: "Tool", cell: (r) => r.tool },
              { label: "MCP server", cell: (r) => r.mcpServer || DASH },
              ...CALLS, LATENCY,
            ],
          })),
          panel("Top MCP servers", servers, dataTable({
            caption: "Top MCP servers by calls", cls: "top-mcp", rows: servers,
            columns: [
              { label: "MCP server", cell: (r) => r.mcpServer },
              { label: "Tools", metric: "tools", get: (r) => r.tools, format: fmtInt },
              ...CALLS, LATENCY,
            ],
          }), "No calls named an MCP server in this range."),
          panel("Top agent instances", instances, dataTable({
            caption: "Top agent instances by tool calls", cls: "top-instances", rows: instances,
            columns: [
              { label: "Agent instance", cell: (r) => r.agentInstanceId },
              { label: "Agent", cell: (r) => label(r.agentId, "(none)") },
              ...CALLS,
            ],
          })),
          panel("Top users", users, dataTable({
            caption: "Top users by tool calls", cls: "top-users", rows: users,
            columns: [{ label: "User", cell: (r) => r.userId }, ...CALLS],
          }))),
      ];
    });
  },
};
