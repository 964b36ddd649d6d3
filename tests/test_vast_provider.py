"""The Vast provider end to end, over loopback, against the reference endpoint's Vast envelope (route
service, PyWorker, api-wrapper), and its parser over every failure recorded from vastai 1.9.1's PyWorker
and comfyui-api-wrapper e1d04af.

The reference envelope reads its API key, UNSECURED switch and capacity from the environment when the
server starts, so those tests set the variables before starting it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, load_json, matrix, outcome, run_provider, system_tool
from harness.run.endpoints import Endpoint
from harness.run.outcomes import Outcome
from harness.providers.vast import VastProvider, classify_result
from harness.reference.profile import FailureRule, Profile, load_profile

SMOKE = load_json("workflows/smoke_invert.json")
SDXL = load_json("workflows/sdxl_baseline.json")
DENRISI = load_json("workflows/denrisi_zimage_res4lyf.json")
PREVIEW = {"1": SMOKE["1"], "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
RECORDINGS = Path("/work/shared/reference/providers/vast")
P, S, A, G, M = Outcome.PROTOCOL_ERROR, Outcome.SERVER_ERROR, Outcome.AUTH_ERROR, Outcome.INVALID_GRAPH, Outcome.MISSING_MODEL
I, X = Outcome.INVALID_INPUT, Outcome.EXECUTION_ERROR

# Every recorded /generate/sync answer that is not a success, and the outcome it must parse to.
EXPECTED = {
    "b2_clownshark_sdxl_custom": M,
    "b2_clownshark_sdxl_stock": S,  # "ComfyUI node errors: {}": the missing class is hidden
    "b_clownshark_minimal_custom": G,
    "b_clownshark_minimal_stock": S,
    "c_sdxl_missing_ckpt_custom": M,
    "c_sdxl_missing_ckpt_stock": M,
    "d_denrisi_custom": S,  # the wrapper's comfyui_job_id bug
    "d_denrisi_stock": S,
    "e2_exec_error_slow_custom": X,
    "e2_exec_error_slow_stock": X,
    "e_exec_error_imagebatch_custom": S,
    "e_exec_error_imagebatch_stock": S,
    "f1_no_auth_data": P, "f1b_no_payload": P, "f1c_empty_object": P, "f1d_body_not_json": P, "f1e_empty_body": P,
    "f1f_runpod_style_body": P, "f1g_body_is_list": P, "f1h_payload_is_string": P, "f1i_payload_is_list": P,
    "f2_payload_without_input": P, "f2b_input_without_workflow": P, "f2c_input_runpod_style_workflow_key": P,
    "f2d_both_workflow_and_modifier": P, "f2e_unknown_modifier": P, "f2f_modifications_without_modifier": P,
    "f3_workflow_is_string": P, "f3b_workflow_is_json_string": P, "f3c_workflow_is_list": P, "f3d_workflow_empty_object": P,
    "f3e_workflow_ui_format": S,  # ComfyUI's 500 to every POST /prompt
    "f3f_workflow_no_output_node": S,
    "f3g_required_input_missing": I,
    "f3h_missing_class_type": S,
    "f4_runpod_style_images_bad_base64_ignored": I,
    "f4b_runpod_style_images_good_ignored": I,
    "f4d_image_url_404": I,
    "f4e_image_url_not_an_image": S,
    "f4f_image_url_unreachable": I,
    "f4g_image_data_uri": I,
    "f4h_image_data_uri_bad_base64": I,
    "f5_bad_signature": A, "f5b_signature_for_other_url": A, "f5c_signature_not_base64": A,
    "f5d_auth_data_missing_fields": P,
    "g1_comfy_unreachable": Outcome.UNREACHABLE,
    "g2_wrapper_unreachable": S,
}


def recording(name: str) -> dict:
    return json.loads((RECORDINGS / f"{name}.json").read_text(encoding="utf-8"))


def failed_generate_sync() -> list[str]:
    """Every recording of a POST /generate/sync answered with anything but 200."""
    names = []
    for path in sorted(RECORDINGS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        request = data.get("request")
        if isinstance(request, dict) and (request["method"], request["path"]) == ("POST", "/generate/sync") and data["status"] != 200:
            names.append(path.stem)
    return names


def parsed(name: str):
    data = recording(name)
    body = data["body"]
    return classify_result(data["status"], body if isinstance(body, dict) else {}, body if isinstance(body, str) else json.dumps(body))


def test_every_recorded_failure_is_in_the_table():
    assert failed_generate_sync() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_failures_parse_to_their_outcome(name):
    verdict = parsed(name)
    assert verdict.outcome is EXPECTED[name]
    assert verdict.evidence.http_status == recording(name)["status"]


def test_parsed_messages_keep_comfyui_evidence():
    model = parsed("c_sdxl_missing_ckpt_stock").evidence
    assert model.missing_models[0]["file"] == "sd_xl_base_1.0.safetensors" and model.missing_models[0]["folder"] == "checkpoints"
    crash = parsed("e2_exec_error_slow_stock").evidence
    assert (crash.node_type, crash.node_id, crash.exception_type) == ("ImageBatch", "4", "RuntimeError")
    assert crash.exception_message.startswith("Sizes of tensors must match")
    assert "hides the reason" in parsed("d_denrisi_stock").evidence.message and "preflight" in parsed("d_denrisi_stock").evidence.hint
    assert "comfyui_job_id" in parsed("e_exec_error_imagebatch_stock").evidence.message


run = functools.partial(run_provider, "vast")


def routed(srv) -> str:
    return f"{srv.url}/vast/my-comfy"



async def test_through_the_route_service_images_come_back_as_base64(reference_endpoint, tmp_path):
    record = await run(routed(reference_endpoint("stock")), SMOKE, tmp_path)
    assert record.classification is None, record.classification
    [image] = record.images
    assert (image.format, image.width, image.height) == ("PNG", 512, 512)
    assert record.timings.execution is not None and record.job_id


_EMPTY_AUDIO = {"class_type": "EmptyAudio", "inputs": {"duration": 1.0, "sample_rate": 44100, "channels": 1}}


async def test_the_wrapper_returns_a_file_of_every_ui_key(reference_endpoint, tmp_path):
    """comfyui-api-wrapper e1d04af's move_assets: each file a node's UI names, under any key (output_type
    ``audio`` for SaveAudio's FLAC), is an output; a file under a key but ``images`` that is no image is
    no broken image."""
    workflow = {"1": _EMPTY_AUDIO, "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/clip"}}}
    record = await run(routed(reference_endpoint(load_profile("stock", "0.33.0"))), workflow, tmp_path)
    assert (record.classification, record.images, record.other_outputs) == (None, (), 1)
    assert (tmp_path / "0_clip_00001_.flac").read_bytes()[:4] == b"fLaC"


async def test_text_names_no_file_so_the_wrapper_returns_no_output(reference_endpoint, tmp_path):
    """PreviewAny's text is a list of strings the wrapper takes for file names: none is a file, so a run of
    text only comes back with ``output: []``."""
    workflow = {"1": _EMPTY_AUDIO, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    record = await run(routed(reference_endpoint(load_profile("stock", "0.33.0"))), workflow, tmp_path)
    assert outcome(record) is Outcome.OUTPUT_INVALID and "output: []" in record.classification.evidence.message


async def test_directly_at_the_wrapper_and_at_an_unsecured_worker(reference_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFY_REFERENCE_VAST_UNSECURED", "true")
    srv = reference_endpoint("stock")
    assert outcome(await run(f"{srv.url}/vast/wrapper", SMOKE, tmp_path, flavour="wrapper")) is Outcome.PASSED
    assert outcome(await run(f"{srv.url}/vast/worker", SMOKE, tmp_path, flavour="worker")) is Outcome.PASSED


async def test_node_errors_are_missing_model(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(models={}))
    record = await run(routed(srv), SDXL, tmp_path)
    assert outcome(record) is Outcome.MISSING_MODEL and record.classification.evidence.http_status == 500
    assert record.classification.evidence.missing_models[0]["file"] == "sd_xl_base_1.0.safetensors"


async def test_a_missing_class_is_a_server_error_saying_the_reason_is_hidden(reference_endpoint, tmp_path):
    record = await run(routed(reference_endpoint("stock")), DENRISI, tmp_path)
    assert outcome(record) is Outcome.SERVER_ERROR
    assert "hides the reason" in record.classification.evidence.message


async def test_a_slow_execution_error_is_parsed_from_its_repr(reference_endpoint, tmp_path):
    profile = Profile.builtin("stock").replace(failures=(FailureRule("ImageInvert", "RuntimeError", "boom"),), class_seconds={"EmptyImage": 0.8})
    record = await run(routed(reference_endpoint(profile)), SMOKE, tmp_path)
    assert outcome(record) is Outcome.EXECUTION_ERROR
    evidence = record.classification.evidence
    assert (evidence.node_type, evidence.node_id, evidence.exception_message) == ("ImageInvert", "2", "boom")


async def test_a_fast_execution_error_meets_the_wrapper_bug(reference_endpoint, tmp_path):
    profile = Profile.builtin("stock").replace(failures=(FailureRule("ImageInvert", "RuntimeError", "boom"),))
    record = await run(routed(reference_endpoint(profile)), SMOKE, tmp_path)
    assert outcome(record) is Outcome.SERVER_ERROR and "comfyui_job_id" in record.classification.evidence.message


async def test_a_preview_only_workflow_is_output_invalid(reference_endpoint, tmp_path):
    assert outcome(await run(routed(reference_endpoint("stock")), PREVIEW, tmp_path)) is Outcome.OUTPUT_INVALID


async def test_an_unsigned_request_to_a_secured_worker_is_auth_error(reference_endpoint, tmp_path, monkeypatch):
    """The route service's key is in test_provider_contract.py; a worker checks the signature itself."""
    monkeypatch.setenv("COMFY_REFERENCE_VAST_API_KEY", "right")
    srv = reference_endpoint("stock")
    unsigned = await run(f"{srv.url}/vast/worker", SMOKE, tmp_path, flavour="worker")
    assert outcome(unsigned) is Outcome.AUTH_ERROR and unsigned.classification.evidence.http_status == 401


@pytest.mark.parametrize("key", ["right", None])
async def test_the_routed_repro_asks_the_route_service_then_posts_signed(reference_endpoint, tmp_path, monkeypatch, key):
    """The curl reproduction really replays: its route step gets a signature the worker accepts, and the
    API key stays $VAST_API_KEY in the command; without a key it sends an empty one, as the harness does."""
    system_tool("jq", package="jq")
    system_tool("curl", package="curl")
    headers = {}
    if key:
        monkeypatch.setenv("COMFY_REFERENCE_VAST_API_KEY", key)
        monkeypatch.setenv("VAST_API_KEY", key)
        headers = {"Authorization": "Bearer ${VAST_API_KEY}"}
    srv = reference_endpoint("stock")
    async with VastProvider(Endpoint("vast", routed(srv), kind="vast", headers=headers)) as provider:
        (tmp_path / "request.json").write_text(json.dumps(provider.request_body(SMOKE)))
        command = provider.repro("request.json")
    assert f"{srv.url}/vast/route/" in command
    if key:
        assert "$VAST_API_KEY" in command and key not in command
    else:
        assert '"api_key": ""}' in command
    replay = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                            env={"PATH": os.environ["PATH"], **({"VAST_API_KEY": key} if key else {})})
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["status"] == "completed"


