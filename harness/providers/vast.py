"""Vast.ai serverless ComfyUI: the vastai PyWorker in front of ai-dock's comfyui-api-wrapper.

Three ways in, chosen by the endpoint's ``flavour``:

- ``route`` (the default on Vast, and what ``platform`` means here): the URL is ``<route service>/<endpoint
  name>``, e.g. ``https://run.vast.ai/my-comfy``. ``POST <route service>/route/`` with the endpoint name
  and the API key (taken from the endpoint's ``Authorization: Bearer ${VAST_API_KEY}`` header, sent both
  ways as the vastai SDK does) answers a worker URL and the signed ``auth_data``; then ``POST
  <worker>/generate/sync`` with ``{"auth_data", "payload": {"input": ...}}``, without the API key;
- ``worker``: the URL is one PyWorker (``UNSECURED=true``); ``auth_data`` carries its six keys unsigned;
- ``wrapper``: the URL is the api-wrapper itself, ``POST /generate/sync`` with ``{"input": ...}``.

The wrapper answers one ``Result`` envelope whose HTTP status mirrors its ``status``, and flattens what
ComfyUI said into ``message``: node errors as indented JSON (parsed back for the native classifier), an
execution error as the Python repr of ComfyUI's payload (``ast.literal_eval``). ComfyUI's reason is lost
for a missing node class, a graph without outputs or a node without class_type ("ComfyUI node errors:
{}"), and behind the wrapper's ``comfyui_job_id`` bug: those are ``server_error`` with evidence saying so.

A PyWorker of the team's own (the endpoint has ``request:``, see ``mapping.py``) keeps the route service,
``auth_data`` and queue, but its payload and reply are what ``request`` says: the payload is the body
template filled in, POSTed to ``request.path`` (default ``/generate/sync``), and the reply is read
through the same response mapping as any team's own code.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import binascii
import dataclasses
import json
import shlex
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from harness.run.classify import (
    Classification,
    Evidence,
    classify_event,
    classify_prompt_response,
)
from harness.run.endpoints import Endpoint
from harness.run.outcomes import Outcome
from harness.providers.base import (
    BaseProvider,
    OutputImage,
    RunRecord,
    Timings,
    TransportFailure,
    excerpt,
    failure,
    inspect_image,
    phase,
    plain_client,
    safe_name,
    transport_failures,
    with_retry_after,
)
from harness.providers.mapping import WORKFLOW, RequestMapping, decode_image
from harness.comfy.workflows import positive_prompt

__all__ = ["OWN_WORKER", "VastProvider", "classify_result"]

OWN_WORKER: Mapping[str, Any] = {"path": "/generate/sync", "body": {"workflow": WORKFLOW}, "response": "json_base64", "images": "image"}
"""The defaults of an own PyWorker's ``request`` fields: the workflow in, a base64 image out."""

COST = 100
"""The workload the comfyui-json worker counts per request, whatever the workflow."""
_ROUTE_POLL = 0.2
_ROUTE_POLL_MAX = 5.0
_STAGES = ("Generation failed: ", "Preprocessing failed: ", "Post-processing failed: ")
_AUTH_FIELDS = ("cost", "endpoint", "reqnum", "request_idx", "signature", "url")
"""What of /route/'s answer a worker checks as ``auth_data`` (the signature is over the url)."""
_NODE_ERRORS = "ComfyUI node errors: "
_EXECUTION = "Execution error: "
_BUG = '"Result" object has no field "comfyui_job_id"'
_CONNECT = ("cannot connect", "connection refused", "network error", "websocket failure")
_TIMEOUT = ("websocket timeout", "timeout waiting for job", "timed out")
_HIDDEN = ("the provider hides the reason: ComfyUI refused the prompt with no node errors (an unknown node class, "
           "no output node, or a node without class_type) and the api-wrapper kept only those, as \"ComfyUI node errors: {}\"")
