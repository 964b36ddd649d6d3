"""(b) Harness CPU per cell: 200 cells at zero simulated latency (server capacity 16, endpoint
max_concurrency 16); the harness process's own CPU time (``time.process_time``; the server runs in a
subprocess) divided by the cells. Goal: <= 3 ms per cell.

Run: ``.venv/bin/python bench/bench_cpu.py`` (prints one line, exits 0).
"""

from __future__ import annotations

from _common import cases, endpoint, report, run_engine, server

CELLS, CAPACITY, GOAL_MS = 200, 16, 3.0


def main() -> None:
    with server(capacity=CAPACITY) as url:
        run_engine([endpoint(url, CAPACITY)], cases(20))  # warm-up: imports, first connections
        run = run_engine([endpoint(url, CAPACITY)], cases(CELLS))
    per_cell = run.cpu / CELLS * 1000
    report("(b) cpu", f"{CELLS} cells at zero latency, harness CPU {run.cpu:.2f} s in {run.wall:.2f} s wall, "
           f"{per_cell:.2f} ms per cell, outcomes {run.outcomes}", per_cell, GOAL_MS, " ms")


if __name__ == "__main__":
    main()
