"""The native ComfyUI provider end to end, over loopback, against the reference endpoint.

Every outcome a native ComfyUI can produce is driven for real: the reference endpoint validates and
"runs" the prompt, the provider talks HTTP and websocket to it and classifies what it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from conftest import load_json, outcome, run_provider
from harness.run.cases import OutputCheck
from harness.run.endpoints import Endpoint, Timeouts
from harness.run.engine import check_outputs
from harness.run.outcomes import Outcome
from harness.providers.comfyui import ComfyUIProvider
from harness.reference.profile import FailureRule, Profile

SMOKE = load_json("workflows/smoke_invert.json")
SDXL = load_json("workflows/sdxl_baseline.json")
DENRISI = load_json("workflows/denrisi_zimage_res4lyf.json")


run = functools.partial(run_provider, "comfyui")



async def test_a_run_downloads_real_images_and_records_timings(reference_endpoint, tmp_path):
    srv = reference_endpoint("stock")
    record = await run(srv.url, SMOKE, tmp_path)
    assert record.classification is None
    [image] = record.images
    assert (image.format, image.width, image.height, image.type) == ("PNG", 512, 512, "output")
    assert Path(image.path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert record.timings.queue is not None and record.timings.execution is not None
    assert 0 < record.timings.total < 5


async def test_sdxl_passes_and_denrisi_is_missing_node_on_stock(reference_endpoint, tmp_path):
    srv = reference_endpoint("stock")
    sdxl = await run(srv.url, SDXL, tmp_path)
    assert sdxl.classification is None and (sdxl.images[0].width, sdxl.images[0].height) == (1024, 1024)
    denrisi = await run(srv.url, DENRISI, tmp_path)
    assert outcome(denrisi) is Outcome.MISSING_NODE
    assert denrisi.classification.evidence.missing_classes  # ComfyUI names the first missing class


async def test_partial_acceptance_is_never_passed(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("custom").replace(models={}))
    record = await run(srv.url, DENRISI, tmp_path)
    assert outcome(record) is Outcome.MISSING_MODEL
    assert record.classification.partial is True
    files = {m["file"] for m in record.classification.evidence.missing_models}
    assert files == {"z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda wf: wf["1"]["inputs"].update(width=0), Outcome.INVALID_INPUT),
        (lambda wf: wf["1"]["inputs"].pop("width"), Outcome.INVALID_INPUT),
        (lambda wf: wf["2"]["inputs"].update(image=["99", 0]), Outcome.INVALID_GRAPH),
        (lambda wf: wf.pop("3"), Outcome.INVALID_GRAPH),
    ],
    ids=["below_min", "required_missing", "dangling_link", "no_output"],
)
async def test_validation_failures(reference_endpoint, tmp_path, change, expected):
    srv = reference_endpoint("stock")
    workflow = copy.deepcopy(SMOKE)
    change(workflow)
    assert outcome(await run(srv.url, workflow, tmp_path)) is expected


async def test_missing_model_names_file_and_folder(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(models={}))
    record = await run(srv.url, SDXL, tmp_path)
    assert outcome(record) is Outcome.MISSING_MODEL
    [model] = record.classification.evidence.missing_models
    assert (model["file"], model["folder"], model["input"]) == ("sd_xl_base_1.0.safetensors", "checkpoints", "ckpt_name")


@pytest.mark.parametrize(
    ("exception_type", "message", "expected"),
    [
        ("RuntimeError", "Sizes of tensors must match except in dimension 0.", Outcome.EXECUTION_ERROR),
        ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB", Outcome.OUT_OF_MEMORY),
    ],
)
async def test_execution_failures_name_node_and_exception(reference_endpoint, tmp_path, exception_type, message, expected):
    profile = Profile.builtin("stock").replace(failures=(FailureRule("ImageInvert", exception_type, message),))
    record = await run(reference_endpoint(profile).url, SMOKE, tmp_path)
    assert outcome(record) is expected
    ev = record.classification.evidence
    assert (ev.node_id, ev.node_type, ev.exception_type) == ("2", "ImageInvert", exception_type)
    assert ev.exception_message.startswith(message)


async def test_a_slow_run_past_its_deadline_is_interrupted(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"ImageInvert": 3.0}))
    record = await run(srv.url, SMOKE, tmp_path, budget=0.5)
    assert outcome(record) is Outcome.EXECUTION_TIMEOUT
    # The provider interrupted the prompt, so the endpoint is free again soon after.
    async with httpx.AsyncClient(base_url=srv.url) as client:
        for _ in range(100):
            if (await client.get("/prompt")).json()["exec_info"]["queue_remaining"] == 0:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the timed-out prompt was not interrupted")


async def test_a_prompt_stuck_behind_another_is_a_queue_timeout(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"ImageInvert": 1.5}))
    blocker = copy.deepcopy(SMOKE)
    blocker["1"]["inputs"]["color"] = 1  # not cached: a different prompt
    async with httpx.AsyncClient(base_url=srv.url) as client:
        assert (await client.post("/prompt", json={"prompt": blocker})).status_code == 200
    record = await run(srv.url, SMOKE, tmp_path, budget=10, timeouts=Timeouts(queue=0.3))
    assert outcome(record) is Outcome.QUEUE_TIMEOUT


async def test_an_interrupt_from_elsewhere_is_cancelled(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"ImageInvert": 1.0}))

    def interrupt_soon():
        time.sleep(0.3)
        httpx.post(f"{srv.url}/interrupt")

    threading.Thread(target=interrupt_soon, daemon=True).start()
    assert outcome(await run(srv.url, SMOKE, tmp_path)) is Outcome.CANCELLED


async def test_origin_refused_is_auth_error(reference_endpoint, tmp_path):
    srv = reference_endpoint("stock")
    record = await run(srv.url, SMOKE, tmp_path, headers={"Origin": "http://evil.example"})
    assert outcome(record) is Outcome.AUTH_ERROR
    assert record.classification.evidence.http_status == 403


async def test_a_prompt_comfyui_cannot_parse_is_server_error(reference_endpoint, tmp_path):
    record = await run(reference_endpoint("stock").url, [1, 2], tmp_path)
    assert outcome(record) is Outcome.SERVER_ERROR
    assert record.classification.evidence.http_status == 500


@contextlib.asynccontextmanager
async def _serving(app: web.Application):
    """``app`` served on a free loopback port; yields its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def not_comfyui():
    """A real HTTP server that is not ComfyUI: it answers /prompt with an HTML page."""
    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", html)
    async with _serving(app) as url:
        yield url


