"""`first`/`after` on the smaller list fields (groups, budgets, alertRules): paging two at a
time walks every item the workspace made exactly once, in the order of the whole list, and
stops; a cursor from another list position resumes right after it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

MAKE = {
    "groups": (
        """mutation($n: String!) { setGroupMembers(group: $n, userIds: ["u1"]) {
             userErrors { code } } }""",
        "setGroupMembers",
        lambda n: {"n": n},
    ),
    "budgets": (
        """mutation($i: BudgetInput!) { createBudget(input: $i) { userErrors { code } } }""",
        "createBudget",
        lambda n: {"i": {"name": n, "amountUsd": 10.0}},
    ),
    "alertRules": (
        """mutation($i: AlertRuleInput!) { createAlertRule(input: $i) {
             userErrors { code } } }""",
        "createAlertRule",
        lambda n: {
            "i": {
                "name": n,
                "metric": "REQUESTS",
                "windowMinutes": 5,
                "operator": "GT",
                "threshold": 1.0,
            }
        },
    ),
}
NAMES = [f"item-{i}" for i in (3, 0, 4, 1, 2)]


def page_query(field: str) -> str:
    return f"""query($first: Int!, $after: String) {{
      {field}(first: $first, after: $after) {{
        totalCount pageInfo {{ hasNextPage endCursor }} edges {{ cursor node {{ name }} }} }} }}"""


@pytest.mark.parametrize("field", sorted(MAKE))
async def test_after_walks_every_item_once(api: Api, field: str) -> None:
    key = await api.key()
    other = await api.key(workspace="globex")
    mutation, root, variables = MAKE[field]
    for name in NAMES:
        payload = (await api.data(key, mutation, variables(name)))[root]
        assert payload["userErrors"] == [], payload
    payload = (await api.data(other, mutation, variables("not-mine")))[root]
    assert payload["userErrors"] == []

    whole = (await api.data(key, page_query(field), {"first": 50, "after": None}))[field]
    assert whole["totalCount"] == len(NAMES) and not whole["pageInfo"]["hasNextPage"]
    order = [e["node"]["name"] for e in whole["edges"]]
    assert sorted(order) == sorted(NAMES)  # each once, none of globex's

    seen: list[str] = []
    cursors: list[str] = []
    after: str | None = None
    for _ in range(len(NAMES)):  # a bound: a cursor that repeated would loop forever
        page: dict[str, Any] = (
            await api.data(key, page_query(field), {"first": 2, "after": after})
        )[field]
        assert page["totalCount"] == len(NAMES)
        seen += [e["node"]["name"] for e in page["edges"]]
        cursors += [e["cursor"] for e in page["edges"]]
        assert 0 < len(page["edges"]) <= 2
        assert len(page["edges"]) == 2 or not page["pageInfo"]["hasNextPage"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == cursors[-1]
    assert seen == order
    # any edge's cursor resumes right after that edge
    resumed = (await api.data(key, page_query(field), {"first": 50, "after": cursors[0]}))[field]
    assert [e["node"]["name"] for e in resumed["edges"]] == order[1:]
