// The console's entry point: sign-in, the shell (navigation, range, time zone, filters) and
// the view chosen in the URL.
import { ApiError, forgetKey, getKey, gql, setKey } from "./api.js";
import { h } from "./dom.js";
import { filterBar } from "./filters.js";
import {
  CUSTOM, PRESETS, browserTimeZone, readState, toSearch,
} from "./state.js";
import agents from "./views/agents.js";
import ask from "./views/ask.js";
import audit from "./views/audit.js";
import budgets from "./views/budgets.js";
import costs from "./views/costs.js";
import errors from "./views/errors.js";
import gateways from "./views/gateways.js";
import live from "./views/live.js";
import overview from "./views/overview.js";
import requests from "./views/requests.js";
import security from "./views/security.js";
import sessions from "./views/sessions.js";
import tools from "./views/tools.js";
import usage from "./views/usage.js";
import workspaces from "./views/workspaces.js";

const ALL_VIEWS = [overview, costs, usage, requests, sessions, tools, agents, gateways,
  security, errors, audit, live, budgets, ask, workspaces];
// the views of this key: Workspaces only for operator admins (the API refuses others)
let VIEWS = ALL_VIEWS;
let VIEW_IDS = VIEWS.map((v) => v.id);
const READ_ROLES = new Set(["admin", "member", "viewer"]);
const app = document.getElementById("app");

// a key in the fragment (#key=…) is taken once and wiped from the address bar at once, so it
// stays out of the history, bookmarks and screenshots
function takeKeyFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get("key");
  if (key === null) return;
  history.replaceState(history.state, "", location.pathname + location.search);
  if (key) setKey(key);
}

function signInForm(message) {
  const input = h("input", {
    id: "key", name: "key", type: "password", required: true, autocomplete: "off",
    spellcheck: "false", placeholder: "tq_…", "aria-describedby": "key-help",
  });
  const status = h("p", { id: "sign-in-status", role: "alert" }, message || "");
  const form = h("form", {
    class: "sign-in",
    onsubmit: async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      status.textContent = "Checking the key…";
      try {
        const me = await whoAmI(key);
        setKey(key);
        start(me);
      } catch (error) {
        status.textContent = error.message;
      }
    },
  },
  h("h1", {}, "tallyql console"),
  h("label", { for: "key" }, "API key"),
  input,
  h("p", { id: "key-help", class: "muted small" },
    "Printed by ", h("code", {}, "tallyql serve --demo"), " or ", h("code", {}, "tallyql keys create"),
    ". It is kept in this tab only (session storage) and forgotten when you sign out or close the tab."),
  h("button", { type: "submit" }, "Sign in"),
  status);
  app.replaceChildren(h("main", { class: "center" }, form));
  input.focus();
}

async function whoAmI(key) {
  const data = await gql("{ me { workspace role keyName operator } }", {}, key);
  return data.me;
}

function signOut() {
  leaveView(); // the Live view's socket carries the key: close it too
  window.onpopstate = null;
  forgetKey();
  history.replaceState(null, "", location.pathname + location.search);
  signInForm("Signed out.");
}

function cannotRead(me) {
  app.replaceChildren(h("main", { class: "center" },
    h("div", { class: "sign-in", role: "alert" },
      h("h1", {}, "This key cannot read analytics"),
      h("p", {}, `The key “${me.keyName}” of workspace ${me.workspace} has the role `,
        h("strong", {}, me.role),
        ": it may send events, not read them. Sign in with a viewer, member or admin key."),
      h("button", { type: "button", onclick: signOut }, "Sign out"))));
}

let current = null; // the view on screen: { leave: [cleanup …], token }
let renderToken = 0;
let who = null; // the signed-in key's `me`

function start(me) {
  if (!READ_ROLES.has(me.role)) {
    cannotRead(me);
    return;
  }
  who = me;
  VIEWS = ALL_VIEWS.filter((v) => !v.operatorOnly || me.operator);
  VIEW_IDS = VIEWS.map((v) => v.id);
  const state = readState(VIEW_IDS);
  // the URL says everything shown: write the defaults in, so a copied link keeps them
  history.replaceState(null, "", toSearch(state));
  const nav = h("nav", { class: "views", "aria-label": "Views" });
  const controls = h("div", { class: "controls" });
  const filters = h("div", { class: "filters-slot" });
  const main = h("main", { id: "main", tabindex: "-1" });
  app.replaceChildren(
    h("a", { class: "skip", href: "#main" }, "Skip to the content"),
    h("header", { class: "top" },
      h("span", { class: "brand" }, "tallyql"),
      nav,
      h("span", { class: "who" }, h("span", { class: "muted" }, "workspace "), me.workspace,
        h("span", { class: "badge" }, me.role)),
      h("a", { href: "/graphql" }, "GraphiQL"),
      h("button", { type: "button", class: "sign-out", onclick: signOut }, "Sign out")),
    h("div", { class: "bar" }, controls, filters),
    main);
  const shell = { nav, controls, filters, main };
  window.onpopstate = () => show(shell, readState(VIEW_IDS));
  show(shell, state);
}