async def test_a_full_worker_queue_is_rate_limited(reference_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFY_REFERENCE_VAST_CAPACITY", "1")
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"ImageInvert": 1.0}))
    first = asyncio.create_task(run(routed(srv), SMOKE, tmp_path / "first"))
    await asyncio.sleep(0.3)
    second = await run(routed(srv), SMOKE, tmp_path / "second")
    assert outcome(second) is Outcome.RATE_LIMITED and outcome(await first) is Outcome.PASSED


def _normalised(body):
    """A Result without what differs per run: its id, timings and file names."""
    if not isinstance(body, dict) or "timings" not in body:
        return body
    output = [{k: v for k, v in entry.items() if k not in ("filename", "local_path", "data")} for entry in body["output"]]
    return {**{k: v for k, v in body.items() if k not in ("id", "timings")}, "output": output}


@pytest.mark.parametrize("name", [
    "a_sync_ok_stock", "b_clownshark_minimal_stock", "d_denrisi_stock", "e_exec_error_imagebatch_stock", "f1_no_auth_data",
    "f1c_empty_object", "f1d_body_not_json", "f1g_body_is_list", "f1h_payload_is_string", "f2_payload_without_input",
    "f2b_input_without_workflow", "f2d_both_workflow_and_modifier", "f2e_unknown_modifier", "f2f_modifications_without_modifier",
    "f3_workflow_is_string", "f3d_workflow_empty_object", "f3e_workflow_ui_format", "f3f_workflow_no_output_node",
    "f3g_required_input_missing", "f3h_missing_class_type", "f5d_auth_data_missing_fields", "h_preview_only_fast",
])
async def test_the_worker_answers_the_recorded_bodies(reference_endpoint, monkeypatch, name):
    monkeypatch.setenv("COMFY_REFERENCE_VAST_UNSECURED", "true")
    srv = reference_endpoint("stock")
    data = recording(name)
    request = data["request"]
    async with httpx.AsyncClient(base_url=f"{srv.url}/vast/worker", timeout=10) as client:
        if "json" in request:
            response = await client.post("/generate/sync", json=request["json"])
        else:
            response = await client.post("/generate/sync", content=request["raw"], headers={"Content-Type": request["content_type"]})
    assert response.status_code == data["status"]
    if "timings" in data["body"]:
        assert _normalised(response.json()) == _normalised(data["body"])
    else:
        # No per-run fields: the bytes, and so the length, are the recorded ones.
        assert response.headers["content-length"] == data["headers"]["content-length"]
        assert response.json() == data["body"]


