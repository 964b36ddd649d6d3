"""max_concurrency counts the jobs an endpoint holds: once it has finished a job, the job's outputs are
fetched while its place takes the next one (a GPU must not idle while a large output downloads)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from conftest import ROOT
from harness.comfy.workflows import load_workflow
from harness.reference.profile import Latency, Profile
from harness.reference.server import ReferenceServer
from harness.report.matrix import MatrixWriter
from harness.run.cases import Case
from harness.run.endpoints import Endpoint
from harness.run.engine import Engine

SMOKE = ROOT / "workflows/smoke_invert.json"
VIEW_DELAY_S = 1.0


async def _slow_view_proxy(upstream: str, seen: list[tuple[float, str]]) -> web.AppRunner:
    """A real server in front of the reference: every request forwarded, /view answered VIEW_DELAY_S late
    (a large output on a far endpoint), no websocket (the native provider polls)."""
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.StreamResponse:
        seen.append((time.monotonic(), f"{request.method} {request.path}"))
        if request.path == "/ws":
            return web.Response(status=404)
        if request.path == "/view":
            await asyncio.sleep(VIEW_DELAY_S)
        async with session.request(request.method, upstream + request.path_qs, data=await request.read(),
                                   headers={"Content-Type": request.headers.get("Content-Type", "application/json")}) as reply:
            return web.Response(status=reply.status, body=await reply.read(), content_type=reply.content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(lambda _: session.close())
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_a_finished_jobs_download_does_not_hold_the_endpoints_only_place(tmp_path):
    cases = [Case(id=f"smoke{i}", workflow=load_workflow(SMOKE), workflow_path=SMOKE) for i in range(2)]
    seen: list[tuple[float, str]] = []
    with ReferenceServer(Profile.builtin("stock").replace(latency=Latency("fixed", 0.2))) as server:
        runner = await _slow_view_proxy(server.url, seen)
        port = runner.addresses[0][1]
        engine = Engine([Endpoint("far", f"http://127.0.0.1:{port}", max_concurrency=1)], MatrixWriter(tmp_path, "r"))
        await engine.start()
        try:
            first, second = await asyncio.gather(*(engine.run_cell(case, "far") for case in cases))
        finally:
            await engine.close()
            await runner.cleanup()
    assert first.outcome.value == second.outcome.value == "passed"
    posts = [t for t, what in seen if what == "POST /prompt"]
    views = [t for t, what in seen if what == "GET /view"]
    assert len(posts) == 2 and len(views) == 2
    # The second job went in while the first one's output was still on its way, not after it...
    assert posts[1] < views[0] + VIEW_DELAY_S - 0.3, (posts, views)
    # ...and only once the endpoint had told the first was finished (its /history entry): one job at a time.
    told = max(t for t, what in seen if what.startswith("GET /history/") and t <= views[0])
    assert posts[1] > told, (posts, told)
