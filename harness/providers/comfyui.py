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
import contextlib
import hashlib
import json
import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from harness.comfy.catalogue import Catalogue
from harness.run.classify import Classification, classify_history, classify_prompt_response
from harness.run.endpoints import Endpoint
from harness.run.outcomes import Outcome
from harness.providers.base import (
    CLEANUP_S,
    BaseProvider,
    OutputImage,
    RunRecord,
    Timings,
    TransportFailure,
    answered,
    excerpt,
    failure,
    inspect_image,
    phase,
    refusal,
    safe_name,
    save_stream,
    transport_failures,
    with_retry_after,
)
from harness.providers.capped import capped
from harness.providers.comfyui_events import EventHub, PromptEvents

__all__ = ["ComfyUIProvider"]

_POLL_INTERVAL = 0.05
_POLL_INTERVAL_MAX = 1.0
_READ_TIMEOUT = 30.0
"""Seconds a reply may take to arrive; waiting for a prompt is the websocket's or polling's job."""
_SILENCE_POLL, _SILENCE_POLL_MAX = 0.25, 5.0
"""Seconds of websocket silence after which /history is asked anyway (a proxy can keep a socket open
and drop its frames): a finished prompt is found even then."""
_REDIRECTS = 5
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class ComfyUIProvider(BaseProvider):
    kind = "comfyui"

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self._session: aiohttp.ClientSession | None = None
        self._hub: EventHub | None = None
        """The endpoint's websocket, opened by the first cell and shared by all."""
        self._stopped: str | None = None
        """A prompt the endpoint stopped executing (its prompt worker died): what later prompts wait behind."""

    def _http(self) -> aiohttp.ClientSession:
        """aiohttp for this endpoint's HTTP too: a request costs ~0.1 ms of CPU here against ~1 ms for
        httpx's pool, and a cell makes three (measured by bench/bench_cpu.py)."""
        if self._session is None:
            t = self.endpoint.timeouts
            # No session-wide headers: aiohttp would send them along redirects to any host (see _request).
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=_READ_TIMEOUT),
                connector=aiohttp.TCPConnector(limit=max(self.endpoint.max_concurrency * 2, 4)),
            )
        return self._session

    async def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> _Reply:
        """One request, read whole; transport failures raised as TransportFailure."""
        options = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout is not None else {}
        with transport_failures(self.endpoint, f"{method} {path}"):
            async with self._request(method, self.endpoint.url + path, **kwargs, **options) as response:
                limit = self.endpoint.limits.reply_bytes
                body = b"".join([chunk async for chunk in capped(response.content.iter_any(), limit, "reply_mb", response.content_length)])
                return _Reply(response.status, response.headers, _decoded(body, response.charset))

    @contextlib.asynccontextmanager
    async def _request(self, method: str, url: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request with the endpoint's headers, redirects followed here rather than by aiohttp, which
        would forward custom headers (X-Api-Key, Modal-Key) to any host: credentials go only to the
        endpoint's own origin."""
        origin = URL(self.endpoint.url).origin()
        target = URL(url, encoded=True)
        for _ in range(_REDIRECTS + 1):
            headers = self.endpoint.resolved_headers() if target.origin() == origin else {}
            response = await self._http().request(method, target, headers=headers, allow_redirects=False, **kwargs)
            answered()
            if response.status not in _REDIRECT_STATUSES or "Location" not in response.headers:
                try:
                    yield response
                finally:
                    response.release()
                return
            response.release()
            target = target.join(URL(response.headers["Location"]))
            if response.status not in (307, 308):  # the others turn into a GET of the new location, without a body
                method = "GET"
                kwargs = {k: v for k, v in kwargs.items() if k == "timeout"}
        raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"{self.endpoint.public_url}: more than {_REDIRECTS} redirects from {url}"))

    def request_body(self, workflow: dict, images: Sequence[Path] = ()) -> dict:
        return {"prompt": workflow}

    def repro_path(self) -> str:
        return "/prompt"

    async def catalogue(self) -> Catalogue | None:
        try:
            response = await self._call("GET", "/object_info", timeout=60.0)
            catalogue = _catalogue_of(response.text, f"{self.endpoint.public_url}/object_info") if response.status_code == 200 else None
        except TransportFailure as exc:
            catalogue, self.catalogue_failure = None, exc.classification
        if catalogue is not None:
            return catalogue
        return await super().catalogue()  # a configured object_info stands in for one the server keeps to itself

    async def provenance(self) -> dict | None:
        try:
            response = await self._call("GET", "/system_stats")
            stats = response.json() if response.status_code == 200 else None
        except (TransportFailure, ValueError):
            return None
        if not isinstance(stats, dict):
            return None
        system = stats.get("system", {})
        keep = ("comfyui_version", "required_frontend_version", "python_version", "pytorch_version", "os", "embedded_python")
        return {
            **{k: system[k] for k in keep if k in system},
            "devices": [d.get("name") for d in stats.get("devices", []) if isinstance(d, dict)],
        }

    async def run(self, workflow: dict, *, deadline: float, outputs_dir: Path, images: Sequence[Path] = ()) -> RunRecord:
        started = time.monotonic()
        phase("submit")
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
            phase("queue")
            waited = await self._wait(prompt_id, hub, started, deadline)
            if isinstance(waited, Classification):
                return RunRecord(waited, timings=Timings(total=time.monotonic() - started), job_id=prompt_id)
            entry, queue_s, exec_s = waited
            verdict = partial or classify_history(entry)
            phase("download")
            images, others = ((), 0) if verdict is not None else await self._download(entry, outputs_dir)
            timings = Timings(queue=queue_s, execution=exec_s, total=time.monotonic() - started)
            cached, executed = _cache_use(entry, hub.watch(prompt_id))
            return RunRecord(verdict, tuple(images), timings, prompt_id, other_outputs=others,
                             cached_nodes=cached, executed_nodes=executed)
        except TransportFailure as exc:
            return RunRecord(exc.classification, timings=Timings(total=time.monotonic() - started))
        except asyncio.CancelledError:
            if prompt_id:  # off the queue if it waits there, interrupted if it runs
                self.abandon(self._withdraw(prompt_id))
            raise
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
        # Credentials, capacity and server failures are the endpoint's state, not the input file's.
        return refusal(response.status_code, response.headers, "POST /upload/image", response.text) or failure(
            Outcome.INVALID_INPUT, f"POST /upload/image refused {image.name}: HTTP {response.status_code} {response.text[:200]}",
            http_status=response.status_code)

    def repro(self, body_file: str, images: Sequence[Path] = ()) -> str:
        uploads = [self.curl("POST", "/upload/image", ["-F", f"image=@{image}", "-F", "overwrite=true"]) for image in images]
        return " && ".join([*uploads, super().repro(body_file)])

    def _events(self) -> EventHub:
        if self._hub is None:
            self._hub = EventHub(self.endpoint.url, self._http(), self.endpoint.resolved_headers(), self.endpoint.timeouts.connect)
        return self._hub

    async def _wait(self, prompt_id: str, hub: EventHub, started: float, deadline: float):
        """Wait for the prompt to finish: (history entry, queue s, execution s), or a timeout verdict."""
        queue_deadline = min(deadline, started + self.endpoint.timeouts.queue)
        events = hub.watch(prompt_id)
        began_at: float | None = None
        interval, silence = _POLL_INTERVAL, _SILENCE_POLL
        while True:
            if began_at is None and events.started_at is not None:
                began_at = events.started_at
            if began_at is not None:
                phase("execution")
            now = time.monotonic()
            if began_at is None and now >= queue_deadline:
                entry = await self._last_look(prompt_id)
                if entry is not None:  # finished unseen (a socket that said nothing): not a timeout
                    return entry, time.monotonic() - started, 0.0
                await self._post_quietly("/queue", {"delete": [prompt_id]})
                stuck = hub.stuck(before=started) or await self._still_stopped()
                behind = (f": queued behind prompt {stuck}, which the endpoint stopped executing (no node of it ran since it "
                          "started; ComfyUI's prompt worker has died and runs nothing until the server restarts)") if stuck else ""
                return failure(Outcome.QUEUE_TIMEOUT, f"prompt {prompt_id} did not start within {queue_deadline - started:.1f} s{behind}",
                               phase="queue")
            if now >= deadline:
                await self._post_quietly("/interrupt", {"prompt_id": prompt_id})
                if began_at is not None and hub.connected and not events.ran:
                    # ComfyUI 0.33.0's worker thread dies on an undeclared input linked to a missing node: the
                    # prompt stays queue_running after execution_start, and nothing ever runs again.
                    self._stopped = prompt_id
                    return failure(Outcome.EXECUTION_TIMEOUT, f"the endpoint stopped executing: prompt {prompt_id} started "
                                   f"{now - began_at:.1f} s ago and no node of it ever ran (ComfyUI's prompt worker has died; "
                                   "it answers HTTP but runs nothing until the server restarts)", phase="execution")
                return failure(Outcome.EXECUTION_TIMEOUT, f"prompt {prompt_id} did not finish within {deadline - started:.1f} s; interrupted",
                               phase="execution")
            limit = min(queue_deadline if began_at is None else deadline, deadline) - now
            if hub.connected:
                flag = events.started if began_at is None and not events.started.is_set() else events.finished
                wait = min(limit, silence)
                try:
                    await asyncio.wait_for(flag.wait(), max(wait, 0.001))
                except TimeoutError:
                    if wait >= limit:
                        continue  # the budget is spent: the checks above decide
                    # An open but silent socket: the queue and /history are asked, as when polling.
                    silence = min(silence * 2, _SILENCE_POLL_MAX)
                    if began_at is None and await self._is_running(prompt_id):
                        began_at = time.monotonic()
                else:
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
            if hub.connected and events.finished.is_set():
                # Told it ended, yet no entry: asked again, never in a tight loop (a proxy may cache /history).
                await asyncio.sleep(min(interval, max(limit, 0)))
                interval = min(interval * 2, _POLL_INTERVAL_MAX)

    async def _withdraw(self, prompt_id: str) -> None:
        await asyncio.gather(self._post_quietly("/queue", {"delete": [prompt_id]}),
                             self._post_quietly("/interrupt", {"prompt_id": prompt_id}))

    async def aclose(self) -> None:
        await self.settle()
        if self._hub is not None:
            await self._hub.aclose()
        if self._session is not None:
            await self._session.close()
        await super().aclose()

    async def _still_stopped(self) -> str | None:
        """The prompt an earlier cell found the endpoint stopped executing, while ComfyUI still runs it."""
        if self._stopped is None:
            return None
        try:
            async with asyncio.timeout(CLEANUP_S):
                return self._stopped if await self._is_running(self._stopped) else None
        except (TransportFailure, TimeoutError):
            return None

    async def _is_running(self, prompt_id: str) -> bool:
        queue = _json_object(await self._call("GET", "/queue"), "GET /queue")
        running = queue.get("queue_running")
        return any(isinstance(item, list) and len(item) > 1 and item[1] == prompt_id for item in running or ()
                   ) if isinstance(running, list) else False

    async def _history(self, prompt_id: str) -> dict | None:
        doing = f"GET /history/{prompt_id}"
        history = _json_object(await self._call("GET", f"/history/{quote(prompt_id, safe='')}"), doing)
        # ComfyUI answers {} until the prompt is finished, then {prompt_id: entry}.
        entry = history.get(prompt_id)
        if entry is not None and not isinstance(entry, dict):
            raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"{doing}: the entry is not an object: {excerpt(json.dumps(entry))}"))
        return entry

    async def _last_look(self, prompt_id: str) -> dict | None:
        """The history entry, if the prompt finished after all; nothing if asking fails too."""
        try:
            async with asyncio.timeout(CLEANUP_S):
                return await self._history(prompt_id)
        except (TransportFailure, TimeoutError):
            return None

    async def _post_quietly(self, path: str, body: dict) -> None:
        """Best-effort clean-up after a timeout; the verdict does not depend on it (nor waits for it long)."""
        try:
            await self._call("POST", path, json=body, timeout=CLEANUP_S)
        except TransportFailure:
            pass

    async def _download(self, entry: dict, outputs_dir: Path) -> tuple[list[OutputImage], int]:
        """A finished prompt's files and how many other outputs it has.

        What a node lists under ``images`` must be an image (or a video, ``animated`` beside it). A file under
        another key of its UI (SaveAudio's ``audio``, VideoHelperSuite's ``gifs``, a 3D file) is downloaded
        too, and kept as an image or video when it is one, else counted as an output, as a value that names
        no file is (PreviewAny's ``text``). Neither the ``animated`` flag nor a preview (``type: temp``) is one.
        """
        outputs = entry.get("outputs") or {}
        if not isinstance(outputs, dict):
            raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"the history entry's outputs are not an object: {excerpt(json.dumps(outputs))}"))
        images, others = [], 0
        for node_id, node_output in outputs.items():
            if not isinstance(node_output, dict):
                continue
            refs = node_output.get("images", [])
            if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
                raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"node {node_id}'s images in the history entry are not a list "
                                               f"of objects: {excerpt(json.dumps(refs))}"))
            for ref in refs:
                images.append(await self._fetch_image(node_id, ref, outputs_dir))
            for key, value in node_output.items():
                if key in ("images", "animated"):
                    continue
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, dict) and item.get("type") == "temp":
                        continue
                    saved = await self._fetch_image(node_id, item, outputs_dir) if isinstance(item, dict) and item.get("filename") else None
                    if saved is not None and saved.error is None:
                        images.append(saved)
                    else:
                        others += 1
        return images, others

    async def _fetch_image(self, node_id: str, ref: dict, outputs_dir: Path) -> OutputImage:
        filename = str(ref.get("filename", ""))
        params = {"filename": filename, "subfolder": str(ref.get("subfolder", "")), "type": str(ref.get("type", "output"))}
        outputs_dir.mkdir(parents=True, exist_ok=True)
        # Node id, subfolder and file name are the endpoint's: reduced to one safe name inside the cell's folder.
        target = outputs_dir / safe_name(node_id, params["subfolder"], Path(filename.replace("\\", "/")).name)
        with transport_failures(self.endpoint, f"GET /view {filename}"):
            async with self._request("GET", self.endpoint.url + "/view", params=params) as response:
                refused = refusal(response.status, response.headers, f"GET /view {filename}")
                if refused is not None:
                    raise TransportFailure(refused)
                if response.status != 200:
                    return OutputImage(filename, str(target), 0, params["type"], error=f"GET /view answered {response.status}")
                data = await save_stream(target, response.content.iter_chunked(1 << 20), self.endpoint.limits, response.content_length)
        return inspect_image(target, filename, params["type"], data)