async def test_a_bad_signature_is_an_empty_401(reference_endpoint):
    srv = reference_endpoint("stock")
    data = recording("f5_bad_signature")
    async with httpx.AsyncClient(base_url=srv.url) as client:
        route = (await client.post("/vast/route/", json={"endpoint": "e", "api_key": "k"})).json()
        body = {**data["request"]["json"], "auth_data": {**data["request"]["json"]["auth_data"], "url": route["url"]}}
        response = await client.post("/vast/worker/generate/sync", json=body)
    assert (response.status_code, response.content) == (401, b"")


def test_a_saved_object_info_recovers_the_missing_class_the_wrapper_hides(project, reference_endpoint):
    """ "ComfyUI node errors: {}" says nothing; the endpoint's saved catalogue proves which class is absent."""
    url = reference_endpoint("stock").url
    shutil.copy(ROOT / "fixtures/object_info/stock.json", project.path / "stock-object_info.json")
    (project.path / "endpoints.yaml").write_text(
        f"endpoints:\n  vast:\n    kind: vast\n    url: {url}/vast/stock\n    object_info: stock-object_info.json\n")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "denrisi", "--endpoints-file=endpoints.yaml")
    [cell] = matrix(project)["cells"]
    assert (cell["outcome"], cell["predicted"]) == ("missing_node", "missing_node")
    assert set(cell["evidence"]["missing_classes"]) == {"ClownsharKSampler_Beta", "Sigmas Rescale", "FluxResolutionNode"}
    assert cell["evidence"]["message"].endswith("(the provider hid ComfyUI's reason; the endpoint's catalogue proves it)")
    assert cell["evidence"]["http_status"] == 500
