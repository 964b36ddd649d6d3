"""Native ComfyUI: POST /prompt with a client_id, completion by websocket, /history as the record.

The websocket (one per endpoint, see comfyui_events.py) is the fast path (ComfyUI pushes
``execution_start`` and the final ``executing`` with ``node: null``); when it cannot be opened (a
proxy without websocket support), the provider polls
``/queue`` and ``/history/{id}`` instead. Either way the history entry is the source of truth for the
outcome, as every ComfyUI wrapper treats it. Every wait is bounded: past the queue budget the prompt is
deleted from the queue (``queue_timeout``); past the cell's deadline a running prompt is interrupted
(``execution_timeout``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from harness.comfy.catalogue import Catalogue
from harness.run.classify import Classification, classify_history, classify_prompt_response
from harness.run.endpoints import Endpoint
from harness.run.outcomes import Outcome
from harness.providers.base import (
    BaseProvider,
    OutputImage,
    RunRecord,
    Timings,
    TransportFailure,
    failure,
    inspect_image,
    transport_failures,
    with_retry_after,
)
from harness.providers.comfyui_events import EventHub, PromptEvents

__all__ = ["ComfyUIProvider"]

_POLL_INTERVAL = 0.05
_POLL_INTERVAL_MAX = 1.0
_READ_TIMEOUT = 30.0
"""Seconds a reply may take to arrive; waiting for a prompt is the websocket's or polling's job."""


class ComfyUIProvider(BaseProvider):
    kind = "comfyui"

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._session: aiohttp.ClientSession | None = None
        self._hub: EventHub | None = None
        """The endpoint's websocket, opened by the first cell and shared by all."""

    def _http(self) -> aiohttp.ClientSession:
        """aiohttp for this endpoint's HTTP too: a request costs ~0.1 ms of CPU here against ~1 ms for
        httpx's pool, and a cell makes three (measured by bench/bench_cpu.py)."""
        if self._session is None:
            t = self.endpoint.timeouts
            self._session = aiohttp.ClientSession(
                headers=self.endpoint.resolved_headers(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=_READ_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=max(self.endpoint.max_concurrency * 2, 4)),
            )
        return self._session

    async def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> _Reply:
        """One request, read whole; transport failures raised as TransportFailure."""
        options = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout is not None else {}
        with transport_failures(self.endpoint, f"{method} {path}"):
            async with self._http().request(method, self.endpoint.url + path, **kwargs, **options) as response:
                return _Reply(response.status, response.headers, await response.text(errors="replace"))

    def request_body(self, workflow: dict, images: Sequence[Path] = ()) -> dict:
        return {"prompt": workflow}

    def repro_path(self) -> str:
        return "/prompt"

    async def catalogue(self) -> Catalogue | None:
        try:
            response = await self._call("GET", "/object_info", timeout=60.0)
            info = response.json() if response.status_code == 200 else None
        except (TransportFailure, ValueError):
            return None
        return Catalogue(info, f"{self.endpoint.public_url}/object_info") if isinstance(info, dict) else None

    async def provenance(self) -> dict | None:
        try:
            response = await self._call("GET", "/system_stats")
            stats = response.json() if response.status_code == 200 else None
        except (TransportFailure, ValueError):
            return None
        if not isinstance(stats, dict):
            return None
        system = stats.get("system", {})
        keep = ("comfyui_version", "python_version", "pytorch_version", "os", "embedded_python")
        return {
            **{k: system[k] for k in keep if k in system},
            "devices": [d.get("name") for d in stats.get("devices", []) if isinstance(d, dict)],
        }

    async def run(self, workflow: dict, *, deadline: float, outputs_dir: Path, images: Sequence[Path] = ()) -> RunRecord:
        started = time.monotonic()
        hub = self._events()
        await hub.ensure()
        prompt_id = ""
        try:
            for image in images:
                refused = await self._upload(image)
                if refused is not None:
                    return RunRecord(refused, timings=Timings(total=time.monotonic() - started))
            response = await self._call("POST", "/prompt", json={**self.request_body(workflow), "client_id": hub.client_id})
            rejected, prompt_id, partial = _read_submission(response)
            if rejected is not None:
                return RunRecord(rejected, timings=Timings(total=time.monotonic() - started))
            waited = await self._wait(prompt_id, hub, started, deadline)
            if isinstance(waited, Classification):
                return RunRecord(waited, timings=Timings(total=time.monotonic() - started), job_id=prompt_id)
            entry, queue_s, exec_s = waited
            verdict = partial or classify_history(entry)
            images = () if verdict is not None else await self._download(entry, outputs_dir)
            timings = Timings(queue=queue_s, execution=exec_s, total=time.monotonic() - started)
            cached, executed = _cache_use(entry, hub.watch(prompt_id))
            return RunRecord(verdict, tuple(images), timings, prompt_id, cached_nodes=cached, executed_nodes=executed)
        except TransportFailure as exc:
            return RunRecord(exc.classification, timings=Timings(total=time.monotonic() - started))
        finally:
            hub.forget(prompt_id)

    async def _upload(self, image: Path) -> Classification | None:
        """POST /upload/image, as the UI does for a LoadImage file; a refusal is the cell's outcome."""
        form = aiohttp.FormData()
        form.add_field("image", image.read_bytes(), filename=image.name, content_type="image/png")
        form.add_field("overwrite", "true")
        response = await self._call("POST", "/upload/image", data=form)
        if response.status_code == 200:
            return None
        return failure(Outcome.INVALID_INPUT, f"POST /upload/image refused {image.name}: HTTP {response.status_code} {response.text[:200]}",
                       http_status=response.status_code)

    def repro(self, body_file: str, images: Sequence[Path] = ()) -> str:
        uploads = [self.curl("POST", "/upload/image", ["-F", f"image=@{image}", "-F", "overwrite=true"]) for image in images]
        return " && ".join([*uploads, super().repro(body_file)])

    def _events(self) -> EventHub:
        if self._hub is None:
            self._hub = EventHub(self.endpoint.url, self._http())
        return self._hub

    async def _wait(self, prompt_id: str, hub: EventHub, started: float, deadline: float):
        """Wait for the prompt to finish: (history entry, queue s, execution s), or a timeout verdict."""
        queue_deadline = min(deadline, started + self.endpoint.timeouts.queue)
        events = hub.watch(prompt_id)
        began_at: float | None = None
        interval = _POLL_INTERVAL
        while True:
            if began_at is None and events.started_at is not None:
                began_at = events.started_at
            now = time.monotonic()
            if began_at is None and now >= queue_deadline:
                await self._post_quietly("/queue", {"delete": [prompt_id]})
                return failure(Outcome.QUEUE_TIMEOUT, f"prompt {prompt_id} did not start within {queue_deadline - started:.1f} s")
            if now >= deadline:
                await self._post_quietly("/interrupt", {"prompt_id": prompt_id})
                return failure(Outcome.EXECUTION_TIMEOUT, f"prompt {prompt_id} did not finish within {deadline - started:.1f} s; interrupted")
            limit = min(queue_deadline if began_at is None else deadline, deadline) - now
            if hub.connected:
                flag = events.started if began_at is None and not events.started.is_set() else events.finished
                try:
                    await asyncio.wait_for(flag.wait(), max(limit, 0.001))
                except TimeoutError:
                    continue
                if flag is events.started:
                    continue
            else:
                await asyncio.sleep(min(interval, max(limit, 0)))
                interval = min(interval * 2, _POLL_INTERVAL_MAX)
                if began_at is None and await self._is_running(prompt_id):
                    began_at = time.monotonic()
            entry = await self._history(prompt_id)
            if entry is not None:
                finished = time.monotonic()
                begun = began_at if began_at is not None else finished
                return entry, begun - started, finished - begun

    async def aclose(self) -> None:
        if self._hub is not None:
            await self._hub.aclose()
        if self._session is not None:
            await self._session.close()
        await super().aclose()

    async def _is_running(self, prompt_id: str) -> bool:
        response = await self._call("GET", "/queue")
        running = response.json().get("queue_running", []) if response.status_code == 200 else []
        return any(len(item) > 1 and item[1] == prompt_id for item in running)

    async def _history(self, prompt_id: str) -> dict | None:
        response = await self._call("GET", f"/history/{prompt_id}")
        if response.status_code != 200:
            raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"GET /history/{prompt_id} answered {response.status_code}", http_status=response.status_code))
        # ComfyUI answers {} until the prompt is finished, then {prompt_id: entry}.
        return response.json().get(prompt_id)

    async def _post_quietly(self, path: str, body: dict) -> None:
        """Best-effort clean-up after a timeout; the verdict does not depend on it."""
        try:
            await self._call("POST", path, json=body, timeout=5.0)
        except TransportFailure:
            pass

    async def _download(self, entry: dict, outputs_dir: Path) -> list[OutputImage]:
        images = []
        for node_id, node_output in (entry.get("outputs") or {}).items():
            for ref in node_output.get("images", []) if isinstance(node_output, dict) else []:
                images.append(await self._fetch_image(node_id, ref, outputs_dir))
        return images

    async def _fetch_image(self, node_id: str, ref: dict, outputs_dir: Path) -> OutputImage:
        filename = str(ref.get("filename", ""))
        params = {"filename": filename, "subfolder": ref.get("subfolder", ""), "type": ref.get("type", "output")}
        outputs_dir.mkdir(parents=True, exist_ok=True)
        target = outputs_dir / f"{node_id}_{Path(filename).name or 'output'}"
        with transport_failures(self.endpoint, f"GET /view {filename}"):
            async with self._http().get(self.endpoint.url + "/view", params=params) as response:
                if response.status != 200:
                    return OutputImage(filename, str(target), 0, params["type"], error=f"GET /view answered {response.status}")
                # Streamed to disk so a large output never sits in memory whole.
                with target.open("wb") as fh:
                    async for chunk in response.content.iter_chunked(1 << 20):
                        fh.write(chunk)
        return inspect_image(target, filename, params["type"])