async def test_a_server_that_is_not_comfyui_is_protocol_error(not_comfyui, tmp_path):
    assert outcome(await run(not_comfyui, SMOKE, tmp_path)) is Outcome.PROTOCOL_ERROR


async def test_catalogue_and_provenance(reference_endpoint):
    srv = reference_endpoint("custom")
    async with ComfyUIProvider(Endpoint("custom", srv.url)) as provider:
        catalogue = await provider.catalogue()
        provenance = await provider.provenance()
    assert "ClownsharKSampler_Beta" in catalogue and len(catalogue) == 812
    assert provenance["comfyui_version"] == "0.3.64" and provenance["devices"] == ["cpu"]


def test_repro_uses_env_var_names_never_secrets(monkeypatch):
    monkeypatch.setenv("COMFY_KEY", "s3cret")
    provider = ComfyUIProvider(Endpoint("e", "http://127.0.0.1:8188", headers={"Authorization": "Bearer ${COMFY_KEY}"}))
    repro = provider.repro("cells/x@e/request.json")
    assert '"Authorization: Bearer $COMFY_KEY"' in repro and "s3cret" not in repro
    assert repro.startswith("curl -sS -X POST http://127.0.0.1:8188/prompt")
    asyncio.run(provider.aclose())


@contextlib.asynccontextmanager
async def _one_prompt(events: list[tuple[str, dict]], outputs: dict, files: dict[str, bytes] = {}):
    """A server that takes one prompt (p1): sends ``events`` on its websocket, then keeps a successful history
    entry with ``outputs`` and serves ``files`` on /view by name; yields its URL."""
    sockets: list[web.WebSocketResponse] = []

    async def ws(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        sockets.append(socket)
        async for _ in socket:
            pass
        return socket

    async def prompt(request: web.Request) -> web.Response:
        for kind, data in events:
            await sockets[0].send_str(json.dumps({"type": kind, "data": {**data, "prompt_id": "p1"}}))
        return web.json_response({"prompt_id": "p1", "number": 1, "node_errors": {}})

    async def history(request: web.Request) -> web.Response:
        return web.json_response({"p1": {"outputs": outputs, "status": {"status_str": "success", "completed": True, "messages": []}}})

    async def view(request: web.Request) -> web.Response:
        return web.Response(body=files[request.query["filename"]], content_type="video/mp4")

    app = web.Application()
    app.router.add_get("/ws", ws)
    app.router.add_post("/prompt", prompt)
    app.router.add_get("/history/{id}", history)
    app.router.add_get("/view", view)
    async with _serving(app) as url:
        yield url


async def test_events_holding_nan_are_read(tmp_path):
    """ComfyUI writes its events with Python's json, which spells a NaN float ``NaN`` (not JSON): a custom
    node's progress value can be one. Such events are still read, so the cell knows what ran."""
    events = [("execution_start", {}), ("execution_cached", {"nodes": ["1"]}), ("executing", {"node": "2"}),
              ("executing", {"node": "3"}), ("executing", {"node": None})]
    async with _one_prompt([(kind, {**data, "value": float("nan")}) for kind, data in events], {}) as url:
        record = await run(url, SMOKE, tmp_path)
    assert record.classification is None
    assert (record.cached_nodes, record.executed_nodes) == (1, 2)


async def test_a_saved_video_is_the_runs_output(tmp_path):
    """SaveVideo's file is listed among the node's images, ``animated`` beside it (comfy_api's PreviewVideo).
    It is downloaded and proven a whole video of its frame size, and a stated size is checked against it."""
    video = (Path(__file__).resolve().parents[1] / "fixtures" / "outputs" / "h264_64x48.mp4").read_bytes()
    saved = {"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}
    async with _one_prompt([("executing", {"node": None})], {"9": {"images": [saved], "animated": [True]}},
                           {"ComfyUI_00001_.mp4": video}) as url:
        record = await run(url, SMOKE, tmp_path)
    assert record.classification is None
    [output] = record.images
    assert (output.filename, output.format, output.width, output.height, output.error) == ("ComfyUI_00001_.mp4", "MP4", 64, 48, None)
    assert Path(output.path).read_bytes() == video
    assert check_outputs(record.images, OutputCheck()) is None and check_outputs(record.images, OutputCheck(width=64)) is None
    assert check_outputs(record.images, OutputCheck(width=512)).evidence.message == "ComfyUI_00001_.mp4: width 64 (expected 512)"


async def test_a_previewed_sound_is_no_output(tmp_path):
    """PreviewAudio's file is in the temp folder (``type: temp``): a preview, as a previewed image is, so a
    run that only previews returned no output; SaveAudio's, in the output folder, is one."""
    previewed = {"filename": "ComfyUI_temp_abcde_00001_.flac", "subfolder": "", "type": "temp"}
    saved = {"filename": "ComfyUI_00001_.flac", "subfolder": "audio", "type": "output"}
    async with _one_prompt([("executing", {"node": None})], {"3": {"audio": [previewed]}}) as url:
        assert (await run(url, SMOKE, tmp_path)).other_outputs == 0
    flac = b"fLaC\x80\x00\x00\x22" + bytes(34)
    async with _one_prompt([("executing", {"node": None})], {"3": {"audio": [previewed]}, "4": {"audio": [saved]}},
                           {"ComfyUI_00001_.flac": flac}) as url:
        record = await run(url, SMOKE, tmp_path)
    assert (record.classification, record.images, record.other_outputs) == (None, (), 1)
    assert [p.read_bytes() for p in tmp_path.iterdir()] == [flac]  # downloaded all the same: the run's evidence


async def test_a_file_under_another_key_is_kept_as_the_video_it_is(tmp_path):
    """VideoHelperSuite's Video Combine lists its file under ``gifs`` (videohelpersuite/nodes.py): downloaded
    and read like SaveVideo's, so a stated size applies to it; a text value under another key is an output."""
    video = (Path(__file__).resolve().parents[1] / "fixtures" / "outputs" / "h264_64x48.mp4").read_bytes()
    combined = {"filename": "AnimateDiff_00001.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4"}
    async with _one_prompt([("executing", {"node": None})], {"9": {"gifs": [combined]}, "10": {"text": ["done"]}},
                           {"AnimateDiff_00001.mp4": video}) as url:
        record = await run(url, SMOKE, tmp_path)
    [output] = record.images
    assert (record.classification, output.format, output.width, output.height, record.other_outputs) == (None, "MP4", 64, 48, 1)


async def test_a_prompt_that_kills_the_worker_is_named_and_so_is_the_queue_behind_it(reference_endpoint, tmp_path):
    """ComfyUI 0.33.0's prompt worker dies on an undeclared input linked to a node the prompt lacks (recorded:
    the prompt stays running, nothing after it runs, HTTP answers on). The reference does the same; the
    cell says the endpoint stopped executing, and the next one what it is queued behind."""
    from conftest import load_json as capture

    srv = reference_endpoint(Profile.builtin("stock").replace(models={}))
    killer = capture("fixtures/captures/0.33.0/stock/v3_undeclared_link_to_missing_node.json")["request"]["json"]["prompt"]
    endpoint = Endpoint("dies", srv.url, timeouts=Timeouts(queue=0.5, execution=1.0))
    async with ComfyUIProvider(endpoint) as provider:
        started = time.monotonic()
        dead = await provider.run(killer, deadline=started + 1.0, outputs_dir=tmp_path)
        behind = await provider.run(SMOKE, deadline=time.monotonic() + 1.5, outputs_dir=tmp_path)
    assert outcome(dead) is Outcome.EXECUTION_TIMEOUT
    assert dead.classification.evidence.message.startswith("the endpoint stopped executing: prompt ")
    assert outcome(behind) is Outcome.QUEUE_TIMEOUT
    assert f"queued behind prompt {dead.job_id}, which the endpoint stopped executing" in behind.classification.evidence.message
