"""The demo world: providers and models, users and groups, agents, tools, gateways, policies.

Everything here is static data plus `build_world(seed)`, which deterministically draws the
people (names, groups, activity, keys, addresses) and the agent instances. `generator.py` turns
a world into an event stream.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

Weighted = tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class DemoUser:
    id: str
    email: str
    display_name: str


@dataclass(frozen=True, slots=True)
class DemoModel:
    provider: str
    name: str
    request_type: str  # chat, completion or embedding
    in_median: int  # typical prompt tokens of a first call
    out_median: int  # typical visible output tokens
    tps: float  # output tokens per second
    ttft_ms: float  # typical time to first token
    price_in: float  # USD per million tokens, for gateways that report their own cost
    price_out: float
    reasoning: float = 0.0  # median reasoning tokens per visible output token when thinking
    thinking_share: float = 0.0  # share of runs or sessions that turn reasoning on
    cache: str = "none"  # "auto" (prefix caching), "explicit" (cache_control) or "none"
    protocol: str = "openai"
    priced: bool = True  # genai-prices knows it


def _m(provider: str, name: str, kind: str, i: int, o: int, tps: float, ttft: float,
       p_in: float, p_out: float, **kw: Any) -> DemoModel:  # fmt: skip
    return DemoModel(provider, name, kind, i, o, tps, ttft, p_in, p_out, **kw)


_R = {"reasoning": 2.5, "thinking_share": 1.0}
_THINK = {"reasoning": 1.5, "thinking_share": 0.3}
_OA = {"cache": "auto"}
_AN = {"cache": "explicit", "protocol": "anthropic"}

MODELS: tuple[DemoModel, ...] = (
    _m("openai", "gpt-4o", "chat", 1800, 350, 80, 450, 2.5, 10, **_OA),
    _m("openai", "gpt-4o-mini", "chat", 1500, 300, 110, 350, 0.15, 0.6, **_OA),
    _m("openai", "gpt-4.1", "chat", 2500, 400, 75, 500, 2, 8, **_OA),
    _m("openai", "gpt-4.1-mini", "chat", 2000, 350, 100, 380, 0.4, 1.6, **_OA),
    _m("openai", "gpt-4.1-nano", "chat", 900, 150, 180, 250, 0.1, 0.4, **_OA),
    _m("openai", "o3-mini", "chat", 1800, 500, 120, 900, 1.1, 4.4, **_OA, **_R),
    _m("openai", "o4-mini", "chat", 2000, 500, 130, 800, 1.1, 4.4, **_OA, **_R),
    _m("openai", "text-embedding-3-small", "embedding", 600, 0, 1, 60, 0.02, 0),
    _m("openai", "text-embedding-3-large", "embedding", 600, 0, 1, 90, 0.13, 0),
    _m("anthropic", "claude-sonnet-4-5", "chat", 3000, 450, 70, 700, 3, 15, **_AN, **_THINK),
    _m("anthropic", "claude-3-5-haiku-latest", "chat", 1500, 300, 120, 450, 0.8, 4, **_AN),
    _m("anthropic", "claude-haiku-4-5", "chat", 1600, 320, 130, 400, 1, 5, **_AN),
    _m("anthropic", "claude-opus-4-1", "chat", 3500, 500, 40, 1200, 15, 75, **_AN, **_THINK),
    _m("google", "gemini-2.5-pro", "chat", 3000, 500, 90, 1500, 1.25, 10, **_OA, **_R),
    _m("google", "gemini-2.5-flash", "chat", 1800, 350, 200, 450, 0.3, 2.5, **_OA),
    _m("google", "gemini-2.0-flash", "chat", 1200, 250, 220, 350, 0.1, 0.4),
    _m("google", "gemini-2.5-flash-lite", "chat", 1000, 200, 300, 250, 0.1, 0.4),
    _m("google", "gemini-embedding-001", "embedding", 700, 0, 1, 120, 0.15, 0),
    _m("mistral", "mistral-large-latest", "chat", 2000, 400, 60, 500, 2, 6),
    _m("mistral", "mistral-small-latest", "chat", 1200, 250, 150, 300, 0.1, 0.3),
    _m("mistral", "codestral-latest", "completion", 700, 40, 200, 120, 0.3, 0.9),
    _m("mistral", "mistral-embed", "embedding", 500, 0, 1, 80, 0.1, 0),
    _m("deepseek", "deepseek-chat", "chat", 1600, 350, 50, 900, 0.27, 1.1, **_OA),
    _m("deepseek", "deepseek-reasoner", "chat", 1600, 450, 45, 2500, 0.55, 2.19, **_OA, **_R),
    _m("groq", "llama-3.1-8b-instant", "chat", 800, 200, 750, 120, 0.05, 0.08),
    _m("groq", "llama-3.3-70b-versatile", "chat", 1400, 300, 280, 200, 0.59, 0.79),
    _m("x-ai", "grok-3-mini", "chat", 1400, 300, 100, 600, 0.3, 0.5, **_OA, **_R),
    _m("x-ai", "grok-4", "chat", 2500, 450, 50, 1500, 3, 15, **_OA, **_R),
    _m("self-hosted", "llama-3.1-70b-internal", "chat", 1500, 300, 35, 600, 0, 0, priced=False),
)


@dataclass(frozen=True, slots=True)
class DemoPolicy:
    id: str
    name: str
    description: str


POLICIES: tuple[DemoPolicy, ...] = (
    DemoPolicy("pii-guard", "PII guard",
               "Blocks tool calls that send personal data (emails, phone numbers, IBANs) to "
               "external destinations."),
    DemoPolicy("prod-db-write", "Production DB write protection",
               "Denies INSERT, UPDATE, DELETE and DDL statements against production databases "
               "from agents."),
    DemoPolicy("secrets-scan", "Secret scanner",
               "Blocks writes whose content contains API keys, tokens or private keys."),
    DemoPolicy("egress-allowlist", "Egress allowlist",
               "Only allows browsing and fetching of approved domains."),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DemoTool:
    name: str
    mcp_server: str
    latency_ms: float  # median
    response_bytes: int  # median
    policy_id: str | None = None
    block_rate: float = 0.0


TOOLS: tuple[DemoTool, ...] = (
    DemoTool("search_code", "github", 800, 6000),
    DemoTool("get_file_contents", "github", 250, 9000),
    DemoTool("create_pull_request", "github", 1500, 1500, "secrets-scan", 0.055),
    DemoTool("create_issue", "github", 700, 1200, "pii-guard", 0.055),
    DemoTool("list_commits", "github", 400, 4000),
    DemoTool("read_file", "filesystem", 15, 12000),
    DemoTool("write_file", "filesystem", 25, 200, "secrets-scan", 0.065),
    DemoTool("list_directory", "filesystem", 10, 1500),
    DemoTool("search_files", "filesystem", 120, 3000),
    DemoTool("query", "postgres", 180, 5000, "pii-guard", 0.04),
    DemoTool("execute", "postgres", 90, 300, "prod-db-write", 0.4),
    DemoTool("list_tables", "postgres", 40, 800),
    DemoTool("describe_table", "postgres", 35, 1200),
    DemoTool("post_message", "slack", 350, 600, "pii-guard", 0.08),
    DemoTool("search_messages", "slack", 600, 7000),
    DemoTool("list_channels", "slack", 250, 2500),
    DemoTool("navigate", "browser", 2500, 30000, "egress-allowlist", 0.08),
    DemoTool("fetch_url", "browser", 900, 25000, "egress-allowlist", 0.1),
    DemoTool("screenshot", "browser", 1200, 150000),
    DemoTool("click", "browser", 400, 500),
)
MCP_SERVERS: tuple[str, ...] = ("github", "filesystem", "postgres", "slack", "browser")


@dataclass(frozen=True, slots=True)
class DemoGateway:
    id: str
    region: str
    reports_cost: bool = False


GATEWAYS: tuple[DemoGateway, ...] = (
    DemoGateway("gw-eu-west", "eu"),
    DemoGateway("gw-us-east", "us"),
    DemoGateway("openrouter", "any", reports_cost=True),
)


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One node of an agent: its models, tools, how many LLM calls and how often tools follow."""

    node: str | None
    models: Weighted
    tools: Weighted = ()
    calls: tuple[int, int] = (1, 1)
    tool_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class DemoAgent:
    id: str
    feature: str
    groups: tuple[str, ...]  # whose users run it; empty for service agents (no user)
    steps: tuple[DemoStep, ...]
    weight: float  # share of agent runs
    instances: tuple[str, ...] = ()
    api_key_id: str = ""

    @property
    def pipeline(self) -> bool:
        return self.steps[0].node is not None