_HIDDEN_HINT = ("The preflight against the endpoint's catalogue (or the profile's) names the missing class; "
                "replay the workflow on a plain ComfyUI to see ComfyUI's own message.")
_BUG_TEXT = (f"the provider hides the reason: api-wrapper bug ({_BUG}, comfyui-api-wrapper e1d04af): the prompt ended within the wrapper's 0.5 s probe "
             "without outputs (a fast execution error, or an output node that failed validation) and the wrapper "
             "crashed resubmitting it; ComfyUI's reason is lost")
_BUG_HINT = "Replay on a plain ComfyUI for the cause, or slow the workflow down; the fix belongs in the api-wrapper."


class VastProvider(BaseProvider):
    kind = "vast"

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        # The worker is another host: it gets no endpoint headers (they carry the route service's key).
        self.worker_client = plain_client(self.endpoint.limits, self.client.timeout)
        self.mapping = RequestMapping.from_spec(endpoint.request, OWN_WORKER) if endpoint.request is not None else None
        """An own PyWorker's request and reply (``request:``); None for the comfyui-json worker."""

    @property
    def _flavour(self) -> str:
        return "route" if self.endpoint.flavour == "platform" else self.endpoint.flavour

    def request_body(self, workflow: dict, images: Sequence[Path] = ()) -> dict:
        # The api-wrapper has no input images field (it ignores RunPod's): images reach it only as
        # URLs inside the workflow, which it downloads into input/ (providers.md, Vast (f)).
        payload = {"input": {"request_id": "", "workflow_json": workflow, "return_outputs_as_base64": True}}
        if self.mapping is not None:
            payload = self.mapping.fill(workflow, positive_prompt(workflow) or "")
        if self._flavour == "wrapper":
            return payload
        # Placeholder auth: what an UNSECURED worker accepts; a routed worker needs /route/'s fields here.
        return {"auth_data": self._unsigned(), "payload": payload}

    def repro_path(self) -> str:
        return self.mapping.path if self.mapping is not None else "/generate/sync"

    def repro(self, body_file: str, images: Sequence[Path] = ()) -> str:
        """Through the route service it takes two steps: ask /route/ for a worker and its signature, then
        post the request with them as ``auth_data`` (jq joins the two)."""
        if self._flavour != "route":
            return super().repro(body_file)
        route_url, name = self._route_target(self.endpoint.public_url)
        key = self.endpoint.shell_headers().get("Authorization", "").removeprefix("Bearer ")
        # The key stays a shell variable: it closes the single quotes, is expanded inside double quotes.
        shell_key = "'\"" + key + "\"'" if key else ""
        route_body = json.dumps({"endpoint": name, "cost": COST})[:-1] + ', "api_key": "' + shell_key + '"}'
        fields = "{" + ", ".join(_AUTH_FIELDS) + "}"
        return (f"route=$(curl -sS -X POST {shlex.quote(route_url)} -H 'Content-Type: application/json' -d '{route_body}')"
                f" && jq --argjson route \"$route\" '.auth_data = ($route | {fields})' {shlex.quote(body_file)}"
                f" | curl -sS -X POST \"$(jq -r .url <<<\"$route\"){self.repro_path()}\" -H 'Content-Type: application/json' --data-binary @-")

    @staticmethod
    def _route_target(url: str) -> tuple[str, str]:
        """(the route service's /route/ URL, the endpoint name) from ``<route service>/<endpoint name>``."""
        parts = urlsplit(url)
        base, _, name = parts.path.rstrip("/").rpartition("/")
        return f"{parts.scheme}://{parts.netloc}{base}/route/", name

    def _unsigned(self) -> dict:
        return {"cost": COST, "endpoint": self.endpoint.name, "reqnum": 0, "request_idx": 0, "signature": "", "url": self.endpoint.url}

    async def run(self, workflow: dict, *, deadline: float, outputs_dir: Path, images: Sequence[Path] = ()) -> RunRecord:
        started = time.monotonic()
        try:
            body = self.request_body(workflow)
            if self._flavour == "route":
                worker, auth_data = await self._route(started, deadline)
                body["auth_data"] = auth_data
                client, url = self.worker_client, f"{worker.rstrip('/')}{self.repro_path()}"
            else:
                client, url = self.client, self.repro_path()
            routed = time.monotonic()
            # One request that waits in the PyWorker's queue and runs: once sent, the job is the worker's.
            phase("execution")
            with transport_failures(self.endpoint, "POST /generate/sync"):
                response = await client.post(url, json=body, timeout=max(deadline - routed, 1.0))
            elapsed = time.monotonic() - routed
            verdict, images, others, result = await self._outcome(response, outputs_dir)
            timings = result.get("timings") if isinstance(result.get("timings"), Mapping) else {}
            execution = timings.get("generation_ms")
            total_ms = timings.get("total_ms")
            # Time not spent inside the wrapper was spent routing and in the PyWorker's FIFO queue.
            queue = routed - started + (max(elapsed - total_ms / 1000, 0.0) if isinstance(total_ms, (int, float)) else 0.0)
            return RunRecord(verdict, tuple(images), Timings(queue, execution / 1000 if isinstance(execution, (int, float)) else None,
                                                              time.monotonic() - started),
                             job_id=result.get("id"), extra={"vast_status": result.get("status"), "http_status": response.status_code},
                             other_outputs=others)
        except TransportFailure as exc:
            return RunRecord(exc.classification, timings=Timings(total=time.monotonic() - started))

    async def _route(self, started: float, deadline: float) -> tuple[str, dict]:
        """Ask the route service for a worker until one is ready or the queue budget is spent."""
        route_url, name = self._route_target(self.endpoint.url)
        key = self.client.headers.get("Authorization", "").removeprefix("Bearer ")
        queue_deadline = min(deadline, started + self.endpoint.timeouts.queue)
        interval = _ROUTE_POLL
        while True:
            with transport_failures(self.endpoint, "POST /route/"):
                response = await self.client.post(route_url, json={"endpoint": name, "api_key": key, "cost": COST})
            status = response.status_code
            if status in (401, 403):
                raise TransportFailure(failure(Outcome.AUTH_ERROR, f"HTTP {status} from POST /route/: the route service refused the API key", http_status=status))
            if status == 429:
                raise TransportFailure(with_retry_after(failure(Outcome.RATE_LIMITED, "HTTP 429 from POST /route/", http_status=status), response.headers))
            try:
                body = response.json()
            except ValueError:
                body = None
            if status != 200 or not isinstance(body, Mapping):
                outcome = Outcome.SERVER_ERROR if status >= 500 else Outcome.PROTOCOL_ERROR
                raise TransportFailure(failure(outcome, f"HTTP {status} from POST /route/: {response.text[:200]}", http_status=status))
            if body.get("url"):
                auth = {k: body.get(k) for k in _AUTH_FIELDS}
                return str(body["url"]), auth
            # No worker ready: the answer counts workers by state; keep asking, as the SDK does.
            now = time.monotonic()
            if now >= queue_deadline:
                raise TransportFailure(failure(Outcome.QUEUE_TIMEOUT, f"no Vast worker was ready after {now - started:.1f} s: "
                                               f"{json.dumps(body.get('status'))[:200]}", phase="queue"))
            await asyncio.sleep(min(interval, queue_deadline - now))
            interval = min(interval * 2, _ROUTE_POLL_MAX)

    async def _outcome(self, response: httpx.Response, outputs_dir: Path) -> tuple[Classification | None, list[OutputImage], int, Mapping]:
        """The verdict, the saved images (a video among them) and how many other outputs the wrapper
        returned (audio, 3D files...), and its Result."""
        try:
            result = response.json()
        except ValueError:
            result = None
        if self.mapping is not None:
            verdict, images = await self._own_outcome(response, result, outputs_dir)
            return verdict, images, 0, {}
        result = result if isinstance(result, Mapping) else {}
        verdict = with_retry_after(classify_result(response.status_code, result, response.text), response.headers)
        if verdict is not None:
            return verdict, [], 0, result
        outputs = result.get("output") if isinstance(result.get("output"), list) else []
        if any(not isinstance(entry, Mapping) for entry in outputs):
            return failure(Outcome.PROTOCOL_ERROR, f"the Result's output holds entries that are not objects: "
                           f"{excerpt(json.dumps(outputs))}"), [], 0, result
        if not outputs:
            return failure(Outcome.OUTPUT_INVALID, "the workflow ran but the wrapper returned no outputs (output: []; previews are not returned)"), [], 0, result
        saved = [await self._save(i, entry, outputs_dir) for i, entry in enumerate(outputs)]
        # The wrapper returns a file of every key of a node's UI (output_type), as ComfyUI's history names it.
        # What ComfyUI lists as images must be one (or a video); another key's file (SaveAudio's audio, a 3D
        # file, VideoHelperSuite's gifs) is kept as one when it decodes as one, else it is an output all the same.
        images = [image for image, entry in zip(saved, outputs) if entry.get("output_type", "images") == "images" or not image.error]
        return None, images, len(saved) - len(images), result

    async def _own_outcome(self, response: httpx.Response, body: Any, outputs_dir: Path) -> tuple[Classification | None, list[OutputImage]]:
        """An own PyWorker's reply, read through its response mapping."""
        doing = f"POST {self.repro_path()}"
        verdict = self.mapping.classify(response.status_code, response.headers, body, response.text, doing)
        if verdict is not None:
            return verdict, []
        refs = self.mapping.image_refs(body)
        if refs is None:
            return failure(Outcome.PROTOCOL_ERROR, f"HTTP 200 from {doing} is not an object with {self.mapping.images!r}: "
                           f"{response.text[:200]}"), []
        if not refs:
            return failure(Outcome.OUTPUT_INVALID, f"the reply of {doing} has no images at {self.mapping.images!r}"), []
        if self.mapping.response != "json_base64":
            return failure(Outcome.PROTOCOL_ERROR, f"an own PyWorker's images must be base64 (response: json_base64), "
                           f"not {self.mapping.response!r}"), []
        return None, [decode_image(i, ref, outputs_dir) for i, ref in enumerate(refs)]

    async def _save(self, index: int, entry: Mapping[str, Any], outputs_dir: Path) -> OutputImage:
        filename = str(entry.get("filename") or f"output_{index}.png")
        # The name is the endpoint's: reduced to a safe one inside the cell's folder (the original stays in `filename`).
        target = outputs_dir / safe_name(index, Path(filename.replace("\\", "/")).name)
        data = entry.get("data")
        if not isinstance(data, str):
            # Without data the file is only on the instance (local_path) or in the user's S3 bucket.
            why = entry.get("error") or entry.get("upload_error") or "the output came without base64 data"
            return OutputImage(filename, str(target), 0, error=str(why))
        outputs_dir.mkdir(parents=True, exist_ok=True)
        try:
            decoded = base64.b64decode(data, validate=True)
        except binascii.Error as exc:
            return OutputImage(filename, str(target), 0, error=f"output is not valid base64: {exc}")
        target.write_bytes(decoded)
        return inspect_image(target, filename, data=decoded)

    async def aclose(self) -> None:
        await self.worker_client.aclose()
        await super().aclose()


