"""(f) Workers: ``pytest -n 2`` ÷ ``pytest`` (one process) wall over the same generated project of 2,000
cells (10 endpoints, one reference server subprocess each at zero execution time; see _project.py),
the two alternating for ROUNDS rounds. Goal: <= 1.0 (two processes are not slower than one).

Run: ``.venv/bin/python bench/bench_workers.py`` (prints the figures, exits 0); BENCH_ROUNDS=N
(default 3), BENCH_CELLS=N (default 2000).
"""

from __future__ import annotations

import os
import statistics

from _common import report, spread
from _project import project, run_pytest

CELLS = int(os.environ.get("BENCH_CELLS", "2000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
GOAL = 1.0


def main() -> None:
    ratios, single, double = [], [], []
    with project(CELLS) as root:
        run_pytest(root, 100, ["-k", "w0000"])  # warm-up: imports compiled, servers' first connections
        for _ in range(ROUNDS):
            one, two = run_pytest(root, CELLS), run_pytest(root, CELLS, ["-n", "2"])
            if one.status != 0 or two.status != 0:
                raise SystemExit(f"bench (f): a run failed (exit status {one.status} alone, {two.status} with -n 2); see {root}/pytest.log")
            single.append(one.wall)
            double.append(two.wall)
            ratios.append(two.wall / one.wall)
    report("(f) workers", f"{CELLS} cells, {ROUNDS} rounds: one process {spread(single)} s, -n 2 {spread(double)} s; "
           f"-n 2 ÷ one {spread(ratios)}", statistics.median(ratios), GOAL)


if __name__ == "__main__":
    main()
