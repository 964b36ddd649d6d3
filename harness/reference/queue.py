"""The prompt queue and history of the reference endpoint: ComfyUI 0.3.64's ``execution.PromptQueue``.

Pending prompts form a min-heap on ``(number, prompt_id)``, so "front" (a negated number) jumps ahead;
history is an insertion-ordered dict of at most 10000 entries, in memory only.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import itertools
from collections.abc import Callable
from typing import Any

__all__ = ["PromptQueue", "QueueItem"]

QueueItem = tuple
"""``(number, prompt_id, prompt, extra_data, outputs_to_execute)``, as /queue lists it."""

MAXIMUM_HISTORY_SIZE = 10000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


class PromptQueue:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self.on_change = on_change
        """Called after every change; the server broadcasts a ``status`` event from it."""
        self._heap: list[tuple[float, str, int, QueueItem]] = []
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self.running: dict[int, QueueItem] = {}
        self.history: dict[str, dict] = {}

    @property
    def remaining(self) -> int:
        return len(self._heap) + len(self.running)

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, (item[0], item[1], next(self._seq), item))
        self._ready.set()
        self.on_change()

    async def get(self) -> tuple[int, QueueItem]:
        while not self._heap:
            self._ready.clear()
            await self._ready.wait()
        *_, item = heapq.heappop(self._heap)
        item_id = next(self._seq)
        self.running[item_id] = item
        self.on_change()
        return item_id, item

    def task_done(self, item_id: int, result: dict, status: dict) -> None:
        item = self.running.pop(item_id)
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            item[3].pop(key, None)
        self.history[item[1]] = {"prompt": list(item), "outputs": {}, "status": status, **result}
        self.on_change()

    def current(self) -> tuple[list[QueueItem], list[QueueItem]]:
        """``(queue_running, queue_pending)``; pending in heap order, as ComfyUI returns it."""
        return copy.deepcopy(list(self.running.values())), copy.deepcopy([entry[3] for entry in self._heap])

    def is_running(self, prompt_id: str) -> bool:
        return any(item[1] == prompt_id for item in self.running.values())

    def wipe(self) -> None:
        self._heap.clear()
        self.on_change()

    def delete(self, prompt_id: Any) -> None:
        for index, entry in enumerate(self._heap):
            if entry[1] == prompt_id:
                self._heap.pop(index)
                heapq.heapify(self._heap)
                self.on_change()
                return

    def get_history(self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1) -> dict:
        if prompt_id is not None:
            return {prompt_id: copy.deepcopy(self.history[prompt_id])} if prompt_id in self.history else {}
        out: dict[str, Any] = {}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        for index, key in enumerate(self.history):
            if index >= offset:
                out[key] = copy.deepcopy(self.history[key])
                if max_items is not None and len(out) >= max_items:
                    break
        return out
