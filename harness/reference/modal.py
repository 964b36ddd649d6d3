"""Modal envelopes on the reference endpoint: modal-examples' comfyapp web endpoint (``endpoints.md`` §4),
and a team's own Modal app that takes the workflow JSON.

``add_modal_routes(app)`` adds ``POST /modal/{app}/`` (the app's URL, ``https://<workspace>--example-
comfyui-comfyui-api.modal.run/``), next to the ComfyUI routes of the same app and over the same queue,
validator and executor. Like comfyapp's ``api`` it takes ``{"prompt": text}``, not a workflow: it runs
its baked-in workflow (``workflows/sdxl_baseline.json``) with node 6's text set to the prompt and node
9's filename prefix to a fresh uuid, and answers the image's bytes labelled ``image/jpeg``, as the
example does for a PNG. When ``comfy run`` would fail (validation or execution) it answers FastAPI's
opaque 500 "Internal Server Error"; a run without its output file answers 200 with an empty body.

Modal's 150 s HTTP limit is reproduced: a call not done within ``hold`` seconds answers 303 to
``/modal/{app}/?__modal_function_call_id=<id>``, whose GET waits ``hold`` seconds more and answers
the result or the next 303. Where §4 is silent this is inferred: the Location's form, Modal's proxy
auth (``Modal-Key``/``Modal-Secret`` headers; a 401 whose body is not recorded) and FastAPI's 422s.

``/modal-app/{app}/generate`` is the other pattern: a team's own FastAPI app on Modal in front of its
ComfyUI (inferred, no recording; what such an app commonly does). It takes ``{"workflow": {...}}``,
queues it as is and answers ``200 {"prompt_id", "images": [{"filename", "data": <base64>}],
"node_errors"}`` (node_errors non-empty when ComfyUI accepted the prompt only in part); ComfyUI's
refusal is passed through as ``400 {"error", "comfyui": <POST /prompt's 400 body>}``, an execution
error as ``500 {"error", "execution_error": <ComfyUI's payload>}``. ``WORKFLOW_APP_REQUEST`` is the
``request:`` that describes it to the modal provider. Modal's hold and 303s apply to it too.

Settings come from the environment when the app is created: ``COMFY_REFERENCE_MODAL_HOLD`` (seconds
before a 303; 150 as on Modal), ``COMFY_REFERENCE_MODAL_KEY`` and ``COMFY_REFERENCE_MODAL_SECRET``
(when both are set, requests need them as ``Modal-Key``/``Modal-Secret``, else 401).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from harness.reference.state import STATE, ServerState
from harness.comfy.validator import validate_prompt

__all__ = ["BAKED_WORKFLOW", "WORKFLOW_APP_PREFIX", "WORKFLOW_APP_REQUEST", "ModalSettings", "add_modal_routes"]

PREFIX = "/modal/{app}"
WORKFLOW_APP_PREFIX = "/modal-app/{app}"
WORKFLOW_APP_REQUEST = {
    "path": "/generate", "body": {"workflow": "{{workflow}}"}, "response": "json_base64", "images": "images.data",
    "message": "error", "comfyui_error": "comfyui", "node_errors": "node_errors", "execution_error": "execution_error",
}
"""The endpoint ``request:`` of the workflow app: its template and where its reply keeps images and failures."""
BAKED_WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "sdxl_baseline.json"
"""comfyapp's ``workflow_api.json`` stand-in: the example's graph is also SDXL with text in node 6, SaveImage 9."""
CALL_ID = "__modal_function_call_id"
_HISTORY_POLL = 0.005


@dataclass(frozen=True)
class ModalSettings:
    hold: float = 150.0
    key: str | None = None
    secret: str | None = None

    @classmethod
    def from_env(cls) -> ModalSettings:
        return cls(float(os.environ.get("COMFY_REFERENCE_MODAL_HOLD", "150")),
                   os.environ.get("COMFY_REFERENCE_MODAL_KEY") or None, os.environ.get("COMFY_REFERENCE_MODAL_SECRET") or None)


SETTINGS = web.AppKey("modal_settings", ModalSettings)
CALLS = web.AppKey("modal_calls", dict)
"""Function calls not yet answered: call id → the task that runs ``api``."""


class ComfyRunFailed(Exception):
    """``comfy run`` exited non-zero: ``check=True`` raises, and FastAPI turns that into its opaque 500."""


async def comfyapp(state: ServerState, item: dict) -> bytes:
    """comfyapp's ``api`` and ``infer``: the baked workflow with the prompt, run to its output file's bytes."""
    workflow = json.loads(BAKED_WORKFLOW.read_text(encoding="utf-8"))
    workflow["6"]["inputs"]["text"] = item["prompt"]  # no "prompt": KeyError, a 500 as upstream
    prefix = str(uuid.uuid4())
    workflow["9"]["inputs"]["filename_prefix"] = prefix
    prompt_id, number = str(uuid.uuid4()), state.number
    state.number += 1
    valid = validate_prompt(workflow, state.catalogue, state.files(), flavour=state.profile.flavour)
    if not valid.accepted:
        raise ComfyRunFailed(f"prompt refused: {valid.node_errors}")
    state.queue.put((number, prompt_id, valid.prompt, {"client_id": uuid.uuid4().hex}, valid.outputs))
    while (entry := state.queue.history.get(prompt_id)) is None:
        await asyncio.sleep(_HISTORY_POLL)
    if any(kind == "execution_error" for kind, _ in entry["status"]["messages"]):
        raise ComfyRunFailed("execution error")
    for node_output in (entry.get("outputs") or {}).values():
        for ref in node_output.get("images", []):
            if ref["filename"].startswith(prefix):
                path = state.storage.view_path(ref["filename"], ref.get("type", "output"), ref.get("subfolder"))
                if not isinstance(path, int):
                    return path.read_bytes()
    # infer() finds no file with the prefix and returns None: FastAPI sends 200 with an empty body.
    return b""


async def workflow_app(state: ServerState, workflow: dict) -> web.Response:
    """The team app's ``/generate``: the workflow queued as is, ComfyUI's answers passed through."""
    if state.rate_limited():
        return state.too_many_requests()
    prompt_id, number = str(uuid.uuid4()), state.number
    state.number += 1
    try:
        valid = validate_prompt(workflow, state.catalogue, state.files(), flavour=state.profile.flavour)
    except Exception:  # noqa: BLE001 - ComfyUI's handler raised: its plain 500, which the app reports as a 502
        return web.json_response({"error": "ComfyUI answered 500 to POST /prompt"}, status=502)
    if not valid.accepted:
        return web.json_response({"error": "ComfyUI refused the workflow", "comfyui": valid.response_body(prompt_id, number)}, status=400)
    state.queue.put((number, prompt_id, valid.prompt, {"client_id": uuid.uuid4().hex}, valid.outputs))
    while (entry := state.queue.history.get(prompt_id)) is None:
        await asyncio.sleep(_HISTORY_POLL)
    for kind, data in entry["status"]["messages"]:
        if kind in ("execution_error", "execution_interrupted"):
            return web.json_response({"error": f"ComfyUI reported {kind}", kind: data}, status=500)
    images = []
    for node_output in (entry.get("outputs") or {}).values():
        for ref in node_output.get("images", []):
            path = state.storage.view_path(ref["filename"], ref.get("type", "output"), ref.get("subfolder"))
            if ref.get("type", "output") == "output" and not isinstance(path, int):
                images.append({"filename": ref["filename"], "data": base64.b64encode(path.read_bytes()).decode()})
    return web.json_response({"prompt_id": prompt_id, "images": images, "node_errors": valid.node_errors})


def _refused(request: web.Request) -> web.Response | None:
    settings = request.app[SETTINGS]
    if settings.key is None or settings.secret is None:
        return None
    if (request.headers.get("Modal-Key"), request.headers.get("Modal-Secret")) == (settings.key, settings.secret):
        return None
    return web.Response(status=401, text="Unauthorized")


async def _answer(request: web.Request, call_id: str) -> web.Response:
    """The call's reply if it ends within ``hold`` seconds, else a 303 to wait for it again."""
    calls = request.app[CALLS]
    task = calls[call_id]
    # asyncio.wait leaves the task running when it times out, as Modal keeps the function call going.
    done, _ = await asyncio.wait({task}, timeout=request.app[SETTINGS].hold)
    if not done:
        # Back to the same function's URL: comfyapp's root, or the workflow app's /generate.
        base = request.path if request.path.endswith("/generate") else f"{PREFIX.format(app=request.match_info['app'])}/"
        raise web.HTTPSeeOther(f"{base}?{CALL_ID}={call_id}")
    del calls[call_id]
    if task.exception() is not None:
        return web.Response(status=500, text="Internal Server Error")
    if isinstance(task.result(), web.Response):  # the workflow app's own answer
        return task.result()
    return web.Response(body=task.result(), content_type="image/jpeg")


