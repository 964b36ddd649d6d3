"""(a) Scheduling: 200 cells of 0.5 s simulated execution on one endpoint of capacity 16 (server capacity
16, endpoint max_concurrency 16). The ideal wall time is 200 × 0.5 ÷ 16 = 6.25 s; goal: wall ÷ ideal <= 1.15. (Whole prompts per slot make
13 rounds, a floor of 6.5 s = 1.04 × ideal, so the harness has about 10 % to spend.)

Run: ``.venv/bin/python bench/bench_schedule.py`` (prints one line, exits 0).
"""

from __future__ import annotations

import math

from _common import cases, endpoint, report, run_engine, server

CELLS, SECONDS, CAPACITY, GOAL = 200, 0.5, 16, 1.15


def main() -> None:
    with server(capacity=CAPACITY, latency={"distribution": "fixed", "mean": SECONDS}) as url:
        run = run_engine([endpoint(url, CAPACITY)], cases(CELLS))
    ideal = CELLS * SECONDS / CAPACITY
    floor = math.ceil(CELLS / CAPACITY) * SECONDS  # whole prompts per slot: 13 rounds of 0.5 s
    ratio = run.wall / ideal
    report("(a) schedule", f"{CELLS} cells, capacity {CAPACITY}, wall {run.wall:.2f} s, ideal {ideal:.2f} s, "
           f"ratio {ratio:.2f} (to the {floor:.2f} s floor of {math.ceil(CELLS / CAPACITY)} rounds: {run.wall / floor:.2f}), "
           f"outcomes {run.outcomes}", ratio, GOAL)


if __name__ == "__main__":
    main()