@dataclass(frozen=True)
class _Reply:
    """A whole reply, with the names of httpx's Response that the shared classifiers read."""

    status_code: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def _cache_use(entry: Any, events: PromptEvents) -> tuple[int | None, int | None]:
    """(nodes served from cache, nodes that ran) of a finished prompt.

    The cached nodes come from ``execution_cached``, on the socket or in the history entry's messages
    (so polling knows them too); the nodes that ran only from the socket's ``executing`` events, and
    only when it saw the prompt from its first event to its last.
    """
    cached = events.cached
    if cached is None:
        status = entry.get("status") if isinstance(entry, Mapping) else None
        messages = status.get("messages") if isinstance(status, Mapping) else None
        found = [m[1].get("nodes") for m in messages or () if isinstance(m, list) and len(m) == 2
                 and m[0] == "execution_cached" and isinstance(m[1], Mapping)]
        cached = found[0] if found and isinstance(found[0], list) else None
    executed = len(events.ran) if events.ended and events.cached is not None else None
    return (len(cached) if cached is not None else None), executed


def _read_submission(response: _Reply) -> tuple[Classification | None, str, Classification | None]:
    """(rejection, prompt_id, partial-acceptance verdict) from POST /prompt's answer."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    verdict = with_retry_after(classify_prompt_response(response.status_code, body), response.headers)
    if response.status_code != 200 or not isinstance(body, dict) or "prompt_id" not in body:
        return verdict or failure(Outcome.PROTOCOL_ERROR, f"POST /prompt answered {response.status_code} without a prompt_id", http_status=response.status_code), "", None
    # A 200 with node_errors ran only some outputs: classified by its node_errors, never passed.
    return None, str(body["prompt_id"]), verdict
