"""The reference endpoint's prompt worker: runs queued prompts node by node and reports like ComfyUI
0.3.64's ``main.prompt_worker`` and ``execution.PromptExecutor`` (events, history entry, caching).

Event order per prompt, as recorded in fixtures/captures/stock/ws_run_*.json: ``execution_start``,
``execution_cached``, then per node ``progress_state`` running → ``executing`` → [``executed``] →
``progress_state`` finished, then ``execution_success`` / ``execution_error`` /
``execution_interrupted``, the queue's ``status`` and a final ``executing`` with ``node: null``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from harness.catalogue import Catalogue
from harness.reference.cache import NodeCache
from harness.reference.failures import Interrupted, NodeFailure
from harness.reference.hub import Hub
from harness.reference.nodes import NodeCall, format_value, run_node
from harness.reference.order import ExecutionOrder
from harness.reference.profile import Profile
from harness.reference.queue import PromptQueue
from harness.reference.storage import Storage

__all__ = ["Executor"]


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Run:
    """The state of one prompt's execution (``PromptExecutor.execute_async``'s locals)."""

    def __init__(self, prompt_id: str, prompt: Mapping[str, Any], extra_data: Mapping[str, Any]) -> None:
        self.prompt_id = prompt_id
        self.prompt = prompt
        self.extra_data = extra_data
        self.client_id: str | None = extra_data.get("client_id")
        self.messages: list[list] = []
        self.progress: dict[str, dict] = {}
        self.executed: list[str] = []


class Executor:
    def __init__(self, profile: Profile, catalogue: Catalogue, storage: Storage, queue: PromptQueue, hub: Hub) -> None:
        self.profile = profile
        self.catalogue = catalogue
        self.storage = storage
        self.queue = queue
        self.hub = hub
        self.cache = NodeCache()
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self._interrupted = asyncio.Event()

    def interrupt(self) -> None:
        """``nodes.interrupt_processing()``: the running node stops; the flag is cleared by the next prompt."""
        self._interrupted.set()

    async def run_forever(self) -> None:
        while True:
            item_id, (_, prompt_id, prompt, extra_data, outputs) = await self.queue.get()
            run = _Run(prompt_id, prompt, extra_data)
            result, status = await self._execute(run, outputs)
            self.queue.task_done(item_id, result, status)
            if self.client_id is not None:
                self.hub.send("executing", {"node": None, "prompt_id": prompt_id}, self.client_id)

    def _add_message(self, run: _Run, event: str, data: dict, broadcast: bool = False) -> None:
        data = {**data, "timestamp": _now_ms()}
        run.messages.append([event, data])
        if run.client_id is not None or broadcast:
            self.hub.send(event, data, run.client_id)

    def _progress(self, run: _Run, node_id: str, state: str) -> None:
        run.progress[node_id] = {
            "value": 1.0 if state == "finished" else 0.0,
            "max": 1.0,
            "state": state,
            "node_id": node_id,
            "prompt_id": run.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }
        nodes = {k: dict(v) for k, v in run.progress.items()}
        self.hub.send("progress_state", {"prompt_id": run.prompt_id, "nodes": nodes})

    async def _execute(self, run: _Run, outputs: list[str]) -> tuple[dict, dict]:
        self._interrupted.clear()
        self.client_id = run.client_id
        self._add_message(run, "execution_start", {"prompt_id": run.prompt_id})
        self.cache.set_prompt(run.prompt, self.storage)
        cached = [node_id for node_id in run.prompt if self.cache.outputs(node_id) is not None]
        self._add_message(run, "execution_cached", {"nodes": cached, "prompt_id": run.prompt_id})
        order = ExecutionOrder(run.prompt, self.catalogue, lambda node_id: self.cache.outputs(node_id) is not None)
        for node_id in outputs:
            order.add_node(node_id)
        success = True
        while order:
            node_id = order.next_node()
            if not await self._execute_node(run, node_id):
                success = False
                break
            order.complete(node_id)
        else:
            self._add_message(run, "execution_success", {"prompt_id": run.prompt_id})
        entries = self.cache.ui_entries(run.prompt)
        self.last_node_id = None
        result = {"outputs": {k: e["output"] for k, e in entries}, "meta": {k: e["meta"] for k, e in entries}}
        return result, {"status_str": "success" if success else "error", "completed": success, "messages": run.messages}

    async def _execute_node(self, run: _Run, node_id: str) -> bool:
        """Run one node (or replay it from the cache); False when the prompt must stop."""
        class_type = run.prompt[node_id]["class_type"]
        cached = self.cache.outputs(node_id)
        if cached is not None:
            if run.client_id is not None:
                ui = self.cache.ui(node_id, class_type) or {}
                self.hub.send("executed", {"node": node_id, "display_node": node_id, "output": ui.get("output"), "prompt_id": run.prompt_id}, run.client_id)
            self._progress(run, node_id, "finished")
            return True
        self._progress(run, node_id, "running")
        node = self.catalogue[class_type]
        inputs = self._input_data(run.prompt[node_id]["inputs"], node.inputs)
        if run.client_id is not None:
            self.last_node_id = node_id
            self.hub.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}, run.client_id)
        call = NodeCall(node_id, node, inputs, self.storage, run.prompt, run.extra_data)
        try:
            await self._work(self.profile.seconds_for(class_type))
            rule = self.profile.failure_for(class_type)
            if rule is not None:
                raise NodeFailure(rule.exception_type, rule.exception_message)
            outputs, ui = await asyncio.to_thread(run_node, call) if node.output_node else run_node(call)
        except Interrupted:
            data = {"prompt_id": run.prompt_id, "node_id": node_id, "node_type": class_type, "executed": list(run.executed)}
            self._add_message(run, "execution_interrupted", data, broadcast=True)
            return False
        except NodeFailure as failure:
            self._add_message(run, "execution_error", {
                "prompt_id": run.prompt_id,
                "node_id": node_id,
                "node_type": class_type,
                # ComfyUI lists these two from sets; the reference keeps run and prompt order.
                "executed": list(run.executed),
                "exception_message": f"{failure.message}\n",
                "exception_type": failure.exception_type,
                "traceback": failure.traceback,
                "current_inputs": {name: [format_value(value)] for name, value in inputs.items()},
                "current_outputs": list(run.prompt),
            })
            return False
        if ui:
            meta = {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
            self.cache.store_ui(node_id, class_type, {"meta": meta, "output": ui})
            if run.client_id is not None:
                self.hub.send("executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": run.prompt_id}, run.client_id)
        self.cache.store(node_id, outputs)
        self._progress(run, node_id, "finished")
        run.executed.append(node_id)
        return True

    def _input_data(self, given: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
        """``get_input_data``: declared inputs present in the prompt, links resolved to upstream outputs.

        Hidden inputs (PROMPT, EXTRA_PNGINFO, ...) are left out, so ``current_inputs`` lacks them.
        """
        data: dict[str, Any] = {}
        for name in declared:
            if name not in given:
                continue
            value = given[name]
            if isinstance(value, list) and len(value) == 2:
                upstream = self.cache.outputs(value[0]) or ()
                value = upstream[value[1]] if value[1] < len(upstream) else None
            data[name] = value
        return data

    async def _work(self, seconds: float) -> None:
        """The node's run time; POST /interrupt cuts it short as sampler steps do on a real server."""
        if self._interrupted.is_set():
            raise Interrupted
        try:
            await asyncio.wait_for(self._interrupted.wait(), seconds)
        except TimeoutError:
            return
        raise Interrupted
