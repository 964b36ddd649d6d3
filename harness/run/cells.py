"""A matrix cell: what one case did on one endpoint, with its evidence, timings and reproduction."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.run.outcomes import Outcome
from harness.providers.base import OutputImage, Timings
from harness.run.stats import Attempt

__all__ = ["Cell"]


@dataclass(frozen=True)
class Cell:
    case: str
    endpoint: str
    outcome: Outcome
    expected: Outcome
    predicted: Outcome | None = None
    """What the offline preflight against the endpoint's catalogue said would happen, if it could run."""
    partial: bool = False
    """ComfyUI accepted the prompt but ran only some of its outputs (200 with node_errors)."""
    evidence: dict = field(default_factory=dict)
    timings: Timings = Timings()
    repro: str = ""
    images: tuple[OutputImage, ...] = ()
    tags: tuple[str, ...] = ()
    job_id: str | None = None
    attempts: tuple[Attempt, ...] = ()
    """Every submission of the case (``--repeat``); the fields above describe the typical one."""
    stats: dict = field(default_factory=dict)
    """Success rate, Wilson interval, outcome histogram and latency figures over the attempts."""
    cost: dict | None = None
    """Cost per image, where the endpoint has a price."""
    conversion: dict | None = None
    """A UI-format case's conversion to this endpoint's prompt: ``format``, ``comfyui_version`` and
    ``frontend`` modelled, ``reason`` (where the version came from), ``catalogue``; None for API cases."""

    def __repr__(self) -> str:
        # Short: pytest prints it in assertion explanations and Allure in parameters; the whole cell
        # (evidence, timings, attempts) is in the report.
        return f"<Cell {self.case}@{self.endpoint}: {self.outcome.value}, expected {self.expected.value}>"

    @property
    def ok(self) -> bool:
        return self.outcome is self.expected

    @property
    def prediction_agrees(self) -> bool | None:
        return None if self.predicted is None else self.predicted is self.outcome

    def summary(self) -> str:
        """One line for a test failure or a terminal: what happened and why."""
        text = f"{self.case} on {self.endpoint}: {self.outcome.value} (expected {self.expected.value})"
        if len(self.attempts) > 1:
            lo, hi = self.stats["wilson95"]
            text += f", {self.stats['passed']}/{len(self.attempts)} attempts passed (95% CI {lo:.0%}–{hi:.0%})"
            if self.stats.get("wholly_cached"):
                text += f", {self.stats['wholly_cached']} served wholly from cache"
        message = self.evidence.get("message")
        return f"{text}: {message}" if message else text

    def to_dict(self) -> dict:
        return {
            "case": self.case,
            "endpoint": self.endpoint,
            "outcome": self.outcome.value,
            "disposition": self.outcome.disposition.value,
            "retryable": self.outcome.retryable,
            "expected": self.expected.value,
            "ok": self.ok,
            "predicted": self.predicted.value if self.predicted is not None else None,
            "prediction_agrees": self.prediction_agrees,
            "partial": self.partial,
            "evidence": self.evidence,
            "timings": self.timings.to_dict(),
            "repro": self.repro,
            "images": [image.to_dict() for image in self.images],
            "tags": list(self.tags),
            "job_id": self.job_id,
            "stats": self.stats,
            "cost": self.cost,
            "attempts": [attempt.to_dict() for attempt in self.attempts],
            "conversion": self.conversion,
        }
