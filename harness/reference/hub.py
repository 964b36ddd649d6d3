"""The websocket side of the reference endpoint: ``GET /ws?clientId=`` and event delivery.

Like ComfyUI's ``PromptServer``, events are queued and sent by one publisher task, so they leave in
the order the executor produced them; an event with a sid goes to that socket only, without one to all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["FEATURES", "Hub"]

FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
"""``GET /features`` and the websocket ``feature_flags`` reply (fixtures/captures/stock/features.json)."""


class Hub:
    def __init__(self, queue_info: Callable[[], dict], executing_now: Callable[[str], str | None]) -> None:
        self.queue_info = queue_info
        """The ``status`` payload: ``{"exec_info": {"queue_remaining": N}}``."""
        self.executing_now = executing_now
        """The node the running prompt of a client (by sid) is at, for a client that reconnects mid-run."""
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._messages: asyncio.Queue[tuple[str, dict, str | None]] = asyncio.Queue()
        self._publisher = asyncio.create_task(self._publish())

    def send(self, event: str, data: dict, sid: str | None = None) -> None:
        self._messages.put_nowait((event, data, sid))

    def queue_updated(self) -> None:
        self.send("status", {"status": self.queue_info()})

    async def _publish(self) -> None:
        while True:
            event, data, sid = await self._messages.get()
            targets = list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
            if not targets:
                continue
            # Serialised once however many sockets a broadcast goes to (progress_state, status).
            text = json.dumps({"type": event, "data": data})
            for ws in targets:
                await _send_text(ws, text)

    async def close(self) -> None:
        self._publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._publisher
        for ws in list(self.sockets.values()):
            await ws.close()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "") or uuid.uuid4().hex
        self.sockets[sid] = ws
        try:
            await _send(ws, "status", {"status": self.queue_info(), "sid": sid})
            last_node = self.executing_now(sid)
            if last_node is not None:
                await _send(ws, "executing", {"node": last_node})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    with contextlib.suppress(ValueError, AttributeError):
                        if json.loads(msg.data).get("type") == "feature_flags":
                            await _send(ws, "feature_flags", FEATURES)
        finally:
            # quirk: ComfyUI pops by sid, so a socket that was replaced by a reconnect unroutes the new one.
            self.sockets.pop(sid, None)
        return ws


async def _send(ws: web.WebSocketResponse, event: str, data: Any) -> None:
    await _send_text(ws, json.dumps({"type": event, "data": data}))


async def _send_text(ws: web.WebSocketResponse, text: str) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(text)
