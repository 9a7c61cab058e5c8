// What the console shows, kept in the address bar (?view=…&range=…&tz=…&models=a,b) so that a
// reload or a shared link shows the same thing.

export const PRESETS = [
  ["LAST_1H", "Last hour"],
  ["LAST_24H", "Last 24 hours"],
  ["LAST_7D", "Last 7 days"],
  ["LAST_30D", "Last 30 days"],
  ["LAST_90D", "Last 90 days"],
  ["TODAY", "Today"],
  ["THIS_WEEK", "This week"],
  ["THIS_MONTH", "This month"],
  ["THIS_QUARTER", "This quarter"],
  ["THIS_YEAR", "This year"],
];
export const CUSTOM = "CUSTOM";
export const DEFAULT_PRESET = "LAST_7D";
export const MAX_COMPARE = 4; // models side by side in the Costs view

// the EventFilter fields the filter bar offers. type: "list" (free strings, suggested by the
// breakdown of `dimension` when it has one), "enum" (the schema's fixed `values`), "int"
// (statusCodes), "bool" (isByok: one value) and "metadata" (key:value pairs)
const ENUM_VALUES = {
  kinds: ["LLM_CALL", "TOOL_CALL", "AGENT_RUN", "HTTP_REQUEST"],
  statuses: ["SUCCESS", "ERROR", "BLOCKED"],
  errorTypes: ["RATE_LIMIT", "INVALID_REQUEST", "TIMEOUT", "AUTH_ERROR", "MODEL_ERROR",
    "POLICY_BLOCKED", "OTHER"],
  costSources: ["PROVIDED", "COMPUTED", "UNPRICED"],
};
export const FILTERS = [
  { field: "providers", dimension: "PROVIDER", label: "Provider" },
  { field: "models", dimension: "MODEL", label: "Model" },
  { field: "users", dimension: "USER", label: "User" },
  { field: "groups", dimension: "GROUP", label: "Group" },
  { field: "departments", dimension: "DEPARTMENT", label: "Department" },
  { field: "agents", dimension: "AGENT", label: "Agent" },
  { field: "agentInstances", dimension: "AGENT_INSTANCE", label: "Agent instance" },
  { field: "nodes", dimension: "NODE", label: "Agent node" },
  { field: "tools", dimension: "TOOL", label: "Tool" },
  { field: "mcpServers", dimension: "MCP_SERVER", label: "MCP server" },
  { field: "gateways", dimension: "GATEWAY", label: "Gateway" },
  { field: "tags", dimension: "TAG", label: "Tag" },
  { field: "metadata", type: "metadata", label: "Metadata (key:value)" },
  { field: "kinds", type: "enum", values: ENUM_VALUES.kinds, label: "Kind" },
  { field: "statuses", type: "enum", values: ENUM_VALUES.statuses, label: "Status" },
  { field: "errorTypes", type: "enum", values: ENUM_VALUES.errorTypes, label: "Error type" },
  { field: "statusCodes", type: "int", dimension: "STATUS_CODE", label: "HTTP status" },
  { field: "apiKeys", dimension: "API_KEY", label: "API key" },
  { field: "callers", dimension: "CALLER", label: "Caller" },
  { field: "callerIps", label: "Caller IP" },
  { field: "sessions", dimension: "SESSION", label: "Session" },
  { field: "traces", label: "Trace" },
  { field: "runs", label: "Run" },
  { field: "protocols", dimension: "PROTOCOL", label: "Protocol" },
  { field: "requestTypes", dimension: "REQUEST_TYPE", label: "Request type" },
  { field: "billingModes", dimension: "BILLING_MODE", label: "Billing mode" },
  { field: "policies", dimension: "POLICY", label: "Policy" },
  { field: "costSources", type: "enum", values: ENUM_VALUES.costSources, label: "Cost source" },
  { field: "isByok", type: "bool", values: ["true", "false"], label: "Own provider key (BYOK)" },
].map((f) => ({ type: "list", ...f }));

// the audit trail's own filter (AuditFilter), kept in the URL under these names
export const AUDIT_FILTERS = [
  { field: "actions", label: "Action", values: ["CREATE", "UPDATE", "DELETE", "EXECUTE", "LOGIN", "EXPORT", "BLOCK"] },
  { field: "outcomes", label: "Outcome", values: ["SUCCESS", "FAILURE", "DENIED"] },
  { field: "actorTypes", label: "Actor type", values: ["USER", "API_KEY", "SYSTEM"] },
  { field: "actors", label: "Actor" },
  { field: "resourceTypes", label: "Resource type" },
  { field: "resourceIds", label: "Resource" },
  { field: "sourceIps", label: "Source IP" },
];

// a value as the URL holds it, valid for its field (a hand-edited link may hold anything)
function validValue(filter, value) {
  if (filter.type === "enum" || filter.type === "bool") return filter.values.includes(value);
  if (filter.type === "int") return /^[0-9]{1,3}$/.test(value);
  if (filter.type === "metadata") return value.indexOf(":") > 0;
  return true;
}

export function browserTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