_EMB = (("text-embedding-3-small", 1.0),)
_GH_READ = (("search_code", 3.0), ("get_file_contents", 5.0), ("list_commits", 1.0))
_FS = (("read_file", 5.0), ("list_directory", 2.0), ("search_files", 2.0), ("write_file", 1.5))
_PG = (("list_tables", 1.0), ("describe_table", 2.0), ("query", 6.0), ("execute", 0.6))
_WEB = (("fetch_url", 4.0), ("navigate", 1.5), ("screenshot", 0.5), ("click", 1.0))
_SLACK = (("search_messages", 2.0), ("post_message", 1.0), ("list_channels", 0.4))

AGENTS: tuple[DemoAgent, ...] = (
    DemoAgent("agent-support-bot", "support", ("support",), (
        DemoStep("retrieve", _EMB, (("search_messages", 1.0), ("query", 1.0)), (1, 1), 1.0),
        DemoStep("plan", (("gpt-4o-mini", 3.0), ("claude-3-5-haiku-latest", 1.0))),
        DemoStep("generate", (("gpt-4o-mini", 2.0), ("claude-haiku-4-5", 1.0)), (), (1, 2)),
        DemoStep("review", (("gpt-4.1-nano", 1.0),)),
    ), 30.0),
    DemoAgent("agent-code-reviewer", "code-review", ("engineering",), (
        DemoStep("fetch", (("gpt-4.1-mini", 1.0),), _GH_READ, (1, 2), 1.0),
        DemoStep("analyze", (("claude-sonnet-4-5", 3.0), ("gpt-4.1", 1.0),
                             ("claude-opus-4-1", 0.2), ("grok-4", 0.15)), _FS, (1, 3), 0.4),
        DemoStep("comment", (("gpt-4.1-mini", 1.0),), (("create_issue", 1.0),), (1, 1), 0.3),
    ), 8.0),
    DemoAgent("agent-sql-analyst", "analytics", ("data", "sales"), (
        DemoStep(None, (("gpt-4.1-mini", 3.0), ("o4-mini", 1.0), ("deepseek-chat", 0.6)), _PG,
                 (2, 8), 0.7),
    ), 12.0),
    DemoAgent("agent-research-assistant", "research", ("research",), (
        DemoStep("plan", (("o3-mini", 1.0), ("gemini-2.5-pro", 1.0), ("deepseek-reasoner", 0.5))),
        DemoStep("search", (("gemini-2.5-flash", 1.0),), _WEB, (1, 3), 0.9),
        DemoStep("read", (("gemini-2.5-flash", 2.0), ("gemini-2.5-flash-lite", 1.0)), (), (1, 3)),
        DemoStep("synthesize", (("gemini-2.5-pro", 2.0), ("claude-sonnet-4-5", 1.0),
                                ("claude-opus-4-1", 0.2), ("grok-3-mini", 0.5))),
    ), 7.0),
    DemoAgent("agent-sales-assistant", "sales", ("sales",), (
        DemoStep(None, (("gpt-4o-mini", 3.0), ("claude-haiku-4-5", 1.0), ("gpt-4o", 0.5)),
                 (("fetch_url", 2.0), *_SLACK), (2, 6), 0.5),
    ), 12.0),
    DemoAgent("agent-devops", "devops", ("engineering",), (
        DemoStep(None, (("claude-sonnet-4-5", 2.0), ("gpt-4.1", 1.0), ("gpt-4.1-mini", 1.0)),
                 _GH_READ + _FS + (("create_pull_request", 1.0), ("post_message", 0.5)),
                 (2, 12), 0.8),
    ), 10.0),
    DemoAgent("agent-doc-writer", "docs", ("marketing", "engineering"), (
        DemoStep("outline", (("mistral-large-latest", 1.0), ("gpt-4o", 1.0))),
        DemoStep("draft", (("mistral-large-latest", 1.0), ("gpt-4o", 1.0)), _FS[:2], (1, 3), 0.5),
        DemoStep("edit", (("mistral-small-latest", 1.0), ("gpt-4o-mini", 1.0)),
                 (("write_file", 1.0),), (1, 1), 0.8),
    ), 6.0),
    DemoAgent("agent-triage", "triage", (), (
        DemoStep(None, (("llama-3.1-8b-instant", 3.0), ("gpt-4.1-nano", 2.0),
                        ("deepseek-chat", 1.0)),
                 (("list_commits", 1.0), ("create_issue", 1.0), ("post_message", 1.0)),
                 (1, 4), 0.5),
    ), 15.0),
)  # fmt: skip

