"""matrix.json: the run's support matrix, rewritten atomically after every cell.

The file is always complete JSON: a crash or Ctrl-C mid-run leaves the cells finished so far, with
``run.status`` still ``running`` (or ``interrupted``), and ``reports/latest`` already points at it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from harness.cells import Cell
from harness.endpoints import Endpoint
from harness.outcomes import Outcome
from harness.report.markdown import render_markdown

__all__ = ["SCHEMA_VERSION", "MatrixWriter", "harness_version", "new_run_id"]

SCHEMA_VERSION = 1


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

    def __init__(self, report_root: Path, run_id: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        self.root = Path(report_root)
        self.dir = self.root / self.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.matrix: dict = {
            "schema_version": SCHEMA_VERSION,
            "run": {"id": self.run_id, "started": _now(), "finished": None, "status": "running",
                    "harness_version": harness_version()},
            "outcomes": {
                o.value: {"meaning": o.info.meaning, "hint": o.info.hint,
                          "disposition": o.disposition.value, "retryable": o.retryable}
                for o in Outcome
            },
            "cases": [],
            "endpoints": [],
            "cells": [],
        }
        self._point_latest()
        self._write()

    def cell_dir(self, case: str, endpoint: str) -> Path:
        path = self.dir / "cells" / f"{case}@{_safe(endpoint)}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def plan(self, case_ids: list[str]) -> None:
        """The run's case ids in the order they were planned: the matrix's row order."""
        with self._lock:
            self.matrix["cases"] = list(dict.fromkeys(case_ids))
            self._write()

    def add_endpoint(self, endpoint: Endpoint, provenance: dict | None, catalogue_source: str | None) -> None:
        with self._lock:
            self.matrix["endpoints"].append({
                "name": endpoint.name, "kind": endpoint.kind, "url": endpoint.public_url,
                "profile": endpoint.profile, "provenance": provenance, "catalogue": catalogue_source,
            })
            self._write()

    def add_cell(self, cell: Cell) -> None:
        with self._lock:
            self.matrix["cells"].append(cell.to_dict())
            self._write()

    def finish(self, status: str = "complete") -> Path:
        with self._lock:
            self.matrix["run"].update(finished=_now(), status=status)
            self._write()
        return self.dir

    def _write(self) -> None:
        _atomic_write(self.dir / "matrix.json", json.dumps(self.matrix, indent=2, default=str))
        _atomic_write(self.dir / "matrix.md", render_markdown(self.matrix))

    def _point_latest(self) -> None:
        latest = self.root / "latest"
        if latest.is_symlink() or latest.is_file():
            latest.unlink()
        elif latest.exists():
            return  # a real directory someone made: leave it alone rather than delete their files
        latest.symlink_to(self.run_id, target_is_directory=True)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
