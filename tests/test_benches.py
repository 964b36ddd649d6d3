"""The scale and workers benchmarks run as README shows them, at a few cells (their figures are not
checked here, only that they run whole and print every line: a bench that rotted would say nothing)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import ROOT


def bench(name: str, **env: str) -> str:
    result = subprocess.run([sys.executable, f"bench/{name}.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_scale_bench_runs_its_three_front_ends():
    out = bench("bench_scale", BENCH_SIZES="20,40", BENCH_NIGHTLY="20x3", BENCH_DEADLINE="120")
    assert re.search(r"bench \(e\) 40 cells: exit status 0 \(40 cells: 40 passed\), wall", out), out
    assert "the Engine and MatrixWriter without pytest" in out and "pytest alone over 40 empty tests" in out
    for line in ("(e) scale cpu", "(e) scale report share", "(e) scale memory", "(e) scale bytes"):
        assert f"bench {line}: " in out, out
    assert "bench (e) nightly memory: 20 cells × 3 repeats (60 prompts) through pytest: exit status 0 (20 cells: 20 passed)" in out, out


def test_the_workers_bench_runs_both_sides():
    out = bench("bench_workers", BENCH_CELLS="40", BENCH_ROUNDS="1")
    assert re.search(r"bench \(f\) workers: 40 cells, 1 rounds: one process median [\d.]+", out), out
