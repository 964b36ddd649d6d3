"""Every provider meets the same malformed replies from a server that is not what the endpoint kind
says: each answer is a ``protocol_error`` with the reply in the evidence, never a crash or a pass."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from conftest import load_json, outcome, run_provider
from harness.outcomes import Outcome

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
}


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