function navigate(shell, state, patch, { replace = false, rerender = true } = {}) {
  const next = { ...state, ...patch };
  if ("view" in patch && patch.view !== state.view) {
    Object.assign(next, { request: null, session: null, sort: null, compare: [], dim: null, audit: {}, q: null });
  }
  const search = toSearch(next);
  if (search !== location.search) {
    if (replace) history.replaceState(null, "", search);
    else history.pushState(null, "", search);
  }
  if (rerender) show(shell, next);
}

function leaveView() {
  if (current) current.leave.forEach((fn) => fn());
  current = null;
  renderToken += 1; // a request still under way finds its view stale
}

function show(shell, state) {
  leaveView();
  const token = ++renderToken;
  current = { leave: [], token };
  const go = (patch, options) => navigate(shell, state, patch, options);
  const view = VIEWS.find((v) => v.id === state.view);
  renderNav(shell.nav, state, go);
  renderControls(shell.controls, state, go, view);
  shell.filters.replaceChildren(view.usesFilters === false
    ? h("p", { class: "muted small filters-off" }, "The event filters do not apply to this view (they stay in the link for the others).")
    : filterBar(state, go, state.view !== "live"));
  document.title = `${view.label} · tallyql console`;
  const ctx = {
    state,
    me: who,
    main: shell.main,
    navigate: go,
    stale: () => token !== renderToken,
    onLeave: (fn) => current.leave.push(fn),
  };
  view.render(ctx);
}

function renderNav(nav, state, go) {
  nav.replaceChildren(...VIEWS.map((v) => h("a", {
    href: toSearch({ ...state, view: v.id, request: null, session: null, sort: null, compare: [], dim: null, audit: {}, q: null }),
    "aria-current": v.id === state.view ? "page" : null,
    onclick: (event) => {
      if (event.metaKey || event.ctrlKey || event.shiftKey) return; // a new tab
      event.preventDefault();
      go({ view: v.id });
    },
  }, v.label)));
}

function localNow(offsetDays) {
  const d = new Date(Date.now() + offsetDays * 86400000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function renderControls(box, state, go, view) {
  // the live feed and the budgets (each with its own period) have no range
  const live = view.id === "live" || view.usesRange === false;
  const preset = h("select", {
    id: "range", "aria-label": "Time range", disabled: live,
    onchange: () => {
      if (preset.value === CUSTOM) {
        go({ range: CUSTOM, start: state.start || localNow(-7), end: state.end || localNow(0) });
      } else {
        go({ range: preset.value, start: null, end: null });
      }
    },
  },
  PRESETS.map(([value, label]) => h("option", { value, selected: value === state.range }, label)),
  h("option", { value: CUSTOM, selected: state.range === CUSTOM }, "Custom…"));
  const parts = [h("label", { for: "range" }, "Range"), preset];
  if (state.range === CUSTOM && !live) {
    const start = h("input", { id: "start", type: "datetime-local", value: state.start, required: true });
    const end = h("input", { id: "end", type: "datetime-local", value: state.end, required: true });
    const problem = h("span", { role: "alert", class: "error-inline" });
    parts.push(h("form", {
      class: "custom-range",
      onsubmit: (event) => {
        event.preventDefault();
        if (!(start.value && end.value) || start.value >= end.value) {
          problem.textContent = "The start must come before the end.";
          return;
        }
        go({ start: start.value, end: end.value });
      },
    },
    h("label", { for: "start" }, "From"), start,
    h("label", { for: "end" }, "to"), end,
    h("button", { type: "submit" }, "Apply"), problem));
  }
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const tz = h("input", {
    id: "tz", list: "zones", value: state.tz, size: 18, "aria-label": "Time zone",
    onchange: () => {
      const value = tz.value.trim() || browserTimeZone();
      try {
        new Intl.DateTimeFormat(undefined, { timeZone: value });
      } catch {
        tz.setCustomValidity("Not an IANA time zone (e.g. Europe/Paris)");
        tz.reportValidity();
        return;
      }
      tz.setCustomValidity("");
      go({ tz: value });
    },
  });
  parts.push(h("label", { for: "tz" }, "Time zone"), tz,
    h("datalist", { id: "zones" }, zones.map((z) => h("option", { value: z }))));
  box.replaceChildren(...parts);
}

async function boot() {
  takeKeyFromFragment();
  const key = getKey();
  if (!key) {
    signInForm();
    return;
  }
  try {
    start(await whoAmI(key));
  } catch (error) {
    if (error instanceof ApiError && error.code === "UNAUTHENTICATED") forgetKey();
    signInForm(error.message);
  }
}

boot();
