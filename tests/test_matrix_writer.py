"""The report on disk while a run goes on: every finished cell in cells.jsonl at once (and after a SIGKILL),
live files whose size does not grow with the cells, every report written once at the end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from harness.errors import ConfigError
from harness.report import matrix as matrix_module
from harness.report.cells_log import read_cells
from harness.report.drift import load_run
from harness.report.matrix import MatrixWriter
from harness.run.cells import Cell
from harness.run.outcomes import Outcome


def cell(case: str, outcome: Outcome = Outcome.PASSED) -> Cell:
    return Cell(case, "e", outcome, Outcome.PASSED, evidence={"message": f"{case} said so"} if outcome is not Outcome.PASSED else {})


def test_each_cell_is_on_disk_when_add_cell_returns(tmp_path):
    writer = MatrixWriter(tmp_path)
    writer.add_cell(cell("a"))
    assert [c["case"] for c in load_run(writer.dir)["cells"]] == ["a"]
    writer.add_cell(cell("b", Outcome.MISSING_NODE))
    run = load_run(writer.dir)  # an unfinished run reads whole from its log
    assert run["run"]["status"] == "running" and [c["case"] for c in run["cells"]] == ["a", "b"]
    assert json.loads((writer.dir / "matrix.json").read_text())["cells"] == []  # the header: no cells while running


def test_the_progress_page_follows_within_the_interval_without_another_call(tmp_path, monkeypatch):
    monkeypatch.setattr(matrix_module, "WRITE_INTERVAL", 0.3)
    writer = MatrixWriter(tmp_path)
    time.sleep(0.3)
    writer.add_cell(cell("a"))
    page = writer.dir / "report.html"
    assert "<b>1</b> cells finished" in page.read_text()  # after a quiet interval, at once
    writer.add_cell(cell("b", Outcome.MISSING_NODE))
    writer.add_cell(cell("c"))
    assert "<b>1</b> cells finished" in page.read_text()  # batched...
    time.sleep(0.6)
    text = page.read_text()
    assert "<b>3</b> cells finished: 2 passed, 1 missing_node" in text  # ...and refreshed by the timer
    assert "b said so" in text  # the latest surprises are listed


def test_live_files_do_not_grow_with_the_cells(tmp_path, monkeypatch):
    """What is rewritten while the run goes on costs the same at the 1,000th cell as at the 200th."""
    monkeypatch.setattr(matrix_module, "WRITE_INTERVAL", 0)  # rewrite on every cell: the worst case
    writer = MatrixWriter(tmp_path)
    sizes, inodes = {}, {(writer.dir / "matrix.json").stat().st_ino}
    for n in range(1, 1001):
        writer.add_cell(cell(f"c{n:05d}", Outcome.MISSING_NODE if n % 7 == 0 else Outcome.PASSED))
        inodes.add((writer.dir / "matrix.json").stat().st_ino)
        if n in (200, 1000):
            sizes[n] = ((writer.dir / "matrix.json").stat().st_size, (writer.dir / "report.html").stat().st_size)
    assert sizes[1000][0] == sizes[200][0]
    assert inodes == {(writer.dir / "matrix.json").stat().st_ino}  # the header is not rewritten for a cell
    assert sizes[1000][1] < sizes[200][1] * 1.01  # the same 20 latest surprises; only the counts' digits differ
    log = (writer.dir / "cells.jsonl").read_bytes()
    assert log.count(b"\n") == 1000 and all(json.loads(line) for line in log.splitlines())


def test_finish_writes_every_report_once_in_plan_order(tmp_path):
    writer = MatrixWriter(tmp_path)
    for case in ("b", "a"):
        writer.add_cell(cell(case))
    writer.matrix["cases"] = ["a", "b"]
    writer.finish()
    text = (writer.dir / "matrix.json").read_text()
    data = json.loads(text)
    assert data["run"]["status"] == "complete" and [c["case"] for c in data["cells"]] == ["a", "b"]
    assert text.count('{"case":') == 2  # one line per cell
    assert "a on e" in (writer.dir / "report.html").read_text().replace("<b>", "").replace("</b>", "")
    assert "| a |" in (writer.dir / "matrix.md").read_text()


def test_a_torn_last_line_is_left_out_and_a_bad_line_named(tmp_path):
    log = tmp_path / "cells.jsonl"
    log.write_bytes(b'{"case": "a", "endpoint": "e"}\n{"case": "b", "endp')
    assert [c["case"] for c in read_cells(log)] == ["a"]
    log.write_bytes(b'{"case": "a"}\nnot json\n{"case": "b"}\n')
    with pytest.raises(ConfigError, match=r"cells.jsonl:2: not a JSON cell"):
        read_cells(log)


def test_sigkill_mid_run_leaves_every_finished_cell_readable(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from harness.report.matrix import MatrixWriter
        from harness.run.cells import Cell
        from harness.run.outcomes import Outcome
        writer = MatrixWriter({str(tmp_path)!r}, "killed")
        for n in range(50):
            writer.add_cell(Cell(f"c{{n:02d}}", "e", Outcome.PASSED, Outcome.PASSED))
        print("50 done", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "50 done"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    run_dir = tmp_path / "killed"
    assert len(load_run(run_dir)["cells"]) == 50
    result = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run_dir), "--write"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "c49" in (run_dir / "report.html").read_text() and "c49" in (run_dir / "matrix.md").read_text()


async def test_on_the_engines_loop_the_refresh_is_a_timer_of_the_loop(tmp_path, monkeypatch):
    import asyncio

    monkeypatch.setattr(matrix_module, "WRITE_INTERVAL", 0.3)
    writer = MatrixWriter(tmp_path)
    writer.add_cell(cell("a"))
    writer.add_cell(cell("b"))
    assert isinstance(writer._timer, asyncio.TimerHandle)  # no thread to wake, no lock to contend for
    await asyncio.sleep(0.5)
    assert "<b>2</b> cells finished" in (writer.dir / "report.html").read_text()


def test_a_large_run_writes_every_cell_whole_though_it_holds_passed_ones_lean(tmp_path):
    from harness.providers.base import OutputImage, Timings
    from harness.report.html import DETAILS_LIMIT
    from harness.run.stats import Attempt, cell_stats

    writer = MatrixWriter(tmp_path)
    attempt = Attempt(Outcome.PASSED, Timings(total=1.5), 1)
    for n in range(DETAILS_LIMIT + 5):
        writer.add_cell(Cell(f"c{n:05d}", "e", Outcome.PASSED, Outcome.PASSED, images=(OutputImage("x.png", "/x.png", 1),),
                             attempts=(attempt,), stats=cell_stats([attempt])))
    held = writer.matrix["cells"][-1]
    assert "images" not in held and held["stats"]["latency"]["total"]["p95"] == 1.5  # what the budgets read
    writer.finish()
    last = json.loads((writer.dir / "matrix.json").read_text())["cells"][-1]
    assert last["images"][0]["filename"] == "x.png" and "wilson95" in last["stats"] and last["attempts"]


def test_a_run_set_whole_gets_its_endpoints_costs(tmp_path):
    """comfy-compat merge sets a run's endpoints and cells whole; the endpoints' cost is still summed."""
    writer = MatrixWriter(tmp_path)
    writer.matrix["endpoints"] = [{"name": "e", "kind": "comfyui", "url": "http://gpu:8188", "price_per_gpu_hour": 3.6, "cost": None}]
    writer.matrix["cells"] = [{"case": "a", "endpoint": "e", "outcome": "passed", "ok": True,
                               "cost": {"price_per_gpu_hour": 3.6, "billed_seconds": 10.0, "images": 2}}]
    writer.finish()
    cost = json.loads((writer.dir / "matrix.json").read_text())["endpoints"][0]["cost"]
    assert cost["images"] == 2 and cost["per_image"] == pytest.approx(0.005)


def test_a_request_sent_again_is_a_link_of_the_first_and_never_written_through(tmp_path):
    """The same body for another cell is a hard link (one inode); a different one is a file of its own, and
    a cell's request written again never changes the cells it was linked with."""
    writer = MatrixWriter(tmp_path)
    first, again, other = (writer.write_request(writer.cell_dir("smoke", e), body)
                           for e, body in (("a", '{"prompt": 1}'), ("b", '{"prompt": 1}'), ("c", '{"prompt": 2}')))
    assert first.stat().st_ino == again.stat().st_ino != other.stat().st_ino
    assert (first.stat().st_nlink, other.stat().st_nlink) == (2, 1)
    assert writer.write_request(again.parent, '{"prompt": 3}') == again
    assert (first.read_text(), again.read_text(), other.read_text()) == ('{"prompt": 1}', '{"prompt": 3}', '{"prompt": 2}')
    assert again.stat().st_ino != first.stat().st_ino and first.stat().st_nlink == 1
    writer.finish()