# Direct chat (no agent) per primary group: cheap models dominate.
CHAT_MODELS: dict[str, Weighted] = {
    "engineering": (("gpt-4.1-mini", 10), ("claude-sonnet-4-5", 8), ("gpt-4o-mini", 6),
                    ("gpt-4.1", 4), ("o4-mini", 2), ("claude-opus-4-1", 0.6),
                    ("llama-3.3-70b-versatile", 2), ("llama-3.1-70b-internal", 1.0),
                    ("grok-4", 0.4)),
    "support": (("gpt-4o-mini", 12), ("claude-3-5-haiku-latest", 5), ("gemini-2.0-flash", 3)),
    "sales": (("gpt-4o-mini", 10), ("gpt-4o", 3), ("claude-haiku-4-5", 3),
              ("gemini-2.5-flash", 2)),
    "research": (("gemini-2.5-pro", 4), ("o3-mini", 4), ("claude-sonnet-4-5", 3),
                 ("deepseek-reasoner", 2), ("deepseek-chat", 3), ("grok-3-mini", 1.5),
                 ("llama-3.1-70b-internal", 0.8), ("claude-opus-4-1", 0.5),
                 ("mistral-large-latest", 1)),
    "data": (("gpt-4.1-mini", 6), ("gemini-2.5-flash", 4), ("o4-mini", 2), ("deepseek-chat", 2),
             ("mistral-small-latest", 2), ("llama-3.1-70b-internal", 0.3)),
    "marketing": (("gpt-4o", 4), ("gpt-4o-mini", 6), ("gemini-2.5-flash", 3),
                  ("mistral-large-latest", 2), ("gemini-2.5-flash-lite", 2)),
}  # fmt: skip
AUTOCOMPLETE_MODELS: Weighted = (("codestral-latest", 7.0), ("gpt-4.1-nano", 3.0))
EMBEDDING_MODELS: Weighted = (
    ("text-embedding-3-small", 7.0),
    ("text-embedding-3-large", 1.5),
    ("gemini-embedding-001", 1.0),
    ("mistral-embed", 1.0),
)
# group -> (size share, tools a direct chat may call over MCP, byok share)
GROUPS: dict[str, tuple[float, Weighted, float]] = {
    "engineering": (0.32, _GH_READ + _FS, 0.1),
    "support": (0.2, (), 0.0),
    "sales": (0.14, (), 0.0),
    "research": (0.12, _WEB, 0.6),
    "data": (0.12, _PG, 0.2),
    "marketing": (0.1, (), 0.0),
}
TAGS: tuple[tuple[str, ...], ...] = (("prod",), ("staging",), ("prod", "experiment-a"),
                                     ("prod", "experiment-b"), ("dev",))  # fmt: skip
