"""matrix.json on disk while a run goes on: a cell after a quiet spell at once, a burst within WRITE_INTERVAL,
every one at finish; the file is complete JSON whenever it is read."""

from __future__ import annotations

import json
import time

from harness.run.cells import Cell
from harness.run.outcomes import Outcome
from harness.report import matrix as matrix_module
from harness.report.matrix import MatrixWriter


def on_disk(writer: MatrixWriter) -> list[str]:
    return [c["case"] for c in json.loads((writer.dir / "matrix.json").read_text())["cells"]]


def test_cells_reach_disk_within_the_interval_without_another_call(tmp_path, monkeypatch):
    monkeypatch.setattr(matrix_module, "WRITE_INTERVAL", 0.3)
    writer = MatrixWriter(tmp_path)
    time.sleep(0.3)
    writer.add_cell(Cell("a", "e", Outcome.PASSED, Outcome.PASSED))
    assert on_disk(writer) == ["a"]  # after a quiet interval a result is written as it arrives
    writer.add_cell(Cell("b", "e", Outcome.PASSED, Outcome.PASSED))
    writer.add_cell(Cell("c", "e", Outcome.PASSED, Outcome.PASSED))
    assert on_disk(writer) == ["a"]  # batched...
    time.sleep(0.6)
    assert on_disk(writer) == ["a", "b", "c"]  # ...and flushed by the timer, with nothing else happening
    writer.add_cell(Cell("d", "e", Outcome.PASSED, Outcome.PASSED))
    writer.finish()
    assert on_disk(writer) == ["a", "b", "c", "d"]
    assert json.loads((writer.dir / "matrix.json").read_text())["run"]["status"] == "complete"
