"""The question interpreter: a question in plain words becomes a `MetricsQueryInput`.

Pure and deterministic: no database, no clock of its own (`now` is given), no network. The
workspace's known values (models, providers, users, groups, agents, tools, MCP servers,
gateways) come in as `KnownValues`, fetched and cached by the caller. The words come from
`vocabulary.py`, declared beside the registry.

How a question is read, in order:
1. the time zone: an IANA name in the question ("in Europe/Paris"), else the caller's;
2. time phrases (today, last week, the last 3 days, since 2026-11-01, in November, between
   two dates): a preset when one means exactly that, else an exact start and end;
3. known values, longest first: exact (case and punctuation aside: "GPT 4o" is gpt-4o), then
   one typo away (a letter added, dropped, changed or two swapped) for words of 4 letters
   and more; a value that is an ordinary word ("data", "query") only beside its noun;
4. phrases of the vocabulary, longest first: metrics, dimensions (a grouping unless it is the
   noun of a value: "the sales team"), granularity, kinds, error types, top/bottom N;
5. what is left: stop words are dropped; other words are shown as ignored, and a question
   made mostly of them is not understood.

Never guessing silently: every assumption (the default window, the default metric) is said
in the interpretation and the notes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from tallyql.engine.query.buckets import Granularity
from tallyql.engine.query.registry import METRICS, Dimension, Metric
from tallyql.engine.vocabulary import (
    ASCENDING_WORDS,
    COMMON_WORDS,
    DESCENDING_WORDS,
    DIMENSION_WORDS,
    ERROR_TYPE_WORDS,
    FILTER_LABELS,
    FILTER_NOUNS,
    GRANULARITY_WORDS,
    KIND_WORDS,
    METRIC_WORDS,
    MONTHS,
    NUMBER_WORDS,
    OVER_TIME_WORDS,
    STOPWORDS,
)

_HOSTILE = re.compile(r"[;{}<>`\\|=*]|--")
"""Characters of code and markup, never of a question: such input is not read further."""
MAX_QUESTION_CHARS = 300
"""Longer input is not read at all: no question needs more, and it bounds the work."""
DEFAULT_PRESET = "LAST_30D"
MAX_GROUP_ROWS = 10_000
"""Grouped rows over time: every bucket of every group (the engine's own maximum)."""
HIGH_CARDINALITY_ROWS = 20
"""Rows for a grouping by users, callers, sessions or keys without a top N."""

KNOWN_FIELDS = tuple(FILTER_NOUNS)
"""EventFilter fields (camelCase) the known values fill, in order of precedence when one
value is known in several (a provider named like its model family stays a provider)."""


@dataclass(frozen=True)
class KnownValues:
    """The workspace's own values per EventFilter field, and display names of users."""

    values: Mapping[str, tuple[str, ...]]
    user_names: Mapping[str, str] = field(default_factory=dict)
    """Display name -> user id."""
    metadata_keys: tuple[str, ...] = ()
    """Keys of the events' metadata ("feature"): "by feature" groups by that key."""


@dataclass
class Interpretation:
    understood: bool
    query: dict[str, Any] | None
    """A MetricsQueryInput in its GraphQL input shape (JSON)."""
    interpretation: str
    suggestions: list[str]
    notes: list[str] = field(default_factory=list)
    """What was assumed or ignored, shown with the interpretation."""
    chart_kind: str = "TABLE"
    """LINE, STACKED_AREA, BAR or TABLE: how the answer is best drawn."""
    top_over_time: TopOverTime | None = None
    """ "top 3 models by cost over time": which groups to keep is decided by the answerer,
    which ranks them over the whole range first (`query` then holds every bucket of every
    group, and is narrowed to the chosen ones)."""


@dataclass(frozen=True)
class TopOverTime:
    """The N groups (of the query's one dimension) ranked first by its first metric over the
    whole range; their series are drawn, the other groups are left out."""

    n: int
    descending: bool
    filter_field: str
    """The EventFilter field that keeps the chosen groups (models, users, groups...)."""


# ---- known values: exact and one-typo lookups ------------------------------------------------


def squash(text: str) -> str:
    """A value's or phrase's letters and digits only, lower case: "GPT 4o" and "gpt-4o" meet."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))} | {word}


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by at most one insertion, deletion, substitution or swap of
    neighbours (optimal string alignment distance <= 1)."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diffs = [i for i in range(la) if a[i] != b[i]]
        if len(diffs) == 1:
            return True
        return (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and a[diffs[0]] == b[diffs[1]]
            and a[diffs[1]] == b[diffs[0]]
        )
    if la > lb:
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1 :]


@dataclass
class _Index:
    exact: dict[str, list[tuple[str, str]]]
    """squashed form -> [(field, value)]"""
    fuzzy: dict[str, list[tuple[str, str, str]]]
    """each one-deletion of a squashed form -> [(squashed, field, value)]"""
    samples: dict[str, tuple[str, ...]]
    metadata_keys: dict[str, str]
    """squashed key -> the key as stored"""


@lru_cache(maxsize=64)  # bounded: each workspace's values change as traffic comes in
def _index(known: KnownValuesKey) -> _Index:
    exact: dict[str, list[tuple[str, str]]] = {}
    fuzzy: dict[str, list[tuple[str, str, str]]] = {}
    for fld, values in known.values:
        for value in values:
            forms = {squash(value)}
            if fld == "agents" and value.lower().startswith("agent-"):
                forms.add(squash(value[6:]))  # "sales assistant" for agent-sales-assistant
            if fld == "gateways" and value.lower().startswith("gw-"):
                forms.add(squash(value[3:]))
            for form in forms:
                if not form:
                    continue
                exact.setdefault(form, []).append((fld, value))
                if len(form) >= 4 and not form.isdigit():
                    for d in _deletes(form):
                        fuzzy.setdefault(d, []).append((form, fld, value))
    for name, uid in known.user_names:
        form = squash(name)
        if form:
            exact.setdefault(form, []).append(("users", uid))
            if len(form) >= 4:
                for d in _deletes(form):
                    fuzzy.setdefault(d, []).append((form, "users", uid))
    keys = {squash(k): k for k in known.metadata_keys if squash(k)}
    return _Index(exact, fuzzy, dict(known.values), keys)


@dataclass(frozen=True)
class KnownValuesKey:
    """KnownValues frozen into tuples, so that its index is built once per set of values."""

    values: tuple[tuple[str, tuple[str, ...]], ...]
    user_names: tuple[tuple[str, str], ...]
    metadata_keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, known: KnownValues) -> KnownValuesKey:
        return cls(
            tuple((f, tuple(v)) for f, v in sorted(known.values.items())),
            tuple(sorted(known.user_names.items())),
            tuple(sorted(known.metadata_keys)),
        )


def _best(matches: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    ranked = sorted(set(matches), key=lambda m: KNOWN_FIELDS.index(m[0]))
    return ranked[0] if ranked else None


def _lookup(index: _Index, words: list[str], typo: bool) -> tuple[str, str] | None:
    form = squash("".join(words))
    if not form:
        return None
    found = index.exact.get(form)
    if found:
        return _best(found)
    if not typo or len(form) < 4 or form.isdigit():
        return None
    candidates = {
        (fld, value)
        for d in _deletes(form)
        for squashed, fld, value in index.fuzzy.get(d, ())
        if _one_edit(form, squashed)
    }
    if len({v for _, v in candidates}) == 1:
        return _best(candidates)
    return None  # two values one typo away: ambiguous, so not guessed


# ---- time ---------------------------------------------------------------------------------------


@cache
def _zones() -> dict[str, str]:
    return {name.lower(): name for name in available_timezones()}


def find_zone(name: str) -> str | None:
    """The IANA spelling of a zone named in any case, or None."""
    if name.lower() in ("utc", "gmt", "z"):
        return "UTC"
    return _zones().get(name.lower())


_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_DATE = (
    rf"(?:\d{{4}}-\d{{1,2}}-\d{{1,2}}|(?:{_MONTH})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTH})\.?(?:,?\s+\d{{4}})?)(?![a-z0-9])"
)
_NUM = r"(\d{1,4}|" + "|".join(NUMBER_WORDS) + ")"
_UNIT = r"(minutes?|mins?|hours?|hrs?|days?|weeks?|months?)"
_TIME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("between", rf"\b(?:between|from)\s+({_DATE})\s+(?:and|to|until|till|-)\s+({_DATE})"),
        ("since", rf"\b(?:since|after|from)\s+({_DATE})"),
        ("on", rf"\b(?:on\s+)?({_DATE})\b"),
        ("rolling", rf"\b(?:in\s+)?(?:the\s+)?(?:last|past|previous)\s+{_NUM}\s+{_UNIT}\b"),
        ("rolling_one", r"\b(?:in\s+)?(?:the\s+)?(?:last|past)\s+(hour|24\s*h(?:ours)?|day)\b"),
        ("rolling_one", r"\b(?:in\s+)?(?:the\s+)?past\s+(week|month)\b"),
        ("month_name", rf"\b(?:in|during|for)\s+({_MONTH})(?:\s+(\d{{4}}))?\b"),
        ("month_year", rf"\b({_MONTH})\s+(\d{{4}})\b"),
        ("this", r"\b(?:this|current|so far this)\s+(week|month|quarter|year)\b"),
        ("to_date", r"\b(mtd|ytd|qtd|wtd|month to date|year to date|week to date)\b"),
        ("previous", r"\b(?:last|previous|prior)\s+(week|month|quarter|year)\b"),
        ("today", r"\b(today|so far today)\b"),
        ("yesterday", r"\b(yesterday)\b"),
    )
)
_UNIT_SECONDS = {"min": 60, "hou": 3600, "hrs": 3600, "hr": 3600, "day": 86400, "wee": 604800}
_ROLLING_PRESETS = {3600: "LAST_1H", 86400: "LAST_24H", 7 * 86400: "LAST_7D"}
_ROLLING_PRESETS |= {30 * 86400: "LAST_30D", 90 * 86400: "LAST_90D"}


class _NotATime(ValueError):
    pass


def _parse_date(text: str, today: date) -> date:
    text = text.replace(",", " ").replace(".", " ")
    text = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)
    if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", text.strip()):
        y, m, d = (int(p) for p in text.strip().split("-"))
        return date(y, m, d)
    parts = [p for p in text.split() if p != "of"]
    month = next(MONTHS[p] for p in parts if p in MONTHS)
    numbers = [int(p) for p in parts if p.isdigit()]
    day = numbers[0]
    if len(numbers) > 1:
        return date(numbers[1], month, day)
    found = date(today.year, month, day)
    # a date without a year is the latest one not in the future
    return found if found <= today else date(today.year - 1, month, day)


def _add_months(d: date, months: int) -> date:
    index = d.year * 12 + d.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass
class _Time:
    range: dict[str, Any]
    label: str
    seconds: float
    """The window's length, to choose a granularity for "over time"."""


def _local_midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def _exact(start: datetime, end: datetime, tz_name: str, label: str) -> _Time:
    start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
    return _Time(
        {"start": _iso(start_utc), "end": _iso(end_utc), "timezone": tz_name},
        label,
        (end_utc - start_utc).total_seconds(),
    )


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _preset(name: str, tz_name: str, label: str, seconds: float) -> _Time:
    return _Time({"preset": name, "timezone": tz_name}, label, seconds)


def _period(unit: str, local_today: date, offset: int) -> tuple[date, date]:
    """The calendar week, month, quarter or year holding today, moved by `offset` periods."""
    if unit == "week":
        start = local_today - timedelta(days=local_today.weekday()) + timedelta(weeks=offset)
        return start, start + timedelta(weeks=1)
    if unit == "month":
        start = _add_months(local_today.replace(day=1), offset)
        return start, _add_months(start, 1)
    if unit == "quarter":
        first = local_today.replace(month=(local_today.month - 1) // 3 * 3 + 1, day=1)
        start = _add_months(first, 3 * offset)
        return start, _add_months(start, 3)
    start = date(local_today.year + offset, 1, 1)
    return start, date(start.year + 1, 1, 1)


def _read_time(kind: str, m: re.Match[str], now: datetime, tz: ZoneInfo, tz_name: str) -> _Time:
    local_now = now.astimezone(tz)
    today = local_now.date()
    if kind == "between":
        a, b = _parse_date(m.group(1), today), _parse_date(m.group(2), today)
        if b < a:
            a, b = b, a
        until = _local_midnight(b + timedelta(days=1), tz)  # the end date is included
        return _exact(_local_midnight(a, tz), until, tz_name, f"from {a} to {b} inclusive")
    if kind == "since":
        a = _parse_date(m.group(1), today)
        if _local_midnight(a, tz) >= now:
            raise _NotATime("a start in the future")
        return _exact(_local_midnight(a, tz), now, tz_name, f"since {a}")
    if kind == "on":
        a = _parse_date(m.group(1), today)
        return _exact(
            _local_midnight(a, tz), _local_midnight(a + timedelta(days=1), tz), tz_name, f"on {a}"
        )
    if kind in ("rolling", "rolling_one"):
        if kind == "rolling":
            raw = m.group(1)
            n = int(raw) if raw.isdigit() else NUMBER_WORDS[raw]
            unit = m.group(2)
        else:
            n, unit = 1, m.group(1).replace(" ", "")
            if unit.startswith("24"):
                n, unit = 24, "hours"
        if n < 1:
            raise _NotATime("an empty window")
        if unit.startswith("mon"):
            seconds = n * 30 * 86400.0
            unit_label = "days"
            n_label = n * 30
        else:
            seconds = n * float(_UNIT_SECONDS[unit[:3]])
            unit_label, n_label = unit.rstrip("s") + ("s" if n > 1 else ""), n
        preset = _ROLLING_PRESETS.get(int(seconds))
        label = f"the last {n_label} {unit_label}" if n_label > 1 else f"the last {unit_label}"
        if preset is not None:
            return _preset(preset, tz_name, label, seconds)
        if seconds > 3660 * 86400:
            raise _NotATime("a window of more than ten years")
        return _exact(now - timedelta(seconds=seconds), now, tz_name, label)
    if kind in ("month_name", "month_year"):
        month = MONTHS[m.group(1)]
        year = int(m.group(2)) if m.group(2) else today.year
        if not m.group(2) and date(year, month, 1) > today:
            year -= 1  # "in December" said in March: last December
        start = date(year, month, 1)
        end = _add_months(start, 1)
        label = start.strftime("in %B %Y")
        return _exact(_local_midnight(start, tz), _local_midnight(end, tz), tz_name, label)
    if kind in ("this", "to_date"):
        word = m.group(1)
        unit = {"m": "month", "y": "year", "q": "quarter", "w": "week"}[word[0]]
        if word[0] == "q" and kind == "to_date":
            unit = "quarter"
        seconds = {"week": 7, "month": 31, "quarter": 92, "year": 366}[unit] * 86400.0
        return _preset(f"THIS_{unit.upper()}", tz_name, f"this {unit}", seconds)
    if kind == "previous":
        unit = m.group(1)
        start, end = _period(unit, today, -1)
        return _exact(
            _local_midnight(start, tz),
            _local_midnight(end, tz),
            tz_name,
            f"last {unit} ({start} to {end - timedelta(days=1)})",
        )
    if kind == "today":
        return _preset("TODAY", tz_name, "today", 86400.0)
    if kind == "yesterday":
        y = today - timedelta(days=1)
        return _exact(
            _local_midnight(y, tz), _local_midnight(today, tz), tz_name, f"yesterday ({y})"
        )
    raise AssertionError(kind)


# ---- phrases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Phrase:
    words: tuple[str, ...]
    kind: str  # metric, dimension, granularity, over_time, kind, error_type
    value: Any


@cache
def _phrases() -> dict[str, list[_Phrase]]:
    """First word -> phrases starting with it, longest first."""
    items: list[_Phrase] = []
    for metric, words in METRIC_WORDS.items():
        items += [_Phrase(tuple(p.split()), "metric", metric) for p in words.phrases]
    for dim, words in DIMENSION_WORDS.items():
        items += [_Phrase(tuple(p.split()), "dimension", dim) for p in words.phrases]
    items += [_Phrase(tuple(p.split()), "granularity", g) for p, g in GRANULARITY_WORDS.items()]
    items += [_Phrase(tuple(p.split()), "over_time", None) for p in OVER_TIME_WORDS]
    items += [_Phrase(tuple(p.split()), "kind", k) for p, k in KIND_WORDS.items()]
    items += [_Phrase(tuple(p.split()), "error_type", e) for p, e in ERROR_TYPE_WORDS.items()]
    by_first: dict[str, list[_Phrase]] = {}
    for item in items:
        by_first.setdefault(item.words[0], []).append(item)
    for group in by_first.values():
        # longest first; among equals, a granularity ("by day") before a dimension
        group.sort(key=lambda p: (-len(p.words), p.kind != "granularity"))
    return by_first


_TOKEN = re.compile(r"[a-z0-9][a-z0-9._\-/':@+]*")
_NOUN_WORDS = frozenset(w for nouns in FILTER_NOUNS.values() for w in nouns)


def _tokens(text: str) -> list[str]:
    return [t.rstrip(".-'/:") for t in _TOKEN.findall(text)]


@dataclass
class _State:
    metrics: list[Metric] = field(default_factory=list)
    dimensions: list[Dimension] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)
    granularity: Granularity | None = None
    over_time: bool = False
    limit: int | None = None
    descending: bool | None = None
    ignored: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)
    """Known values read from typos or loose spelling: "gtp-4o" as gpt-4o."""
    implied_metric: Metric | None = None
    compare: bool = False
    """ "anthropic vs openai": the values named side by side, one row each."""
    metadata_key: str | None = None
    """The key of a grouping by metadata ("by metadata feature", "by feature")."""

    def add_filter(self, name: str, value: str) -> None:
        values = self.filters.setdefault(name, [])
        if value not in values:
            values.append(value)

    def add_metric(self, metric: Metric) -> None:
        if metric not in self.metrics:
            self.metrics.append(metric)