TAG_WEIGHTS: tuple[float, ...] = (80, 10, 4, 3, 3)

# Failures: (error_type, status_code, message with {m} for the model, weight).
LLM_ERRORS: tuple[tuple[str, int, str, float], ...] = (
    ("rate_limit", 429, "Rate limit reached for {m}: requests per minute exceeded", 35),
    ("rate_limit", 429, "Rate limit reached for {m}: tokens per minute exceeded", 10),
    ("invalid_request", 400, "This model's maximum context length was exceeded", 8),
    ("invalid_request", 400, "Invalid request: messages must alternate roles", 5),
    ("timeout", 504, "Upstream request to {m} timed out after 60s", 14),
    ("auth_error", 401, "Invalid API key provided for {m}", 5),
    ("auth_error", 403, "Project does not have access to model {m}", 3),
    ("model_error", 529, "{m} is temporarily overloaded, please retry", 8),
    ("model_error", 500, "The server had an error while processing the request", 6),
    ("other", 502, "Bad gateway: upstream connection reset", 6),
)
TOOL_ERRORS: tuple[tuple[str, str], ...] = (
    ("timeout", "MCP request timed out after 30s"),
    ("other", "MCP server returned an internal error"),
    ("invalid_request", "Invalid arguments for tool"),
)
HTTP_ROUTES: tuple[tuple[str, str, str, float], ...] = (  # method, route, request_type, weight
    ("GET", "/v1/models", "models", 6), ("GET", "/healthz", "health", 3),
    ("POST", "/v1/files", "files", 1), ("GET", "/v1/batches", "batches", 1),
)  # fmt: skip
PROMPTS: tuple[tuple[str, str], ...] = (  # sample request / response payloads
    ("Summarise this support ticket in two sentences.", "The customer cannot log in after the "
     "password reset; the reset email link expires too quickly."),
    ("Write a SQL query for weekly active users.", "SELECT date_trunc('week', ts) AS week, "
     "count(DISTINCT user_id) FROM events GROUP BY 1 ORDER BY 1;"),
    ("Draft a friendly follow-up email to a prospect.", "Hi Sam, thanks again for the call "
     "yesterday. I have attached the pricing overview we discussed."),
    ("Explain the difference between p50 and p99 latency.", "p50 is the median: half of the "
     "requests are faster. p99 is the value 99% of requests stay under."),
)  # fmt: skip

