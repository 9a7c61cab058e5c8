// The provider activity panel of the Costs view: when the workspace's OpenRouter connection
// last synced, how that went (and why not), what it imported, and for admins (the API's own
// permission) a "Sync now" button. Shown only when the workspace is connected; its own
// GraphQL request, so a failing provider never hides the cost figures.
import { gql } from "./api.js";
import { errorBox, figure, h } from "./dom.js";
import { DASH, fmtDateTime, fmtInt } from "./format.js";

const FIELDS = "provider lastSyncAt lastSyncStatus lastError lastResult";
const QUERY = `query ConsoleProvider { providerConnection(provider: OPENROUTER) { ${FIELDS} } }`;
const SYNC = `mutation ConsoleSyncProvider { result: syncProviderActivity(provider: OPENROUTER) {
  connection { ${FIELDS} } userErrors { field message } } }`;
// [lastResult key, label] of the import counts shown
const COUNTS = [["importedRows", "Rows imported"], ["accepted", "New events"],
  ["duplicates", "Already there"], ["skippedGatewayRequests", "Sent by a gateway (not counted twice)"],
  ["rejected", "Rejected"]];

function outcome(connection) {
  if (!connection.lastSyncAt) return h("span", { class: "badge", "data-status": "NEVER" }, "never synced");
  const failed = connection.lastSyncStatus === "failed";
  return h("span", { class: `badge sync-${failed ? "failed" : "ok"}`, "data-status": (connection.lastSyncStatus || "").toUpperCase() },
    failed ? "failed" : "succeeded");
}

function body(connection, state, mayRun, run) {
  const result = connection.lastResult || {};
  return [
    h("p", { class: "sync-line" }, "Last sync: ",
      h("time", { "data-metric": "lastSyncAt", "data-value": connection.lastSyncAt ?? "", datetime: connection.lastSyncAt ?? "" },
        connection.lastSyncAt ? fmtDateTime(connection.lastSyncAt, state.tz) : DASH),
      " ", outcome(connection),
      h("span", { class: "muted small" }, " · imported daily")),
    connection.lastError ? h("p", { class: "error-inline sync-error", role: "alert" }, connection.lastError) : null,
    connection.lastResult ? h("dl", { class: "sync-counts" }, COUNTS.filter(([k]) => k in result).map(([k, label]) => [
      h("dt", {}, label), figure("dd", `lastResult.${k}`, result[k], fmtInt(result[k]))])) : null,
    mayRun ? run : h("p", { class: "muted small" }, "Admins may sync now; the daily sync runs by itself."),
  ];
}

// the panel, or null when the workspace has no provider connection
export async function providerPanel(ctx) {
  let connection;
  try {
    connection = (await gql(QUERY)).providerConnection;
  } catch (error) {
    return h("section", { class: "panel provider-sync" }, h("h2", {}, "OpenRouter activity"), errorBox(error));
  }
  if (!connection) return null;
  const mayRun = ctx.me.role === "admin";
  const section = h("section", { class: "panel provider-sync", "aria-label": "OpenRouter activity" });
  const problem = h("span", { class: "error-inline", role: "alert" });
  const button = h("button", {
    type: "button", class: "sync-now",
    onclick: async () => {
      button.disabled = true;
      button.textContent = "Syncing…";
      problem.textContent = "";
      try {
        const { result } = await gql(SYNC);
        if (result.userErrors.length) problem.textContent = result.userErrors.map((e) => e.message).join(" ");
        if (result.connection) connection = result.connection;
      } catch (error) {
        problem.textContent = error.message;
      }
      button.disabled = false;
      button.textContent = "Sync now";
      draw();
    },
  }, "Sync now");
  const run = h("p", {}, button, " ", problem);
  const draw = () => section.replaceChildren(h("h2", {}, "OpenRouter activity"),
    ...body(connection, ctx.state, mayRun, run).filter(Boolean));
  draw();
  return section;
}
