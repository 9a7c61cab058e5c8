"""Reads a request body with a size limit, inflating it (gzip, deflate) as it arrives."""

from __future__ import annotations

from fastapi import Request

from tallyql.ingest.body import BodyError, Inflater, compression


async def read_body(request: Request, limit: int) -> bytes:
    """The (decompressed) body; BodyError(413) past `limit` bytes, compressed or inflated,
    found as soon as the stream passes it (nothing past the limit is read or inflated)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyError(f"body of {declared} bytes exceeds the limit of {limit} bytes", 413)
    encoding = request.headers.get("content-encoding")
    chunks: list[bytes] = []
    inflater: Inflater | None = None
    size = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        size += len(chunk)
        if size > limit:
            raise BodyError(f"body exceeds the limit of {limit} bytes", 413)
        if inflater is None and not chunks and (kind := compression(chunk, encoding)):
            inflater = Inflater(limit, kind)
        if inflater is not None:
            inflater.feed(chunk)
        else:
            chunks.append(chunk)
    if inflater is not None:
        return inflater.result()
    body = b"".join(chunks)
    kind = compression(body, encoding)
    if kind:  # an empty body that says gzip or deflate: not valid
        inflater = Inflater(limit, kind)
        inflater.feed(body)
        return inflater.result()
    return body
