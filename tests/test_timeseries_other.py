"""timeseries' top groups plus an "other" series, on dimensions whose values are not text
(booleans, local hours and weekdays): PostgreSQL refused the folding CASE that mixed them with
a text sentinel (INTERNAL_ERROR)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from tests.conftest import Api
from tests.support.helpers import iso, llm

QUERY = """
query($group: Dimension!) {
  timeseries(metrics: [REQUESTS], range: {preset: LAST_7D}, granularity: WEEK,
             groupBy: $group, limitGroups: 1) {
    series { group isOther values }
  }
}
"""


async def test_top_group_and_other_of_non_text_dimensions(api: Api) -> None:
    key = await api.key()
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=2)
    events = []
    # BYOK: 5 true, 2 false; hours: 4 in one hour, 2 in another, 1 in a third
    for i, (byok, hour_offset) in enumerate([(True, 0)] * 4 + [(True, 1), (False, 1), (False, 2)]):
        at = base + timedelta(hours=hour_offset, minutes=i)
        events.append(llm(f"e{i}", timestamp=iso(at), is_byok=byok))
    await api.ingest(key, events)

    def totals(series: list[dict]) -> dict[tuple[str | None, bool], int]:
        return {(s["group"], s["isOther"]): round(sum(v or 0 for v in s["values"])) for s in series}

    byok = (await api.data(key, QUERY, {"group": "BYOK"}))["timeseries"]["series"]
    assert totals(byok) == {("true", False): 5, (None, True): 2}

    hours = Counter((base + timedelta(hours=h)).hour for h in [0] * 4 + [1, 1, 2])
    top_hour, top_count = hours.most_common(1)[0]
    by_hour = (await api.data(key, QUERY, {"group": "HOUR_OF_DAY"}))["timeseries"]["series"]
    assert totals(by_hour) == {(str(top_hour), False): top_count, (None, True): 7 - top_count}

    days = Counter(
        (base + timedelta(hours=h, minutes=i)).weekday() for i, h in enumerate([0] * 4 + [1, 1, 2])
    )
    by_day = (await api.data(key, QUERY, {"group": "DAY_OF_WEEK"}))["timeseries"]["series"]
    top_day, top_day_count = days.most_common(1)[0]
    expected = {(str(top_day), False): top_day_count}
    if len(days) > 1:
        expected[(None, True)] = 7 - top_day_count
    assert totals(by_day) == expected
