"""Drift between two runs: which cells started or stopped failing, and what changed on each endpoint
(node classes, their inputs, model files, system versions) according to the runs' fingerprints.

``compare_runs(old_dir, new_matrix, new_dir)`` gives the ``drift`` section of matrix.json::

    {"compared_to": {"run": id, "dir": path},
     "cells": {"new_failures": [...], "inherited_failures": [...], "fixed": [...], "changed": [...]},
     "endpoints": {name: {"classes_appeared", "classes_disappeared", "classes_changed",
                          "models_added", "models_removed", "system_changed"[, "note"]}}}
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import orjson

from harness.errors import ConfigError
from harness.report.cells_log import logs_of, read_cells
from harness.report.fingerprint import SYSTEM_KEYS, combo_options, load_fingerprint, system_of

__all__ = [
    "compare_cells",
    "compare_fingerprints",
    "compare_runs",
    "endpoint_change_lines",
    "load_run",
    "previous_run",
]

PASSED = "passed"

_RUN_ID = re.compile(r"^(\d{8}T\d{6}Z)-(\d+)$")


# ---------------------------------------------------------------------------------------------- runs


def load_run(run_dir: str | Path, *, lean: bool = False) -> dict:
    """The matrix.json of a run directory (``reports/<run-id>`` or a ``reports/latest`` link).

    ``lean``: each cell only as ``case``, ``endpoint`` and ``outcome``, what drift compares: an earlier
    20,000-cell run read whole is ~100 MB, read lean a few.
    """
    path = Path(run_dir)
    matrix_path = path / "matrix.json"
    try:
        data = matrix_path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{path}: no matrix.json here (expected a reports/<run-id> directory)") from None
    except OSError as exc:
        raise ConfigError(f"{matrix_path}: cannot read ({exc.strerror or exc})") from None
    try:
        matrix = (lean and _lean(data)) or _parse(data)
    except ValueError as exc:
        raise ConfigError(f"{matrix_path}: not JSON ({exc})") from None
    if not isinstance(matrix, dict) or not isinstance(matrix.get("cells"), list):
        raise ConfigError(f"{matrix_path}: not a comfy-compat matrix (no 'cells' list)")
    if (matrix.get("run") or {}).get("status") == "running" and not matrix["cells"]:
        _from_logs(matrix, path)
    if lean:
        matrix["cells"] = [{k: c.get(k) for k in _LEAN} for c in matrix["cells"] if isinstance(c, dict)]
    return matrix


def _parse(data: bytes) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # NaN or Infinity, which runs written with Python's json may hold
        return json.loads(data)


_LEAN = ("case", "endpoint", "outcome")
_CELLS_OPEN, _CELLS_CLOSE = b'\n  "cells": [', b"\n  ]"


def _lean(data: bytes) -> dict | None:
    """matrix.json as harness.report.matrix writes it (each cell on a line of its own), read a cell at a
    time; None for any other layout (an older run's), which is then read whole."""
    start = data.find(_CELLS_OPEN)
    end = data.find(_CELLS_CLOSE, start + len(_CELLS_OPEN)) if start >= 0 else -1
    if end < 0:
        return None  # JSON strings escape newlines: these are the array's own, or not this layout
    try:
        matrix = _parse(data[:start] + b'\n  "cells": []' + data[end + len(_CELLS_CLOSE):])
        cells = (_parse(line.strip().rstrip(b",")) for line in data[start + len(_CELLS_OPEN):end].split(b"\n") if line.strip())
        matrix["cells"] = [{k: c.get(k) for k in _LEAN} for c in cells]
    except (ValueError, AttributeError, TypeError):  # a line is not a whole cell: indented otherwise
        return None
    return matrix


def _from_logs(matrix: dict, run_dir: Path) -> None:
    """An unfinished run (killed, or still going): its cells from the logs, endpoints from workers' parts.

    Its matrix.json holds only the plan while it runs; every finished cell is in cells.jsonl (or, under
    xdist, parts/<worker>.jsonl), so a killed run still reads whole, up to its last finished cell.
    """
    for log in logs_of(run_dir):
        matrix["cells"] += read_cells(log)
        header = log.with_suffix(".json")
        if not matrix.get("endpoints") and log.parent.name == "parts" and header.is_file():
            with contextlib.suppress(OSError, ValueError):
                matrix["endpoints"] = json.loads(header.read_text(encoding="utf-8")).get("endpoints") or []


def _run_key(name: str) -> tuple[str, int] | None:
    match = _RUN_ID.match(name)
    return (match.group(1), int(match.group(2))) if match else None


def previous_run(report_root: str | Path, current_run_id: str | None,
                 cells: set[tuple[str, str]] | None = None) -> Path | None:
    """The newest run directory under ``report_root`` older than the current run (any run other than
    it when its id is not a run id), holding a matrix.json; None when there is none.

    A partial run (``run.selection``: -k, --lf, -x...) is skipped unless it has every one of ``cells``
    (the current run's (case, endpoint) pairs; all of them when None): compared with, a ``--lf`` run
    of two cells would hide tonight's changes and make every other cell look new. A nightly job that
    always selects the same cells still compares night to night."""
    root = Path(report_root)
    current = _run_key(current_run_id) if current_run_id else None
    candidates = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return None
    for entry in entries:
        key = _run_key(entry.name)
        if key is None or entry.name == current_run_id or entry.is_symlink():
            continue
        if current is not None and key >= current:
            continue
        if (entry / "matrix.json").is_file():
            candidates.append((key, entry))
    # Newest first, reading no more runs than it takes: a nightly's folder holds months of 20,000-cell runs.
    return next((entry for _, entry in sorted(candidates, reverse=True) if not _lacks_cells(entry, cells)), None)


def _lacks_cells(run_dir: Path, cells: set[tuple[str, str]] | None) -> bool:
    """Whether the run in ``run_dir`` is partial and lacks some of ``cells``."""
    try:
        matrix = load_run(run_dir, lean=True)
    except ConfigError:
        return False  # unreadable: load_run says why, once it is chosen
    if (matrix.get("run") or {}).get("status") != "running" and not (matrix.get("run") or {}).get("selection"):
        return False  # a whole run (a killed one, never finished, has only what its log has)
    return cells is None or not cells <= {(c.get("case"), c.get("endpoint")) for c in matrix.get("cells", [])}


# --------------------------------------------------------------------------------------------- cells


def _failed(outcome: str | None) -> bool:
    return outcome is not None and outcome != PASSED


def compare_cells(old_matrix: dict, new_matrix: dict) -> dict:
    """Cell transitions matched by (case, endpoint); a failure is any outcome but ``passed``.

    new_failures: failing now, passed or absent before; inherited_failures: failing both times with
    the same outcome; changed: failing both times with different outcomes; fixed: failing before,
    passed now. Each entry is ``{"case", "endpoint", "outcome", "previous"}`` (previous None if absent).
    """
    before = {(c.get("case"), c.get("endpoint")): c.get("outcome") for c in old_matrix.get("cells", [])}
    result: dict[str, list] = {"new_failures": [], "inherited_failures": [], "fixed": [], "changed": []}
    for cell in new_matrix.get("cells", []):
        key = (cell.get("case"), cell.get("endpoint"))
        now, previous = cell.get("outcome"), before.get(key)
        if _failed(now):
            if not _failed(previous):
                bucket = "new_failures"
            elif previous == now:
                bucket = "inherited_failures"
            else:
                bucket = "changed"
        elif _failed(previous):
            bucket = "fixed"
        else:
            continue
        result[bucket].append({"case": key[0], "endpoint": key[1], "outcome": now, "previous": previous})
    return result


# -------------------------------------------------------------------------------------- fingerprints


def _describe_change(old: str, new: str) -> str:
    """One line saying how an input's signature changed: options added/removed, or old → new."""
    old_options, new_options = combo_options(old), combo_options(new)
    if old_options is not None and new_options is not None:
        added = [o for o in new_options if o not in old_options]
        removed = [o for o in old_options if o not in new_options]
        parts = []
        if added:
            parts.append("options added: " + ", ".join(map(str, added)))
        if removed:
            parts.append("options removed: " + ", ".join(map(str, removed)))
        if old.partition(":")[0] != new.partition(":")[0]:
            parts.append(f"{old.partition(':')[0]} → {new.partition(':')[0]}")
        return "; ".join(parts) or "options reordered"
    shorten = (lambda s: s if len(s) <= 80 else s[:77] + "...")
    return f"{shorten(old)} → {shorten(new)}"


def _compare_classes(old: dict, new: dict) -> tuple[list, list, list]:
    appeared = sorted(set(new) - set(old))
    disappeared = sorted(set(old) - set(new))
    changed = []
    for class_type in sorted(set(old) & set(new)):
        before, after = old[class_type] or {}, new[class_type] or {}
        if before == after:
            continue
        common = [name for name in after if name in before and before[name] != after[name]]
        changed.append({
            "class": class_type,
            "inputs_added": [name for name in after if name not in before],
            "inputs_removed": [name for name in before if name not in after],
            "inputs_changed": common,
            "details": {name: _describe_change(before[name], after[name]) for name in common},
        })
    return appeared, disappeared, changed


def _compare_models(old: dict, new: dict) -> tuple[dict, dict]:
    added, removed = {}, {}
    for folder in sorted(set(old) | set(new)):
        before, after = set(old.get(folder) or ()), set(new.get(folder) or ())
        if after - before:
            added[folder] = sorted(after - before)
        if before - after:
            removed[folder] = sorted(before - after)
    return added, removed


def _compare_system(old: dict | None, new: dict | None) -> dict:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return {}
    old, new = system_of(old), system_of(new)
    return {k: [old[k], new[k]] for k in SYSTEM_KEYS if old[k] != new[k]}


def _empty_endpoint() -> dict:
    return {"classes_appeared": [], "classes_disappeared": [], "classes_changed": [],
            "models_added": {}, "models_removed": {}, "system_changed": {}}


def compare_fingerprints(old_fp: dict | None, new_fp: dict | None) -> dict:
    """What changed on one endpoint between two fingerprints; parts that either side lacks are
    skipped and named in ``note``."""
    out = _empty_endpoint()
    notes = []
    if old_fp is None or new_fp is None:
        side = "either run" if old_fp is None and new_fp is None else "the compared run" if old_fp is None else "this run"
        out["note"] = f"no fingerprint in {side}: classes and models not compared"
        return out
    old_classes, new_classes = old_fp.get("classes"), new_fp.get("classes")
    if isinstance(old_classes, dict) and isinstance(new_classes, dict):
        out["classes_appeared"], out["classes_disappeared"], out["classes_changed"] = _compare_classes(old_classes, new_classes)
    else:
        notes.append("no node catalogue (/object_info) in " + _which(old_classes, new_classes) + ": classes not compared")
    old_models, new_models = old_fp.get("models"), new_fp.get("models")
    if isinstance(old_models, dict) and isinstance(new_models, dict):
        out["models_added"], out["models_removed"] = _compare_models(old_models, new_models)
    else:
        notes.append("no model lists in " + _which(old_models, new_models) + ": models not compared")
    old_system, new_system = old_fp.get("system"), new_fp.get("system")
    if isinstance(old_system, dict) and isinstance(new_system, dict):
        out["system_changed"] = _compare_system(old_system, new_system)
    else:
        notes.append("no system_stats in " + _which(old_system, new_system) + ": system not compared")
    if notes:
        out["note"] = "; ".join(notes)
    return out


def _which(old, new) -> str:
    if not isinstance(old, dict) and not isinstance(new, dict):
        return "either run"
    return "the compared run" if not isinstance(old, dict) else "this run"


# ------------------------------------------------------------------------------------------ combined


def _read_fingerprint(run_dir: Path, endpoint: dict) -> tuple[dict | None, str | None]:
    """(fingerprint, None) or (None, why not) for one endpoint entry of a matrix."""
    relative = endpoint.get("fingerprint")
    if not relative:
        return None, "recorded no fingerprint"
    path = run_dir / relative
    if not path.is_file():
        return None, f"fingerprint file {relative} is missing"
    doc = load_fingerprint(path)
    if doc is None:
        return None, f"fingerprint file {relative} is not a fingerprint"
    return doc, None


def _compare_endpoint(old_dir: Path, old_ep: dict, new_dir: Path, new_ep: dict) -> dict:
    old_fp, old_why = _read_fingerprint(old_dir, old_ep)
    new_fp, new_why = _read_fingerprint(new_dir, new_ep)
    if old_fp is not None and new_fp is not None:
        return compare_fingerprints(old_fp, new_fp)
    out = _empty_endpoint()
    # Without fingerprints the matrix's own provenance still says whether versions moved.
    old_system = (old_fp or {}).get("system") or old_ep.get("provenance")
    new_system = (new_fp or {}).get("system") or new_ep.get("provenance")
    out["system_changed"] = _compare_system(old_system, new_system)
    reasons = [f"the compared run {old_why}" if old_why else None, f"this run {new_why}" if new_why else None]
    out["note"] = "; ".join(r for r in reasons if r) + ": classes and models not compared"
    return out


def compare_runs(old_dir: str | Path, new_matrix: dict, new_dir: str | Path, old_matrix: dict | None = None) -> dict:
    """The ``drift`` section for ``new_matrix`` (the run in ``new_dir``) against the run in ``old_dir``.

    Endpoints are matched by name; one present in only one of the runs gets a ``note`` and nothing
    else. Raises ConfigError when ``old_dir`` holds no readable matrix.json or is ``new_dir`` itself
    (``old_matrix``, when given, is used instead of reading ``old_dir``).
    """
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    resolved = old_dir.resolve()
    if resolved == new_dir.resolve():
        raise ConfigError(f"{old_dir}: is this run's own directory (reports/latest points at the current run "
                          "once it starts); compare to 'previous' or name an earlier reports/<run-id>")
    if old_matrix is None:
        old_matrix = load_run(old_dir, lean=True)
    old_endpoints = {e.get("name"): e for e in old_matrix.get("endpoints", []) if isinstance(e, dict)}
    new_endpoints = {e.get("name"): e for e in new_matrix.get("endpoints", []) if isinstance(e, dict)}
    endpoints: dict[str, dict] = {}
    for name, new_ep in new_endpoints.items():
        old_ep = old_endpoints.get(name)
        if old_ep is None:
            endpoints[name] = {**_empty_endpoint(), "note": "not in the compared run"}
        else:
            endpoints[name] = _compare_endpoint(resolved, old_ep, new_dir, new_ep)
    for name in old_endpoints.keys() - new_endpoints.keys():
        endpoints[name] = {**_empty_endpoint(), "note": "in the compared run only, not in this run"}
    return {
        "compared_to": {"run": (old_matrix.get("run") or {}).get("id") or resolved.name, "dir": str(resolved)},
        "cells": compare_cells(old_matrix, new_matrix),
        "endpoints": endpoints,
    }


# ------------------------------------------------------------------------------------------ reading


def endpoint_change_lines(changes: dict) -> list[tuple[str, list[str]]]:
    """An endpoint's drift as (label, items) pairs in reading order: what every rendering shows."""
    lines: list[tuple[str, list[str]]] = []
    for key in ("classes_appeared", "classes_disappeared"):
        if changes.get(key):
            lines.append((key.replace("_", " "), list(changes[key])))
    for changed in changes.get("classes_changed") or []:
        details = changed.get("details") or {}
        items = [f"+{name}" for name in changed.get("inputs_added") or []]
        items += [f"-{name}" for name in changed.get("inputs_removed") or []]
        items += [f"{name}: {details[name]}" if name in details else name for name in changed.get("inputs_changed") or []]
        lines.append((f"class {changed.get('class')} changed", items))
    for key, label in (("models_removed", "models removed from"), ("models_added", "models added to")):
        lines += [(f"{label} {folder}", list(files)) for folder, files in (changes.get(key) or {}).items()]
    for key, pair in (changes.get("system_changed") or {}).items():
        old, new = (list(pair) + [None, None])[:2] if isinstance(pair, (list, tuple)) else (None, pair)
        lines.append((key, [f"{old} → {new}"]))
    if changes.get("note"):
        lines.append(("note", [changes["note"]]))
    return lines
