"""The Modal provider end to end, over loopback: against the reference endpoint's comfyapp envelope (a
prompt in, the baked workflow's image bytes out, opaque 500s, 303 redirects past the hold) and against
stub apps for the configurable request template and JSON response mappings.

The envelope reads its hold and keys from the environment when the server starts, so those tests set
the variables before starting it.
"""

from __future__ import annotations

import base64
import functools
import io
import json

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from conftest import load_json, outcome, run_provider
from harness.run.endpoints import Endpoint, load_endpoints_file
from harness.errors import ConfigError
from harness.run.outcomes import Outcome
from harness.providers.modal import ModalProvider
from harness.reference.profile import Profile
from harness.comfy.workflows import positive_prompt

SDXL = load_json("workflows/sdxl_baseline.json")
SMOKE = load_json("workflows/smoke_invert.json")

run = functools.partial(run_provider, "modal")


def app_url(srv) -> str:
    return f"{srv.url}/modal/{srv.profile.name}"


def png(size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_comfyapp_runs_the_prompt_text_and_answers_a_png(reference_endpoint, tmp_path):
    srv = reference_endpoint("stock")
    workflow = json.loads(json.dumps(SDXL))
    workflow["6"]["inputs"]["text"] = "a red fox"
    record = await run(app_url(srv), workflow, tmp_path)
    assert record.classification is None
    [image] = record.images
    assert (image.format, image.width, image.height) == ("PNG", 1024, 1024)
    # The app ran its own workflow with the case's positive prompt in node 6.
    async with httpx.AsyncClient(base_url=srv.url) as client:
        [entry] = (await client.get("/history")).json().values()
    assert entry["prompt"][2]["6"]["inputs"]["text"] == "a red fox"


async def test_a_failing_comfy_run_is_an_opaque_server_error(reference_endpoint, tmp_path):
    srv = reference_endpoint(Profile.builtin("stock").replace(models={}))
    record = await run(app_url(srv), SDXL, tmp_path)
    assert outcome(record) is Outcome.SERVER_ERROR
    assert record.classification.evidence.http_status == 500
    assert "Internal Server Error" in record.classification.evidence.message
    assert "baked-in workflow" in record.classification.evidence.message


def test_the_envelope_answers_like_fastapi(reference_endpoint):
    srv = reference_endpoint("stock")
    with httpx.Client(base_url=app_url(srv)) as client:
        missing = client.post("/", json={})
        assert (missing.status_code, missing.text) == (500, "Internal Server Error")
        assert client.post("/", json=["a fox"]).status_code == 422
        assert client.get("/").status_code == 405
        image = client.post("/", json={"prompt": "a fox"})
        # Labelled JPEG by the example, though SaveImage wrote a PNG.
        assert image.headers["Content-Type"] == "image/jpeg" and image.content.startswith(b"\x89PNG")


async def test_redirects_past_the_hold_are_followed(reference_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFY_REFERENCE_MODAL_HOLD", "0.05")
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"KSampler": 0.3}))
    record = await run(app_url(srv), SDXL, tmp_path)
    assert record.classification is None and record.images[0].width == 1024
    assert record.extra["redirects"] >= 2


async def test_an_endless_redirect_chain_stops_at_the_deadline(reference_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFY_REFERENCE_MODAL_HOLD", "0.05")
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"KSampler": 30.0}))
    record = await run(app_url(srv), SDXL, tmp_path, budget=0.6)
    assert outcome(record) is Outcome.EXECUTION_TIMEOUT
    assert record.extra["redirects"] >= 2 and record.timings.total < 2.0


def test_the_comfyapp_body_is_the_positive_prompt():
    provider = ModalProvider(Endpoint("m", "http://127.0.0.1:9", kind="modal"))
    assert provider.request_body(SDXL) == {"prompt": positive_prompt(SDXL)} and positive_prompt(SDXL).startswith("a lighthouse")
    # No positive prompt: the app still runs its own workflow, on an empty prompt.
    assert provider.request_body(SMOKE) == {"prompt": ""}
    assert provider.repro("request.json").startswith("curl -sS -L -o modal-output -X POST http://127.0.0.1:9 ")


