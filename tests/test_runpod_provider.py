"""The RunPod provider end to end, over loopback, against the reference endpoint's RunPod envelope, and
its parser over every error string recorded from worker-comfyui v5.8.5.

The reference envelope reads its API key and cold start from the environment when the server starts,
so those tests set the variables before starting it.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from conftest import load_json, outcome, run_provider
from harness.run.endpoints import Timeouts
from harness.run.outcomes import Outcome
from harness.providers.runpod import classify_error
from harness.reference.profile import FailureRule, Profile
from harness.reference.runpod import JOBS
from harness.reference.server import running_server

SMOKE = load_json("workflows/smoke_invert.json")
SDXL = load_json("workflows/sdxl_baseline.json")
DENRISI = load_json("workflows/denrisi_zimage_res4lyf.json")
RECORDINGS = Path("/work/shared/reference/providers/runpod")

# Every recording whose reply carries an error string, and the outcome it must parse to.
EXPECTED = {
    "a_run_status_POST_again": Outcome.PROTOCOL_ERROR,
    "a_run_stream_non_generator": Outcome.PROTOCOL_ERROR,
    "a_status_unknown_id": Outcome.PROTOCOL_ERROR,
    "b2_clownshark_sdxl_custom": Outcome.MISSING_MODEL,
    "b2_clownshark_sdxl_stock": Outcome.MISSING_NODE,
    "b_clownshark_minimal_custom": Outcome.INVALID_GRAPH,
    "b_clownshark_minimal_stock": Outcome.MISSING_NODE,
    "c_sdxl_missing_ckpt_custom": Outcome.MISSING_MODEL,
    "c_sdxl_missing_ckpt_stock": Outcome.MISSING_MODEL,
    # The dev API drops details: "Job processing failed" alone hides whether ComfyUI accepted the prompt
    # in part (Denrisi on custom) or a node raised (ImageBatch), so it is server_error, the reason hidden.
    "d_denrisi_custom": Outcome.SERVER_ERROR,
    "d_denrisi_stock": Outcome.MISSING_NODE,
    "e_exec_error_imagebatch_custom": Outcome.SERVER_ERROR,
    "e_exec_error_imagebatch_run_status": Outcome.SERVER_ERROR,
    "e_exec_error_imagebatch_stock": Outcome.SERVER_ERROR,
    "f2_input_without_workflow": Outcome.PROTOCOL_ERROR,
    "f2b_input_prompt_instead_of_workflow": Outcome.PROTOCOL_ERROR,
    "f2c_workflow_null": Outcome.PROTOCOL_ERROR,
    "f3_workflow_is_string": Outcome.SERVER_ERROR,
    "f3b_workflow_is_json_string": Outcome.SERVER_ERROR,
    "f3c_workflow_is_list": Outcome.SERVER_ERROR,
    "f3d_workflow_empty_object": Outcome.INVALID_GRAPH,
    "f3e_workflow_is_number": Outcome.SERVER_ERROR,
    "f3f_workflow_ui_format": Outcome.SERVER_ERROR,
    "f4_images_bad_base64": Outcome.INVALID_INPUT,
    "f4b_images_bad_base64_data_uri": Outcome.INVALID_INPUT,
    "f4c_images_not_list": Outcome.INVALID_INPUT,
    "f4d_images_entry_missing_image_key": Outcome.INVALID_INPUT,
    "f4e_images_entry_is_string_passing_check": Outcome.SERVER_ERROR,
    "f4g_images_valid_base64_not_an_image": Outcome.SERVER_ERROR,  # "Job processing failed" again
    "f4h_loadimage_missing_file_no_images": Outcome.INVALID_INPUT,
    "g1_unreachable_no_pidfile": Outcome.UNREACHABLE,
    "g1b_unreachable_missing_workflow": Outcome.PROTOCOL_ERROR,
    "g2_unreachable_pidfile_dead_process": Outcome.UNREACHABLE,
    "g3_unreachable_pidfile_live_process": Outcome.UNREACHABLE,
    "platform_b_clownshark_custom": Outcome.INVALID_GRAPH,
    "platform_b_clownshark_stock": Outcome.MISSING_NODE,
    "platform_c_sdxl_missing_ckpt_stock": Outcome.MISSING_MODEL,
    # With details the cause shows: ComfyUI ran only the output node that validated, with no outputs.
    "platform_d_denrisi_custom": Outcome.OUTPUT_INVALID,
    "platform_e_exec_error_imagebatch": Outcome.EXECUTION_ERROR,
    "platform_f_images_bad_base64": Outcome.INVALID_INPUT,
    "platform_f_images_entry_string": Outcome.SERVER_ERROR,
    "platform_f_input_list": Outcome.SERVER_ERROR,
    "platform_f_input_not_json_string": Outcome.PROTOCOL_ERROR,
    "platform_f_input_null": Outcome.PROTOCOL_ERROR,
    "platform_f_input_without_workflow": Outcome.PROTOCOL_ERROR,
    "platform_f_workflow_is_string": Outcome.SERVER_ERROR,
    "v_missing_class_type": Outcome.MISSING_NODE,
    "v_no_output_node": Outcome.INVALID_GRAPH,
    "v_required_input_missing": Outcome.INVALID_INPUT,
    "v_return_type_mismatch": Outcome.INVALID_GRAPH,
    "v_value_above_max": Outcome.INVALID_INPUT,
}


def recorded_failure(name: str) -> tuple[str, list | None]:
    """(error, details) of a recording: a dev-API reply body, or the worker's job-done body."""
    data = json.loads((RECORDINGS / f"{name}.json").read_text(encoding="utf-8"))
    body = data["body"] if "body" in data else data["job_done_request"]["json"]
    output = body.get("output") if isinstance(body.get("output"), dict) else {}
    return body["error"], output.get("details")


