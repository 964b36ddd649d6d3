"""The go/no-go verdict of a migration: can the candidate endpoint run what the baseline runs?

Computed from a matrix.json document alone (plus waivers and budgets), so the pytest run, ``comfy-compat
verdict RUN_DIR`` and a re-evaluation next week all decide the same way. Per case:

- the baseline passed and the candidate passed (within budgets): fine;
- the baseline passed and the candidate did not, or the candidate's cell never ran: a blocker, with
  the remedies the evidence supports (pack to install, model file to add, input to change), unless
  an unexpired waiver names that case and endpoint;
- the baseline failed for a product reason: the candidate owes nothing for that case;
- the baseline failed for an infra reason or never ran: nobody can tell, the case is undecided.

Blockers make NO-GO (exit 10); otherwise undecided cases make UNDECIDABLE (exit 11); otherwise GO (0);
see ``harness.exitcodes`` for how a run's exit status combines them with failed cells.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError
from harness.exitcodes import verdict_status
from harness.run.outcomes import Disposition, Outcome

__all__ = ["Budgets", "EXIT_CODES", "Waiver", "decide", "remedies", "undecidable"]

EXIT_CODES = {decision: verdict_status(decision) for decision in ("GO", "NO-GO", "UNDECIDABLE")}
"""The exit status of each decision (0, 10, 11): scripts branch on these."""


@dataclass(frozen=True)
class Waiver:
    """A known failure accepted for a while: it does not count against GO until ``expires`` has passed."""

    case: str
    endpoint: str
    reason: str
    expires: dt.date | None = None
    """The last day the waiver holds; None for no expiry (discouraged: waivers should be revisited)."""

    def holds(self, case: str, endpoint: str, today: dt.date) -> bool:
        return self.case == case and self.endpoint == endpoint and (self.expires is None or today <= self.expires)

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "endpoint": self.endpoint, "reason": self.reason,
                "expires": self.expires.isoformat() if self.expires else None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Waiver:
        expires = data.get("expires")
        if isinstance(expires, str):
            expires = dt.date.fromisoformat(expires)
        return cls(str(data["case"]), str(data["endpoint"]), str(data.get("reason", "")), expires)


@dataclass(frozen=True)
class Budgets:
    """Optional limits every candidate cell must meet, beside passing."""

    success_rate: float | None = None
    """Lowest acceptable share of passed attempts (with ``--repeat``)."""
    p95_seconds: float | None = None
    """Highest acceptable 95th-percentile total latency."""
    cost_per_image: float | None = None
    """Highest acceptable cost per image, in the endpoint's price currency."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Budgets:
        return cls(**(data or {}))

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def decide(
    matrix: Mapping[str, Any],
    baseline: str,
    candidate: str,
    *,
    waivers: Iterable[Waiver] = (),
    budgets: Budgets = Budgets(),
    today: dt.date | None = None,
) -> dict[str, Any]:
    """The ``verdict`` document (see README, "Go/no-go") for moving from ``baseline`` to ``candidate``."""
    names = [e["name"] for e in matrix.get("endpoints", [])]
    for role, name in (("baseline", baseline), ("candidate", candidate)):
        if name not in names:
            raise ConfigError(f"--{role} {name!r}: no such endpoint in run {matrix['run']['id']} (endpoints: {', '.join(names) or 'none'})")
    if baseline == candidate:
        raise ConfigError(f"--baseline and --candidate are both {baseline!r}: a verdict compares two endpoints")
    today = today or dt.date.today()
    waivers = list(waivers)
    cells = {(c["case"], c["endpoint"]): c for c in matrix.get("cells", [])}
    details = matrix.get("case_details", {})
    required = [case for case in matrix.get("cases", []) if details.get(case, {}).get("required", True)]

    blockers: list[dict] = []
    waived: list[dict] = []
    undecided: list[dict] = []
    passed: list[str] = []
    baseline_failures: list[dict] = []
    budget_rows: list[dict] = []
    for case in required:
        base, cand = cells.get((case, baseline)), cells.get((case, candidate))
        if base is None or (base["outcome"] != Outcome.PASSED.value and base["disposition"] == Disposition.INFRA.value):
            why = "did not run" if base is None else f"{base['outcome']}: {base['evidence'].get('message', '')}"
            if not _waive(waivers, case, baseline, today, base, waived):
                undecided.append({"case": case, "reason": f"baseline {baseline} {why}".rstrip(": ")})
            continue
        if base["outcome"] != Outcome.PASSED.value:
            # Fails on the baseline already: the migration does not make it worse.
            baseline_failures.append({"case": case, "baseline_outcome": base["outcome"]})
            continue
        if cand is not None and cand["outcome"] == Outcome.PASSED.value:
            rows = _budget_rows(case, cand, budgets)
            budget_rows += rows
            if all(r["ok"] for r in rows):
                passed.append(case)
                continue
            if _waive(waivers, case, candidate, today, cand, waived):
                continue
            over = [r for r in rows if not r["ok"]]
            blockers.append(_budget_blocker(case, base, cand, over))
            continue
        if _waive(waivers, case, candidate, today, cand, waived):
            continue
        blockers.append(_blocker(case, base, cand))

    decision = "NO-GO" if blockers else "UNDECIDABLE" if undecided else "GO"
    return {
        "decision": decision,
        "exit_code": EXIT_CODES[decision],
        "baseline": baseline,
        "candidate": candidate,
        "summary": _summary(decision, baseline, candidate, len(required), blockers, waived, undecided),
        "blockers": blockers,
        "waived": waived,
        "undecided": undecided,
        "passed": passed,
        "baseline_failures": baseline_failures,
        "budgets": budget_rows,
        "decided_on": today.isoformat(),
    }