async def _web_function(request: web.Request, call) -> web.Response:
    """What a Modal web function does around its body: proxy auth, a 303's Location, the JSON body, then
    the call held until it ends or the hold runs out. ``call(state, item)`` is the function's
    coroutine, or the 422 FastAPI answers a body it refuses."""
    if (bad := _refused(request)) is not None:
        return bad
    call_id = request.query.get(CALL_ID)
    if call_id is not None:
        # A 303's Location: GET, or POST again from a client that keeps the method (curl -L -X POST).
        if call_id not in request.app[CALLS]:
            return web.Response(status=404, text=f"function call {call_id} not found")
        return await _answer(request, call_id)
    if request.method != "POST":
        return web.json_response({"detail": "Method Not Allowed"}, status=405)
    try:
        item = await request.json()
    except ValueError:
        return web.json_response({"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}]}, status=422)
    started = call(request.app[STATE], item)
    if isinstance(started, web.Response):
        return started
    call_id = f"fc-{uuid.uuid4().hex}"
    request.app[CALLS][call_id] = asyncio.create_task(started)
    return await _answer(request, call_id)


def _comfyapp_call(state: ServerState, item: object):
    if not isinstance(item, dict):
        return web.json_response({"detail": [{"type": "dict_type", "loc": ["body"], "msg": "Input should be a valid dictionary"}]}, status=422)
    return comfyapp(state, item)


def _workflow_app_call(state: ServerState, item: object):
    if not isinstance(item, dict) or not isinstance(item.get("workflow"), dict):
        return web.json_response({"detail": [{"type": "missing", "loc": ["body", "workflow"], "msg": "Field required"}]}, status=422)
    return workflow_app(state, item["workflow"])


async def api(request: web.Request) -> web.Response:
    """comfyapp's ``POST /`` (or the GET of a 303's Location)."""
    return await _web_function(request, _comfyapp_call)


async def generate(request: web.Request) -> web.Response:
    """The workflow app's ``POST /generate`` (or the GET of a 303's Location)."""
    return await _web_function(request, _workflow_app_call)


def add_modal_routes(app: web.Application, settings: ModalSettings | None = None) -> None:
    """Register the comfyapp envelope on a reference app; its ServerState must be set up before."""
    app[SETTINGS] = settings or ModalSettings.from_env()
    app[CALLS] = {}

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        for task in app[CALLS].values():
            task.cancel()
        await asyncio.gather(*app[CALLS].values(), return_exceptions=True)

    app.cleanup_ctx.append(lifecycle)
    # The app's URL is its root; a client may or may not send the trailing slash.
    for path in (PREFIX, f"{PREFIX}/"):
        app.router.add_post(path, api)
        app.router.add_get(path, api)
    app.router.add_post(f"{WORKFLOW_APP_PREFIX}/generate", generate)
    app.router.add_get(f"{WORKFLOW_APP_PREFIX}/generate", generate)