def recordings_with_errors() -> list[str]:
    names = []
    for path in sorted(RECORDINGS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        body = data.get("body") if "body" in data else (data.get("job_done_request") or {}).get("json")
        if isinstance(body, dict) and "error" in body:
            names.append(path.stem)
    return names


def test_every_recorded_error_string_is_in_the_table():
    assert recordings_with_errors() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_error_strings_parse_to_their_outcome(name):
    error, details = recorded_failure(name)
    assert classify_error(error, details).outcome is EXPECTED[name]


def test_parsed_strings_keep_comfyui_evidence():
    missing = classify_error(*recorded_failure("d_denrisi_stock")).evidence
    assert (missing.missing_classes, missing.node_id) == (("FluxResolutionNode",), "7")
    model = classify_error(*recorded_failure("c_sdxl_missing_ckpt_stock")).evidence
    assert model.missing_models[0]["file"] == "sd_xl_base_1.0.safetensors" and model.missing_models[0]["folder"] == "checkpoints"
    crash = classify_error(*recorded_failure("platform_e_exec_error_imagebatch")).evidence
    assert (crash.node_type, crash.node_id) == ("ImageBatch", "4")
    assert crash.exception_message.startswith("Sizes of tensors must match")


run = functools.partial(run_provider, "runpod")


def platform(srv) -> str:
    return f"{srv.url}/runpod/v2/reference"



async def test_a_run_decodes_base64_images_and_reports_runpod_timings(reference_endpoint, tmp_path):
    record = await run(platform(reference_endpoint("stock")), SMOKE, tmp_path)
    assert record.classification is None
    [image] = record.images
    assert (image.format, image.width, image.height) == ("PNG", 512, 512)
    assert record.timings.queue is not None and record.timings.execution is not None
    assert record.job_id
    # worker-comfyui runs ComfyUI with --disable-metadata: no prompt text in the PNG, unlike a native save.
    with Image.open(image.path) as png:
        assert "prompt" not in png.text


async def test_a_saved_video_comes_back_base64_among_the_images(reference_endpoint, tmp_path):
    """worker-comfyui returns every file of ``outputs[*].images``: SaveVideo's MP4 is one (ComfyUI lists it
    there), so the video arrives as base64 like an image and is read as a video of its frame size."""
    frames = {"class_type": "EmptyImage", "inputs": {"width": 80, "height": 48, "batch_size": 4, "color": 0}}
    workflow = {"1": frames, "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
                "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "video/clip",
                                                            "format": "auto", "codec": "auto"}}}
    record = await run(platform(reference_endpoint("stock")), workflow, tmp_path)
    [video] = record.images
    assert (record.classification, video.filename, video.format, video.width, video.height) == (None, "clip_00001_.mp4", "MP4", 80, 48)


