"""Reads a request body with a size limit, gunzipping it when needed."""

from __future__ import annotations

from fastapi import Request

from tallyql.ingest.body import BodyError, decompress


async def read_body(request: Request, limit: int) -> bytes:
    """The (decompressed) body; BodyError(413) past `limit` bytes, before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(f"body of {declared} bytes exceeds the limit of {limit} bytes", 413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(f"body exceeds the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return decompress(b"".join(chunks), request.headers.get("content-encoding"), limit)