# fmt: off
_FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
          "Kira", "Liam", "Maya", "Noah", "Olga", "Priya", "Quentin", "Rosa", "Sami", "Tara",
          "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Aiko", "Bruno", "Carla", "Dmitri")
_LAST = ("Silva", "Novak", "Okafor", "Tanaka", "Garcia", "Muller", "Rossi", "Kowalski",
         "Nguyen", "Haddad", "Johansson", "Patel", "Dubois", "Moreau", "Costa", "Fischer",
         "Ivanova", "Kim", "Larsen", "Mendes")
# fmt: on


@dataclass(frozen=True)
class DemoWorld:
    users: list[DemoUser]
    groups: dict[str, list[str]]  # group name -> user ids
    models: list[DemoModel]
    tools: list[DemoTool]
    mcp_servers: list[str]
    agents: list[DemoAgent]
    gateways: list[DemoGateway]
    policies: list[DemoPolicy]
    api_keys: list[str]
    user_group: dict[str, str]  # primary group
    user_weight: dict[str, float]  # relative activity
    user_key: dict[str, str]  # api_key_id the user calls with
    user_ips: dict[str, tuple[str, ...]]
    user_region: dict[str, str]  # "eu" or "us"
    instance_ips: dict[str, str]  # agent_instance_id -> caller_ip

    def model(self, name: str) -> DemoModel:
        return next(m for m in self.models if m.name == name)


def build_world(seed: int) -> DemoWorld:
    """The deterministic cast of the demo for `seed`."""
    rng = random.Random(f"tallyql-demo-world-{seed}")
    n_users = 50
    names = rng.sample([(f, last) for f in _FIRST for last in _LAST], n_users)
    users = [
        DemoUser(f"user-{i + 1:03d}", f"{f.lower()}.{last.lower()}@example.com", f"{f} {last}")
        for i, (f, last) in enumerate(names)
    ]
    group_names = list(GROUPS)
    primaries = [g for g in group_names for _ in range(round(GROUPS[g][0] * n_users))]
    primaries = (primaries + group_names * n_users)[:n_users]
    rng.shuffle(primaries)
    groups: dict[str, list[str]] = {g: [] for g in group_names}
    api_keys: list[str] = []
    group_keys: dict[str, list[str]] = {}
    for g in group_names:
        group_keys[g] = [f"key-{g}-{k}" for k in range(1, 3 if GROUPS[g][0] >= 0.14 else 2)]
        api_keys += group_keys[g]
    user_group: dict[str, str] = {}
    user_weight: dict[str, float] = {}
    user_key: dict[str, str] = {}
    user_ips: dict[str, tuple[str, ...]] = {}
    user_region: dict[str, str] = {}
    for rank, (user, group) in enumerate(zip(users, primaries, strict=True)):
        uid = user.id
        user_group[uid] = group
        groups[group].append(uid)
        if rng.random() < 0.3:
            groups[rng.choice([g for g in group_names if g != group])].append(uid)
        user_weight[uid] = 1.0 / (1 + (rank * 7919 % n_users)) ** 0.7
        user_key[uid] = rng.choice(group_keys[group])
        user_region[uid] = "eu" if rng.random() < 0.6 else "us"
        base = "10.20" if user_region[uid] == "eu" else "10.60"
        user_ips[uid] = tuple(
            f"{base}.{rng.randrange(1, 64)}.{rng.randrange(2, 254)}"
            for _ in range(rng.choice((1, 1, 2)))
        )
    agents: list[DemoAgent] = []
    instance_ips: dict[str, str] = {}
    for agent in AGENTS:
        instances = []
        for k in range(rng.randrange(3, 6)):
            region = "eu" if k % 2 == 0 else "us"
            iid = f"{agent.id}-{region}-{k // 2 + 1}"
            instances.append(iid)
            instance_ips[iid] = (
                f"10.{40 if region == 'eu' else 80}.{rng.randrange(1, 255)}.{k + 10}"
            )
        key = f"key-svc-{agent.id.removeprefix('agent-')}"
        api_keys.append(key)
        agents.append(dataclasses.replace(agent, instances=tuple(instances), api_key_id=key))
    api_keys += ["key-ci-pipeline", "key-batch-indexer"]
    return DemoWorld(
        users=users,
        groups={g: sorted(ids) for g, ids in groups.items()},
        models=list(MODELS),
        tools=list(TOOLS),
        mcp_servers=list(MCP_SERVERS),
        agents=agents,
        gateways=list(GATEWAYS),
        policies=list(POLICIES),
        api_keys=api_keys,
        user_group=user_group,
        user_weight=user_weight,
        user_key=user_key,
        user_ips=user_ips,
        user_region=user_region,
        instance_ips=instance_ips,
    )
