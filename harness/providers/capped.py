"""Bounded replies: the most the harness reads of one reply, and of one output it saves.

Deadlines bound how long an endpoint is listened to, not how much it sends: over loopback or a fast
link an endless /history or /view would fill the harness's memory or the disk before its deadline.
The bounds are the endpoint's ``limits:`` (endpoints.yaml); past one the reply is cut off and the cell
says so (``protocol_error``, see ``transport_failures``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

__all__ = ["CappedTransport", "ReplyTooLarge", "capped"]


class ReplyTooLarge(Exception):
    """A reply or download went past its bound; ``setting`` names the endpoints.yaml key that sets it."""

    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(f"more than {limit / (1 << 20):g} MB, the most the harness reads "
                         f"(limits.{setting} in endpoints.yaml)")
        self.limit = limit
        self.setting = setting


async def capped(chunks: AsyncIterator[bytes], limit: int, setting: str, declared: int | None = None) -> AsyncIterator[bytes]:
    """``chunks`` as they come, ReplyTooLarge once they add up past ``limit`` (at once when the reply's
    Content-Length, ``declared``, says it will)."""
    if declared is not None and declared > limit:
        raise ReplyTooLarge(limit, setting)
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ReplyTooLarge(limit, setting)
        yield chunk


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int, setting: str, declared: int | None) -> None:
        self._inner, self._limit, self._setting, self._declared = inner, limit, setting, declared

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in capped(self._inner, self._limit, self._setting, self._declared):
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, each reply's body (as received) bounded by ``limit`` bytes, the endpoint's
    ``limits.<setting>``."""

    def __init__(self, limit: int, setting: str = "reply_mb", **options) -> None:
        self._inner = httpx.AsyncHTTPTransport(**options)
        self._limit, self._setting = limit, setting

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        length = response.headers.get("Content-Length", "")
        response.stream = _CappedStream(response.stream, self._limit, self._setting, int(length) if length.isdigit() else None)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
