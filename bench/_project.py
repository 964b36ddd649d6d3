"""What the front-end benchmarks ((e) scale, (f) workers) share: a generated comfy-compat project run by
``pytest`` in a subprocess, as a user runs it.

The project, in a temp dir: ``cases/test_compat.py`` (the project's one test), ``workflows/`` of
``cells / ENDPOINTS`` copies of smoke_invert.json under distinct names (``--workflows``), and an
endpoints file of ENDPOINTS endpoints, one reference server subprocess each (zero execution time). Its
``conftest.py`` is a probe: it times every ``MatrixWriter`` method (the outermost call only, any
thread) and, at the end, writes the seconds per method and the process's ``/proc/self/io`` to a JSON
file. The child's own CPU time and peak RSS come from ``os.wait4``: the servers are not its
children.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from _common import ROOT, SMOKE, server, titled

__all__ = ["ENDPOINTS", "ChildRun", "PytestRun", "project", "run_bare_pytest", "run_engine_alone", "run_pytest"]

ENDPOINTS = 10
CONCURRENCY = 8
"""Each endpoint's max_concurrency and its server's capacity."""

_PROBE = '''
import inspect, json, os, resource, threading, time
import pytest
from harness.report.matrix import MatrixWriter

_spent, _rss, _local, _lock = {}, [0.0], threading.local(), threading.Lock()


def _timed(method):
    def timed(*args, **kwargs):
        if getattr(_local, "inside", False):
            return method(*args, **kwargs)
        _local.inside, started = True, time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            _local.inside = False
            with _lock:
                _spent[method.__name__] = _spent.get(method.__name__, 0.0) + time.perf_counter() - started
    return timed


for _name, _method in list(vars(MatrixWriter).items()):
    if inspect.isfunction(_method):
        setattr(MatrixWriter, _name, _timed(_method))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    _rss[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    with open("/proc/self/io") as fh:
        io = dict(line.split(": ") for line in fh.read().splitlines())
    with open(f"{os.environ['COMFY_BENCH_PROBE']}.{os.getpid()}.json", "w") as fh:
        json.dump({"report_s": _spent, "rss_mb_cells_done": _rss[0], "io": {k: int(v) for k, v in io.items()}}, fh)
'''


_ENGINE = '''
import sys
from pathlib import Path
from harness.run.cases import cases_from_workflows
from harness.run.endpoints import load_endpoints_file
from harness.run.engine import Engine, EngineThread
from harness.run.feeder import Feeder
from harness.report.matrix import MatrixWriter

# What the plugin does, without pytest: the engine on its thread, the cells fed to it, each taken in order.
root, reports = Path(sys.argv[1]), Path(sys.argv[2])
endpoints, cases = load_endpoints_file(root / "endpoints.yaml"), cases_from_workflows(root / "workflows").cases
cells = [(case, e.name) for case in cases for e in endpoints]
writer = MatrixWriter(reports)
writer.plan(cases, cells=len(cells))
engine, thread = Engine(endpoints, writer, listeners=[writer]), EngineThread()
thread.call(engine.start())
feeder = Feeder(lambda case, name: thread.submit(engine.run_cell(case, name)), cells,
                {e.name: e.max_concurrency for e in endpoints})
feeder.start()
for case, name in cells:
    feeder.take(case, name)
thread.call(engine.close())
thread.stop()
writer.finish()
'''
_BARE_PYTEST = '''
import pytest

@pytest.mark.parametrize("cell", [f"w{i:05d}@e{j}" for i in range(ROWS) for j in range(COLUMNS)])
def test_cell(cell):
    pass
'''


@dataclass
class ChildRun:
    """A child process's wall, CPU (user + system) and peak RSS, from ``os.wait4``."""

    status: int | None
    wall: float
    cpu: float
    peak_rss_mb: float