_DOCUMENTS: weakref.WeakValueDictionary[bytes, Catalogue] = weakref.WeakValueDictionary()
"""Live catalogues by digest of their /object_info text."""


def _catalogue_of(text: str, source: str) -> Catalogue | None:
    """The catalogue an /object_info text describes (None unless a JSON object), its read-only document
    shared with every live catalogue of the same text: endpoints of one image parse it once (ten 0.33.0
    endpoints held ten copies, ~10 MB of objects each)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    known = _DOCUMENTS.get(digest)
    try:
        info = known.object_info if known is not None else json.loads(text)
    except ValueError:
        return None
    if not isinstance(info, dict):
        return None
    catalogue = Catalogue(info, source)
    _DOCUMENTS.setdefault(digest, catalogue)
    return catalogue


@dataclass(frozen=True)
class _Reply:
    """A whole reply, with the names of httpx's Response that the shared classifiers read."""

    status_code: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def _decoded(body: bytes, charset: str | None) -> str:
    """A reply's text in the charset it declares, else UTF-8 (ComfyUI's, and JSON's); bytes that do not
    decode are replaced, never fatal."""
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


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


def _json_object(response: _Reply, doing: str) -> dict:
    """A 200's JSON object; a refusal as its outcome (as for POST /prompt), any other body a protocol error."""
    refused = refusal(response.status_code, response.headers, doing, response.text)
    if refused is not None:
        raise TransportFailure(refused)
    try:
        body = response.json() if response.status_code == 200 else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"{doing} answered HTTP {response.status_code}, not a JSON object: "
                                       f"{excerpt(response.text)}", http_status=response.status_code))
    return body


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
