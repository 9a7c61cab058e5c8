from __future__ import annotations

from tests.conftest import Api


async def test_ingest_and_read_back(api: Api) -> None:
    key = await api.key()
    result = await api.ingest(
        key,
        [
            {
                "id": "e1",
                "timestamp": "2026-11-20T10:00:00Z",
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": 1000,
                "output_tokens": 100,
                "request": {"messages": [{"role": "user", "content": "hi"}]},
            }
        ],
    )
    assert result == {"accepted": 1, "duplicates": 0, "rejected": 0, "errors": []}
    data = await api.data(
        key,
        "{ me { workspace role }"
        " requests { totalCount nodes { id costUsd payload { request } } } }",
    )
    assert data["me"] == {"workspace": "acme", "role": "admin"}
    assert data["requests"]["totalCount"] == 1
    node = data["requests"]["nodes"][0]
    assert node["costUsd"] == 0.0035
    assert node["payload"]["request"]["messages"][0]["content"] == "hi"