def _waive(waivers: Sequence[Waiver], case: str, endpoint: str, today: dt.date, cell: Mapping | None, waived: list[dict]) -> bool:
    waiver = next((w for w in waivers if w.holds(case, endpoint, today)), None)
    if waiver is not None:
        waived.append({**waiver.to_dict(), "outcome": cell["outcome"] if cell else None})
    return waiver is not None


def _summary(decision: str, baseline: str, candidate: str, required: int, blockers: list, waived: list, undecided: list) -> str:
    text = f"{decision} for moving from {baseline} to {candidate} ({required} required case{'s' if required != 1 else ''})"
    parts = [f"{len(items)} {what}" for items, what in ((blockers, "blocking"), (undecided, "undecided"), (waived, "waived")) if items]
    return f"{text}: {', '.join(parts)}" if parts else f"{text}: every one that runs on {baseline} runs on {candidate}"


def _blocker(case: str, base: Mapping, cand: Mapping | None) -> dict[str, Any]:
    if cand is None:
        return {"case": case, "baseline_outcome": base["outcome"], "candidate_outcome": None, "disposition": Disposition.INFRA.value,
                "message": "the candidate's cell did not run (run interrupted or deselected)",
                "remedies": [{"kind": "fix_endpoint", "text": "re-run the case on the candidate"}]}
    return {"case": case, "baseline_outcome": base["outcome"], "candidate_outcome": cand["outcome"],
            "disposition": cand["disposition"], "message": cand["evidence"].get("message", ""), "remedies": remedies(cand)}


def _budget_blocker(case: str, base: Mapping, cand: Mapping, over: list[dict]) -> dict[str, Any]:
    text = "; ".join(f"{r['metric']} {_figure(r['value'])} (budget {_figure(r['limit'])})" for r in over)
    return {"case": case, "baseline_outcome": base["outcome"], "candidate_outcome": cand["outcome"],
            "disposition": Disposition.INFRA.value, "message": f"over budget: {text}",
            "remedies": [{"kind": "fix_endpoint", "text": f"meet the budget: {text}"}]}


def _figure(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4g}"


_BUDGET_METRICS = (
    # (budget field, how a cell gives the figure, True when the figure must not exceed the limit)
    ("success_rate", lambda cell: (cell.get("stats") or {}).get("success_rate"), False),
    ("p95_seconds", lambda cell: (((cell.get("stats") or {}).get("latency") or {}).get("total") or {}).get("p95"), True),
    ("cost_per_image", lambda cell: (cell.get("cost") or {}).get("per_image"), True),
)


