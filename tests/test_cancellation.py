"""Cells cancelled while their jobs are on the endpoint (-x, Ctrl-C) take those jobs back: a prompt
nobody waits for must not run on, or bill, on a GPU endpoint.

One reference ComfyUI, a prompt 5 s long, reached natively and through its RunPod envelope. Three cells
are under way (one prompt running, two queued) when they are cancelled the way the plugin cancels them;
once the engine has closed, ComfyUI's queue is empty and the running prompt was interrupted.
"""

from __future__ import annotations

import copy
import time

import httpx

from conftest import ROOT, load_json
from harness.reference.profile import Profile
from harness.reference.server import ReferenceServer
from harness.report.matrix import MatrixWriter
from harness.run.cases import Case
from harness.run.endpoints import Endpoint
from harness.run.engine import Engine, EngineThread

SMOKE = load_json("workflows/smoke_invert.json")
SLOW_S = 5.0


def _case(color: int) -> Case:
    workflow = copy.deepcopy(SMOKE)
    workflow["1"]["inputs"]["color"] = color  # a prompt of its own: never served from ComfyUI's cache
    return Case(id=f"slow-{color}", workflow=workflow, workflow_path=ROOT / "workflows/smoke_invert.json")


def _queue(url: str) -> tuple[int, int]:
    queue = httpx.get(f"{url}/queue", timeout=5).json()
    return len(queue["queue_running"]), len(queue["queue_pending"])


def test_cancelled_cells_withdraw_their_prompts_and_jobs(tmp_path):
    profile = Profile.builtin("stock").replace(class_seconds={"ImageInvert": SLOW_S})
    with ReferenceServer(profile) as srv:
        endpoints = [Endpoint("native", srv.url, kind="comfyui", max_concurrency=2),
                     Endpoint("runpod", f"{srv.url}/runpod/v2/stock", kind="runpod")]
        writer = MatrixWriter(tmp_path / "reports", "cancel-run")
        engine, thread = Engine(endpoints, writer, listeners=[writer]), EngineThread()
        try:
            thread.call(engine.start())
            futures = [thread.submit(engine.run_cell(_case(1), "native")), thread.submit(engine.run_cell(_case(2), "native")),
                       thread.submit(engine.run_cell(_case(3), "runpod"))]
            give_up = time.monotonic() + 10
            while _queue(srv.url) != (1, 2):  # every job is on the endpoint: one running, two waiting
                assert time.monotonic() < give_up, f"the three prompts never reached ComfyUI: {_queue(srv.url)}"
                time.sleep(0.05)
            cancelled_at = time.monotonic()
            thread.loop.call_soon_threadsafe(lambda: [f.cancel() for f in futures])  # as the plugin's -x does
            thread.call(engine.close())
            closed_in = time.monotonic() - cancelled_at
        finally:
            thread.stop()
        give_up = time.monotonic() + 2
        while _queue(srv.url) != (0, 0) and time.monotonic() < give_up:
            time.sleep(0.05)
        left = _queue(srv.url)
        history = httpx.get(f"{srv.url}/history", timeout=5).json()
    assert left == (0, 0), f"ComfyUI still holds {left} (running, pending) {time.monotonic() - cancelled_at:.1f} s after the cancel"
    assert time.monotonic() - cancelled_at < SLOW_S, "the running prompt ran to its end instead of being interrupted"
    assert closed_in < 2.5
    statuses = [[m[0] for m in entry["status"]["messages"]] for entry in history.values()]
    assert any("execution_interrupted" in names for names in statuses), statuses
    assert not any("execution_success" in names for names in statuses), statuses