def interpret(
    question: str, timezone: str, now: datetime, known: KnownValues | KnownValuesKey
) -> Interpretation:
    """Read `question` asked in `timezone` at `now` (aware); never raises on any text."""
    key = known if isinstance(known, KnownValuesKey) else KnownValuesKey.of(known)
    index = _index(key)
    zone_name = find_zone(timezone or "UTC")
    if zone_name is None:
        return _not_understood(
            index, f"unknown time zone {timezone!r}: use an IANA name such as Europe/Paris"
        )
    text = (question or "").strip()
    if not text:
        return _not_understood(index, "the question is empty")
    if len(text) > MAX_QUESTION_CHARS:
        return _not_understood(
            index, f"the question is longer than {MAX_QUESTION_CHARS} characters"
        )
    if _HOSTILE.search(text):
        return _not_understood(index, "the question holds characters no question needs")
    notes: list[str] = []
    # 1. a time zone named in the question
    for candidate in re.findall(r"[A-Za-z][A-Za-z_]+(?:/[A-Za-z0-9_+\-]+){1,2}", text):
        found = find_zone(candidate)
        if found:
            zone_name = found
            text = text.replace(candidate, " ")
            break
    lowered = " " + text.lower() + " "
    if re.search(r"\b(?:in\s+)?(?:utc|gmt)\b", lowered):
        zone_name = "UTC"
        lowered = re.sub(r"\b(?:in\s+)?(?:utc|gmt)(?:\s+time)?\b", " ", lowered)
    tz = ZoneInfo(zone_name)
    # 2. time phrases
    time: _Time | None = None
    for kind, pattern in _TIME_PATTERNS:
        m = pattern.search(lowered)
        if m is None:
            continue
        try:
            read = _read_time(kind, m, now, tz, zone_name)
        except (_NotATime, ValueError, KeyError, StopIteration, OverflowError) as exc:
            notes.append(f"could not read the time {m.group(0).strip()!r} ({exc})")
            lowered = lowered[: m.start()] + " " + lowered[m.end() :]
            continue
        if time is None:
            time = read
        else:
            notes.append(f"a second time phrase {m.group(0).strip()!r} was ignored")
        lowered = lowered[: m.start()] + " " + lowered[m.end() :]
    # 3 and 4. known values and phrases, left to right, longest first
    tokens = _tokens(lowered)
    state = _State()
    _scan(tokens, index, state)
    if not state.metrics and not state.dimensions and not state.filters:
        reason = "no measure, grouping or known value found"
        if state.ignored:
            reason += f" (not understood: {', '.join(state.ignored)})"
        return _not_understood(index, reason, zone_name)
    content = len(state.metrics) + len(state.dimensions) + sum(map(len, state.filters.values()))
    if len(state.ignored) >= 3 and len(state.ignored) > 2 * content:
        return _not_understood(
            index, f"too many words not understood: {', '.join(state.ignored)}", zone_name
        )
    return _build(state, time, zone_name, notes, index)


