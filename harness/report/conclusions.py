"""What a finished run concludes: the go/no-go verdict, drift against an earlier run, and where they are
published (matrix.json and its renderings, $GITHUB_STEP_SUMMARY, Allure's metadata).

The pytest plugin calls ``conclude`` when a run ends; the CLI's ``verdict`` and ``diff`` call the same
functions on a run directory, so both decide the same way.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report.drift import compare_runs, previous_run
from harness.errors import ConfigError
from harness.report.allure_meta import write_allure_metadata
from harness.report.markdown import step_summary
from harness.report.matrix import MatrixWriter
from harness.report.verdict import Budgets, Waiver, decide, undecidable

__all__ = ["conclude", "drift_against", "summary_lines", "verdict_of"]


def verdict_of(matrix: Mapping[str, Any], baseline: str, candidate: str, budgets: Budgets = Budgets(),
               today: dt.date | None = None) -> dict[str, Any]:
    """The run's verdict with the waivers it recorded; a run that cannot be judged is UNDECIDABLE, not an error."""
    try:
        return decide(matrix, baseline, candidate, waivers=[Waiver.from_dict(w) for w in matrix.get("waivers", [])],
                      budgets=budgets, today=today)
    except ConfigError as exc:
        return undecidable(baseline, candidate, str(exc))


def drift_against(writer: MatrixWriter, compare_to: str) -> dict[str, Any] | None:
    """Drift from ``compare_to`` (a run directory, or ``previous``) to the writer's run; None without a previous run."""
    cells = {(c["case"], c["endpoint"]) for c in writer.matrix["cells"]}
    old = previous_run(writer.root, writer.run_id, cells) if compare_to == "previous" else Path(compare_to)
    if old is None:
        return None
    writer.matrix["run"]["compare_to"] = str(old)
    return compare_runs(old, writer.matrix, writer.dir)


def conclude(writer: MatrixWriter, *, status: str = "complete", migration: tuple[str, str] | None,
             budgets: Budgets = Budgets(), compare_to: str | None = None, alluredir: str | None = None) -> dict[str, Any] | None:
    """Finish the run with ``status``, its verdict and drift, written once; returns the verdict, if asked for.

    The reports are written even when working out the verdict or drift fails: the cells must not be lost.
    """
    sections: dict[str, Any] = {}
    try:
        if migration is not None:
            sections["verdict"] = verdict_of(writer.matrix, *migration, budgets=budgets)
        if compare_to is not None:
            sections["drift"] = drift_against(writer, compare_to)
    finally:
        writer.finish(status, **sections)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with open(summary_file, "a", encoding="utf-8") as out:
            out.write(step_summary(writer.matrix) + "\n")
    if alluredir:
        write_allure_metadata(writer.matrix, Path(alluredir))
    return sections.get("verdict")


def _figures_line(cell: Mapping[str, Any]) -> str | None:
    """``case@endpoint: 96/100 passed (95% CI 90–98%), p95 1.2 s, $0.0012/image`` for repeated or priced cells."""
    stats, cost = cell.get("stats") or {}, cell.get("cost") or {}
    if (stats.get("attempts") or 1) <= 1 and not cost:
        return None
    parts = []
    if stats.get("attempts", 1) > 1:
        lo, hi = stats["wilson95"]
        parts.append(f"{stats['passed']}/{stats['attempts']} passed (95% CI {lo:.0%}–{hi:.0%})")
    if stats.get("wholly_cached"):
        parts.append(f"{stats['wholly_cached']} served wholly from cache (not in p95 or cost)")
    p95 = ((stats.get("latency") or {}).get("total") or {}).get("p95")
    if p95 is not None:
        parts.append(f"p95 {p95:.2f} s")
    if cost.get("per_image") is not None:
        parts.append(f"${cost['per_image']:.4f}/image")
    return f"{cell['case']}@{cell['endpoint']}: " + ", ".join(parts)


def summary_lines(matrix: Mapping[str, Any]) -> list[str]:
    """Repeated or priced cells' figures, the verdict and the drift, in a few terminal lines."""
    lines = [line for cell in matrix.get("cells", []) if (line := _figures_line(cell))]
    verdict = matrix.get("verdict")
    if verdict:
        lines.append(f"verdict: {verdict['summary']} (exit {verdict['exit_code']})")
        for blocker in verdict["blockers"]:
            lines.append(f"  blocks: {blocker['case']}: {blocker['candidate_outcome']} — {blocker['message']}")
            lines += [f"    remedy: {r['text']}" for r in blocker["remedies"]]
        lines += [f"  undecided: {u['case']}: {u['reason']}" for u in verdict["undecided"]]
        lines += [f"  waived: {w['case']} on {w['endpoint']} until {w['expires']}: {w['reason']}" for w in verdict["waived"]]
    drift = matrix.get("drift")
    if drift:
        cells = drift["cells"]
        counts = ", ".join(f"{len(cells[k])} {k.replace('_', ' ')}" for k in ("new_failures", "fixed", "inherited_failures", "changed"))
        lines.append(f"drift vs {drift['compared_to']['run']}: {counts}")
    return lines
