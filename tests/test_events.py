"""The engine tells its listeners, and only them, of a run: any listener gets the same events the report
writer gets, in order; the engine writes no report of its own. (Secrets scrubbed from what endpoints echo:
tests/test_faults.py, whose endpoints echo a canary.)"""

from __future__ import annotations

from conftest import ROOT
from harness.comfy.workflows import load_workflow
from harness.reference.profile import Profile
from harness.reference.server import ReferenceServer
from harness.report.matrix import MatrixWriter
from harness.run.cases import Case
from harness.run.endpoints import Endpoint
from harness.run.engine import Engine
from harness.run.events import CellFinished, EndpointIntroduced, EndpointListed

SMOKE = ROOT / "workflows/smoke_invert.json"


class Recorder:
    def __init__(self) -> None:
        self.events = []

    def handle(self, event) -> None:
        self.events.append(event)


async def test_every_listener_hears_the_run_and_the_writer_is_one_of_them(tmp_path):
    case = Case(id="smoke", workflow=load_workflow(SMOKE), workflow_path=SMOKE)
    with ReferenceServer(Profile.builtin("stock")) as server:
        endpoint = Endpoint("ref", server.url)
        recorder, quiet = Recorder(), MatrixWriter(tmp_path / "folder-only", "r")
        engine = Engine([endpoint], quiet, listeners=[recorder])
        await engine.start()
        try:
            cell = await engine.run_cell(case, "ref")
        finally:
            await engine.close()
    kinds = [type(e) for e in recorder.events]
    assert kinds == [EndpointListed, EndpointIntroduced, CellFinished]
    introduced, finished = recorder.events[1], recorder.events[2]
    assert introduced.catalogue == f"{server.url}/object_info" and introduced.modelled["comfyui_version"]
    assert finished.cell is cell and cell.outcome.value == "passed"
    # The folder gave the cell its files; with no writer listening, no report was written.
    assert (quiet.dir / "cells" / "smoke@ref" / "request.json").is_file()
    assert not (quiet.dir / "cells.jsonl").read_bytes()