def _scan(tokens: list[str], index: _Index, state: _State) -> None:
    phrases = _phrases()
    i = 0
    rank_pending = False
    while i < len(tokens):
        word = tokens[i]
        # top / bottom N
        if word in ("top", "bottom", "first", "best", "worst") or (
            word.isdigit() and i > 0 and tokens[i - 1] in ("top", "bottom")
        ):
            if word in ("top", "bottom", "worst"):
                state.descending = word != "bottom"
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            n = int(nxt) if nxt.isdigit() else NUMBER_WORDS.get(nxt)
            if n is not None and 1 <= n <= 1000:
                state.limit = n
                i += 2
                continue
            if word in ("top", "bottom"):
                state.limit = state.limit or 10
                rank_pending = True
                i += 1
                continue
        count = int(word) if word.isdigit() else NUMBER_WORDS.get(word)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if (
            count is not None
            and 1 <= count <= 1000
            and (nxt in ASCENDING_WORDS or nxt in DESCENDING_WORDS or nxt in ("most", "least"))
        ):
            state.limit = count  # "5 most expensive models", "3 cheapest"
            i += 1
            continue
        if count is not None and 1 <= count <= 1000 and i + 1 < len(tokens):
            ahead = _phrase_at(tokens, i + 1, _phrases())
            if ahead is not None and ahead.kind == "dimension":
                state.limit = count  # "which 5 users"
                i += 1
                continue
        # "by metadata feature" (any key), "by feature" (a key the workspace's events have)
        if word == "metadata" and i + 1 < len(tokens) and tokens[i + 1] not in STOPWORDS:
            _group_by_metadata(state, index, tokens[i + 1])
            i += 2
            continue
        if (
            i > 0
            and tokens[i - 1] in ("by", "per", "each")
            and squash(word) in index.metadata_keys
            and _phrase_at(tokens, i, _phrases()) is None
        ):
            _group_by_metadata(state, index, word)
            i += 1
            continue
        after_most = i > 0 and tokens[i - 1] in ("most", "least")  # "least expensive"
        if word in ("vs", "versus", "compared", "against"):
            state.compare = True
        if word in ASCENDING_WORDS and not after_most:
            state.descending = False
            rank_pending = True
        elif word in DESCENDING_WORDS and not after_most:
            state.descending = True
            rank_pending = True
        # known values: up to 3 words, exact spellings first
        matched = None
        for size in (3, 2, 1):
            if i + size > len(tokens):
                continue
            words = tokens[i : i + size]
            if size == 1 and (word in STOPWORDS or word in _NOUN_WORDS):
                continue
            if size > 1 and any(w in STOPWORDS and not w.isdigit() for w in words):
                continue
            found = _lookup(index, words, typo=False)
            if found is None:
                continue
            fld, value = found
            if size == 1 and word in COMMON_WORDS and word != value.lower():
                continue
            if size == 1 and word in COMMON_WORDS and not _beside_noun(tokens, i, fld):
                continue
            matched = (size, fld, value, False)
            break
        if matched is None:
            phrase = _phrase_at(tokens, i, phrases)
            if phrase is not None:
                i = _apply_phrase(phrase, tokens, i, state, index)
                continue
            if word not in STOPWORDS and word not in COMMON_WORDS and not word.isdigit():
                for size in (2, 1):
                    if i + size > len(tokens):
                        continue
                    words = tokens[i : i + size]
                    if any(w in STOPWORDS for w in words):
                        continue
                    found = _lookup(index, words, typo=True)
                    if found is not None:
                        matched = (size, found[0], found[1], True)
                        break
        if matched is not None:
            size, fld, value, typo = matched
            state.add_filter(fld, value)
            if typo or squash(" ".join(tokens[i : i + size])) != squash(value):
                state.matched.append(f"{' '.join(tokens[i : i + size])!r} as {value}")
            i += size
            # the value's own noun ("the sales team") is not a grouping
            if i < len(tokens) and tokens[i] in FILTER_NOUNS[fld]:
                i += 1
            continue
        if word not in STOPWORDS and not word.isdigit() and word not in _NOUN_WORDS:
            state.ignored.append(word)
        i += 1
    if rank_pending and state.limit is None and state.dimensions:
        state.limit = 1 if _asks_for_one(tokens) else 10


