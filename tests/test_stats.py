"""Attempt statistics: the Wilson interval against known values, percentiles, the typical outcome, cost."""

from __future__ import annotations

import pytest

from harness.run.outcomes import Outcome
from harness.providers.base import Timings
from harness.run.stats import Attempt, cell_cost, cell_stats, endpoint_costs, percentiles, typical_outcome, wilson_interval


def attempt(outcome: Outcome = Outcome.PASSED, total: float = 1.0, execution: float | None = 0.8, cold: bool = False) -> Attempt:
    return Attempt(outcome, Timings(queue=total - execution if execution is not None else None, execution=execution, total=total),
                   images=1 if outcome is Outcome.PASSED else 0, cold=cold)


@pytest.mark.parametrize(("k", "n", "lo", "hi"), [
    (96, 100, 0.9016, 0.9843),  # Wilson 1927; the same figures as statsmodels' proportion_confint(method="wilson")
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
])
def test_wilson_interval_matches_published_values(k, n, lo, hi):
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-4)


def test_percentiles_are_latencies_that_happened():
    assert percentiles([float(i) for i in range(1, 101)]) == {"p50": 50.0, "p95": 95.0, "max": 100.0}
    assert percentiles([]) is None


def test_the_typical_outcome_is_the_most_frequent_and_a_failure_wins_a_tie():
    assert typical_outcome([attempt(), attempt(Outcome.RATE_LIMITED), attempt()]).outcome is Outcome.PASSED
    assert typical_outcome([attempt(), attempt(Outcome.RATE_LIMITED)]).outcome is Outcome.RATE_LIMITED


def test_cell_stats_split_cold_from_warm():
    attempts = [attempt(total=9.0, execution=1.0, cold=True)] + [attempt(total=1.0 + i / 10) for i in range(9)] + [attempt(Outcome.EXECUTION_ERROR)]
    stats = cell_stats(attempts)
    assert (stats["attempts"], stats["passed"], stats["success_rate"]) == (11, 10, 10 / 11)
    assert stats["histogram"] == {"passed": 10, "execution_error": 1}
    assert stats["cold"] == {"queue": 8.0, "execution": 1.0, "total": 9.0}
    assert stats["warm"]["max"] == pytest.approx(1.8) and stats["latency"]["total"]["max"] == 9.0


def test_cost_per_image_counts_failed_attempts_seconds_over_the_images_made():
    cost = cell_cost([attempt(execution=3.0, total=4.0), attempt(execution=3.0, total=4.0), attempt(Outcome.EXECUTION_ERROR, execution=1.2)], 3.6)
    assert cost["billed_seconds"] == pytest.approx(7.2) and cost["images"] == 2 and cost["basis"] == "execution"
    assert cost["per_image"] == pytest.approx(7.2 * 3.6 / 3600 / 2) and cost["per_1000_images"] == pytest.approx(3.6)
    assert cell_cost([attempt()], None) is None
    assert cell_cost([attempt(Outcome.UNREACHABLE, execution=None)], 1.0)["per_image"] is None
    [total] = endpoint_costs([{"endpoint": "e", "cost": cost}, {"endpoint": "e", "cost": cost}, {"endpoint": "f", "cost": None}])
    assert total["endpoint"] == "e" and total["cost"]["per_image"] == pytest.approx(cost["per_image"])
