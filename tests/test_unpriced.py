"""Unpriced events are counted, not hidden: an image or audio model that genai-prices' bundled
data prices per image, audio hour or character (or not at all) is stored unpriced, and the
overview, costInsights and the cost exports say how many events and which models."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from tests.conftest import Api
from tests.support.helpers import event_rows, llm, workspace_id_of

# (id, provider, model, tokens, cost source), written from the bundled data by hand:
# dall-e-3 is not in it; whisper-1 has only audio-hour rates and tts-1 only a per-character
# rate; gpt-image-1 has per-token rates; a ":free" model has no rates at all (free).
EVENTS: list[tuple[str, str, str, int, str]] = [
    ("img1", "openai", "dall-e-3", 0, "unpriced"),
    ("img2", "openai", "dall-e-3", 0, "unpriced"),
    ("img3", "openai", "dall-e-3", 0, "unpriced"),
    ("asr1", "openai", "whisper-1", 0, "unpriced"),
    ("asr2", "openai", "whisper-1", 100, "unpriced"),
    ("tts1", "openai", "tts-1", 40, "unpriced"),
    ("gi1", "openai", "gpt-image-1", 1000, "computed"),
    ("free1", "openrouter", "qwq-32b:free", 1000, "computed"),
    ("chat1", "openai", "gpt-4o", 1000, "computed"),
]
# the filter below (providers: openai) leaves out the free model
WANT_MODELS = [("openai", "dall-e-3", 3), ("openai", "whisper-1", 2), ("openai", "tts-1", 1)]

QUERY = """query($r: TimeRangeInput!, $f: EventFilter) {
  overview(range: $r, filter: $f) { costUsd unpricedEvents
    unpricedModels { provider model events } }
  costInsights(range: $r, filter: $f) { totalUsd
    unpriced { events modelCount models { provider model events } } }
}"""


def _events() -> list[dict[str, Any]]:
    out = []
    for event_id, provider, model, tokens, _ in EVENTS:
        out.append(
            llm(
                event_id,
                provider=provider,
                model=model,
                input_tokens=tokens,
                output_tokens=0,
                request_type="image" if "im" in event_id else "audio",
            )
        )
    return out


async def test_unpriced_events_are_stored_and_reported(api: Api) -> None:
    key = await api.key()
    assert (await api.ingest(key, _events()))["accepted"] == len(EVENTS)
    rows = await event_rows(api.services, await workspace_id_of(api.services, key))
    by_id = {r["id"]: r for r in rows}
    for event_id, _, _, _, source in EVENTS:
        assert by_id[event_id]["cost_source"] == source, event_id
        if source == "unpriced":
            assert by_id[event_id]["cost_nanousd"] == 0
    assert by_id["gi1"]["cost_nanousd"] > 0 and by_id["free1"]["cost_nanousd"] == 0

    variables = {"r": {"preset": "LAST_24H"}, "f": {"providers": ["openai"]}}
    data = await api.data(key, QUERY, variables)
    want = [{"provider": p, "model": m, "events": n} for p, m, n in WANT_MODELS]
    assert data["overview"]["unpricedEvents"] == 6
    assert data["overview"]["unpricedModels"] == want
    assert data["costInsights"]["unpriced"] == {"events": 6, "modelCount": 3, "models": want}
    # a filter that excludes unpriced events finds none; one that only asks for them, all
    priced = {"r": {"preset": "LAST_24H"}, "f": {"costSources": ["COMPUTED"]}}
    data = await api.data(key, QUERY, priced)
    assert data["overview"]["unpricedEvents"] == 0
    assert data["costInsights"]["unpriced"] == {"events": 0, "modelCount": 0, "models": []}
    only = {"r": {"preset": "LAST_24H"}, "f": {"costSources": ["UNPRICED"]}}
    assert (await api.data(key, QUERY, only))["overview"]["unpricedEvents"] == 6

    for dataset, extra in (
        ("requests", {}),
        ("breakdown", {"dimension": "MODEL", "metrics": "COST_USD"}),
        ("timeseries", {"metrics": "COST_USD", "granularity": "HOUR"}),
    ):
        response = await api.client.get(
            f"/v1/export/{dataset}",
            params={"preset": "LAST_24H", "providers": "openai", **extra},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
        assert response.headers["X-Tallyql-Unpriced-Events"] == "6"
        models = [
            tuple(unquote(part) for part in pair.split("/"))
            for pair in response.headers["X-Tallyql-Unpriced-Models"].split(",")
        ]
        assert models == [(p, m) for p, m, _ in WANT_MODELS]
    response = await api.client.get(
        "/v1/export/audit-events",
        params={"preset": "LAST_24H"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert "X-Tallyql-Unpriced-Events" not in response.headers  # no costs in it