async def test_a_client_that_posts_the_redirect_again_gets_the_result(reference_endpoint, monkeypatch):
    monkeypatch.setenv("COMFY_REFERENCE_MODAL_HOLD", "0.01")
    srv = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"KSampler": 0.1}))
    async with httpx.AsyncClient(base_url=app_url(srv)) as client:
        response, redirects = await client.post("/", json={"prompt": "a fox"}), 0
        while response.status_code == 303:
            # What curl -L -X POST does: the same method and body to the Location.
            response, redirects = await client.post(response.url.join(response.headers["location"]), json={"prompt": "a fox"}), redirects + 1
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG") and redirects >= 1


@pytest.fixture
async def stub_app():
    """A custom Modal app whose replies a test sets: ``replies[path] = (status, body bytes, content type[, headers])``."""
    replies: dict[str, tuple[int, bytes, str]] = {}
    received: list[object] = []

    async def answer(request: web.Request) -> web.Response:
        if request.method == "POST":
            received.append(await request.json())
        status, body, content_type, *headers = replies[request.path]
        return web.Response(status=status, body=body, content_type=content_type, headers=headers[0] if headers else None)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), replies, received


async def test_a_workflow_template_with_a_json_base64_reply(stub_app, tmp_path):
    url, replies, received = stub_app
    data = base64.b64encode(png()).decode()
    replies["/generate"] = (200, json.dumps({"output": {"images": [{"data": f"data:image/png;base64,{data}"}, {"data": data}]}}).encode(), "application/json")
    request = {"path": "/generate", "body": {"input": {"workflow": "{{workflow}}", "note": "for {{prompt}}"}},
               "response": "json_base64", "images": "output.images.data"}
    record = await run(url, SDXL, tmp_path, request=request)
    assert record.classification is None and [i.width for i in record.images] == [8, 8]
    assert received == [{"input": {"workflow": SDXL, "note": f"for {positive_prompt(SDXL)}"}}]


async def test_a_url_reply_is_downloaded(stub_app, tmp_path):
    url, replies, _ = stub_app
    replies["/"] = (200, json.dumps({"images": ["/files/a.png"]}).encode(), "application/json")
    replies["/files/a.png"] = (200, png(16), "image/png")
    record = await run(url, SDXL, tmp_path, request={"response": "urls"})
    assert record.classification is None and record.images[0].width == 16


@pytest.mark.parametrize(("reply", "request_", "expected"), [
    ((200, b"", "image/jpeg"), {}, Outcome.OUTPUT_INVALID),
    ((200, b'{"images": []}', "application/json"), {"response": "json_base64"}, Outcome.OUTPUT_INVALID),
    ((200, b"<html>", "text/html"), {"response": "urls"}, Outcome.PROTOCOL_ERROR),
    ((429, b"slow down", "text/plain"), {}, Outcome.RATE_LIMITED),
    ((404, b"modal-http: app not found", "text/plain"), {}, Outcome.PROTOCOL_ERROR),
])
async def test_replies_without_an_image(stub_app, tmp_path, reply, request_, expected):
    url, replies, _ = stub_app
    replies["/"] = reply
    assert outcome(await run(url, SDXL, tmp_path, request=request_)) is expected


async def test_a_429_carries_its_retry_after(stub_app, tmp_path):
    url, replies, _ = stub_app
    replies["/"] = (429, b"slow down", "text/plain", {"Retry-After": "30"})
    evidence = (await run(url, SDXL, tmp_path)).classification.evidence
    assert (evidence.retry_after, evidence.http_status) == ("30", 429) and evidence.message.endswith("(Retry-After: 30)")


def test_request_settings_are_schema_checked(tmp_path):
    path = tmp_path / "endpoints.yaml"
    path.write_text("endpoints:\n  m: {kind: modal, url: 'https://a.modal.run', request: {response: json_base64, images: out}}\n")
    [endpoint] = load_endpoints_file(path)
    assert endpoint.request == {"response": "json_base64", "images": "out"}
    for bad in ("{kind: modal, url: 'https://a.modal.run', request: {response: jpeg}}",
                "{url: 'https://a.example', request: {path: /x}}",
                "{kind: runpod, url: 'https://a.example', request: {path: /x}}"):
        path.write_text(f"endpoints:\n  m: {bad}\n")
        with pytest.raises(ConfigError):
            load_endpoints_file(path)
