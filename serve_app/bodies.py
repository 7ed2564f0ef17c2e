"""Request bodies: read with a size bound (chunked bodies carry no length), and pydantic's
validation errors as one 400."""

from __future__ import annotations

from fastapi import Request
from pydantic import ValidationError

from .errors import BadRequest, PayloadTooLarge


async def read_bounded(request: Request, ceiling: int) -> bytes:
    """Read the body once, refusing it as soon as it passes ``ceiling``; Starlette's ``form()`` and
    ``body()`` then read the cached bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > ceiling:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {ceiling}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > ceiling:
            raise PayloadTooLarge(f"request body passed {ceiling} bytes, the limit")
        chunks.append(chunk)
    request._body = b"".join(chunks)  # Starlette's own cache of the body
    return request._body


def bad_request(exc: ValidationError) -> BadRequest:
    problems = (f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
    return BadRequest("; ".join(problems))
