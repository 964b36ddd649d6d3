"""(e) Scale: the real front end, ``pytest`` over a generated project of 1,000, 5,000 and 20,000 cells
(10 endpoints, one reference server subprocess each at zero execution time, max_concurrency 8; see
_project.py). Per size: wall, the pytest process's CPU per cell (``os.wait4``: the servers excluded),
its peak RSS, the share of wall spent inside MatrixWriter's methods (writing reports), and bytes
written (the report directory's size, and the process's wchar) per cell. Beside each, in one run on the
same servers: the same cells through the Engine and MatrixWriter alone (no pytest), and pytest alone
over as many empty tests (its own CPU and memory per test, which no plugin can take back: ~150 MB at
20,000 tests here).

Then the nightly the issue describes, 100 workflows × 10 endpoints × 20 repeats (BENCH_NIGHTLY=CELLSxREPEAT,
default 1000x20): 1,000 cells of 20 attempts each through pytest, 20,000 prompts in all, with its peak RSS.

Goals: every size finishes; CPU per cell at the largest size within 1.2× of that at 1,000; report
writing <= 5 % of wall at every size; peak RSS <= 150 MB at 20,000 (the Engine alone: pytest alone
holds more; and the nightly through pytest); bytes written linear in the cells
(per cell alike at every size).

Run: ``.venv/bin/python bench/bench_scale.py`` (prints the figures, exits 0); BENCH_SIZES=1000,5000
for fewer sizes, BENCH_NIGHTLY=CELLSxREPEAT (or empty for none), BENCH_DEADLINE=seconds per size (default 900: a size still running then is ended
and reported unfinished).
"""

from __future__ import annotations

import os

from _common import report
from _project import project, run_bare_pytest, run_engine_alone, run_pytest

SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "1000,5000,20000").split(",")]
NIGHTLY = os.environ.get("BENCH_NIGHTLY", "1000x20")
DEADLINE = float(os.environ.get("BENCH_DEADLINE", "900"))
CPU_GOAL, SHARE_GOAL, RSS_GOAL_MB = 1.2, 0.05, 150


def main() -> None:
    runs, alone = [], []
    for cells in SIZES:
        with project(cells) as root:
            run = run_pytest(root, cells, deadline=DEADLINE)
            engine = run_engine_alone(root, DEADLINE)
        bare = run_bare_pytest(cells, DEADLINE)
        runs.append(run)
        alone.append(engine)
        print(f"bench (e) {cells} cells, the Engine and MatrixWriter without pytest: wall {engine.wall:.1f} s, CPU "
              f"{engine.cpu / cells * 1000:.2f} ms per cell, peak RSS {engine.peak_rss_mb:.0f} MB"
              + ("" if engine.status == 0 else f" (exit status {engine.status})")
              + f"; pytest alone over {cells} empty tests: CPU {bare.cpu / cells * 1000:.2f} ms per test, "
              f"peak RSS {bare.peak_rss_mb:.0f} MB", flush=True)
        print(f"bench (e) {cells} cells: {_ended(run)}, wall {run.wall:.1f} s, CPU {run.cpu / cells * 1000:.2f} ms per cell, "
              f"peak RSS {run.peak_rss_mb:.0f} MB ({run.rss_mb_cells_done:.0f} MB before the final reports), report writing {run.report_share:.1%} of wall, cell folders and request.json {run.folder_share:.1%} "
              f"({', '.join(f'{m} {s:.2f}' for m, s in sorted(run.report_s.items(), key=lambda i: -i[1]) if s >= 0.01)}), "
              f"report dir {run.report_bytes / cells:,.0f} bytes per cell, wchar {run.wchar / cells:,.0f} bytes per cell",
              flush=True)
    first, last = runs[0], runs[-1]
    ratio = (last.cpu / last.cells) / (first.cpu / first.cells)
    report("(e) scale cpu", f"CPU per cell at {last.cells} ÷ at {first.cells} cells: {ratio:.2f}"
           + ("" if last.status is not None else " (the larger run unfinished)"), ratio, CPU_GOAL)
    share = max(run.report_share for run in runs)
    report("(e) scale report share", f"largest share of wall spent writing reports: {share:.1%}", share * 100, SHARE_GOAL * 100, " %")
    report("(e) scale memory", f"peak RSS at {last.cells} cells {last.peak_rss_mb:.0f} MB through pytest (pytest alone "
           f"holds much of it: see above), {alone[-1].peak_rss_mb:.0f} MB the Engine alone", alone[-1].peak_rss_mb, RSS_GOAL_MB, " MB")
    growth = (last.report_bytes / last.cells) / (first.report_bytes / first.cells)
    report("(e) scale bytes", f"report bytes per cell at {last.cells} ÷ at {first.cells} cells: {growth:.2f} "
           "(linear: 1)", growth, 1.1)
    if NIGHTLY:
        nightly()


def nightly() -> None:
    cells, repeat = (int(n) for n in NIGHTLY.split("x"))
    with project(cells) as root:
        run = run_pytest(root, cells, [f"--repeat={repeat}"], deadline=DEADLINE)
    report("(e) nightly memory", f"{cells} cells × {repeat} repeats ({cells * repeat} prompts) through pytest: {_ended(run)}, wall "
           f"{run.wall:.1f} s, CPU {run.cpu / (cells * repeat) * 1000:.2f} ms per prompt, report writing "
           f"{run.report_share:.1%} of wall, peak RSS {run.peak_rss_mb:.0f} MB", run.peak_rss_mb, RSS_GOAL_MB, " MB")


def _ended(run) -> str:
    """How a pytest run ended: its exit status and outcomes, or the deadline that stopped it."""
    if run.status is None:
        return f"UNFINISHED: ended at the {DEADLINE:g} s deadline"
    return f"exit status {run.status} ({run.outcomes})"


if __name__ == "__main__":
    main()
