"""The reference endpoint's prompt worker: runs queued prompts node by node and reports like ComfyUI
0.3.64's ``main.prompt_worker`` and ``execution.PromptExecutor`` (events, history entry, caching).

Event order per prompt, as recorded in fixtures/captures/stock/ws_run_*.json: ``execution_start``,
``execution_cached``, then per node ``progress_state`` running → ``executing`` → [``executed``] →
``progress_state`` finished, then ``execution_success`` / ``execution_error`` /
``execution_interrupted``, the queue's ``status`` and a final ``executing`` with ``node: null``.

``capacity`` (profile) sets how many prompt workers take prompts from the queue. With 1, the default,
this is ComfyUI: one worker, prompts one at a time in queue order, the node cache kept between prompts
(classic, or LRU with the profile's ``cache_lru``).
With N > 1 (modelling N GPUs behind one queue) each worker runs its prompt with a fresh cache, i.e.
without caching between prompts: a shared cache would have concurrent prompts evict each other's
entries (``clean_unused`` drops what the *current* prompt does not name), and a per-worker cache would
make ``execution_cached`` depend on which worker happened to take a prompt. Without it every prompt does
all of its work, so timings and injected failures are the same whatever the scheduling.
POST /interrupt without a prompt_id interrupts every running prompt, with one only that prompt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import time
from collections.abc import Mapping
from typing import Any

from harness.comfy.catalogue import Catalogue
from harness.comfy.dynamic import node_inputs
from harness.reference.cache import NodeCache
from harness.reference.failures import Interrupted, NodeFailure
from harness.reference.hub import Hub
from harness.reference.nodes import NodeCall, format_value, run_node
from harness.reference.order import ExecutionOrder, NodeNotFound
from harness.reference.profile import Profile
from harness.reference.queue import PromptQueue
from harness.reference.storage import Storage

__all__ = ["Executor", "Worker"]


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
        self.fail_next: bool = False
        """An injected execution error strikes the next node that runs."""
        self.node_seconds: float | None = None
        """Per-node seconds from the profile's latency draw; None: the profile's node/class seconds."""


class Worker:
    """One prompt worker: ComfyUI's ``prompt_worker`` with its executor's per-prompt state."""

    def __init__(self, index: int, cache: NodeCache | None) -> None:
        self.index = index
        self.persistent_cache = cache
        self.cache = cache or NodeCache()
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.prompt_id: str | None = None
        self.interrupted = asyncio.Event()


class Executor:
    def __init__(self, profile: Profile, catalogue: Catalogue, storage: Storage, queue: PromptQueue, hub: Hub) -> None:
        self.profile = profile
        self.catalogue = catalogue
        self.storage = storage
        self.queue = queue
        self.hub = hub
        shared_cache = profile.capacity == 1
        self.workers = [Worker(i, NodeCache(profile.cache_lru) if shared_cache else None) for i in range(profile.capacity)]
        self._latency_rng = profile.rng("latency")
        # Output nodes write files off the event loop, one thread per prompt slot: asyncio's default
        # pool (6 threads on 2 cores) would queue the saves of 16 prompts finishing together.
        self._savers = concurrent.futures.ThreadPoolExecutor(max_workers=profile.capacity, thread_name_prefix="reference-save")
        self._error_rng = profile.rng("execution_error")

    @property
    def cache(self) -> NodeCache:
        """The first worker's cache (the only one at capacity 1)."""
        return self.workers[0].cache

    def close(self) -> None:
        """Stop the save threads (a save under way finishes first: its file must not be half-written)."""
        self._savers.shutdown(wait=True)

    def interrupt(self, prompt_id: str | None = None) -> None:
        """``nodes.interrupt_processing()``: the running node stops; the flag is cleared by the next prompt.

        Without a prompt_id every worker's flag is set (ComfyUI's single global flag at capacity 1).
        """
        for worker in self.workers:
            if prompt_id is None or worker.prompt_id == prompt_id:
                worker.interrupted.set()

    def executing_now(self, sid: str) -> str | None:
        """The node a reconnecting client's running prompt is at, if one of its prompts is running."""
        return next((w.last_node_id for w in self.workers if w.client_id == sid and w.last_node_id is not None), None)

    async def run_forever(self) -> None:
        await asyncio.gather(*(self._run_worker(worker) for worker in self.workers))

    async def _run_worker(self, worker: Worker) -> None:
        while True:
            item_id, (_, prompt_id, prompt, extra_data, outputs) = await self.queue.get()
            run = _Run(prompt_id, prompt, extra_data)
            worker.prompt_id = prompt_id
            if worker.persistent_cache is None:
                worker.cache = NodeCache()
            try:
                result, status = await self._execute(worker, run, outputs)
            except NodeNotFound as exc:
                # Raised outside every handler of ComfyUI's prompt_worker thread, which dies of it: its
                # prompt stays in queue_running, nothing queued after it runs, /interrupt changes nothing,
                # HTTP keeps answering (0.33.0, v3_undeclared_link_to_missing_node and its server log).
                print(f"Exception in thread (prompt_worker): comfy_execution.graph.NodeNotFoundError: {exc}", file=sys.stderr)
                return
            worker.prompt_id = None
            self.queue.task_done(item_id, result, status)
            if worker.client_id is not None:
                self.hub.send("executing", {"node": None, "prompt_id": prompt_id}, worker.client_id)

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

    async def _execute(self, worker: Worker, run: _Run, outputs: list[str]) -> tuple[dict, dict]:
        worker.interrupted.clear()
        worker.client_id = run.client_id
        cache = worker.cache
        self._add_message(run, "execution_start", {"prompt_id": run.prompt_id})
        cache.set_prompt(run.prompt, self.storage)
        cached = [node_id for node_id in run.prompt if cache.outputs(node_id) is not None]
        self._add_message(run, "execution_cached", {"nodes": cached, "prompt_id": run.prompt_id})
        order = ExecutionOrder(run.prompt, self.catalogue, lambda node_id: cache.outputs(node_id) is not None)
        for node_id in outputs:
            order.add_node(node_id)
        self._draw(run, sum(1 for node_id in order.pending if cache.outputs(node_id) is None))
        success = True
        while order:
            node_id = order.next_node()
            if not await self._execute_node(worker, run, node_id):
                success = False
                break
            order.complete(node_id)
        else:
            self._add_message(run, "execution_success", {"prompt_id": run.prompt_id})
        entries = cache.ui_entries(run.prompt)
        worker.last_node_id = None
        result = {"outputs": {k: e["output"] for k, e in entries}, "meta": {k: e["meta"] for k, e in entries}}
        return result, {"status_str": "success" if success else "error", "completed": success, "messages": run.messages}

    def _draw(self, run: _Run, to_run: int) -> None:
        """The profile's per-prompt draws: its latency (shared by the nodes that run) and injected failure."""
        latency = self.profile.latency
        if latency is not None:
            total = latency.draw(self._latency_rng)
            run.node_seconds = total / to_run if to_run else 0.0
        rate = self.profile.inject.execution_error
        if rate > 0:
            run.fail_next = self._error_rng.random() < rate

    async def _execute_node(self, worker: Worker, run: _Run, node_id: str) -> bool:
        """Run one node (or replay it from the cache); False when the prompt must stop."""
        class_type = run.prompt[node_id]["class_type"]
        cache = worker.cache
        cached = cache.outputs(node_id)
        if cached is not None:
            if run.client_id is not None:
                ui = cache.ui(node_id, class_type) or {}
                self.hub.send("executed", {"node": node_id, "display_node": node_id, "output": ui.get("output"), "prompt_id": run.prompt_id}, run.client_id)
            self._progress(run, node_id, "finished")
            return True
        self._progress(run, node_id, "running")
        node = self.catalogue[class_type]
        given = run.prompt[node_id]["inputs"]
        # A V3 node's dynamic inputs (Autogrow ``images.image0``, DynamicCombo options) as the prompt expands them.
        inputs = self._input_data(cache, given, node_inputs(node, given)[0])
        if run.client_id is not None:
            worker.last_node_id = node_id
            self.hub.send("executing", {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}, run.client_id)
        call = NodeCall(node_id, node, inputs, self.storage, run.prompt, run.extra_data, self.profile.flavour)
        try:
            seconds = run.node_seconds if run.node_seconds is not None else self.profile.seconds_for(class_type)
            await self._work(worker, seconds)
            rule = self.profile.failure_for(class_type)
            if rule is not None:
                raise NodeFailure(rule.exception_type, rule.exception_message)
            if run.fail_next:
                run.fail_next = False
                raise NodeFailure(self.profile.inject.exception_type, self.profile.inject.exception_message)
            try:
                outputs, ui = (await asyncio.get_running_loop().run_in_executor(self._savers, run_node, call)
                               if node.output_node else run_node(call))
            except (NodeFailure, Interrupted):
                raise
            except Exception as exc:  # noqa: BLE001 - ComfyUI reports any node exception; the worker lives on
                module = type(exc).__module__
                name = type(exc).__qualname__ if module == "builtins" else f"{module}.{type(exc).__qualname__}"
                raise NodeFailure(name, str(exc)) from exc
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
            cache.store_ui(node_id, class_type, {"meta": meta, "output": ui})
            if run.client_id is not None:
                self.hub.send("executed", {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": run.prompt_id}, run.client_id)
        cache.store(node_id, outputs)
        self._progress(run, node_id, "finished")
        run.executed.append(node_id)
        return True

    def _input_data(self, cache: NodeCache, given: Mapping[str, Any], declared: Mapping[str, Any]) -> dict[str, Any]:
        """``get_input_data``: declared inputs present in the prompt, links resolved to upstream outputs.

        Hidden inputs (PROMPT, EXTRA_PNGINFO, ...) are left out, so ``current_inputs`` lacks them.
        """
        data: dict[str, Any] = {}
        for name in declared:
            if name not in given:
                continue
            value = given[name]
            if isinstance(value, list) and len(value) == 2:
                upstream = cache.outputs(value[0]) or ()
                value = upstream[value[1]] if value[1] < len(upstream) else None
            data[name] = value
        return data

    async def _work(self, worker: Worker, seconds: float) -> None:
        """The node's run time; POST /interrupt cuts it short as sampler steps do on a real server."""
        if worker.interrupted.is_set():
            raise Interrupted
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(worker.interrupted.wait(), seconds)
        except TimeoutError:
            return
        raise Interrupted
