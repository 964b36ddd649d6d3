"""A Vast.ai serverless envelope on the reference endpoint: route service, PyWorker and ai-dock api-wrapper.

``add_vast_routes(app)`` adds, next to the ComfyUI routes of the same app and over the same queue,
validator and executor, the three hops a Vast client meets (``providers.md``, Vast section):

- ``POST /vast/route/``: Vast's route service. ``{"endpoint", "api_key", "cost"}`` → a worker URL and the
  ``auth_data`` fields (``url``, ``reqnum``, ``signature``, ``endpoint``, ``cost``, ``request_idx``);
- ``POST /vast/worker/generate/sync``: vastai 1.9.1's PyWorker. ``{"auth_data", "payload"}``: 422 for
  missing fields, 401 (empty) for a bad signature, 429 (empty) when its queue is full, then one request at
  a time (``allow_parallel_requests=False``), the api-wrapper's status and body passed through;
- ``POST /vast/wrapper/generate/sync``: comfyui-api-wrapper e1d04af itself, ``{"input": {...}}``, no auth;
- ``POST /vast/own-worker/generate/sync``: a team's own PyWorker (the seed guide's "Option 2"; its shape,
  not a recording) behind the same route service, auth_data and queue: the payload ``{"workflow": {...},
  "output_format": "base64"}`` is answered ``{"status": "success", "image": <base64>, "metadata":
  {"generation_time", "gpu_used"}}``, a failure as HTTP 200 ``{"status": "error", "error": <message>}``
  with ComfyUI's ``node_errors`` or ``execution_error`` where it had them. The route service sends
  endpoints whose name starts with ``own`` there; ``OWN_WORKER_REQUEST`` is their ``request:``.

The wrapper's strings are reproduced from the recordings (``/work/shared/reference/providers/vast``):
ComfyUI's 400 as "Generation failed: ComfyUI node errors: <node_errors, indented>" (``{}`` for a missing
class, no output node or a missing class_type), an execution error as the Python repr of ComfyUI's
payload, a UI-format workflow as the 502 of its five failed POSTs, and its bug: a prompt that ends
within the 0.5 s post-submit probe without outputs answers '"Result" object has no field
"comfyui_job_id"'. Not reproduced: the 10 s of POST retries, URL downloads in the workflow and modifiers.

Settings come from the environment when the app is created: ``COMFY_REFERENCE_VAST_API_KEY`` (when set,
the route service needs it), ``COMFY_REFERENCE_VAST_UNSECURED`` (``true`` skips the signature check,
like the PyWorker's ``UNSECURED``) and ``COMFY_REFERENCE_VAST_CAPACITY`` (requests the PyWorker holds
before it answers 429; 5 as recorded, where the sixth of eight concurrent requests was refused).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import mimetypes
import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from harness.reference.runpod_worker import COMFY_HOST
from harness.reference.state import STATE, ServerState
from harness.comfy.validator import validate_prompt

__all__ = ["OWN_WORKER_REQUEST", "VastSettings", "add_vast_routes", "sign_url"]

PREFIX = "/vast"
COMFYUI_INSTALL_PATH = "/opt/ComfyUI"
PROBE_SECONDS = 0.5
"""The wrapper's sleep after submitting; a prompt that ended by then without outputs hits its bug."""
_HISTORY_POLL = 0.005
_BUG = 'Generation failed: "Result" object has no field "comfyui_job_id"'
# Substrings of a failure message for which the wrapper answers 502 instead of 500 (``_http_status_for``).
_BAD_GATEWAY = ("cannot connect", "failed to post workflow after", "network error", "connection refused",
                "websocket timeout", "websocket failure", "timed out")
_AUTH_FIELDS = ("cost", "endpoint", "reqnum", "request_idx", "signature", "url")
OWN_WORKER_REQUEST = {
    "path": "/generate/sync", "body": {"workflow": "{{workflow}}", "output_format": "base64"}, "response": "json_base64",
    "images": "image", "status": "status", "success": ["success"], "message": "error", "node_errors": "node_errors",
    "execution_error": "execution_error",
}
"""The endpoint ``request:`` of the own PyWorker: its payload and where its reply keeps the image and failures."""


@dataclass
class VastSettings:
    api_key: str | None = None
    unsecured: bool = False
    capacity: int = 5
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    """The route service's signing key, made at start-up.

    The real service signs with RSA (PKCS#1 v1.5, SHA-256) and the PyWorker verifies with the public key
    it fetches from ``/pubkey/``. The ``cryptography`` package is not a dependency here, so an HMAC-SHA256
    over the same signed text stands in: the client sees the same fields and the same 401s."""

    @classmethod
    def from_env(cls) -> VastSettings:
        return cls(os.environ.get("COMFY_REFERENCE_VAST_API_KEY") or None,
                   os.environ.get("COMFY_REFERENCE_VAST_UNSECURED", "").lower() == "true",
                   int(os.environ.get("COMFY_REFERENCE_VAST_CAPACITY", "5")))


