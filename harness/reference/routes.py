"""The JSON routes of the reference endpoint: prompt, queue, history, interrupt and the server
descriptions, each doing what ComfyUI's ``server.py`` handler of the same path does (0.3.64, or 0.33.0
where the profile's flavour says so: its prompt_id check and node replacements before validation).

Exceptions are left to escape where ComfyUI lets them escape: aiohttp then answers 500 text/plain
"500 Internal Server Error\\n\\nServer got itself in trouble", as it does for the real server.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import weakref

from aiohttp import web

from harness.reference.hub import FEATURES
from harness.reference.jobs import JobsQueryError, job, jobs_page
from harness.reference.state import STATE, ServerState
from harness.comfy.replacements import NODE_REPLACEMENTS_0_33_0
from harness.comfy.validator import Flavour, prompt_id_error, validate_prompt

__all__ = ["routes"]

routes = web.RouteTableDef()

_NO_PROMPT = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}

# GET /models of the recording server (fixtures/captures/stock/models_list.json).
MODEL_FOLDERS = (
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
    "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
    "custom_nodes", "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders",
)


@routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.rate_limited():
        return state.too_many_requests()
    json_data = await request.json()
    if "number" in json_data:
        number = float(json_data["number"])
    else:
        number = state.number
        if "front" in json_data and json_data["front"]:
            number = -number
        state.number += 1
    if "prompt" not in json_data:
        return web.json_response({"error": _NO_PROMPT, "node_errors": {}}, status=400)
    refused = prompt_id_error(json_data, state.profile.flavour)
    if refused is not None:
        return web.json_response({"error": refused, "node_errors": {}}, status=400)
    # 0.3.64 queues a client's prompt_id as str() of whatever it is; 0.33.0 mints one for null.
    given = json_data.get("prompt_id")
    minted = given is None and (state.profile.flavour is Flavour.V0_33_0 or "prompt_id" not in json_data)
    prompt_id = str(uuid.uuid4()) if minted else str(given)
    targets = json_data["partial_execution_targets"] if "partial_execution_targets" in json_data else None
    valid = validate_prompt(
        json_data["prompt"], state.catalogue, state.files(), flavour=state.profile.flavour, partial_execution_targets=targets
    )
    extra_data = json_data["extra_data"] if "extra_data" in json_data else {}
    if "client_id" in json_data:
        extra_data["client_id"] = json_data["client_id"]
    if state.profile.flavour is Flavour.V0_33_0:  # what its /queue, /history and jobs show as the job's creation
        extra_data["create_time"] = int(time.time() * 1000)
    if not valid.accepted:
        return web.json_response(valid.response_body(prompt_id, number), status=400)
    state.queue.put((number, prompt_id, valid.prompt, extra_data, valid.outputs))
    return web.json_response(valid.response_body(prompt_id, number))


@routes.get("/prompt")
async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].queue_info())


@routes.get("/queue")
async def get_queue(request: web.Request) -> web.Response:
    running, pending = request.app[STATE].queue.current()
    return web.json_response({"queue_running": running, "queue_pending": pending})


@routes.post("/queue")
async def post_queue(request: web.Request) -> web.Response:
    queue = request.app[STATE].queue
    json_data = await request.json()
    if "clear" in json_data and json_data["clear"]:
        queue.wipe()
    if "delete" in json_data:
        for prompt_id in json_data["delete"]:
            queue.delete(prompt_id)
    return web.Response(status=200)


@routes.get("/history")
async def get_history(request: web.Request) -> web.Response:
    query = request.rel_url.query
    max_items = int(query["max_items"]) if "max_items" in query else None
    offset = int(query["offset"]) if "offset" in query else -1
    return web.json_response(request.app[STATE].queue.get_history(max_items=max_items, offset=offset))


@routes.get("/history/{prompt_id}")
async def get_history_entry(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].queue.get_history(request.match_info["prompt_id"]))


@routes.post("/history")
async def post_history(request: web.Request) -> web.Response:
    history = request.app[STATE].queue.history
    json_data = await request.json()
    if "clear" in json_data and json_data["clear"]:
        history.clear()
    if "delete" in json_data:
        for prompt_id in json_data["delete"]:
            history.pop(prompt_id, None)
    return web.Response(status=200)


@routes.post("/interrupt")
async def post_interrupt(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        json_data = await request.json()
    except json.JSONDecodeError:
        json_data = {}
    prompt_id = json_data.get("prompt_id")
    if not prompt_id:
        state.executor.interrupt()
    elif state.queue.is_running(prompt_id):
        state.executor.interrupt(prompt_id)
    return web.Response(status=200)


_object_info_text: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@routes.get("/object_info")
async def get_object_info(request: web.Request) -> web.Response:
    # 0.33.0's catalogues are 2-3 MB of JSON and every endpoint of a run reads one at its start: the
    # text is serialised once per document (the state makes a new one when the files change).
    state = request.app[STATE]
    info = state.object_info()
    cached = _object_info_text.get(state)
    if cached is None or cached[0] is not info:
        cached = _object_info_text[state] = (info, json.dumps(info))
    return web.Response(text=cached[1], content_type="application/json")


@routes.get("/object_info/{node_class}")
async def get_object_info_node(request: web.Request) -> web.Response:
    node_class = request.match_info["node_class"]
    info = request.app[STATE].object_info()
    return web.json_response({node_class: info[node_class]} if node_class in info else {})


@routes.get("/system_stats")
async def get_system_stats(request: web.Request) -> web.Response:
    system = dict(request.app[STATE].profile.system)
    device = {
        "name": "cpu",
        "type": "cpu",
        "index": None,
        "vram_total": system["ram_total"],
        "vram_free": system["ram_free"],
        "torch_vram_total": system["ram_total"],
        "torch_vram_free": system["ram_free"],
    }
    return web.json_response({"system": system, "devices": [device]})


@routes.get("/features")
async def get_features(request: web.Request) -> web.Response:
    return web.json_response(FEATURES)


def _added_in_0_33_0(request: web.Request) -> ServerState:
    """The server's state, for a route 0.33.0 added: a 0.3.64 server has no such route (404)."""
    state = request.app[STATE]
    if state.profile.flavour is not Flavour.V0_33_0:
        raise web.HTTPNotFound()
    return state