# --- status and message ---------------------------------------------------------------------------------


def classify_result(status: int, result: Mapping[str, Any], text: str = "") -> Classification | None:
    """The outcome of a ``/generate/sync`` answer (status, decoded ``Result``); None when it completed."""
    if status == 200 and result.get("status") == "completed":
        return None
    if status in (401, 403):
        return failure(Outcome.AUTH_ERROR, f"HTTP {status}: the PyWorker refused the request's signature (auth_data)", http_status=status)
    if status == 429:
        return failure(Outcome.RATE_LIMITED, "HTTP 429: the PyWorker's queue is full (estimated wait above max_queue_time)", http_status=status)
    if status == 422:
        return failure(Outcome.PROTOCOL_ERROR, f"HTTP 422: the request envelope was refused: {text[:300]}", http_status=status)
    if status == 499 or result.get("status") == "cancelled":
        return failure(Outcome.CANCELLED, f"HTTP {status}: the request was cancelled", http_status=status)
    message = result.get("message")
    if not isinstance(message, str):
        if status == 500 and not text:
            return failure(Outcome.SERVER_ERROR, "HTTP 500 with an empty body: the PyWorker could not reach its api-wrapper", http_status=status)
        outcome = Outcome.SERVER_ERROR if status >= 500 else Outcome.PROTOCOL_ERROR
        return failure(outcome, f"HTTP {status} without a Result envelope: {text[:200]}", http_status=status)
    if message.startswith("Worker at capacity"):
        return failure(Outcome.RATE_LIMITED, f"HTTP {status}: {message}", http_status=status)
    verdict = _classify_message(message)
    # The native classifiers record ComfyUI's own status (or none); the client saw the wrapper's.
    return dataclasses.replace(verdict, evidence=dataclasses.replace(verdict.evidence, http_status=status))