def sign_url(key: bytes, url: str) -> str:
    """The signature over what the PyWorker checks: ``json.dumps({"url": url}, indent=4, sort_keys=True)``."""
    message = json.dumps({"url": url}, indent=4, sort_keys=True).encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


@dataclass
class _Worker:
    """The PyWorker's queue: requests held (waiting or running), served one at a time in order."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    held: int = 0
    reqnums: itertools.count = field(default_factory=lambda: itertools.count(1))


SETTINGS = web.AppKey("vast_settings", VastSettings)
WORKER = web.AppKey("vast_worker", _Worker)


def _fastapi(status: int, body: dict) -> web.Response:
    """The wrapper is FastAPI: compact JSON, ``application/json`` without a charset."""
    return web.Response(status=status, body=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
                        content_type="application/json")


# --- route service ------------------------------------------------------------------------------------


async def route(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "invalid JSON"}, status=400)
    body = body if isinstance(body, dict) else {}
    bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if settings.api_key is not None and settings.api_key not in (body.get("api_key"), bearer, request.query.get("api_key")):
        return web.json_response({"error": "invalid api key"}, status=401)
    if not isinstance(body.get("endpoint"), str):
        return web.json_response({"error": "endpoint missing"}, status=400)
    url = f"{request.url.origin()}{PREFIX}/{'own-worker' if body['endpoint'].startswith('own') else 'worker'}"
    reqnum = next(request.app[WORKER].reqnums)
    return web.json_response({
        "url": url, "reqnum": reqnum, "signature": sign_url(settings.key, url), "endpoint": body["endpoint"],
        "cost": body.get("cost", 100), "request_idx": body.get("request_idx", reqnum), "__request_id": uuid.uuid4().hex,
    })


# --- PyWorker (vastai 1.9.1 server, ``__handle_request``) -----------------------------------------------


def _field_errors(body: Any) -> dict:
    """The 422 body for missing or malformed top-level fields; empty when the request is well formed."""
    body = body if isinstance(body, dict) else {}
    errors: dict = {}
    auth = body.get("auth_data")
    if auth is None:
        errors["auth_data"] = "field missing"
    else:
        # All six keys are required even when UNSECURED; the recorded order is alphabetical.
        missing = {k: "missing parameter" for k in _AUTH_FIELDS if not isinstance(auth, dict) or k not in auth}
        if missing:
            errors["auth_data"] = missing
    payload = body.get("payload")
    if payload is None:
        errors["payload"] = "field missing"
    elif not isinstance(payload, dict):
        errors["payload"] = {"data": "payload must be a dictionary"}
    return errors


def _signed(settings: VastSettings, auth: dict) -> bool:
    """Only ``url`` is signed in this SDK; reqnum is not checked, so replays pass (as recorded)."""
    try:
        given = base64.b64decode(str(auth["signature"]), validate=True)
    except binascii.Error:
        return False
    expected = base64.b64decode(sign_url(settings.key, str(auth["url"])))
    return hmac.compare_digest(given, expected)


async def worker_generate_sync(request: web.Request) -> web.Response:
    """The comfyui-json PyWorker: the payload goes to the api-wrapper."""
    return await _pyworker(request, lambda state, payload: generate_sync(state, payload, base64_header=False))


async def own_worker_generate_sync(request: web.Request) -> web.Response:
    """The team's own PyWorker: its handler talks to ComfyUI itself."""
    return await _pyworker(request, own_handler)


async def _pyworker(request: web.Request, handler) -> web.Response:
    """What the vastai SDK's server does before and after a worker's handler: envelope, signature, queue."""
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "invalid JSON"}, status=422)
    if errors := _field_errors(body):
        return web.json_response(errors, status=422)
    settings, worker = request.app[SETTINGS], request.app[WORKER]
    if not settings.unsecured and not _signed(settings, body["auth_data"]):
        return web.Response(status=401)
    if worker.held >= settings.capacity or request.app[STATE].rate_limited():
        return web.Response(status=429)  # the PyWorker's own 429: empty, no Retry-After
    worker.held += 1
    try:
        async with worker.lock:
            # Client headers are not forwarded to the model server: only the payload travels.
            status, result = await handler(request.app[STATE], body["payload"])
    finally:
        worker.held -= 1
    return _fastapi(status, result)