def _group_by_metadata(state: _State, index: _Index, word: str) -> None:
    # metadata keys are case-sensitive: the workspace's own spelling when it has the key
    state.metadata_key = index.metadata_keys.get(squash(word), word)
    if Dimension.METADATA not in state.dimensions:
        state.dimensions.append(Dimension.METADATA)


def _asks_for_one(tokens: list[str]) -> bool:
    """ "which model is the most expensive" asks for one row; "most expensive models" for a
    list."""
    return any(t in ("which", "what", "who") for t in tokens[:3]) and not any(
        t.endswith("s") and t in ("models", "providers", "users", "tools", "agents", "teams")
        for t in tokens
    )


def _beside_noun(tokens: list[str], i: int, fld: str) -> bool:
    nouns = FILTER_NOUNS[fld]
    return (i + 1 < len(tokens) and tokens[i + 1] in nouns) or (i > 0 and tokens[i - 1] in nouns)


def _phrase_at(tokens: list[str], i: int, phrases: dict[str, list[_Phrase]]) -> _Phrase | None:
    for phrase in phrases.get(tokens[i], ()):
        n = len(phrase.words)
        if tuple(tokens[i : i + n]) == phrase.words:
            return phrase
    return None


def _apply_phrase(phrase: _Phrase, tokens: list[str], i: int, state: _State, index: _Index) -> int:
    n = len(phrase.words)
    if phrase.kind == "metric":
        state.add_metric(phrase.value)
        ranked = i > 0 and tokens[i - 1] in ("most", "least")  # "least expensive"
        if not ranked and phrase.words[0] in ASCENDING_WORDS:
            state.descending = False
        elif not ranked and phrase.words[0] in DESCENDING_WORDS:
            state.descending = True
    elif phrase.kind == "dimension":
        # a dimension's noun right after a known value of its own field is that value's
        # noun ("the sales team" is the group sales, not a grouping by group)
        dim = phrase.value
        if dim not in state.dimensions:
            state.dimensions.append(dim)
    elif phrase.kind == "granularity":
        state.granularity = phrase.value
        state.over_time = True
    elif phrase.kind == "over_time":
        state.over_time = True
    elif phrase.kind == "kind":
        state.add_filter("kinds", phrase.value)
    elif phrase.kind == "error_type":
        state.add_filter("errorTypes", phrase.value)
        state.implied_metric = state.implied_metric or Metric.ERRORS
    return i + n


