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

// the EventFilter fields the filter bar offers, with the Dimension that suggests their values
export const FILTERS = [
  { field: "providers", dimension: "PROVIDER", label: "Provider" },
  { field: "models", dimension: "MODEL", label: "Model" },
  { field: "users", dimension: "USER", label: "User" },
  { field: "groups", dimension: "GROUP", label: "Group" },
  { field: "agents", dimension: "AGENT", label: "Agent" },
  { field: "tools", dimension: "TOOL", label: "Tool" },
  { field: "mcpServers", dimension: "MCP_SERVER", label: "MCP server" },
  { field: "gateways", dimension: "GATEWAY", label: "Gateway" },
  { field: "tags", dimension: "TAG", label: "Tag" },
];

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
  for (const { field } of FILTERS) {
    const values = params.getAll(field).flatMap(splitList);
    if (values.length) filters[field] = [...new Set(values)];
  }
  return {
    view,
    range,
    start: range === CUSTOM ? start : null,
    end: range === CUSTOM ? end : null,
    tz: params.get("tz") || browserTimeZone(),
    filters,
    request: params.get("request"),
    session: params.get("session"),
    sort: params.get("sort"),
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
  for (const name of ["request", "session", "sort"]) {
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
  for (const { field } of FILTERS) {
    if (state.filters[field] && state.filters[field].length) filter[field] = state.filters[field];
  }
  return Object.keys(filter).length ? filter : null;
}

export function rangeLabel(state) {
  if (state.range === CUSTOM) return `${state.start.replace("T", " ")} to ${state.end.replace("T", " ")}`;
  return PRESETS.find(([p]) => p === state.range)[1];
}