async def own_handler(state: ServerState, payload: dict) -> tuple[int, dict]:
    """The own PyWorker's handler: the workflow to ComfyUI, the first saved image back as base64."""
    workflow = payload.get("workflow")
    if not isinstance(workflow, dict):
        return 400, {"status": "error", "error": "payload needs a 'workflow' object"}
    started = time.monotonic()
    prompt_id, number = str(uuid.uuid4()), state.number
    state.number += 1
    try:
        valid = validate_prompt(workflow, state.catalogue, state.files(), flavour=state.profile.flavour)
    except Exception:  # noqa: BLE001 - ComfyUI's handler raised: its plain 500
        return 200, {"status": "error", "error": "ComfyUI answered 500 to POST /prompt"}
    if not valid.accepted:
        return 200, {"status": "error", "error": str((valid.error or {}).get("message")), "node_errors": valid.node_errors}
    state.queue.put((number, prompt_id, valid.prompt, {"client_id": uuid.uuid4().hex}, valid.outputs))
    while (entry := state.queue.history.get(prompt_id)) is None:
        await asyncio.sleep(_HISTORY_POLL)
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return 200, {"status": "error", "error": f"execution failed: {data['exception_message'].strip()}", "execution_error": data}
    for node_output in (entry.get("outputs") or {}).values():
        for ref in node_output.get("images", []):
            path = state.storage.view_path(ref["filename"], ref.get("type", "output"), ref.get("subfolder"))
            if ref.get("type") == "output" and not isinstance(path, int):
                # The reference's one device is its CPU, as /system_stats says.
                return 200, {"status": "success", "image": base64.b64encode(path.read_bytes()).decode(),
                             "metadata": {"generation_time": round(time.monotonic() - started, 3), "gpu_used": "cpu"}}
    # A worker that ignores node_errors, as most do: a partial acceptance comes back as no image.
    return 200, {"status": "error", "error": "ComfyUI produced no image"}


# --- comfyui-api-wrapper e1d04af ------------------------------------------------------------------------