def run_child(command: Sequence[str], cwd: Path, deadline: float) -> ChildRun:
    with (cwd / "child.log").open("ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=_child_env(), stdout=log, stderr=subprocess.STDOUT)
        status, usage = _wait(proc, started + deadline)
    return ChildRun(status, time.perf_counter() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _child_env() -> dict[str, str]:
    """The children's environment: the harness importable, and Python's bytecode caches on, as a user's machine
    has them. With PYTHONDONTWRITEBYTECODE (this sandbox sets it) every process compiles the harness again and
    pytest rewrites its asserts again (the harness is a pytest plugin): about 1 s of CPU per process, which
    weighs -n 2's three processes thrice. The first run of a benchmark (its warm-up) writes the caches."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_engine_alone(root: Path, deadline: float) -> ChildRun:
    """The project's cells through the harness's Engine and MatrixWriter in a process of their own, no pytest."""
    reports = Path(tempfile.mkdtemp(prefix="engine-reports-", dir=root))
    try:
        return run_child([sys.executable, "-c", _ENGINE, str(root), str(reports)], root, deadline)
    finally:
        shutil.rmtree(reports, ignore_errors=True)


def run_bare_pytest(cells: int, deadline: float) -> ChildRun:
    """pytest alone over as many trivial tests with the cells' ids, the harness not loaded: pytest's own share."""
    with tempfile.TemporaryDirectory(prefix="comfy-compat-bench-bare-pytest-") as tmp:
        root = Path(tmp)
        (root / "test_bare.py").write_text(_BARE_PYTEST.replace("ROWS", str(cells // ENDPOINTS)).replace("COLUMNS", str(ENDPOINTS)), encoding="utf-8")
        return run_child([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:comfy_compat",
                          "test_bare.py"], root, deadline)


@dataclass
class PytestRun:
    cells: int
    status: int | None
    """pytest's exit status; None when the deadline ended it."""
    wall: float
    cpu: float
    """User + system seconds of the pytest process (and its xdist workers, once reaped)."""
    peak_rss_mb: float
    rss_mb_cells_done: float
    """Peak RSS when the last test had run, before the run's final reports were written."""
    report_s: dict[str, float]
    """Seconds inside each MatrixWriter method (outermost calls), summed over the processes that ran them."""
    wchar: int
    """Bytes the processes passed to write calls (``/proc/<pid>/io`` wchar), summed."""
    report_bytes: int
    """Size of the report directory once the run ended."""
    outcomes: str
    """The run's own line of outcomes (``N cells: ...``), so a failing size says what failed."""

    @property
    def report_share(self) -> float:
        """The share of wall spent writing reports: matrix.json, cells.jsonl, matrix.md, report.html, fingerprints
        (not a cell's own files, _CELL_FILES: its evidence, as a bare client makes its download's file)."""
        return sum(s for method, s in self.report_s.items() if method not in _CELL_FILES) / self.wall

    @property
    def folder_share(self) -> float:
        """The share of wall spent making the cells' folders and request.json (a mkdir each, a file or a link)."""
        return sum(self.report_s.get(method, 0.0) for method in _CELL_FILES) / self.wall


_CELL_FILES = ("cell_dir", "write_request")
"""MatrixWriter's methods that make a cell's own files."""


@contextlib.contextmanager
def project(cells: int) -> Iterator[Path]:
    """A project directory of ``cells`` cells over ENDPOINTS reference endpoints (servers up while it lasts)."""
    with tempfile.TemporaryDirectory(prefix="comfy-compat-bench-project-") as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        urls = [stack.enter_context(server(capacity=CONCURRENCY)) for _ in range(ENDPOINTS)]
        (root / "cases").mkdir()
        shutil.copy(ROOT / "cases" / "test_compat.py", root / "cases" / "test_compat.py")
        (root / "workflows").mkdir()
        prompt = json.loads(SMOKE.read_text(encoding="utf-8"))
        for i in range(cells // ENDPOINTS):  # workflows of their own; each goes to every endpoint, as in a nightly
            (root / "workflows" / f"w{i:05d}.json").write_text(json.dumps(titled(prompt, f"w{i:05d}")), encoding="utf-8")
        endpoints = {f"e{i}": {"kind": "comfyui", "url": url, "max_concurrency": CONCURRENCY} for i, url in enumerate(urls)}
        (root / "endpoints.yaml").write_text(yaml.safe_dump({"endpoints": endpoints}), encoding="utf-8")
        (root / "pytest.ini").write_text("[pytest]\ntestpaths = cases\n", encoding="utf-8")
        (root / "conftest.py").write_text(_PROBE, encoding="utf-8")
        yield root


def run_pytest(root: Path, cells: int, args: Sequence[str] = (), deadline: float = 900.0) -> PytestRun:
    """``pytest`` over the project (reports in a fresh directory), ended once ``deadline`` seconds pass."""
    reports = Path(tempfile.mkdtemp(prefix="reports-", dir=root))
    probe = reports.with_name(reports.name + "-probe")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--workflows=workflows",
               "--endpoints-file=endpoints.yaml", f"--report-dir={reports}", *args]
    env = {**_child_env(), "COMFY_BENCH_PROBE": str(probe)}
    with (root / "pytest.log").open("ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        status, usage = _wait(proc, started + deadline)
        wall = time.perf_counter() - started
    probes = [json.loads(p.read_text()) for p in root.glob(probe.name + ".*.json")]
    size = sum(p.stat().st_size for p in reports.rglob("*") if p.is_file() and not p.is_symlink())
    shutil.rmtree(reports, ignore_errors=True)
    spent: dict[str, float] = {}
    for p in probes:
        for method, seconds in p["report_s"].items():
            spent[method] = spent.get(method, 0.0) + seconds
    return PytestRun(cells, status, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                     max((p["rss_mb_cells_done"] for p in probes), default=0.0), spent,
                     sum(p["io"]["wchar"] for p in probes), size, _outcomes_line(root / "pytest.log"))


def _outcomes_line(log: Path) -> str:
    lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if " cells: " in line]
    return lines[-1].strip() if lines else "no outcomes line"


def _wait(proc: subprocess.Popen, deadline: float) -> tuple[int | None, os.struct_rusage]:
    """(exit status or None if killed at the deadline, the child's resource usage)."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        if time.perf_counter() > deadline:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None, usage
        time.sleep(0.1)
