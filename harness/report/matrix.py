"""matrix.json: the run's support matrix, written once when the run ends; cells.jsonl while it runs.

Each finished cell is appended to ``cells.jsonl`` at once (``harness.report.cells_log``): a crash, Ctrl-C
or SIGKILL leaves every finished cell readable there, and ``harness.report.drift.load_run`` (so every
``comfy-compat`` command) reads an unfinished run from it. While the run goes on, matrix.json holds
the run's plan and endpoints with ``run.status`` ``running`` and no cells, and report.html is a small
progress page; both are rewritten at most every ``WRITE_INTERVAL`` seconds, at a cost that does not
grow with the cells. When the run ends (Ctrl-C included) matrix.json, matrix.md and report.html are
written once, whole: each cell is written twice in all, however many cells there are.

Under pytest-xdist each worker keeps its own log and header (``parts/<worker>.jsonl`` and ``.json``) in
the run directory the controller named, and the controller merges the parts into the one matrix.json.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import json
import os
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

from harness.errors import HarnessError
from harness.report.cells_log import LOG_NAME, CellLog, encode, lines_in_order, logs_of, read_cells
from harness.run.cells import Cell
from harness.run.endpoints import Endpoint
from harness.run.events import CellFinished, EndpointIntroduced, EndpointListed, Event
from harness.report.fingerprint import write_fingerprint
from harness.run.outcomes import Outcome
from harness.run.secrets import redact
from harness.report.html import DETAILS_LIMIT, noteworthy, render_html, render_progress
from harness.report.markdown import render_markdown
from harness.run.stats import endpoint_costs

if TYPE_CHECKING:
    from harness.run.cases import Case
    from harness.report.verdict import Waiver

__all__ = ["SCHEMA_VERSION", "MatrixWriter", "ReportWriteError", "check_writable", "harness_version", "new_run_id"]

SCHEMA_VERSION = 1
WRITE_INTERVAL = 1.0
"""Most seconds between a change and the progress page (and matrix.json's header) showing it."""
_RECENT = 20
"""Unexpected cells the progress page lists, newest first."""
_DETAIL_ONLY = ("images", "attempts", "repro", "job_id", "timings", "conversion")
"""What only a cell's details section shows: a large run keeps its passed cells without them in memory
(their lines in the log keep everything) and details none of them (``harness.report.html.DETAILS_LIMIT``)."""


class ReportWriteError(HarnessError):
    """Raised when the report directory cannot be written (read-only, missing permissions, disk full)."""


def check_writable(report_root: Path) -> None:
    """Fail in one line, before any cell runs, when reports cannot be written under ``report_root``."""
    root = Path(report_root)
    probe = root / f".comfy-compat-probe-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_text("probe", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise ReportWriteError(f"cannot write reports under {root}: {exc.strerror or exc}") from None


def harness_version() -> str:
    try:
        return version("comfy-compat")
    except PackageNotFoundError:
        return "0+unknown"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """Sortable and unique enough for one machine: UTC time to the second plus the process id."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"


class MatrixWriter:
    """Collects endpoints and cells of one run and keeps ``reports/<run-id>/`` readable on disk.

    A listener of the engine's events (``handle``): the engine does not know what it writes.
    """

    def __init__(self, report_root: Path, run_id: str | None = None, *, part: str | None = None, repeat: int = 1) -> None:
        self.run_id = run_id or new_run_id()
        self.root = Path(report_root)
        self.dir = self.root / self.run_id
        check_writable(self.dir)
        self.part = part
        """The xdist worker this writer belongs to; None for the run's own matrix."""
        self._requests: dict[bytes, Path] = {}
        """A digest of each request.json's bytes → the first file of them (``write_request``)."""
        self.matrix: dict = {
            "schema_version": SCHEMA_VERSION,
            "run": {"id": self.run_id, "started": _now(), "finished": None, "status": "running",
                    "harness_version": harness_version(), "repeat": repeat, "compare_to": None},
            "outcomes": {
                o.value: {"meaning": o.info.meaning, "hint": o.info.hint,
                          "disposition": o.disposition.value, "retryable": o.retryable}
                for o in Outcome
            },
            "cases": [],
            "case_details": {},
            "waivers": [],
            "endpoints": [],
            "cells": [],
            "cells_log": LOG_NAME,
            "verdict": None,
            "drift": None,
        }
        self._init_writes()
        try:
            if part is not None:
                (self.dir / "parts").mkdir(exist_ok=True)
            self._log = CellLog(self._header.with_suffix(".jsonl") if part is not None else self.dir / LOG_NAME)
        except OSError as exc:
            raise self._cannot_write(exc) from None
        if part is None:
            self._point_latest()
        self._write(live=True)

    @property
    def _header(self) -> Path:
        """matrix.json, or a worker's part of it."""
        return self.dir / "parts" / f"{self.part}.json" if self.part is not None else self.dir / "matrix.json"

    def cell_dir(self, case: str, endpoint: str) -> Path:
        path = self.dir / "cells" / f"{_safe(case)}@{_safe(endpoint)}"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._cannot_write(exc) from None
        return path

    def write_request(self, cell_dir: Path, text: str) -> Path:
        """The cell's request.json. Where an earlier cell's of this run holds the same bytes (a run sends each
        workflow to every endpoint, and endpoints of a kind get the same body) it is a hard link of that file:
        a link cost this machine's disk 0.02 ms of kernel time, a new file 0.05 to 1.2 ms (measured)."""
        path = cell_dir / "request.json"
        data = text.encode("utf-8")
        digest = hashlib.blake2b(data, digest_size=16).digest()
        try:
            path.unlink(missing_ok=True)  # never written through: it may be a link of another cell's
            first = self._requests.get(digest)
            if first is not None:
                with contextlib.suppress(OSError):  # no links here, or too many of one file (EMLINK): a file of its own
                    os.link(first, path)
                    return path
            path.write_bytes(data)
        except OSError as exc:
            raise self._cannot_write(exc) from None
        self._requests[digest] = path
        return path

    def plan(self, cases: list[Case], waivers: list[Waiver] = (), *, cells: int | None = None) -> None:
        """The run's cases in the order they were planned (the matrix's row order), the waivers and how
        many cells the run will have (for the progress page)."""
        with self._lock:
            self.matrix["cases"] = list(dict.fromkeys(case.id for case in cases))
            self.matrix["case_details"] = {case.id: case.details() for case in cases}
            self.matrix["waivers"] = [w.to_dict() for w in waivers]
            self.planned = cells
            self._header_changed = True
            self._write(live=True)

    def handle(self, event: Event) -> None:
        """The engine's events: endpoints listed and introduced, cells finished."""
        if isinstance(event, CellFinished):
            self.add_cell(event.cell)
        elif isinstance(event, EndpointIntroduced):
            self.add_endpoint(event.endpoint, event.provenance, event.catalogue, event.fingerprint, event.modelled)
        elif isinstance(event, EndpointListed):
            self.add_endpoint(event.endpoint, None, None, None)

    def add_endpoint(self, endpoint: Endpoint, provenance: dict | None, catalogue_source: str | None,
                     fingerprint: dict | None = None, modelled: dict | None = None) -> None:
        """Record an endpoint and, when it gave one, its fingerprint (``fingerprints/<name>.json``).

        ``modelled`` is the ComfyUI release its predictions and conversions are modelled on
        (``Modelled.to_dict()``: comfyui_version, frontend, reason), once it has introduced itself.

        Recording an endpoint again replaces its entry in place: the engine lists every endpoint first
        (the column order) and fills each in when it has introduced itself.
        """
        fingerprint_file = None
        if fingerprint is not None:
            fingerprint_file = f"fingerprints/{_safe(endpoint.name)}.json"
            try:
                write_fingerprint(self.dir / fingerprint_file, fingerprint)
            except OSError as exc:
                raise self._cannot_write(exc) from None
        entry = {
            "name": endpoint.name, "kind": endpoint.kind, "url": endpoint.public_url,
            "profile": endpoint.profile, "provenance": provenance, "catalogue": catalogue_source,
            "fingerprint": fingerprint_file, "price_per_gpu_hour": endpoint.price_per_gpu_hour, "cost": None,
            "modelled": modelled,
        }
        with self._lock:
            listed = self.matrix["endpoints"]
            at = self._endpoint_at.get(endpoint.name)
            if at is None:
                self._endpoint_at[endpoint.name] = len(listed)
                listed.append(entry)
            else:
                listed[at] = entry
            self._header_changed = True
            # Hundreds of endpoints are listed and introduced at start: one rewrite per interval, not per entry.
            self._live_soon()

    def add_cell(self, cell: Cell) -> None:
        """Append the cell to the log now (on disk whatever happens next) and count it for the progress page."""
        entry = cell.to_dict()
        with self._lock:
            if self.failed is not None:
                raise self.failed
            try:
                self._log.append(entry)
            except OSError as exc:
                self.failed = self._cannot_write(exc)
                raise self.failed from None
            self._keep(entry)
            self._counts[entry["outcome"]] += 1
            if not entry["ok"]:
                self._recent.appendleft(entry)
            self._live_soon()

    def update(self, **sections: Any) -> None:
        """Set top-level sections computed from the cells (``verdict``, ``drift``) and rewrite the reports."""
        with self._lock:
            self.matrix.update(sections)
            self._write()

    def finish(self, status: str = "complete", **sections: Any) -> Path:
        """End the run: its status, any sections (``verdict``, ``drift``), and every report written once."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.matrix["run"].update(finished=_now(), status=status)
            self.matrix.update(sections)
            _in_plan_order(self.matrix)
            if not self._logged and self._log is not None:  # cells set whole (a merged run): its log has them too
                try:
                    for cell in self.matrix["cells"]:
                        self._log.append(cell)
                except OSError as exc:
                    raise self._cannot_write(exc) from None
                self._logged = True
            self._write()
            if self._log is not None:
                self._log.close()
        return self.dir

    def merge_parts(self) -> int:
        """Fold the xdist workers' parts into this matrix (written by ``finish``); how many parts there were."""
        parts = sorted((self.dir / "parts").glob("*.json"))
        with self._lock:
            for path in parts:
                part = json.loads(path.read_text(encoding="utf-8"))
                for key in ("cases", "case_details", "waivers", "endpoints"):
                    if not self.matrix[key]:
                        self.matrix[key] = part[key]
                log = path.with_suffix(".jsonl")
                if log.is_file():
                    for cell in read_cells(log):
                        self._keep(cell)
            self._endpoint_at = {e["name"]: i for i, e in enumerate(self.matrix["endpoints"])}
        return len(parts)

    def _keep(self, entry: dict) -> None:
        """Hold a logged cell for the reports at the end: whole, or past ``DETAILS_LIMIT`` cells and passed
        as expected, without what only its details show (20,000 whole cells are ~100 MB)."""
        cells = self.matrix["cells"]
        if len(cells) < DETAILS_LIMIT or noteworthy(entry):
            cells.append(entry)
        else:
            cells.append({k: v for k, v in entry.items() if k not in _DETAIL_ONLY})
            stats = entry.get("stats") or {}
            if stats.get("attempts") == 1 and not entry.get("cost"):
                # One unpriced attempt: no report shows its statistics; the verdict's budgets read these.
                cells[-1]["stats"] = {"attempts": 1, "passed": stats.get("passed"), "success_rate": stats.get("success_rate"),
                                      "latency": {"total": (stats.get("latency") or {}).get("total")}}
        self._logged = True

    @classmethod
    def reopen(cls, run_dir: Path) -> MatrixWriter:
        """A writer over an earlier run (an unfinished one read from its log), to add a verdict or drift to
        it or re-render its reports."""
        from harness.report.drift import load_run

        run_dir = Path(run_dir).resolve()
        writer = cls.__new__(cls)
        writer.matrix = load_run(run_dir)
        writer.run_id, writer.root, writer.dir, writer.part = writer.matrix["run"]["id"], run_dir.parent, run_dir, None
        writer._init_writes()
        return writer

    def render(self, *, html: bool = True, markdown: bool = True) -> list[Path]:
        """Write the human renderings of the matrix; the paths written."""
        written = []
        for wanted, name, render in ((markdown, "matrix.md", render_markdown), (html, "report.html", render_html)):
            if wanted:
                _atomic_write(self.dir / name, redact(render(self.matrix)).encode())
                written.append(self.dir / name)
        return written

    def _cannot_write(self, exc: OSError) -> ReportWriteError:
        return ReportWriteError(f"cannot write the report under {self.dir}: {exc.strerror or exc}")

    def _init_writes(self) -> None:
        self._lock = threading.Lock()
        self._written_at = float("-inf")
        self._timer: threading.Timer | asyncio.TimerHandle | None = None
        self._log: CellLog | None = None
        self._endpoint_at = {e["name"]: i for i, e in enumerate(self.matrix["endpoints"])}
        self._counts: collections.Counter[str] = collections.Counter()
        self._recent: collections.deque[dict] = collections.deque(maxlen=_RECENT)
        self.planned: int | None = None
        self._header_changed = True
        """Whether matrix.json's header (plan, endpoints) changed since it was last written."""
        self._logged = False
        """Whether the cells are this writer's logged ones (matrix.json is then written from the logs)."""
        self.failed: ReportWriteError | None = None
        """Set once a write failed: every later write raises it rather than half-write again."""

    def _live_soon(self) -> None:
        """Refresh the live files now if the last refresh is old enough, else once the interval is over (lock held)."""
        wait = self._written_at + WRITE_INTERVAL - time.monotonic()
        if wait <= 0:
            self._write(live=True)
        elif self._timer is None:
            try:  # on the engine's loop, a timer of that loop: no thread to wake, no lock to contend for
                self._timer = asyncio.get_running_loop().call_later(wait, self._flush)
            except RuntimeError:  # a caller without a loop
                self._timer = threading.Timer(wait, self._flush)
                self._timer.daemon = True
                self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            if self._timer is None:  # finished meanwhile
                return
            self._timer = None
            try:
                self._write(live=True)
            except ReportWriteError as exc:
                # On a timer nobody would hear it: the next cell raises it again.
                self.failed = exc

    def _write(self, *, live: bool = False) -> None:
        """Write the live files (``live``: header and progress page) or every report; ReportWriteError
        (the last complete files left in place) when the disk is full or the directory no longer writable."""
        if self.failed is not None:
            raise self.failed
        try:
            self._write_live() if live else self._write_all()
        except OSError as exc:
            self.failed = self._cannot_write(exc)
            raise self.failed from None

    def _write_live(self, *, header: bool = False) -> None:
        """The progress page, and matrix.json's header when it changed (or ``header``): the header holds
        every case, so rewritten each second it would cost more the larger the run."""
        self._written_at = time.monotonic()
        if header or self._header_changed:
            self._header_changed = False
            _atomic_write(self._header, encode({**self.matrix, "cells": []}, indent=True))  # the cells are in the log
        if self.part is None:
            _atomic_write(self.dir / "report.html", redact(render_progress(
                self.matrix, done=len(self.matrix["cells"]), planned=self.planned, counts=self._counts,
                recent=list(self._recent))).encode())

    def _write_all(self) -> None:
        if self.part is not None:  # its cells are in its log, which the controller reads
            self._write_live(header=True)
            return
        # Indexed here, not by _endpoint_at: a merged or reopened run's endpoints were set whole.
        entries = {e["name"]: e for e in self.matrix["endpoints"]}
        for cost in endpoint_costs(self.matrix["cells"]):
            if cost["endpoint"] in entries:
                entries[cost["endpoint"]]["cost"] = cost["cost"]
        if self._logged:
            lines = lines_in_order(logs_of(self.dir), _plan_order(self.matrix))
        else:  # a reopened or merged run: its cells are whole in memory
            lines = (encode(cell) for cell in self.matrix["cells"])
        _atomic_write(self.dir / "matrix.json", lambda out: _write_matrix(out, self.matrix, lines))
        self.render()

    def _point_latest(self) -> None:
        latest = self.root / "latest"
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.exists():
            return  # a real directory someone made: leave it alone rather than delete their files
        latest.symlink_to(self.run_id, target_is_directory=True)


def _write_matrix(out: BinaryIO, matrix: dict, cells: Iterable[bytes]) -> None:
    """The matrix indented, with ``cells`` (JSON lines) in place of its own, one line each (what grep finds)."""
    out.write(b"{")
    for number, (key, value) in enumerate(matrix.items()):
        out.write(b",\n  " if number else b"\n  ")
        if key != "cells":
            out.write(encode(key) + b": " + encode(value, indent=True).replace(b"\n", b"\n  "))
            continue
        out.write(b'"cells": [')
        written = 0
        for line in cells:
            out.write((b",\n    " if written else b"\n    ") + line)
            written += 1
        out.write(b"\n  ]" if written else b"]")
    out.write(b"\n}\n")


def _in_plan_order(matrix: dict) -> None:
    """Cells sorted by case (plan order) then endpoint (column order), whatever order they finished in."""
    matrix["cells"].sort(key=_plan_order(matrix))


def _plan_order(matrix: dict) -> Callable[[dict], tuple[int, int]]:
    """A cell's sort key: its case's row (plan order), then its endpoint's column."""
    rows = {case: i for i, case in enumerate(matrix["cases"])}
    columns = {e["name"]: i for i, e in enumerate(matrix["endpoints"])}
    return lambda cell: (rows.get(cell["case"], len(rows)), columns.get(cell["endpoint"], len(columns)))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _atomic_write(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` (or what it writes to the file) in place of ``path``; a failed write leaves the old file whole."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: xdist workers share the run directory
    try:
        with tmp.open("wb") as out:
            data(out) if callable(data) else out.write(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
