// What an empty view says: how to send a first event, or that the filters select nothing.
import { h } from "./dom.js";
import { eventFilter } from "./state.js";

export function emptyState(state, ctx) {
  if (eventFilter(state)) {
    return h("div", { class: "empty", role: "status" },
      h("h2", {}, "No events match these filters in this range"),
      h("p", {}, "Widen the time range or remove a filter."),
      h("button", { type: "button", onclick: () => ctx.navigate({ filters: {} }) }, "Clear all filters"));
  }
  const example = `curl -s ${location.origin}/v1/events -H "Authorization: Bearer $KEY" \\
  -H 'content-type: application/json' -d '[{
    "kind": "llm_call", "status": "success", "provider": "openai", "model": "gpt-4o",
    "input_tokens": 1200, "output_tokens": 300, "latency_ms": 850, "user_id": "alice"}]'`;
  return h("div", { class: "empty", role: "status" },
    h("h2", {}, "No events in this range yet"),
    h("p", {}, "Send a first event with a key that may ingest (roles admin, member or ingest):"),
    h("pre", { class: "code" }, example),
    h("p", {}, "Events without a timestamp are stamped with the time they arrive. The REST docs at ",
      h("a", { href: "/docs" }, "/docs"), " let you try it in the browser; ",
      h("code", {}, "tallyql serve --demo"), " seeds 30 days of demo traffic."));
}