async def test_runsync_gets_the_result_in_the_submitting_request(reference_endpoint, tmp_path):
    srv = reference_endpoint("stock")
    record = await run(platform(srv), SMOKE, tmp_path, runsync=True)
    assert record.classification is None and len(record.images) == 1
    assert record.job_id.startswith("sync-")  # the reference names /runsync jobs so
    assert record.timings.execution is not None and record.timings.queue is not None
    denrisi = await run(platform(srv), DENRISI, tmp_path, runsync=True)
    assert outcome(denrisi) is Outcome.MISSING_NODE


async def test_the_local_dev_api_flavour_posts_status(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"ImageInvert": 0.5}))
    record = await run(f"{srv.url}/runpod/local", SMOKE, tmp_path, flavour="local")
    assert record.classification is None and len(record.images) == 1
    # The job runs inside POST /status: that call is its execution, not queue time (as a real SDK 1.7.13 showed).
    assert record.timings.execution >= 0.5 and record.timings.queue < 0.2


async def test_denrisi_is_missing_node_on_stock(reference_endpoint, tmp_path):
    record = await run(platform(reference_endpoint("stock")), DENRISI, tmp_path)
    assert outcome(record) is Outcome.MISSING_NODE
    assert "FluxResolutionNode" in record.classification.evidence.missing_classes


async def test_missing_model(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(models={}))
    record = await run(platform(srv), SDXL, tmp_path)
    assert outcome(record) is Outcome.MISSING_MODEL
    assert record.classification.evidence.missing_models[0]["file"] == "sd_xl_base_1.0.safetensors"


async def test_execution_error_from_the_platform_details(reference_endpoint, tmp_path):
    profile = Profile.builtin("stock").replace(failures=(FailureRule("ImageInvert", "RuntimeError", "boom"),))
    record = await run(platform(reference_endpoint(profile)), SMOKE, tmp_path)
    assert outcome(record) is Outcome.EXECUTION_ERROR
    assert (record.classification.evidence.node_type, record.classification.evidence.node_id) == ("ImageInvert", "2")


async def test_a_preview_only_workflow_is_output_invalid(reference_endpoint, tmp_path):
    preview = {"1": SMOKE["1"], "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    assert outcome(await run(platform(reference_endpoint("stock")), preview, tmp_path)) is Outcome.OUTPUT_INVALID


async def test_a_cold_start_past_the_queue_budget_is_cancelled(reference_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFY_REFERENCE_RUNPOD_COLD_START", "5")
    srv = reference_endpoint("stock")
    record = await run(platform(srv), SMOKE, tmp_path, timeouts=Timeouts(queue=0.3))
    assert outcome(record) is Outcome.QUEUE_TIMEOUT
    async with httpx.AsyncClient(base_url=platform(srv)) as client:
        status = (await client.get(f"/status/{record.job_id}")).json()
    assert status["status"] == "CANCELLED"


async def test_a_slow_run_past_its_deadline_is_cancelled(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"ImageInvert": 3.0}))
    record = await run(platform(srv), SMOKE, tmp_path, budget=0.5)
    assert outcome(record) is Outcome.EXECUTION_TIMEOUT
    async with httpx.AsyncClient(base_url=platform(srv)) as client:
        assert (await client.get(f"/status/{record.job_id}")).json()["status"] == "CANCELLED"


