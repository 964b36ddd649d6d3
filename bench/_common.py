"""What the harness benchmarks share: a reference endpoint in a subprocess, cases, endpoints, the engine.

The server runs as ``comfy-compat serve`` in its own process, so the harness process's CPU time and
peak RSS are the harness's alone. Nothing here talks to anything but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.run.cases import Case  # noqa: E402
from harness.run.endpoints import Endpoint  # noqa: E402
from harness.comfy.workflows import load_workflow  # noqa: E402

__all__ = ["ROOT", "EngineRun", "cases", "endpoint", "peak_rss_mb", "report", "run_engine", "server",
           "server_process", "spread", "titled"]

SMOKE = ROOT / "workflows" / "smoke_invert.json"
_CLI = Path(sys.executable).with_name("comfy-compat")


@contextlib.contextmanager
def server(**execution: Any) -> Iterator[str]:
    """A stock reference endpoint with these ``execution:`` knobs, served by a subprocess; yields its URL."""
    with server_process(**execution) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(**execution: Any) -> Iterator[tuple[str, int]]:
    """``server()``, yielding its URL and process id (to read the server's own CPU time and memory)."""
    with tempfile.TemporaryDirectory(prefix="comfy-compat-bench-") as tmp:
        profile = {
            "name": "bench",
            "catalogue": str(ROOT / "fixtures" / "object_info" / "stock.json"),
            "inputs": ["example.png"],
            "execution": {"node_seconds": 0, **execution},
        }
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(profile), encoding="utf-8")
        command = [str(_CLI), "serve", "--profile", str(path), "--port", "0"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if " listening on " not in line:
                raise RuntimeError(f"the reference server did not start: {line!r}")
            yield line.split(" listening on ", 1)[1].split()[0], proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cases(count: int, workflow: Path = SMOKE) -> list[Case]:
    """``count`` cases with distinct ids (bench-000, bench-001, ...), each its own workflow, as a run of that
    many cases would have: the same graph, its first node titled after the case (``titled``)."""
    prompt = load_workflow(workflow)
    return [Case(id=f"bench-{i:03d}", workflow=titled(prompt, f"bench-{i:03d}"), workflow_path=workflow) for i in range(count)]


def titled(prompt: dict, title: str) -> dict:
    """``prompt`` with its first node's ``_meta`` title set to ``title``: a request body of its own (the
    harness links a request.json that repeats another's bytes), the same work for the server."""
    first = next(iter(prompt))
    return {**prompt, first: {**prompt[first], "_meta": {"title": title}}}


def endpoint(url: str, max_concurrency: int, name: str = "ref") -> Endpoint:
    return Endpoint(name, url, kind="comfyui", max_concurrency=max_concurrency)


@dataclass
class EngineRun:
    wall: float
    """Seconds from the first cell submitted to the report finished (the engine's start excluded)."""
    cpu: float
    """Harness process CPU seconds (user + system) over the same span."""
    outcomes: dict[str, int]


def run_engine(endpoints: Sequence[Endpoint], run_cases: Sequence[Case]) -> EngineRun:
    """Every case on every endpoint through the harness's own Engine, concurrently; reports in a temp dir.

    The span measured runs from the first cell submitted to the report finished (``MatrixWriter.finish``).
    """
    from harness.run.engine import Engine
    from harness.report.matrix import MatrixWriter

    async def main(report_dir: Path) -> EngineRun:
        writer = MatrixWriter(report_dir)
        engine = Engine(list(endpoints), writer, listeners=[writer])
        await engine.start()
        try:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            cells = await asyncio.gather(*(engine.run_cell(case, e.name) for case in run_cases for e in endpoints))
            writer.finish()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        finally:
            await engine.close()
        outcomes: dict[str, int] = {}
        for cell in cells:
            outcomes[cell.outcome.value] = outcomes.get(cell.outcome.value, 0) + 1
        return EngineRun(wall, cpu, outcomes)

    with tempfile.TemporaryDirectory(prefix="comfy-compat-bench-report-") as tmp:
        return asyncio.run(main(Path(tmp)))


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median M (range LO-HI)`` of repeated measurements: on a shared 2-core machine one is noise."""
    return f"median {statistics.median(values):.{digits}f} (range {min(values):.{digits}f}-{max(values):.{digits}f})"


def report(label: str, figures: str, value: float, goal: float, unit: str = "") -> None:
    """One line: ``bench (x) name: figures, <value> (goal <= goal) OK|MISSED``."""
    verdict = "OK" if value <= goal else "MISSED"
    print(f"bench {label}: {figures} (goal <= {goal:g}{unit}) {verdict}", flush=True)
