"""matrix.json: the run's support matrix, rewritten atomically as cells finish.

The file is always complete JSON: a crash or Ctrl-C mid-run leaves the cells finished so far, with
``run.status`` still ``running`` (or ``interrupted``), and ``reports/latest`` already points at it.
A finished cell reaches disk within ``WRITE_INTERVAL`` seconds: rewriting the whole matrix (and its
HTML) after each of hundreds of fast cells would cost more than running them.

Under pytest-xdist each worker writes its own part (``parts/<worker>.json``) into the run directory
the controller named, and the controller merges the parts into the one matrix.json when all are done.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.run.cells import Cell
from harness.run.endpoints import Endpoint
from harness.report.fingerprint import write_fingerprint
from harness.run.outcomes import Outcome
from harness.run.secrets import redact
from harness.report.html import render_html
from harness.report.markdown import render_markdown
from harness.run.stats import endpoint_costs

if TYPE_CHECKING:
    from harness.run.cases import Case
    from harness.report.verdict import Waiver

__all__ = ["SCHEMA_VERSION", "MatrixWriter", "ReportWriteError", "check_writable", "harness_version", "new_run_id"]

SCHEMA_VERSION = 1
WRITE_INTERVAL = 1.0
"""Most seconds between a cell's arrival and its matrix.json rewrite."""


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
    """Collects endpoints and cells of one run and keeps ``reports/<run-id>/`` current on disk."""

    def __init__(self, report_root: Path, run_id: str | None = None, *, part: str | None = None, repeat: int = 1) -> None:
        self.run_id = run_id or new_run_id()
        self.root = Path(report_root)
        self.dir = self.root / self.run_id
        check_writable(self.dir)
        self.part = part
        """The xdist worker this writer belongs to; None for the run's own matrix."""
        self._init_writes()
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
            "verdict": None,
            "drift": None,
        }
        if part is None:
            self._point_latest()
        self._write()

    def cell_dir(self, case: str, endpoint: str) -> Path:
        path = self.dir / "cells" / f"{_safe(case)}@{_safe(endpoint)}"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportWriteError(f"cannot write the report under {self.dir}: {exc.strerror or exc}") from None
        return path

    def plan(self, cases: list[Case], waivers: list[Waiver] = ()) -> None:
        """The run's cases in the order they were planned (the matrix's row order) and the waivers."""
        with self._lock:
            self.matrix["cases"] = list(dict.fromkeys(case.id for case in cases))
            self.matrix["case_details"] = {case.id: case.details() for case in cases}
            self.matrix["waivers"] = [w.to_dict() for w in waivers]
            self._write()

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
                raise ReportWriteError(f"cannot write the report under {self.dir}: {exc.strerror or exc}") from None
        entry = {
            "name": endpoint.name, "kind": endpoint.kind, "url": endpoint.public_url,
            "profile": endpoint.profile, "provenance": provenance, "catalogue": catalogue_source,
            "fingerprint": fingerprint_file, "price_per_gpu_hour": endpoint.price_per_gpu_hour, "cost": None,
            "modelled": modelled,
        }
        with self._lock:
            listed = self.matrix["endpoints"]
            at = next((i for i, e in enumerate(listed) if e["name"] == endpoint.name), None)
            if at is None:
                listed.append(entry)
            else:
                listed[at] = entry
            # Hundreds of endpoints are listed and introduced at start: one rewrite per second, not per entry.
            self._write_soon()

    def add_cell(self, cell: Cell) -> None:
        with self._lock:
            self.matrix["cells"].append(cell.to_dict())
            self._write_soon()

    def update(self, **sections: Any) -> None:
        """Set top-level sections computed from the cells (``verdict``, ``drift``) and rewrite."""
        with self._lock:
            self.matrix.update(sections)
            self._write()

    def finish(self, status: str = "complete") -> Path:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self.matrix["run"].update(finished=_now(), status=status)
            _in_plan_order(self.matrix)
            self._write()
        return self.dir

    def merge_parts(self) -> int:
        """Fold the xdist workers' parts into this matrix (cells in plan order); how many parts there were."""
        parts = sorted((self.dir / "parts").glob("*.json"))
        with self._lock:
            for path in parts:
                part = json.loads(path.read_text(encoding="utf-8"))
                for key in ("cases", "case_details", "waivers", "endpoints"):
                    if not self.matrix[key]:
                        self.matrix[key] = part[key]
                self.matrix["cells"] += part["cells"]
            _in_plan_order(self.matrix)
            self._write()
        return len(parts)

    @classmethod
    def reopen(cls, run_dir: Path) -> MatrixWriter:
        """A writer over a finished run, to add a verdict or drift to it or re-render its reports."""
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
                _atomic_write(self.dir / name, render(self.matrix))
                written.append(self.dir / name)
        return written

    def _init_writes(self) -> None:
        self._lock = threading.Lock()
        self._written_at = float("-inf")
        self._timer: threading.Timer | None = None
        self.failed: ReportWriteError | None = None
        """Set once a write failed: every later write raises it rather than half-write again."""

    def _write_soon(self) -> None:
        """Write now if the last write is old enough, else once the interval is over (lock held)."""
        wait = self._written_at + WRITE_INTERVAL - time.monotonic()
        if wait <= 0:
            self._write()
        elif self._timer is None:
            self._timer = threading.Timer(wait, self._flush)
            self._timer.daemon = True
            self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            try:
                self._write()
            except ReportWriteError as exc:
                # On the timer's thread nobody would hear it: the next cell's write raises it again.
                self.failed = exc

    def _write(self) -> None:
        """Rewrite the matrix and its renderings; ReportWriteError (the last complete files left in
        place) when the disk is full or the directory no longer writable."""
        if self.failed is not None:
            raise self.failed
        try:
            self._write_files()
        except OSError as exc:
            self.failed = ReportWriteError(f"cannot write the report under {self.dir}: {exc.strerror or exc}")
            raise self.failed from None

    def _write_files(self) -> None:
        self._written_at = time.monotonic()
        if self.part is not None:
            (self.dir / "parts").mkdir(exist_ok=True)
            _atomic_write(self.dir / "parts" / f"{self.part}.json", json.dumps(self.matrix, default=str))
            return
        for cost in endpoint_costs(self.matrix["cells"]):
            entry = next((e for e in self.matrix["endpoints"] if e["name"] == cost["endpoint"]), None)
            if entry is not None:
                entry["cost"] = cost["cost"]
        _atomic_write(self.dir / "matrix.json", json.dumps(self.matrix, indent=2, default=str))
        self.render()

    def _point_latest(self) -> None:
        latest = self.root / "latest"
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.exists():
            return  # a real directory someone made: leave it alone rather than delete their files
        latest.symlink_to(self.run_id, target_is_directory=True)


def _in_plan_order(matrix: dict) -> None:
    """Cells sorted by case (plan order) then endpoint (column order), whatever order they finished in."""
    rows = {case: i for i, case in enumerate(matrix["cases"])}
    columns = {e["name"]: i for i, e in enumerate(matrix["endpoints"])}
    matrix["cells"].sort(key=lambda c: (rows.get(c["case"], len(rows)), columns.get(c["endpoint"], len(columns))))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` (secrets redacted) in place of ``path``; a failed write leaves the old file whole."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: xdist workers share the run directory
    try:
        tmp.write_text(redact(text), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