@pytest.mark.slow
async def test_the_platform_times_a_job_out_past_the_requests_execution_policy(reference_endpoint, tmp_path):
    """The request carries policy.executionTimeout (the endpoint's execution budget, at least RunPod's 5 s);
    past it the platform itself ends the job TIMED_OUT and its ComfyUI prompt is stopped."""
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"ImageInvert": 30.0}))
    record = await run(platform(srv), SMOKE, tmp_path, budget=20.0, timeouts=Timeouts(queue=5, execution=1))
    assert outcome(record) is Outcome.EXECUTION_TIMEOUT
    assert record.classification.evidence.message == f"RunPod timed job {record.job_id} out"
    assert 5.0 <= record.timings.execution < 6.0 and record.timings.total < 8.0
    async with httpx.AsyncClient(base_url=srv.url) as client:
        assert (await client.get("/queue")).json() == {"queue_running": [], "queue_pending": []}


async def test_a_job_cancelled_elsewhere_is_cancelled(tmp_path):
    profile = Profile.builtin("stock").replace(class_seconds={"ImageInvert": 1.0})
    async with running_server(profile) as srv:
        url = platform(srv)

        async def cancel_when_running():
            jobs = srv.app[JOBS].jobs
            while not jobs:
                await asyncio.sleep(0.01)
            async with httpx.AsyncClient(base_url=url) as client:
                await client.post(f"/cancel/{next(iter(jobs))}")

        canceller = asyncio.create_task(cancel_when_running())
        record = await run(url, SMOKE, tmp_path)
        await canceller
    assert outcome(record) is Outcome.CANCELLED


async def test_the_envelope_answers_the_recorded_strings_byte_for_byte(reference_endpoint):
    srv = reference_endpoint("stock")
    async with httpx.AsyncClient(base_url=f"{srv.url}/runpod/local") as client:
        for name in ("b_clownshark_minimal_stock", "v_value_above_max", "v_missing_class_type", "h_preview_only_temp_images"):
            recording = json.loads((RECORDINGS / f"{name}.json").read_text(encoding="utf-8"))
            body = (await client.post("/runsync", json=recording["request"]["json"])).json()
            assert {k: v for k, v in body.items() if k != "id"} == {k: v for k, v in recording["body"].items() if k != "id"}, name


@pytest.fixture
async def stub_platform():
    """A RunPod stand-in whose answers a test sets: ``replies[path] = (status, body)``; /s3 serves a PNG."""
    replies: dict[str, tuple[int, object]] = {}

    async def answer(request: web.Request) -> web.Response:
        if request.path == "/s3/out.png":
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8)).save(buffer, "PNG")
            return web.Response(body=buffer.getvalue(), content_type="image/png")
        status, body = replies[request.path]
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), replies


async def test_429_is_rate_limited(stub_platform, tmp_path):
    url, replies = stub_platform
    replies["/run"] = (429, {"error": "too many requests"})
    assert outcome(await run(url, SMOKE, tmp_path)) is Outcome.RATE_LIMITED


async def test_s3_images_with_errors_are_a_partial_execution_error(stub_platform, tmp_path):
    url, replies = stub_platform
    replies["/run"] = (200, {"id": "j1", "status": "IN_QUEUE"})
    detail = "Workflow execution error: Node Type: ImageBatch, Node ID: 4, Message: Sizes of tensors must match\n"
    replies["/status/j1"] = (200, {"id": "j1", "status": "COMPLETED", "delayTime": 1500, "executionTime": 250, "output": {
        "images": [{"filename": "out.png", "type": "s3_url", "data": f"{url}/s3/out.png"}], "errors": [detail]}})
    record = await run(url, SMOKE, tmp_path)
    assert outcome(record) is Outcome.EXECUTION_ERROR and record.classification.partial
    assert (record.images[0].width, record.timings.queue, record.timings.execution) == (8, 1.5, 0.25)