async def wrapper_generate_sync(request: web.Request) -> web.Response:
    try:
        payload = await request.json()
    except ValueError:
        return _fastapi(422, {"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "input": {}}]})
    base64_header = request.headers.get("X-Return-Outputs-As-Base64") == "1"
    status, result = await generate_sync(request.app[STATE], payload, base64_header=base64_header)
    return _fastapi(status, result)


def _invalid(input_: Any) -> dict | None:
    """pydantic's 422 for the ``Input`` model (``validate_workflow_mode``), or None when it validates."""
    def value_error(msg: str) -> dict:
        return {"detail": [{"type": "value_error", "loc": ["body", "input"], "msg": f"Value error, {msg}", "input": input_, "ctx": {"error": {}}}]}

    if not isinstance(input_, dict):
        return {"detail": [{"type": "model_attributes_type", "loc": ["body", "input"],
                            "msg": "Input should be a valid dictionary or object to extract fields from", "input": input_}]}
    workflow = input_.get("workflow_json")
    if workflow is not None and not isinstance(workflow, dict):
        return {"detail": [{"type": "dict_type", "loc": ["body", "input", "workflow_json"], "msg": "Input should be a valid dictionary", "input": workflow}]}
    # Truthiness, as upstream: an empty workflow_json counts as absent.
    if workflow and input_.get("modifier"):
        return value_error("Cannot provide both workflow_json and modifier - they are mutually exclusive")
    if not workflow and not input_.get("modifier"):
        return value_error("Must provide either workflow_json OR modifier")
    if input_.get("modifications") and not input_.get("modifier"):
        return value_error("modifications can only be provided when modifier is specified")
    return None


def _ms() -> int:
    return int(time.time() * 1000)


def _result(request_id: str, status: str, message: str, output: list, timings: dict) -> tuple[int, dict]:
    """The ``Result`` envelope and the HTTP status that mirrors its ``status``."""
    if status == "completed":
        code = 200
    else:
        code = 502 if any(hint in message.lower() for hint in _BAD_GATEWAY) else 500
    return code, {"id": request_id, "message": message, "status": status, "comfyui_response": {}, "output": output, "timings": timings}


async def generate_sync(state: ServerState, payload: Any, *, base64_header: bool) -> tuple[int, dict]:
    """``POST /generate/sync``: validate, submit to ComfyUI, wait, collect; (HTTP status, body)."""
    if not isinstance(payload, dict) or "input" not in payload:
        return 422, {"detail": [{"type": "missing", "loc": ["body", "input"], "msg": "Field required", "input": payload}]}
    input_ = payload["input"]
    if (invalid := _invalid(input_)) is not None:
        return 422, invalid
    request_id = str(input_.get("request_id") or uuid.uuid4())
    queued = _ms()
    started = time.monotonic()

    def failed(message: str) -> tuple[int, dict]:
        done = _ms()
        return _result(request_id, "failed", message, [],
                       {"queued_at_ms": queued, "preprocess_ms": 0, "postprocess_ms": 0, "completed_at_ms": done, "total_ms": done - queued})

    if input_.get("modifier"):
        # The wrapper's built-in Text2Image/Image2Image need model templates the reference does not have.
        return failed(f"Preprocessing failed: Unknown modifier: {input_['modifier']}")
    workflow = input_["workflow_json"]
    prompt_id, number = str(uuid.uuid4()), state.number
    state.number += 1
    try:
        valid = validate_prompt(workflow, state.catalogue, state.files(), flavour=state.profile.flavour)
    except Exception:  # noqa: BLE001 - what escapes ComfyUI's handler is its 500, which the wrapper retries
        # The aiohttp error's repr keeps the escaped newlines of ComfyUI's text body.
        return failed("Generation failed: Failed to post workflow after 5 attempts: 500, message='ComfyUI 5xx: 500 Internal Server Error"
                      f"\\n\\nServer got itself in trouble', url='http://{COMFY_HOST}/prompt'")
    if not valid.accepted:
        # The wrapper reads node_errors before error, and ComfyUI always sends the key: {} loses the reason.
        return failed(f"Generation failed: ComfyUI node errors: {json.dumps(valid.node_errors, indent=2)}")
    state.queue.put((number, prompt_id, valid.prompt, {"client_id": uuid.uuid4().hex}, valid.outputs))
    await asyncio.sleep(PROBE_SECONDS)
    entry = state.queue.history.get(prompt_id)
    if entry is not None and not entry.get("outputs"):
        return failed(_BUG)
    while (entry := state.queue.history.get(prompt_id)) is None:
        await asyncio.sleep(_HISTORY_POLL)
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return failed(f"Generation failed: Execution error: {data!r}")
    generated = time.monotonic()
    as_base64 = bool(input_.get("return_outputs_as_base64")) or base64_header
    output = [_output(request_id, node_id, kind, ref, path, as_base64)
              for node_id, node_output in (entry.get("outputs") or {}).items() for kind, ref, path in _files(state, node_output)]
    done = _ms()
    timings = {"queued_at_ms": queued, "preprocess_ms": 0, "generation_ms": round((generated - started) * 1000),
               "postprocess_ms": round((time.monotonic() - generated) * 1000), "completed_at_ms": done, "total_ms": done - queued}
    return _result(request_id, "completed", "Processing complete.", output, timings)


def _files(state: ServerState, node_output: dict) -> list[tuple[str, dict, Path]]:
    """``move_assets``: (key, file, its path) of each file a node's UI names under any key whose value is a
    list (a plain string is a file name), ``files`` instead of ``images`` where the node gives both; previews
    and names with no file in the output folder (PreviewAny's text) are left out."""
    keys = ["files", *(k for k in node_output if k not in ("images", "files"))] if "files" in node_output else list(node_output)
    found = []
    for key in keys:
        value = node_output.get(key)
        for ref in value if isinstance(value, list) else ():
            if isinstance(ref, str):
                ref = {"filename": os.path.basename(ref), "subfolder": "", "type": "output"}
            if not isinstance(ref, dict) or "filename" not in ref or ref.get("type", "") in ("temp", "preview"):
                continue
            path = state.storage.view_path(ref["filename"], "output", ref.get("subfolder"))
            if not isinstance(path, int):
                found.append((key, ref, path))
    return found


def _output(request_id: str, node_id: str, kind: str, ref: dict, path: Path, as_base64: bool) -> dict:
    """One ``output`` entry (``kind``: the UI key it came under); the wrapper copies each file into
    ``output/<request_id>/``."""
    filename = ref["filename"]
    entry = {"filename": filename, "local_path": f"{COMFYUI_INSTALL_PATH}/output/{request_id}/{filename}", "type": "output",
             "subfolder": ref.get("subfolder", ""), "node_id": node_id, "output_type": kind}
    if as_base64:
        entry["data"] = base64.b64encode(path.read_bytes()).decode()
        entry["mimetype"] = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return entry


def add_vast_routes(app: web.Application, settings: VastSettings | None = None) -> None:
    """Register the Vast envelope on a reference app; its ServerState must be set up before."""
    app[SETTINGS] = settings or VastSettings.from_env()
    app[WORKER] = _Worker()
    app.router.add_post(f"{PREFIX}/route/", route)
    app.router.add_post(f"{PREFIX}/worker/generate/sync", worker_generate_sync)
    app.router.add_post(f"{PREFIX}/wrapper/generate/sync", wrapper_generate_sync)
    app.router.add_post(f"{PREFIX}/own-worker/generate/sync", own_worker_generate_sync)