def _budget_rows(case: str, cell: Mapping, budgets: Budgets) -> list[dict]:
    rows = []
    for metric, read, is_max in _BUDGET_METRICS:
        limit = getattr(budgets, metric)
        if limit is None:
            continue
        value = read(cell)
        # A budget the run cannot measure (no price configured, say) is not met: GO must be earned.
        ok = value is not None and (value <= limit if is_max else value >= limit)
        rows.append({"case": case, "metric": metric, "limit": limit, "value": value, "ok": ok})
    return rows


def remedies(cell: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What to do so that the cell passes, as precisely as its evidence allows; each with a ``text`` line."""
    evidence = cell.get("evidence", {})
    outcome = cell["outcome"]
    found: list[dict[str, Any]] = []
    if outcome == Outcome.MISSING_NODE.value:
        found += _pack_remedies(evidence)
    for model in evidence.get("missing_models", []):
        # A UI file lists where its models download from; the folder is still the loader's own.
        source = f", downloadable from {model['url']}" if model.get("url") else ""
        found.append({"kind": "add_model", "file": model["file"], "folder": model["folder"], "node_id": model["node_id"],
                      "url": model.get("url"),
                      "text": f"add {model['file']} to models/{model['folder']}/ (node {model['node_id']} {model['node_type']}.{model['input']}){source}"})
    for error in evidence.get("node_errors", []):
        if error.get("outcome") != Outcome.INVALID_INPUT.value:
            continue
        if "pack" in error:
            pack = error["pack"]
            found.append({"kind": "install_pack", "pack": pack, "classes": [],
                          "text": f"install {pack['title']} ({pack['url']}): {pack['install']} — it adds option {error['received_value']!r} of {error['input']}"})
        else:
            found.append({"kind": "change_input", "node_id": error["node_id"], "input": error.get("input"),
                          "value": error.get("received_value"),
                          "text": f"change node {error['node_id']} ({error['node_type']}) input {error.get('input')}: {error.get('details') or error.get('type')}"})
    if not found:
        hint = evidence.get("hint") or (Outcome(outcome).info.hint if outcome in Outcome._value2member_map_ else "")
        kind = "fix_endpoint" if cell.get("disposition") == Disposition.INFRA.value else "investigate"
        found.append({"kind": kind, "text": "; ".join(t for t in (evidence.get("message", ""), hint) if t)})
    return _unique(found)


def _pack_remedies(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One remedy per pack, naming every missing class it provides; classes no known pack provides each get their own."""
    by_pack: dict[str, dict[str, Any]] = {}
    found: list[dict[str, Any]] = []
    for class_type in evidence.get("missing_classes", []):
        candidates = evidence.get("packages", {}).get(class_type) or []
        if not candidates:
            found.append({"kind": "investigate", "classes": [class_type],
                          "text": f"no known pack provides {class_type}: find the pack that ships it (ComfyUI-Manager's node search)"})
            continue
        pack = candidates[0]
        entry = by_pack.setdefault(pack["url"], {"kind": "install_pack", "pack": {k: pack.get(k) for k in ("name", "title", "url", "registry", "install")},
                                                  "classes": []})
        entry["classes"].append(class_type)
    for entry in by_pack.values():
        pack = entry["pack"]
        entry["text"] = f"install {pack['title']} ({pack['url']}): {pack['install']} — provides {', '.join(entry['classes'])}"
    return list(by_pack.values()) + found


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first remedy of each text: two node errors can call for the same thing."""
    by_text: dict[str, dict[str, Any]] = {}
    for item in items:
        by_text.setdefault(item["text"], item)
    return list(by_text.values())


def undecidable(baseline: str, candidate: str, reason: str) -> dict[str, Any]:
    """The verdict of a run that cannot be judged at all (an endpoint missing from it, say)."""
    return {"decision": "UNDECIDABLE", "exit_code": EXIT_CODES["UNDECIDABLE"], "baseline": baseline, "candidate": candidate,
            "summary": f"UNDECIDABLE: {reason}", "blockers": [], "waived": [], "undecided": [{"case": None, "reason": reason}],
            "passed": [], "baseline_failures": [], "budgets": [], "decided_on": dt.date.today().isoformat()}