# ---- building the query ------------------------------------------------------------------------


def _granularity_for(seconds: float) -> Granularity:
    if seconds <= 2 * 86400:
        return Granularity.HOUR
    if seconds <= 120 * 86400:
        return Granularity.DAY
    return Granularity.WEEK


_FILTER_DIMENSIONS = {
    "models": Dimension.MODEL,
    "providers": Dimension.PROVIDER,
    "users": Dimension.USER,
    "groups": Dimension.GROUP,
    "agents": Dimension.AGENT,
    "tools": Dimension.TOOL,
    "mcpServers": Dimension.MCP_SERVER,
    "gateways": Dimension.GATEWAY,
    "kinds": Dimension.KIND,
}
_TOP_FILTER_FIELDS: dict[Dimension, str] = {
    d: f for f, d in _FILTER_DIMENSIONS.items() if d is not Dimension.KIND
}
"""Groupings whose keys an EventFilter field selects as they are (top N over time)."""
_PLURAL_DIMENSIONS = frozenset({Dimension.USER, Dimension.API_KEY, Dimension.CALLER})
_ADDITIVE = frozenset(m for m, d in METRICS.items() if d.additive)


def _build(
    state: _State, time: _Time | None, zone_name: str, notes: list[str], index: _Index
) -> Interpretation:
    metrics = list(state.metrics)
    if not metrics:
        if state.implied_metric is not None:
            metrics = [state.implied_metric]
        elif "kinds" in state.filters:
            metrics = [Metric.REQUESTS]
        else:
            metrics = [Metric.REQUESTS]
            notes.append("no measure named: counting requests")
    # errors of a kind: "failed tool calls" counts errors; the status filter is implied
    if time is None:
        time = _preset(DEFAULT_PRESET, zone_name, "the last 30 days", 30 * 86400.0)
        notes.append("no time named: the last 30 days")
    if state.compare:
        for name, values in state.filters.items():
            dim = _FILTER_DIMENSIONS.get(name)
            if dim is not None and len(values) > 1 and dim not in state.dimensions:
                state.dimensions.append(dim)
    dims = state.dimensions[:3]
    if len(state.dimensions) > 3:
        notes.append("at most 3 groupings: the first 3 are kept")
    granularity = state.granularity
    if granularity is None and state.over_time:
        granularity = _granularity_for(time.seconds)
    if Dimension.METADATA in dims and state.metadata_key is None:
        keys = ", ".join(sorted(index.metadata_keys.values())[:5])
        known_keys = f" (this workspace's events have {keys})" if keys else ""
        return _not_understood(
            index, f"a grouping by metadata needs its key: by metadata KEY{known_keys}", zone_name
        )
    query: dict[str, Any] = {"metrics": [m.value for m in metrics], "range": time.range}
    if dims:
        query["dimensions"] = [
            {"dimension": d.value}
            | ({"metadataKey": state.metadata_key} if d is Dimension.METADATA else {})
            for d in dims
        ]
    if state.filters:
        query["filter"] = {k: list(v) for k, v in state.filters.items()}
    if granularity is not None:
        query["granularity"] = granularity.value
    if state.descending is not None:
        query["orderBy"] = [{"metric": metrics[0].value, "descending": state.descending}]
    limit = state.limit
    top: TopOverTime | None = None
    if dims and granularity is not None:
        ranked_field = _TOP_FILTER_FIELDS.get(dims[0]) if len(dims) == 1 else None
        if limit is not None and ranked_field is not None:
            top = TopOverTime(limit, state.descending is not False, ranked_field)
            limit = MAX_GROUP_ROWS
        elif limit is not None:
            notes.append(
                f"top {limit} over time is read as the first {limit} rows of buckets x groups "
                "(groups are ranked over the whole range for one grouping by model, provider, "
                "user, team, agent, tool, MCP server or gateway)"
            )
        else:
            limit = MAX_GROUP_ROWS
    elif dims and limit is None and any(d in _PLURAL_DIMENSIONS for d in dims):
        limit = HIGH_CARDINALITY_ROWS
        notes.append(f"the first {HIGH_CARDINALITY_ROWS} rows")
    elif dims and limit is None and any(d in (Dimension.SESSION, Dimension.METADATA) for d in dims):
        limit = HIGH_CARDINALITY_ROWS
    if limit is not None and not dims and granularity is None:
        notes.append(f"top {limit} needs a grouping (by model, by team...): ignored")
        limit = None
        query.pop("orderBy", None)
    if limit is not None:
        query["limit"] = limit
    if state.metadata_key is not None and squash(state.metadata_key) not in index.metadata_keys:
        notes.append(f"{state.metadata_key!r} is not a metadata key of the latest events")
    if state.matched:
        notes.append("read " + ", ".join(state.matched))
    if state.ignored:
        notes.append("ignored: " + ", ".join(state.ignored))
    text = describe(query)
    kind = chart_kind(metrics, dims, granularity)
    suggestions = _close_questions(query, index) if notes else []
    return Interpretation(True, query, text, suggestions, notes, kind, top)