export function readState(views, search = location.search) {
  const params = new URLSearchParams(search);
  const view = views.includes(params.get("view")) ? params.get("view") : views[0];
  const start = params.get("start");
  const end = params.get("end");
  let range = params.get("range") || DEFAULT_PRESET;
  if (range === CUSTOM && !(start && end)) range = DEFAULT_PRESET;
  if (range !== CUSTOM && !PRESETS.some(([p]) => p === range)) range = DEFAULT_PRESET;
  const filters = {};
  for (const filter of FILTERS) {
    // a metadata value may hold a comma: one parameter per pair
    const raw = params.getAll(filter.field);
    let values = (filter.type === "metadata" ? raw : raw.flatMap(splitList))
      .filter((v) => validValue(filter, v));
    if (filter.type === "bool") values = values.slice(-1);
    if (values.length) filters[filter.field] = [...new Set(values)];
  }
  const audit = {};
  for (const { field, values: allowed } of AUDIT_FILTERS) {
    const values = params.getAll(field).flatMap(splitList).filter((v) => !allowed || allowed.includes(v));
    if (values.length) audit[field] = [...new Set(values)];
  }
  return {
    view,
    range,
    start: range === CUSTOM ? start : null,
    end: range === CUSTOM ? end : null,
    tz: params.get("tz") || browserTimeZone(),
    filters,
    audit,
    dim: params.get("dim"),
    request: params.get("request"),
    session: params.get("session"),
    sort: params.get("sort"),
    q: params.get("q"),
    compare: [...new Set(params.getAll("compare").filter(Boolean))].slice(0, MAX_COMPARE),
  };
}

function splitList(value) {
  return value.split(",").map((v) => v.trim()).filter(Boolean);
}

export function toSearch(state) {
  const params = new URLSearchParams();
  params.set("view", state.view);
  params.set("range", state.range);
  if (state.range === CUSTOM) {
    params.set("start", state.start);
    params.set("end", state.end);
  }
  params.set("tz", state.tz);
  for (const { field } of FILTERS) {
    // one parameter per value: a value may itself hold a comma
    for (const value of state.filters[field] || []) params.append(field, value);
  }
  // a view's own place: the open request or session, the order of a list
  for (const { field } of AUDIT_FILTERS) {
    for (const value of (state.audit || {})[field] || []) params.append(field, value);
  }
  for (const name of ["dim", "request", "session", "sort", "q"]) {
    if (state[name]) params.set(name, state[name]);
  }
  for (const model of state.compare || []) params.append("compare", model);
  return `?${params}`;
}

// the offset of a time zone at an instant, in ms (what to add to UTC to get its wall clock)
function offsetMs(instant, timeZone) {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(instant);
  const v = Object.fromEntries(parts.map((p) => [p.type, p.value]));
  const wall = Date.UTC(+v.year, +v.month - 1, +v.day, +v.hour, +v.minute, +v.second);
  return wall - Math.floor(instant.getTime() / 1000) * 1000;
}

// "2026-12-01T09:00" on the wall clock of timeZone, as an instant
export function zonedToInstant(local, timeZone) {
  const [date, time = "00:00"] = local.split("T");
  const [y, m, d] = date.split("-").map(Number);
  const [hh, mm] = time.split(":").map(Number);
  const wall = Date.UTC(y, m - 1, d, hh, mm);
  // twice: the offset at the guess may differ from the offset at the answer (DST changes)
  let instant = wall - offsetMs(new Date(wall), timeZone);
  instant = wall - offsetMs(new Date(instant), timeZone);
  return new Date(instant);
}

export function timeRange(state) {
  if (state.range === CUSTOM) {
    return {
      start: zonedToInstant(state.start, state.tz).toISOString(),
      end: zonedToInstant(state.end, state.tz).toISOString(),
      timezone: state.tz,
    };
  }
  return { preset: state.range, timezone: state.tz };
}

// the EventFilter of the state, or null when nothing is chosen
export function eventFilter(state) {
  const filter = {};
  for (const { field, type } of FILTERS) {
    const values = state.filters[field];
    if (!values || !values.length) continue;
    if (type === "int") filter[field] = values.map(Number);
    else if (type === "bool") filter[field] = values[values.length - 1] === "true";
    else if (type === "metadata") {
      filter[field] = values.map((v) => {
        const at = v.indexOf(":");
        return { key: v.slice(0, at), value: v.slice(at + 1) };
      });
    } else filter[field] = values;
  }
  return Object.keys(filter).length ? filter : null;
}

// the range and filters as /v1/export parameters (the same names as EventFilter's fields)
export function exportParams(state) {
  const params = new URLSearchParams();
  if (state.range === CUSTOM) {
    const range = timeRange(state);
    params.set("start", range.start);
    params.set("end", range.end);
  } else {
    params.set("preset", state.range);
  }
  params.set("timezone", state.tz);
  for (const { field } of FILTERS) {
    for (const value of state.filters[field] || []) params.append(field, value);
  }
  return params;
}

// the AuditFilter of the state, or null
export function auditFilter(state) {
  const filter = {};
  for (const { field } of AUDIT_FILTERS) {
    if ((state.audit || {})[field] && state.audit[field].length) filter[field] = state.audit[field];
  }
  return Object.keys(filter).length ? filter : null;
}

export function rangeLabel(state) {
  if (state.range === CUSTOM) return `${state.start.replace("T", " ")} to ${state.end.replace("T", " ")}`;
  return PRESETS.find(([p]) => p === state.range)[1];
}