def _classify_message(message: str) -> Classification:
    """A failed ``Result``'s ``message``, parsed back into ComfyUI's shapes where it keeps them."""
    stage = next((s for s in _STAGES if message.startswith(s)), "")
    detail = message[len(stage):]
    lowered = detail.lower()
    if detail.startswith(_NODE_ERRORS):
        try:
            node_errors = json.loads(detail[len(_NODE_ERRORS):])
        except ValueError:
            node_errors = None
        if node_errors == {}:
            return Classification(Outcome.SERVER_ERROR, False, Evidence(message=_HIDDEN, hint=_HIDDEN_HINT), hidden=True)
        if isinstance(node_errors, Mapping):
            body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"}, "node_errors": node_errors}
            return classify_prompt_response(400, body) or failure(Outcome.PROTOCOL_ERROR, message)
    if detail.startswith(_EXECUTION):
        try:
            data = ast.literal_eval(detail[len(_EXECUTION):])
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            data = None
        if isinstance(data, Mapping):
            return classify_event(["execution_error", data]) or failure(Outcome.EXECUTION_ERROR, message)
        return failure(Outcome.EXECUTION_ERROR, message[:300])
    if detail == _BUG:
        # Hidden: a partial acceptance ends this way too, which the endpoint's catalogue can prove.
        return Classification(Outcome.SERVER_ERROR, False, Evidence(message=_BUG_TEXT, hint=_BUG_HINT), hidden=True)
    if stage == "Preprocessing failed: ":
        if detail.startswith("Unknown modifier"):
            return failure(Outcome.PROTOCOL_ERROR, message)
        # Preprocessing downloads the URLs in the workflow: a URL that fails is the workflow's input.
        return failure(Outcome.INVALID_INPUT, f"an input URL in the workflow could not be downloaded: {detail[:300]}")
    if detail.startswith("ComfyUI not ready"):
        return failure(Outcome.UNREACHABLE, f"the api-wrapper's ComfyUI is not up: {detail}")
    if any(hint in lowered for hint in _TIMEOUT):
        return failure(Outcome.EXECUTION_TIMEOUT, f"the api-wrapper gave up waiting: {detail[:300]}")
    if any(hint in lowered for hint in _CONNECT):
        return failure(Outcome.UNREACHABLE, f"the api-wrapper could not reach ComfyUI: {detail[:300]}")
    if detail.startswith("Failed to post workflow after"):
        # ComfyUI answered 5xx to POST /prompt every time: e.g. a UI-format workflow, or a crashed handler.
        return failure(Outcome.SERVER_ERROR, f"ComfyUI answered 5xx to every POST /prompt: {detail[:300]}")
    return failure(Outcome.SERVER_ERROR, message[:300])

