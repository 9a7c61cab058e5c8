"""Webhook signatures.

Each delivery is a JSON POST with these headers:
- `X-Tallyql-Timestamp`: Unix seconds when the attempt was sent;
- `X-Tallyql-Signature`: `t=<timestamp>,v1=<hex>` where `<hex>` is
  HMAC-SHA256(key = the webhook's secret, message = `<timestamp>` + "." + the raw body);
- `X-Tallyql-Event`: the event type; `X-Tallyql-Delivery`: the delivery id (the same for
  every retry, so receivers can drop duplicates).
A receiver recomputes the HMAC over the exact bytes it received and compares in constant
time, and refuses timestamps far from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Tallyql-Timestamp"
SIGNATURE_HEADER = "X-Tallyql-Signature"
EVENT_HEADER = "X-Tallyql-Event"
DELIVERY_HEADER = "X-Tallyql-Delivery"
DEFAULT_TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when `header` signs `body` with `secret` and its timestamp is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(parts.get("v1", ""), signature(secret, timestamp, body))
