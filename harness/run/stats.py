"""Figures over a cell's attempts: success rate with its 95% Wilson interval, latency percentiles,
cold vs warm, and cost per image.

Everything here is a pure function of the attempts, so a report can recompute it from matrix.json.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.run.outcomes import Outcome
from harness.providers.base import Timings

__all__ = ["Attempt", "cell_cost", "cell_stats", "endpoint_costs", "percentiles", "typical_outcome", "wilson_interval"]

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Attempt:
    """One submission of a cell's workflow: what it came to and what it cost in time."""

    outcome: Outcome
    timings: Timings
    images: int
    """Saved output images it produced (previews do not count)."""
    cold: bool = False
    """The endpoint's first request of the run (after the idle wait, with ``--cold-start``)."""
    message: str = ""
    cached_nodes: int | None = None
    """Nodes the endpoint served from its cache; None where the endpoint does not say."""
    executed_nodes: int | None = None
    """Nodes that really ran; None where that was not observed."""
    wholly_cached: bool = False
    """Nothing ran: the endpoint replayed its cache. Left out of latency and cost."""
    seeds: dict[str, int] = field(default_factory=dict)
    """``node.input`` → the value a varied repeat sent (see the engine's ``--repeat-identical``)."""

    @property
    def billed_seconds(self) -> tuple[float, str]:
        """Seconds a per-second GPU price applies to, and what they are: the execution, else the whole wait."""
        if self.timings.execution is not None:
            return self.timings.execution, "execution"
        return self.timings.total, "total"

    def to_dict(self) -> dict:
        return {"outcome": self.outcome.value, "timings": self.timings.to_dict(), "images": self.images,
                "cold": self.cold, "message": self.message, "cached_nodes": self.cached_nodes,
                "executed_nodes": self.executed_nodes, "wholly_cached": self.wholly_cached, "seeds": self.seeds}


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion: sound at 0 and n, unlike the normal one."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50, p95 (nearest rank, so each is a latency that really happened) and max; None without values."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.50), "p95": rank(0.95), "max": ordered[-1]}


def typical_outcome(attempts: Sequence[Attempt]) -> Attempt:
    """The attempt that stands for the cell: the first of the most frequent outcome, a failure winning a tie."""
    counts = Counter(a.outcome for a in attempts)
    top = max(counts.values())
    tied = [o for o in counts if counts[o] == top]
    outcome = next((o for o in tied if o is not Outcome.PASSED), tied[0])
    return next(a for a in attempts if a.outcome is outcome)


def cell_stats(attempts: Sequence[Attempt], repeats: Mapping | None = None) -> dict:
    """The ``stats`` of a matrix cell; ``repeats`` says how its attempts were made to differ.

    Latency leaves out attempts the endpoint served wholly from its cache: they measure the cache, not
    a generation. The success rate counts every attempt.
    """
    n = len(attempts)
    passed = sum(a.outcome is Outcome.PASSED for a in attempts)
    lo, hi = wilson_interval(passed, n)
    first = attempts[0]
    cached = sum(a.wholly_cached for a in attempts)
    timed = [a for a in attempts if not a.wholly_cached]
    warm = [a.timings.total for a in timed if not a.cold]
    return {
        "attempts": n,
        "passed": passed,
        "success_rate": passed / n if n else None,
        "wilson95": [lo, hi],
        "histogram": dict(Counter(a.outcome.value for a in attempts).most_common()),
        "latency": {
            "total": percentiles([a.timings.total for a in timed]),
            "queue": percentiles([a.timings.queue for a in timed if a.timings.queue is not None]),
            "execution": percentiles([a.timings.execution for a in timed if a.timings.execution is not None]),
        },
        "cold": first.timings.to_dict() if first.cold else None,
        "warm": percentiles(warm) if first.cold or n > 1 else None,
        "wholly_cached": cached,
        "cache_note": (f"{cached} of {n} attempts were served wholly from the endpoint's cache and are left out of "
                       "latency and cost" if cached else ""),
        "repeats": dict(repeats or {}),
    }


def cell_cost(attempts: Sequence[Attempt], price_per_gpu_hour: float | None) -> dict | None:
    """``cost`` of a matrix cell: every attempt's billed seconds, failures included, over the images made.

    Attempts served wholly from the endpoint's cache are left out, seconds and images: a replayed image
    says nothing of what a generation costs.
    """
    if price_per_gpu_hour is None:
        return None
    generated = [a for a in attempts if not a.wholly_cached]
    billed = [a.billed_seconds for a in generated]
    bases = {basis for _, basis in billed}
    cost = _cost(sum(s for s, _ in billed), sum(a.images for a in generated), price_per_gpu_hour)
    return {**cost, "basis": bases.pop() if len(bases) == 1 else "mixed" if bases else None,
            "wholly_cached_left_out": len(attempts) - len(generated)}


def _cost(billed_seconds: float, images: int, price_per_gpu_hour: float) -> dict:
    per_image = billed_seconds * price_per_gpu_hour / 3600 / images if images else None
    return {
        "billed_seconds": billed_seconds,
        "images": images,
        "per_image": per_image,
        "per_1000_images": per_image * 1000 if per_image is not None else None,
        "price_per_gpu_hour": price_per_gpu_hour,
    }


def endpoint_costs(cells: Iterable[Mapping]) -> list[dict]:
    """Per endpoint with a price: its cells' billed seconds and images summed, and the cost per image."""
    totals: dict[str, list] = {}
    for cell in cells:
        cost = cell.get("cost")
        if cost:
            total = totals.setdefault(cell["endpoint"], [0.0, 0, cost["price_per_gpu_hour"]])
            total[0] += cost["billed_seconds"]
            total[1] += cost["images"]
    return [{"endpoint": name, "cost": _cost(*total)} for name, total in totals.items()]
