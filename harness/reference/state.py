"""Everything one running reference endpoint holds: its profile, catalogue, files, queue, websocket hub
and executor, shared by the route handlers through the aiohttp application.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web

from harness.comfy.modelfiles import INPUT_FOLDER
from harness.reference.executor import Executor
from harness.reference.hub import Hub
from harness.reference.objectinfo import object_info
from harness.reference.profile import Profile
from harness.reference.queue import PromptQueue
from harness.reference.storage import Storage

__all__ = ["STATE", "ServerState"]


class ServerState:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.catalogue = profile.catalogue()
        self.storage = Storage(profile.inputs, output_megabytes=profile.output_megabytes)
        self.hub = Hub(self.queue_info, lambda sid: self.executor.executing_now(sid))
        self.queue = PromptQueue(self.hub.queue_updated)
        self.executor = Executor(profile, self.catalogue, self.storage, self.queue, self.hub)
        self.number = 0
        """``PromptServer.number``: the priority given to the next prompt that brings none."""
        self._worker = asyncio.create_task(self.executor.run_forever())
        self._object_info: tuple[Any, dict] | None = None
        self._rate_limited_rng = profile.rng("rate_limited")

    def rate_limited(self) -> bool:
        """Whether the front proxy refuses this submission (the profile's ``inject.rate_limited``)."""
        rate = self.profile.inject.rate_limited
        return rate > 0 and self._rate_limited_rng.random() < rate

    def too_many_requests(self) -> web.Response:
        """An overloaded reverse proxy's 429: plain text, with Retry-After (ComfyUI never sends 429)."""
        return web.Response(status=429, text="429 Too Many Requests\n",
                            headers={"Retry-After": str(self.profile.inject.retry_after)})

    def queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": self.queue.remaining}}

    def files(self) -> dict[str, list[str]]:
        """Model files per folder and the files of input/, output/ and temp/, for validation."""
        return {**{k: list(v) for k, v in self.profile.models.items()}, **self.storage.listing()}

    def object_info(self) -> dict:
        # Only the input folder's files change it (the models are the profile's): outputs saved since
        # the last read neither cost a look nor a rebuild.
        key = frozenset(self.storage.listing()[INPUT_FOLDER])
        if self._object_info is None or self._object_info[0] != key:
            self._object_info = (key, object_info(self.catalogue, self.files()))
        return self._object_info[1]

    async def close(self) -> None:
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        await self.hub.close()
        self.executor.close()
        self.storage.close()


STATE = web.AppKey("state", ServerState)