def chart_kind(
    metrics: list[Metric], dims: list[Dimension], granularity: Granularity | None
) -> str:
    if granularity is not None:
        if dims and len(metrics) == 1 and metrics[0] in _ADDITIVE:
            return "STACKED_AREA"
        if len(metrics) > 1 and all(m in _ADDITIVE for m in metrics) and not dims:
            return "STACKED_AREA"
        return "LINE"
    if dims and len(dims) <= 2:
        return "BAR"
    return "TABLE"


def describe(query: Mapping[str, Any]) -> str:
    """The query in words: "Cost in USD by model, this month, Europe/Paris"."""
    metrics = [METRIC_WORDS[Metric(m)].label for m in query["metrics"]]
    parts = [_and(metrics)]
    dims = [
        f"metadata {d['metadataKey']}"
        if d["dimension"] == Dimension.METADATA.value and d.get("metadataKey")
        else DIMENSION_WORDS[Dimension(d["dimension"])].label
        for d in query.get("dimensions", [])
    ]
    head = parts[0]
    if dims:
        head += " by " + " and ".join(dims)
    granularity = query.get("granularity")
    if granularity:
        head += " per " + granularity.lower()
    pieces = [head]
    order = query.get("orderBy")
    limit = query.get("limit")
    if order and limit and limit < MAX_GROUP_ROWS and not granularity:
        way = "largest" if order[0]["descending"] else "smallest"
        pieces.append(f"{way} {limit}")
    elif order:
        pieces.append("largest first" if order[0]["descending"] else "smallest first")
    for name, values in (query.get("filter") or {}).items():
        label = FILTER_LABELS.get(name, name)
        shown = [v.lower().replace("_", " ") if name in _ENUM_FILTERS else v for v in values]
        pieces.append(f"{label} {' or '.join(shown)}")
    rng = query["range"]
    pieces.append(range_words(rng))
    pieces.append(rng.get("timezone", "UTC"))
    return ", ".join(pieces)


