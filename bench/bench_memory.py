"""(c) Memory: 20 cells each returning a 50 MB image (server ``output_megabytes: 50``, capacity 4, endpoint
max_concurrency 4). Peak RSS of the harness process (``ru_maxrss``; the server runs in a subprocess).
Goal: <= 250 MB, i.e. outputs stream to disk instead of sitting in memory.

Run: ``.venv/bin/python bench/bench_memory.py`` (prints one line, exits 0).
"""

from __future__ import annotations

from _common import cases, endpoint, peak_rss_mb, report, run_engine, server

CELLS, MEGABYTES, CAPACITY, GOAL_MB = 20, 50, 4, 250


def main() -> None:
    with server(capacity=CAPACITY, output_megabytes=MEGABYTES) as url:
        before = peak_rss_mb()
        run = run_engine([endpoint(url, CAPACITY)], cases(CELLS))
    peak = peak_rss_mb()
    report("(c) memory", f"{CELLS} cells x {MEGABYTES} MB images, concurrency {CAPACITY}, harness peak RSS {peak:.0f} MB "
           f"(before the run {before:.0f} MB), wall {run.wall:.1f} s, outcomes {run.outcomes}", peak, GOAL_MB, " MB")


if __name__ == "__main__":
    main()
