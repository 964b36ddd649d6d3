"""One ComfyUI websocket per endpoint, shared by every prompt the harness has running there.

ComfyUI sends a prompt's events to the socket of the ``client_id`` it was submitted with, and sends
its broadcasts (``status``, ``progress_state``) to every socket: a socket per prompt would make each
of N concurrent cells read N times the traffic and pay a handshake each. Here one reader task notes,
per prompt id, when ``execution_start`` and the final ``executing`` (``node: null``) arrived, which
nodes ``execution_cached`` named and which ran (``executing``); a cell waits on its prompt's two
flags. Events that arrive before the cell knows its prompt id (a fast prompt finishing before POST
/prompt has answered) wait in the same record.

When the socket cannot be opened or dies, ``connected`` turns false and every waiter wakes: cells
then poll ``/queue`` and ``/history`` (the provider's fallback), and the next cell tries to reconnect.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import orjson

__all__ = ["EventHub", "PromptEvents"]

_RECONNECT_AFTER = 5.0
"""Seconds between attempts to open the socket after one failed."""


@dataclass
class PromptEvents:
    """What the socket told about one prompt so far."""

    started_at: float | None = None
    """Monotonic time ``execution_start`` arrived."""
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    cached: tuple[str, ...] | None = None
    """The nodes ``execution_cached`` named: served from ComfyUI's cache, not run."""
    ran: set[str] = field(default_factory=set)
    """Nodes ComfyUI sent ``executing`` for: it sends none for a cached node."""
    ended: bool = False
    """The final ``executing`` arrived, so ``ran`` saw the whole prompt (not a socket that died midway)."""


class EventHub:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, headers: Mapping[str, str] | None = None,
                 handshake_timeout: float = 5.0) -> None:
        self.client_id = uuid.uuid4().hex
        self.url = base_url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        self.connected = False
        self._prompts: dict[str, PromptEvents] = {}
        self._session = session
        """The provider's session (its connections); the provider closes it."""
        self._headers = dict(headers or {})
        self._handshake_timeout = handshake_timeout
        """Seconds the handshake may take: a server that accepts the connection and never upgrades it
        must not hold the cells that wait for this socket."""
        self._reader: asyncio.Task | None = None
        self._opening = asyncio.Lock()
        self._tried_at = float("-inf")

    async def ensure(self) -> None:
        """Open the socket unless it is open, or failed to open a moment ago."""
        async with self._opening:
            if self.connected or time.monotonic() - self._tried_at < _RECONNECT_AFTER:
                return
            self._tried_at = time.monotonic()
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    ws = await self._session.ws_connect(self.url, headers=self._headers, timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                                                        heartbeat=30.0)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return  # no websocket (a proxy in front, an older gateway, a handshake never answered): cells poll
            self.connected = True
            self._reader = asyncio.create_task(self._read(ws))

    def watch(self, prompt_id: str) -> PromptEvents:
        return self._prompts.setdefault(prompt_id, PromptEvents())

    def stuck(self, before: float) -> str | None:
        """A prompt of this client that started before ``before`` and has run no node since, unfinished: the
        sign of a ComfyUI whose prompt worker died (it answers HTTP, and executes nothing ever again)."""
        return next((prompt_id for prompt_id, events in self._prompts.items()
                     if events.started_at is not None and events.started_at < before and not events.ran
                     and not events.finished.is_set()), None)

    def forget(self, prompt_id: str) -> None:
        self._prompts.pop(prompt_id, None)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    self._note(message.data)
        finally:
            self.connected = False
            for events in self._prompts.values():  # wake every waiter: they carry on by polling
                events.started.set()
                events.finished.set()
            await ws.close()

    def _note(self, text: str) -> None:
        try:
            event = _loads(text)
            kind, data = event["type"], event.get("data") or {}
            prompt_id = data.get("prompt_id")
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if not prompt_id:
            return
        if kind == "execution_start":
            events = self.watch(prompt_id)
            events.started_at = time.monotonic()
            events.started.set()
        elif kind == "execution_cached" and isinstance(data.get("nodes"), list):
            self.watch(prompt_id).cached = tuple(str(n) for n in data["nodes"])
        elif kind == "executing" and data.get("node") is not None:
            self.watch(prompt_id).ran.add(str(data["node"]))
        # executing with node null comes after the history entry is written, on every ending.
        elif kind == "executing":
            events = self.watch(prompt_id)
            events.ended = True
            events.started.set()
            events.finished.set()

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


def _loads(text: str) -> object:
    """An event's JSON: orjson, a third of the standard library's time on ComfyUI's ~17 events per prompt
    (2.2 against 6.3 µs each, measured); json for what orjson refuses (NaN in a progress value, say).
    orjson reads integers beyond 64 bits as floats, which is harmless here: only the type, prompt id
    and node ids are read."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
