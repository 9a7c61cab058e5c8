"""The demo event stream: deterministic, realistic LLM, tool, agent and HTTP traffic.

Traffic is made of units (a chat session, an IDE autocomplete burst, an agent session of one to
three runs, an embedding job, a lone HTTP request), each seconds to minutes of consecutive
events. Per-hour event budgets follow a daily and weekly rhythm; a unit starts at a uniform
time within its hour and its events land in hourly buckets, which are sorted and emitted once no
later unit can add to them. All draws come from one `random.Random(seed)` in a fixed order, so
the same (count, days, seed, end) always yields the same events.

Speed matters (benchmarks load millions of events): weighted picks are bisections over
precomputed cumulative weights, log-normal jitter comes from precomputed tables, and
timestamps are integer milliseconds formatted with a per-hour prefix.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import accumulate, islice
from operator import itemgetter
from typing import Any

from tallyql.clock import clock
from tallyql.demo.catalog import (
    AUTOCOMPLETE_MODELS,
    CHAT_MODELS,
    EMBEDDING_MODELS,
    GROUPS,
    HTTP_ROUTES,
    LLM_ERRORS,
    PROMPTS,
    TAG_WEIGHTS,
    TAGS,
    TOOL_ERRORS,
    DemoModel,
    DemoWorld,
    Weighted,
    build_world,
)

Event = dict[str, Any]
Timed = list[Event]  # a unit's events in time order, "timestamp" still in epoch ms
_HOUR_MS = 3_600_000
# UTC hour of day -> relative volume (Europe and the Americas overlap in the afternoon).
_DAILY = (0.16, 0.13, 0.12, 0.12, 0.15, 0.24, 0.42, 0.68, 0.9, 1.0, 1.0, 0.96,
          0.9, 0.97, 1.0, 1.0, 0.95, 0.85, 0.7, 0.55, 0.42, 0.32, 0.25, 0.2)  # fmt: skip
_WEEKLY = (1.0, 1.03, 1.02, 1.0, 0.92, 0.41, 0.38)  # Monday first
# Unit mix (chat, autocomplete, agent, embedding job, http) in office hours and at night.
_UNIT_DAY = list(accumulate((40.0, 16.0, 30.0, 4.0, 10.0)))
_UNIT_NIGHT = list(accumulate((18.0, 3.0, 42.0, 12.0, 10.0)))
_LLM_ERROR_RATE = 0.02
_TOOL_ERROR_RATE = 0.012
_COST_GATEWAY_SHARE = 0.01
_PAYLOAD_SHARE = 0.01
_M2 = [f"{i:02d}" for i in range(60)]
_MS3 = [f"{i:03d}" for i in range(1000)]


def _cum(weighted: Weighted | tuple[tuple[Any, float], ...]) -> tuple[list[Any], list[float]]:
    return [k for k, _ in weighted], list(accumulate(w for _, w in weighted))


def _pick(items: list[Any], cum: list[float], x: float) -> Any:
    """The item for a uniform x in [0, 1) under cumulative weights (what `choices` does)."""
    return items[bisect(cum, x * cum[-1], 0, len(cum) - 1)]


class _Gen:
    def __init__(self, world: DemoWorld, seed: int) -> None:
        self.w = world
        self.rng = random.Random(seed)
        self.prefix, self.n_units = f"demo-{seed}-", 0
        t = random.Random(f"tables-{seed}")
        self.ln_in, self.ln_out, self.ln_lat = (
            [t.lognormvariate(0.0, s) for _ in range(1024)] for s in (0.7, 0.8, 0.35))  # fmt: skip
        self.think_ms = [int(40_000 * t.lognormvariate(0.0, 0.9)) + 2_000 for _ in range(1024)]
        self.sess_len = [min(20, 2 + int(t.expovariate(1 / 4.5))) for _ in range(256)]
        self.models = {m.name: m for m in world.models}
        self.chat = {g: self.mtab(CHAT_MODELS[g]) for g in GROUPS}
        self.auto_m, self.emb_m = self.mtab(AUTOCOMPLETE_MODELS), self.mtab(EMBEDDING_MODELS)
        self.errors = _cum(tuple((e[:3], e[3]) for e in LLM_ERRORS))
        self.routes = _cum(tuple((r[:3], r[3]) for r in HTTP_ROUTES))
        self.tags = _cum(tuple(zip(TAGS, TAG_WEIGHTS, strict=True)))
        self.tool_by = {x.name: x for x in world.tools}
        self.policy_by = {p.id: p for p in world.policies}
        self.users = [u.id for u in world.users]
        self.user_cum = list(accumulate(world.user_weight[u] for u in self.users))
        self.group_tools = {g: _cum(GROUPS[g][1]) if GROUPS[g][1] else None for g in GROUPS}
        self.coders = [u for u in self.users if world.user_group[u] in ("engineering", "data")]
        self.agents = _cum(tuple((a, a.weight) for a in world.agents))
        self.agent_users = {a.id: [u for u in self.users if any(u in world.groups[g]
                            for g in a.groups)] for a in world.agents}  # fmt: skip
        self.steps = {a.id: [(s, self.mtab(s.models), _cum(s.tools) if s.tools else None)
                             for s in a.steps] for a in world.agents}  # fmt: skip
        gateways = {g.region: g.id for g in world.gateways}
        self.gw_cost = gateways.pop("any")
        self.gw_region = gateways

    def mtab(self, weighted: Weighted) -> tuple[list[DemoModel], list[float]]:
        names, cum = _cum(weighted)
        return [self.models[n] for n in names], cum

    def _context(self, feature: str, team: str | None, region: str,
                 routable: bool = True) -> tuple[Event, str]:  # fmt: skip
        """A unit's tags, metadata and gateway (routable: the cost-reporting gateway could
        serve its model)."""
        r = self.rng.random
        tags = _pick(*self.tags, r())
        meta: Event = {"env": tags[0], "feature": feature}
        if team:
            meta["team"] = team
        cost_gw = r() < _COST_GATEWAY_SHARE and routable
        gateway = self.gw_cost if cost_gw else self.gw_region[region]
        return {"tags": list(tags), "metadata": meta}, gateway

    def _llm(self, t: int, eid: str, base: Event, m: DemoModel, ctx: int, prev: int,
             stream: bool, think: bool, cache: bool,
             meta: Event) -> tuple[Event, int, int]:  # fmt: skip
        """An llm_call given its prompt size and the previous (cached) prompt's; with its
        latency (ms) and output tokens."""
        r, bits = self.rng.random, self.rng.getrandbits
        ev: Event = {"id": eid, "timestamp": t, "kind": "llm_call", "status": "success",
                     "status_code": 200, **base, "provider": m.provider, "model": m.name,
                     "protocol": m.protocol, "request_type": m.request_type,
                     "tags": meta["tags"], "metadata": meta["metadata"]}  # fmt: skip
        jitter, ms_tok = self.ln_lat[bits(10)], 1000.0 / m.tps
        out = reasoning = cr = cw = 0
        ttft = 0.0
        if m.request_type == "embedding":
            latency = m.ttft_ms * jitter + ctx * 0.01
            resp = 36_000 if "large" in m.name else 18_000
        else:
            out = int(m.out_median * self.ln_out[bits(10)]) + 1
            if think:
                reasoning = int(out * m.reasoning * self.ln_lat[bits(10)])
            if m.cache == "auto":  # prefix caching: whole 128-token blocks of the last prompt
                if prev >= 1024 and r() < 0.8:
                    cr = prev & ~127
            elif m.cache == "explicit" and cache:  # cache_control breakpoints
                if prev:
                    cr = prev
                    if r() < 0.6:
                        cw = (ctx - prev) * 9 // 10
                else:
                    cw = ctx * 7 // 10
            ttft = m.ttft_ms * jitter + ctx * 0.012 + reasoning * ms_tok
            latency = ttft + out * ms_tok * self.ln_lat[bits(10)] + 15.0
            out += reasoning
            resp = out * (7 if stream else 4) + 380
        if r() < _LLM_ERROR_RATE:
            etype, code, msg = _pick(*self.errors, r())
            ev["status"], ev["status_code"] = "error", code
            ev["error_type"], ev["error_message"] = etype, msg.format(m=m.name)
            if etype == "timeout":
                latency, out = 60_000.0 + r() * 500, out // 3
                reasoning = min(reasoning, out)
            elif etype in ("model_error", "other"):
                latency, out, reasoning = latency * 0.3, 0, 0
            else:  # rejected up front: nothing billed
                latency, ctx, out, reasoning, cr, cw = 20 + r() * 150, 0, 0, 0, 0, 0
            stream, resp = False, 240
        ev["input_tokens"], ev["output_tokens"] = ctx, out
        if cr:
            ev["cache_read_tokens"] = cr
        if cw:
            ev["cache_write_tokens"] = cw
        if reasoning:
            ev["reasoning_tokens"] = reasoning
        ev["latency_ms"] = int(latency * 10) / 10
        if stream:
            ev["ttft_ms"] = int(ttft * 10) / 10
        ev["request_bytes"], ev["response_bytes"] = ctx * 4 + 310, resp
        if ev.get("gateway") == self.gw_cost and ctx:
            ev["cost_usd"] = round((ctx * m.price_in + out * m.price_out) * 1.055e-6, 9)
        if r() < _PAYLOAD_SHARE and out:
            prompt, answer = PROMPTS[bits(2)]
            ev["request"] = {"model": m.name, "messages": [{"role": "user", "content": prompt}]}
            ev["response"] = {"role": "assistant", "content": answer}
        return ev, int(latency), out

    def _tools(self, out: Timed, t: int, uid: str, k: int, base: Event, parent: str,
               node: str | None, tools: tuple[list[str], list[float]], n: int,
               unit_meta: Event) -> tuple[int, int, int]:  # fmt: skip
        """Append n tool calls made after LLM call `parent`; (time, next k, tokens returned)."""
        rng = self.rng
        r = rng.random
        returned = 0
        for _ in range(n):
            tool = self.tool_by[_pick(*tools, r())]
            ev: Event = {"id": f"{uid}{k}", "timestamp": t, "kind": "tool_call",
                         "status": "success", **base, "parent_id": parent, "tool": tool.name,
                         "mcp_server": tool.mcp_server, "protocol": "mcp", "request_type": "tool",
                         "tags": unit_meta["tags"],
                         "metadata": unit_meta["metadata"]}  # fmt: skip
            if node:
                ev["node"] = node
            latency = tool.latency_ms * self.ln_in[rng.getrandbits(10)]
            resp = int(tool.response_bytes * self.ln_lat[rng.getrandbits(10)])
            x = r()
            if x < tool.block_rate and tool.policy_id:
                policy = self.policy_by[tool.policy_id]
                ev["status"], ev["error_type"] = "blocked", "policy_blocked"
                ev["error_message"] = f"Blocked by policy {policy.id}"
                ev["policy_id"], ev["policy_name"] = policy.id, policy.name
                ev["policy_description"] = policy.description
                latency, resp = 3 + latency * 0.02, 160
            elif x > 1 - _TOOL_ERROR_RATE:
                etype, msg = TOOL_ERRORS[int(r() * len(TOOL_ERRORS))]
                ev["status"], ev["error_type"], ev["error_message"] = "error", etype, msg
                latency = 30_000.0 + r() * 200 if etype == "timeout" else latency
                resp = 180
            ev["latency_ms"] = int(latency * 10) / 10
            ev["request_bytes"], ev["response_bytes"] = 120 + int(r() * 900), resp
            out.append(ev)
            k += 1
            t += int(latency) + 4
            returned += min(resp // 5, 4000)
        return t, k, returned

    def unit(self, t: int, night: bool) -> Timed:
        """One unit of traffic starting at t (ms)."""
        self.n_units += 1
        uid = f"{self.prefix}{self.n_units}-"
        cum = _UNIT_NIGHT if night else _UNIT_DAY
        kind = bisect(cum, self.rng.random() * cum[-1], 0, 4)
        if kind <= 1:
            return self._chat(t, uid, kind == 1)
        if kind == 2:
            return self._agent(t, uid)
        return self._embedding_job(t, uid) if kind == 3 else self._http(t, uid)

    def _chat(self, t: int, uid: str, autocomplete: bool) -> Timed:
        """A user's session with one model: streaming chat turns (with the odd MCP tool call)
        or a burst of IDE completions."""
        rng, w = self.rng, self.w
        r, bits = rng.random, rng.getrandbits
        if autocomplete:
            user = self.coders[int(r() * len(self.coders))]
        else:
            user = _pick(self.users, self.user_cum, r())
        group = w.user_group[user]
        m = _pick(*(self.auto_m if autocomplete else self.chat[group]), r())
        meta, gateway = self._context("autocomplete" if autocomplete else "chat", group,
                                      w.user_region[user], m.priced)  # fmt: skip
        byok, ips = r() < GROUPS[group][2], w.user_ips[user]
        base: Event = {"user_id": user, "api_key_id": w.user_key[user],
                       "caller_ip": ips[int(r() * len(ips))],
                       "session_id": f"sess-{bits(48):012x}", "gateway": gateway,
                       "billing_mode": "byok" if byok else "platform", "is_byok": byok}  # fmt: skip
        tools = None if autocomplete else self.group_tools[group]
        stream, think, cache = not autocomplete and r() < 0.85, r() < m.thinking_share, r() < 0.6
        ctx, prev, k = int(m.in_median * self.ln_in[bits(10)]) + 8, 0, 0
        out: Timed = []
        for _ in range(self.sess_len[bits(8)]):
            eid, trace = f"{uid}{k}", f"{bits(64):016x}"
            base["trace_id"] = trace
            ev, latency, produced = self._llm(t, eid, base, m, ctx, prev, stream, think, cache,
                                              meta)  # fmt: skip
            out.append(ev)
            k += 1
            t += latency + 5
            if autocomplete:
                t += 800 + int(15_000 * r())
                ctx = int(m.in_median * self.ln_in[bits(10)]) + 8
                continue
            added = produced + int(120 * self.ln_in[bits(10)])  # answer + next user message
            if tools and r() < 0.3:
                t, k, returned = self._tools(out, t, uid, k, base, eid, None, tools,
                                             1 + int(r() * 2), meta)  # fmt: skip
                added += returned
            t += self.think_ms[bits(10)]
            prev, ctx = ctx, min(ctx + added, 180_000)
        return out

    def _agent(self, t: int, uid: str) -> Timed:
        """An agent session: one to three runs of its steps (LLM calls, tool calls after some)."""
        rng, w = self.rng, self.w
        r, bits = rng.random, rng.getrandbits
        agent = _pick(*self.agents, r())
        inst = agent.instances[int(r() * len(agent.instances))]
        users = self.agent_users[agent.id]
        user = users[int(r() * len(users))] if users else None
        team = w.user_group[user] if user else None
        meta, gateway = self._context(agent.feature, team, inst.split("-")[-2])
        base: Event = {"api_key_id": agent.api_key_id, "caller_ip": w.instance_ips[inst],
                       "agent_id": agent.id, "agent_instance_id": inst,
                       "session_id": f"sess-{bits(48):012x}"}  # fmt: skip
        if user:
            base["user_id"] = user
        byok = team is not None and r() < GROUPS[team][2]
        billing = "byok" if byok else "platform"
        out: Timed = []
        k = 0
        for _ in range(1 if user is None or r() < 0.7 else 2 + int(r() * 2)):
            run_eid, start = f"{uid}{k}", t
            run_base = {**base, "run_id": f"run-{bits(64):016x}", "trace_id": f"{bits(128):032x}"}
            run: Event = {"id": run_eid, "timestamp": t, "kind": "agent_run",
                          "status": "success", **run_base, "tags": meta["tags"],
                          "metadata": meta["metadata"]}  # fmt: skip
            out.append(run)
            k += 1
            t += 20 + int(r() * 200)
            llm_base = {**run_base, "gateway": gateway, "parent_id": run_eid,
                        "billing_mode": billing, "is_byok": byok}  # fmt: skip
            ctx, prev, last = int(2000 * self.ln_in[bits(10)]) + 200, 0, None
            failed: Event | None = None
            cache = r() < 0.7
            for step, models, tools in self.steps[agent.id]:
                step_base = {**llm_base, "node": step.node} if step.node else llm_base
                m = _pick(*models, r())
                think = r() < m.thinking_share
                if m is not last:
                    prev, last = 0, m  # another model: nothing cached yet
                embed = m.request_type == "embedding"
                lo, hi = step.calls
                for _ in range(lo + int(r() * (hi - lo + 1))):
                    eid = f"{uid}{k}"
                    size = int(40 * self.ln_in[bits(10)]) + 4 if embed else ctx  # query or prompt
                    ev, latency, added = self._llm(t, eid, step_base, m, size,
                                                   0 if embed else prev, False, think, cache,
                                                   meta)  # fmt: skip
                    out.append(ev)
                    k += 1
                    t += latency + 10
                    if ev["status"] == "error" and r() < 0.4:
                        failed = ev
                        break
                    if tools and r() < step.tool_rate:
                        t, k, returned = self._tools(out, t, uid, k, run_base, eid, step.node,
                                                     tools, 1 + int(r() * 2), meta)  # fmt: skip
                        added += returned
                    if not embed:
                        prev, ctx = ctx, min(ctx + added, 150_000)
                if failed:
                    run["status"], run["error_type"] = "error", failed["error_type"]
                    run["error_message"] = f"Run aborted: {failed['error_message']}"
                    break
            run["latency_ms"] = float(t - start)
            t += self.think_ms[bits(10)]
        return out

    def _embedding_job(self, t: int, uid: str) -> Timed:
        """A batch of embedding calls, from the indexer service or an engineer."""
        rng, w = self.rng, self.w
        r = rng.random
        m = _pick(*self.emb_m, r())
        user = self.coders[int(r() * len(self.coders))] if r() < 0.3 else None
        meta, gateway = self._context("indexing", None, "eu" if r() < 0.6 else "us")
        base: Event = {"api_key_id": w.user_key[user] if user else "key-batch-indexer",
                       "caller_ip": w.user_ips[user][0] if user else "10.40.7.21",
                       "session_id": f"job-{rng.getrandbits(48):012x}", "gateway": gateway,
                       "billing_mode": "platform", "is_byok": False}  # fmt: skip
        if user:
            base["user_id"] = user
        out: Timed = []
        for k in range(3 + int(r() * 18)):
            size = int(m.in_median * self.ln_in[rng.getrandbits(10)]) + 16
            ev, latency, _ = self._llm(t, f"{uid}{k}", base, m, size, 0, False, False, False, meta)
            out.append(ev)
            t += latency + 50 + int(r() * 1500)
        return out

    def _http(self, t: int, uid: str) -> Timed:
        """A plain API request through a gateway (model list, health check, files)."""
        rng, w = self.rng, self.w
        r = rng.random
        user = _pick(self.users, self.user_cum, r())
        meta, gateway = self._context("api", w.user_group[user], w.user_region[user])
        method, route, rtype = _pick(*self.routes, r())
        meta["metadata"].update(route=route, method=method)
        ev: Event = {"id": f"{uid}0", "timestamp": t, "kind": "http_request",
                     "status": "success", "status_code": 200, "user_id": user,
                     "api_key_id": w.user_key[user], "caller_ip": w.user_ips[user][0],
                     "gateway": gateway, "protocol": "http", "request_type": rtype,
                     "latency_ms": int(40 + 600 * self.ln_in[rng.getrandbits(10)]) / 10,
                     "request_bytes": 180 + int(r() * 400),
                     "response_bytes": 300 + int(r() * 6000), **meta}  # fmt: skip
        x = r()
        if x < 0.035:
            ev.update(status="error", status_code=401, error_type="auth_error",
                      error_message="Missing or invalid API key")  # fmt: skip
        elif x < 0.06:
            ev.update(status="error", status_code=404, error_type="invalid_request",
                      error_message=f"Not found: {method} {route}/unknown")  # fmt: skip
        return [ev]


def _budgets(count: int, seed: int, first_hour: int, n: int, start: int, end: int) -> list[int]:
    """count split over the n hours from first_hour by the daily and weekly rhythm, a slight
    upward trend and some noise (largest remainders, so the sum is exact)."""
    rng = random.Random(f"rhythm-{seed}")
    weights = []
    for b in range(n):
        h = first_hour + b * _HOUR_MS
        cover = (min(h + _HOUR_MS, end) - max(h, start)) / _HOUR_MS
        day = datetime.fromtimestamp(h / 1000, UTC)
        noise = max(0.3, 1.0 + 0.12 * rng.gauss(0.0, 1.0))
        trend = 1.0 + 0.2 * b / n
        weights.append(cover * _DAILY[day.hour] * _WEEKLY[day.weekday()] * trend * noise)
    total = sum(weights)
    raw = [count * x / total for x in weights]
    out = [int(x) for x in raw]
    for i in sorted(range(n), key=lambda i: (out[i] - raw[i], i))[: count - sum(out)]:
        out[i] += 1
    return out


def _window_ms(days: float, end: datetime | None) -> tuple[int, int]:
    """[start, end) in whole epoch milliseconds, rounded inwards."""
    if end is None:
        end = clock.now().replace(second=0, microsecond=0)
    elif end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    end_us = (end - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    start_us = end_us - round(days * 86_400_000_000)
    return -(-start_us // 1000), -(-end_us // 1000)


def generate_events(
    count: int, days: float, seed: int = 42, end: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """`count` demo events spread over [end - days, end), in ascending timestamp order.

    end defaults to the current UTC time floored to the minute. Event ids are
    "demo-{seed}-{unit}-{k}", so loading the same stream twice is idempotent. For speed, the
    events of one unit (session, run, job) share one `tags` list and one `metadata` dict: copy
    them before mutating.
    """
    if count < 0 or days <= 0:
        raise ValueError("count must be >= 0 and days > 0")
    return _stream(count, seed, *_window_ms(days, end))


def _stream(count: int, seed: int, start_ms: int, end_ms: int) -> Iterator[Event]:
    first_hour = start_ms // _HOUR_MS * _HOUR_MS
    n_hours = -(-(end_ms - first_hour) // _HOUR_MS)
    budgets = _budgets(count, seed, first_hour, n_hours, start_ms, end_ms)
    gen = _Gen(build_world(seed), seed)
    rand = gen.rng.random
    pending: dict[int, Timed] = {}  # hour index -> events of units started earlier
    made = need = 0
    by_time, m2, ms3 = itemgetter("timestamp"), _M2, _MS3
    for b in range(n_hours):
        h = first_hour + b * _HOUR_MS
        next_h, lo, hi = h + _HOUR_MS, max(h, start_ms), min(h + _HOUR_MS, end_ms)
        night = not 7 <= (h // _HOUR_MS) % 24 < 20
        current = pending.pop(h // _HOUR_MS, [])
        need += budgets[b]
        while need > 0 and made < count:
            unit = gen.unit(lo + int(rand() * (hi - lo)), night)
            if made + len(unit) > count:
                unit = unit[: count - made]
            made += len(unit)
            need -= len(unit)
            last = 0
            for ev in unit:
                ts = ev["timestamp"]
                if ts >= hi:  # past this hour, or past the end
                    if ts >= end_ms:  # squeeze the tail of a late unit in before the end
                        ts = ev["timestamp"] = last + (end_ms - 1 - last) // 2
                    if ts >= next_h:
                        last = ts
                        later = pending.get(ts // _HOUR_MS)
                        if later is None:
                            later = pending[ts // _HOUR_MS] = []
                        later.append(ev)
                        continue
                last = ts
                current.append(ev)
        if not current:
            continue
        current.sort(key=by_time)
        prefix = datetime.fromtimestamp(h / 1000, UTC).strftime("%Y-%m-%dT%H:")
        for ev in current:
            minute, rest = divmod(ev["timestamp"] - h, 60_000)
            ev["timestamp"] = f"{prefix}{m2[minute]}:{m2[rest // 1000]}.{ms3[rest % 1000]}Z"
            yield ev


def generate_batches(
    count: int, days: float, seed: int = 42, end: datetime | None = None, batch_size: int = 5000
) -> Iterator[list[dict[str, Any]]]:
    """`generate_events` in lists of batch_size events (the last may be shorter)."""
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    events = generate_events(count, days, seed, end)
    while batch := list(islice(events, batch_size)):
        yield batch