_ENUM_FILTERS = frozenset({"kinds", "statuses", "errorTypes"})
_PRESET_WORDS = {
    "LAST_1H": "the last hour",
    "LAST_24H": "the last 24 hours",
    "LAST_7D": "the last 7 days",
    "LAST_30D": "the last 30 days",
    "LAST_90D": "the last 90 days",
    "TODAY": "today",
    "THIS_WEEK": "this week",
    "THIS_MONTH": "this month",
    "THIS_QUARTER": "this quarter",
    "THIS_YEAR": "this year",
}


def range_words(rng: Mapping[str, Any]) -> str:
    """A range in words: "this month", "2026-11-01 to 2026-11-16 (end excluded)"."""
    if rng.get("preset"):
        return _PRESET_WORDS[rng["preset"]]
    tz = ZoneInfo(rng.get("timezone", "UTC"))
    start = datetime.fromisoformat(rng["start"].replace("Z", "+00:00")).astimezone(tz)
    end = datetime.fromisoformat(rng["end"].replace("Z", "+00:00")).astimezone(tz)
    fmt = "%Y-%m-%d" if start.time() == end.time() == datetime.min.time() else "%Y-%m-%d %H:%M"
    return f"{start.strftime(fmt)} to {end.strftime(fmt)} (end excluded)"


