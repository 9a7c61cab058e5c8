"""Alert rules over calendar windows ("spend today > $100" in the rule's zone): the value is
measured from the local period's start to the evaluation, recomputed here from the events;
the rule fires when the day's spend crosses the threshold and resolves when a new day starts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tallyql.config import Settings
from tests.conftest import Api
from tests.support.helpers import iso, llm
from tests.support.notify_helpers import quiet_settings

PARIS = ZoneInfo("Europe/Paris")
DAY = datetime(2025, 11, 19, tzinfo=PARIS)  # local midnight, 23:00 UTC the day before
RULE = "id windowMinutes calendarWindow timezone state lastValue"
CREATE = f"""mutation($i: AlertRuleInput!) {{ createAlertRule(input: $i) {{
  alertRule {{ {RULE} }} userErrors {{ field message }} }} }}"""
UPDATE = f"""mutation($id: ID!, $i: AlertRulePatch!) {{ updateAlertRule(id: $id, input: $i) {{
  alertRule {{ {RULE} }} userErrors {{ field message }} }} }}"""
FIRINGS = """query($r: ID) { alertFirings(ruleId: $r, first: 10) { nodes {
  value windowMinutes firedAt resolvedAt resolvedValue } } }"""
SPEND = [  # (local time, cost): the first is yesterday in Paris (but today in UTC)
    (DAY - timedelta(minutes=30), 80.0),
    (DAY + timedelta(minutes=30), 60.0),
    (DAY + timedelta(hours=10), 50.0),
]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return quiet_settings(database_url, tmp_path)


def _spent_today(at: datetime) -> float:
    """The day's spend in Paris at `at`, from SPEND (the reference)."""
    midnight = at.astimezone(PARIS).replace(hour=0, minute=0, second=0, microsecond=0)
    return sum(cost for ts, cost in SPEND if midnight <= ts < at)


async def test_spend_today_fires_and_resolves_at_midnight(api: Api) -> None:
    key = await api.key()
    rule_input: dict[str, Any] = {
        "name": "spend today",
        "metric": "COST_USD",
        "calendarWindow": "TODAY",
        "timezone": "Europe/Paris",
        "operator": "GT",
        "threshold": 100,
        "cooldownMinutes": 0,
    }
    made = (await api.data(key, CREATE, {"i": rule_input}))["createAlertRule"]
    assert made["userErrors"] == []
    rule = made["alertRule"]
    assert (rule["calendarWindow"], rule["timezone"], rule["windowMinutes"]) == (
        "TODAY",
        "Europe/Paris",
        1440,
    )
    events = [llm(f"e{i}", timestamp=iso(ts), cost_usd=c) for i, (ts, c) in enumerate(SPEND)]
    assert (await api.ingest(key, events))["accepted"] == 3
    assert api.services.live is not None
    alerts = api.services.live.alerts
    one = f"query($id: ID!) {{ alertRule(id: $id) {{ {RULE} }} }}"

    morning = DAY + timedelta(hours=9)
    await alerts.evaluate_all(morning)
    seen = (await api.data(key, one, {"id": rule["id"]}))["alertRule"]
    assert (seen["state"], seen["lastValue"]) == ("OK", _spent_today(morning)) == ("OK", 60.0)

    later = DAY + timedelta(hours=10, minutes=30)
    await alerts.evaluate_all(later)
    seen = (await api.data(key, one, {"id": rule["id"]}))["alertRule"]
    assert (
        (seen["state"], seen["lastValue"])
        == ("FIRING", _spent_today(later))
        == (
            "FIRING",
            110.0,
        )
    )
    (fired,) = (await api.data(key, FIRINGS, {"r": rule["id"]}))["alertFirings"]["nodes"]
    assert (fired["value"], fired["windowMinutes"]) == (110.0, 630)  # since local midnight

    next_day = DAY + timedelta(days=1, minutes=10)
    await alerts.evaluate_all(next_day)
    (ended,) = (await api.data(key, FIRINGS, {"r": rule["id"]}))["alertFirings"]["nodes"]
    assert ended["resolvedAt"] is not None and ended["resolvedValue"] == 0.0

    # a trailing window replaces the calendar one, and back
    trailing = await api.data(key, UPDATE, {"id": rule["id"], "i": {"windowMinutes": 60}})
    got = trailing["updateAlertRule"]["alertRule"]
    assert (got["calendarWindow"], got["windowMinutes"]) == (None, 60)
    back = await api.data(key, UPDATE, {"id": rule["id"], "i": {"calendarWindow": "THIS_MONTH"}})
    got = back["updateAlertRule"]["alertRule"]
    assert (got["calendarWindow"], got["windowMinutes"]) == ("THIS_MONTH", 44640)


async def test_calendar_rules_are_checked(api: Api) -> None:
    key = await api.key()
    base = {"name": "r", "metric": "COST_USD", "operator": "GT", "threshold": 1}

    async def error(**fields: Any) -> dict[str, str]:
        payload = (await api.data(key, CREATE, {"i": {**base, **fields}}))["createAlertRule"]
        assert payload["alertRule"] is None
        (found,) = payload["userErrors"]
        return found

    assert (await error())["field"] == "windowMinutes"
    both = await error(windowMinutes=60, calendarWindow="TODAY")
    assert both["field"] == "calendarWindow"
    assert (await error(calendarWindow="TODAY", timezone="Mars/Olympus"))["field"] == "timezone"
