"""OpenRouter's account API, read with a workspace's key: activity (per date, model and
endpoint), credits, and the key's own usage and limit. Errors say what happened in our own
words (the remote body is never kept: it could echo the key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_SECONDS = 30.0


class ProviderError(Exception):
    """OpenRouter could not be read."""


@dataclass(frozen=True)
class Credits:
    total_credits_usd: float
    total_usage_usd: float


@dataclass(frozen=True)
class KeyInfo:
    label: str | None
    usage_usd: float
    limit_usd: float | None
    limit_remaining_usd: float | None
    is_free_tier: bool


class OpenRouterClient:
    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    async def _get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, trust_env=False) as client:
                answer = await client.get(self.base_url + path, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderError(f"OpenRouter could not be reached ({type(exc).__name__})") from None
        if answer.status_code != 200:
            raise ProviderError(f"OpenRouter answered {answer.status_code} to GET {path}")
        try:
            return answer.json()
        except ValueError:
            raise ProviderError(f"OpenRouter's answer to GET {path} is not JSON") from None

    async def activity(self) -> Any:
        """The last 30 completed UTC days, as the import takes them."""
        return await self._get("/activity")

    async def credits(self) -> Credits:
        data = _data(await self._get("/credits"))
        return Credits(_usd(data.get("total_credits")), _usd(data.get("total_usage")))

    async def key(self) -> KeyInfo:
        data = _data(await self._get("/key"))
        limit = data.get("limit")
        remaining = data.get("limit_remaining")
        return KeyInfo(
            label=data.get("label") if isinstance(data.get("label"), str) else None,
            usage_usd=_usd(data.get("usage")),
            limit_usd=None if limit is None else _usd(limit),
            limit_remaining_usd=None if remaining is None else _usd(remaining),
            is_free_tier=bool(data.get("is_free_tier")),
        )


def _data(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ProviderError('OpenRouter\'s answer has no "data" object')
    return body["data"]


def _usd(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderError("OpenRouter's answer holds a figure that is not a number")
    return float(value)