def _and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sample(index: _Index, fld: str, fallback: str) -> str:
    values = index.samples.get(fld) or ()
    return values[0] if values else fallback


def example_questions(index_or_known: KnownValues | KnownValuesKey | None = None) -> list[str]:
    """Questions this interpreter answers, with the workspace's own values where it has them."""
    index = _index(
        KnownValuesKey.of(index_or_known)
        if isinstance(index_or_known, KnownValues)
        else index_or_known or KnownValuesKey((), ())
    )
    return _examples(index)


def _examples(index: _Index) -> list[str]:
    model = _sample(index, "models", "gpt-4o")
    group = _sample(index, "groups", "engineering")
    return [
        "cost by model this month",
        f"what did the {group} team spend on {model} this month?",
        "daily cost over the last 30 days",
        "top 5 users by tokens last week",
        "slowest models today",
        "failed tool calls by tool yesterday",
    ]


def _close_questions(query: Mapping[str, Any], index: _Index) -> list[str]:
    """Questions near an understood one that it may have meant."""
    head = _and([METRIC_WORDS[Metric(m)].label.lower() for m in query["metrics"]])
    when = range_words(query["range"]) if query["range"].get("preset") else "this month"
    out = [f"{head} by model {when}", f"{head} per day {when}", f"{head} by team {when}"]
    return [q for q in out if q] + _examples(index)[:2]


def _not_understood(index: _Index, reason: str, zone_name: str | None = None) -> Interpretation:
    return Interpretation(
        understood=False,
        query=None,
        interpretation=f"Not understood: {reason}.",
        suggestions=_examples(index),
        notes=[reason],
    )
