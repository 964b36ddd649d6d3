"""What every provider must do alike, asked of all five kinds with the same inputs: nothing listening
is ``unreachable`` within seconds; a wrong key is ``auth_error`` and the right one passes (the key
from the environment); a malformed reply is a ``protocol_error`` with the reply in the evidence,
never a crash or a pass."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from conftest import load_json, outcome, run_provider
from harness.reference.modal import WORKFLOW_APP_REQUEST
from harness.run.outcomes import Outcome

SMOKE = load_json("workflows/smoke_invert.json")

REPLIES = {
    "html_page": lambda: web.Response(text="<html><body>Welcome to nginx!</body></html>", content_type="text/html"),
    "json_list": lambda: web.json_response([1, 2, 3]),
    "json_null": lambda: web.json_response(None),
    "json_unknown_object": lambda: web.json_response({"hello": "world"}),
    "truncated": lambda: web.Response(body=b'{"id": "abc", "sta', headers={"Content-Type": "application/json"}),
}
KINDS = {
    "comfyui": {},
    "runpod": {},
    "vast": {"flavour": "worker"},
    "modal": {"request": {"response": "json_base64"}},
    "http": {},
}


# kind → (path of its envelope on a reference server, the envelope's key settings, the endpoint's header templates)
ENVELOPES = {
    "runpod": ("/runpod/v2/stock", {"COMFY_REFERENCE_RUNPOD_API_KEY": "right"}, {"Authorization": "Bearer ${TEST_KEY}"}),
    "vast": ("/vast/my-comfy", {"COMFY_REFERENCE_VAST_API_KEY": "right"}, {"Authorization": "Bearer ${TEST_KEY}"}),
    "modal": ("/modal/comfyapp", {"COMFY_REFERENCE_MODAL_KEY": "right", "COMFY_REFERENCE_MODAL_SECRET": "s"},
              {"Modal-Key": "${TEST_KEY}", "Modal-Secret": "s"}),
    # A plain HTTP wrapper: the reference's own Modal app, which checks the same proxy keys.
    "http": ("/modal-app/app", {"COMFY_REFERENCE_MODAL_KEY": "right", "COMFY_REFERENCE_MODAL_SECRET": "s"},
             {"Modal-Key": "${TEST_KEY}", "Modal-Secret": "s"}),
}
OPTIONS = {"http": {"request": WORKFLOW_APP_REQUEST}}
"""What else an envelope's endpoint needs: how the team's own app is called."""


@pytest.mark.parametrize("kind", list(KINDS))
async def test_nothing_listening_is_unreachable_within_seconds(kind, tmp_path):
    started = time.monotonic()
    record = await run_provider(kind, "http://127.0.0.1:9/x", SMOKE, tmp_path, **KINDS[kind])
    assert outcome(record) is Outcome.UNREACHABLE and time.monotonic() - started < 3


@pytest.mark.parametrize("kind", list(ENVELOPES))
async def test_a_wrong_key_is_auth_error_and_the_right_one_passes(kind, reference_endpoint, tmp_path, monkeypatch):
    path, settings, headers = ENVELOPES[kind]
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    srv = reference_endpoint("stock")
    monkeypatch.setenv("TEST_KEY", "wrong")
    options = OPTIONS.get(kind, {})
    refused = await run_provider(kind, srv.url + path, SMOKE, tmp_path, headers=headers, **options)
    assert outcome(refused) is Outcome.AUTH_ERROR and refused.classification.evidence.http_status == 401
    monkeypatch.setenv("TEST_KEY", "right")
    assert outcome(await run_provider(kind, srv.url + path, SMOKE, tmp_path, headers=headers, **options)) is Outcome.PASSED


@pytest.fixture
async def stub(request):
    reply = REPLIES[request.param]

    async def answer(_: web.Request) -> web.StreamResponse:
        return reply()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


@pytest.mark.parametrize("stub", list(REPLIES), indirect=True)
@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_malformed_reply_is_a_protocol_error(stub, kind, tmp_path):
    record = await run_provider(kind, stub, SMOKE, tmp_path, budget=5.0, **KINDS[kind])
    assert outcome(record) is Outcome.PROTOCOL_ERROR, record.classification
    assert record.classification.evidence.message