@routes.get("/node_replacements")
async def get_node_replacements(request: web.Request) -> web.Response:
    _added_in_0_33_0(request)
    return web.json_response(NODE_REPLACEMENTS_0_33_0)


@routes.get("/api/jobs")
async def get_jobs(request: web.Request) -> web.Response:
    state = _added_in_0_33_0(request)
    running, pending = state.queue.current()
    try:
        return web.json_response(jobs_page(request.rel_url.query, running, pending, state.queue.history))
    except JobsQueryError as exc:
        return web.json_response({"error": str(exc)}, status=400)


@routes.get("/api/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    state = _added_in_0_33_0(request)
    running, pending = state.queue.current()
    found = job(request.match_info["job_id"], running, pending, state.queue.history)
    return web.json_response(found) if found is not None else web.json_response({"error": "Job not found"}, status=404)


@routes.get("/embeddings")
async def get_embeddings(request: web.Request) -> web.Response:
    names = request.app[STATE].profile.models.get("embeddings", ())
    return web.json_response([os.path.splitext(name)[0] for name in names])


@routes.get("/models")
async def get_model_types(request: web.Request) -> web.Response:
    extra = [f for f in request.app[STATE].profile.models if f not in MODEL_FOLDERS]
    return web.json_response([*MODEL_FOLDERS, *extra])


@routes.get("/models/{folder}")
async def get_models(request: web.Request) -> web.Response:
    folder = request.match_info["folder"]
    models = request.app[STATE].profile.models
    if folder not in MODEL_FOLDERS and folder not in models:
        return web.Response(status=404)
    return web.json_response(list(models.get(folder, ())))
