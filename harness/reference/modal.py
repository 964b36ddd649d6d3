"""A Modal envelope on the reference endpoint: modal-examples' comfyapp web endpoint (``endpoints.md`` §4).

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

Settings come from the environment when the app is created: ``COMFY_REFERENCE_MODAL_HOLD`` (seconds
before a 303; 150 as on Modal), ``COMFY_REFERENCE_MODAL_KEY`` and ``COMFY_REFERENCE_MODAL_SECRET``
(when both are set, requests need them as ``Modal-Key``/``Modal-Secret``, else 401).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from harness.reference.state import STATE, ServerState
from harness.comfy.validator import validate_prompt

__all__ = ["BAKED_WORKFLOW", "ModalSettings", "add_modal_routes"]

PREFIX = "/modal/{app}"
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
        raise web.HTTPSeeOther(f"{PREFIX.format(app=request.match_info['app'])}/?{CALL_ID}={call_id}")
    del calls[call_id]
    if task.exception() is not None:
        return web.Response(status=500, text="Internal Server Error")
    return web.Response(body=task.result(), content_type="image/jpeg")


async def api(request: web.Request) -> web.Response:
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
    if not isinstance(item, dict):
        return web.json_response({"detail": [{"type": "dict_type", "loc": ["body"], "msg": "Input should be a valid dictionary"}]}, status=422)
    call_id = f"fc-{uuid.uuid4().hex}"
    request.app[CALLS][call_id] = asyncio.create_task(comfyapp(request.app[STATE], item))
    return await _answer(request, call_id)


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
