"""matrix.md: the support matrix (cases × endpoints) and, under it, each failure's evidence and remedy.

Rendered from the matrix.json document alone, so a report can be re-rendered from an old run. Keys
added after schema 1 (``verdict``, ``drift``, ``cells[].stats``, ``cells[].cost``) are optional:
their sections appear only when present. ``step_summary`` is the short form for
``$GITHUB_STEP_SUMMARY`` and PR comments: verdict, matrix, one line per failure, no tracebacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.report.drift import endpoint_change_lines

__all__ = ["node_error_text", "render_markdown", "step_summary"]

_MARK = {"passed": "✅", "product": "❌", "infra": "⚠️"}


def _cell_text(cell: Mapping[str, Any]) -> str:
    mark = _MARK["passed"] if cell["outcome"] == "passed" else _MARK[cell["disposition"]]
    text = f"{mark} {cell['outcome']}"
    if cell.get("partial"):
        text += " (partial)"
    if not cell["ok"]:
        text += f" — expected {cell['expected']}"
    return text


def _grid(matrix: Mapping[str, Any]) -> tuple[list[str], list[str], dict[tuple[str, str], Mapping[str, Any]]]:
    """Rows (planned cases first, then any other case with a cell), columns, cells by (case, endpoint)."""
    cells = matrix["cells"]
    endpoints = [e["name"] for e in matrix["endpoints"]]
    for cell in cells:
        if cell["endpoint"] not in endpoints:
            endpoints.append(cell["endpoint"])
    cases = list(dict.fromkeys([*matrix.get("cases", ()), *(c["case"] for c in cells)]))
    return cases, endpoints, {(c["case"], c["endpoint"]): c for c in cells}


def _heading(matrix: Mapping[str, Any]) -> list[str]:
    run = matrix["run"]
    cells = matrix["cells"]
    unexpected = sum(not c["ok"] for c in cells)
    status = run["status"] if run["status"] != "complete" else f"complete, finished {run['finished']}"
    return [f"# Compatibility matrix — run {run['id']}", "",
            f"Started {run['started']}; {status}. {len(cells)} cells, {unexpected} not as expected. "
            f"harness {run['harness_version']}.", ""]


def _table(matrix: Mapping[str, Any]) -> list[str]:
    cases, endpoints, by_key = _grid(matrix)
    if not endpoints:
        return []
    lines = ["| case | " + " | ".join(endpoints) + " |", "|---|" + "---|" * len(endpoints)]
    for case in cases:
        row = [_cell_text(by_key[(case, e)]) if (case, e) in by_key else "·" for e in endpoints]
        lines.append(f"| {case} | " + " | ".join(row) + " |")
    return [*lines, ""]


def node_error_text(err: Mapping[str, Any]) -> str:
    """What a node error says, with the value and the limit: ComfyUI's message (``Value 0 smaller than min
    of 1``) rather than its ``details``, which for range errors is only the input's name."""
    text = str(err.get("message") or err.get("type"))
    details = err.get("details")
    if details and details != err.get("input") and str(details) not in text:
        text += f" ({details})"
    received = err.get("received_value")
    if received is not None and str(received) not in text:
        text += f"; received {received!r}"
    return f"{text} ({err.get('type')})"


def render_markdown(matrix: Mapping[str, Any]) -> str:
    cells = matrix["cells"]
    lines = _heading(matrix)
    lines += _verdict(matrix.get("verdict"))
    lines += _table(matrix)
    for e in matrix["endpoints"]:
        prov = e.get("provenance") or {}
        about = _inline(", ".join(f"{k} {v}" for k, v in prov.items() if k != "devices" and v))
        modelled = e.get("modelled")
        about += f"; modelled as ComfyUI {modelled['comfyui_version']} ({_inline(modelled['reason'])})" if modelled else ""
        lines.append(f"- **{e['name']}** ({e['kind']}) {e['url']}" + (f" — {about.lstrip('; ')}" if about else ""))
    lines.append("")
    lines += _stats_table(matrix)
    lines += _drift(matrix.get("drift"))

    failures = [c for c in cells if c["outcome"] != "passed" or not c["ok"]]
    if failures:
        lines += ["## Failures and remedies", ""]
        for cell in failures:
            lines += _failure_section(cell)
    disagreements = [c for c in cells if c.get("prediction_agrees") is False]
    if disagreements:
        lines += ["## Preflight disagreements", ""]
        lines += [f"- {c['case']} on {c['endpoint']}: predicted {c['predicted']}, observed {c['outcome']}" for c in disagreements]
        lines.append("")
    return "\n".join(lines)


_SUMMARY_MESSAGE_CHARS = 300
"""A failure's message in the step summary is cut here: a PR comment is read, not searched."""


def step_summary(matrix: Mapping[str, Any], *, report_link: str | None = None) -> str:
    """The text for ``$GITHUB_STEP_SUMMARY`` or a PR comment: verdict, matrix, one line per failure.

    No tracebacks, repro commands or per-cell sections (those are in matrix.md and report.html), so
    the summary stays far below GitHub's 1 MiB limit whatever the endpoints answered.
    """
    lines = _heading(matrix)
    lines[0] = "## " + lines[0].removeprefix("# ")
    lines += [line.replace("## ", "### ", 1) if line.startswith("## ") else line
              for line in _verdict(matrix.get("verdict"))]
    lines += _table(matrix)
    failures = [c for c in matrix["cells"] if c["outcome"] != "passed" or not c["ok"]]
    if failures:
        lines += ["### Failures", ""]
        for cell in failures:
            ev = cell.get("evidence") or {}
            mark = "" if cell["ok"] else f" (expected {cell['expected']})"
            text = f"- **{cell['case']}** on {cell['endpoint']}: {cell['outcome']}{mark}"
            if ev.get("message"):
                text += f" — {_inline(_truncate(ev['message'], _SUMMARY_MESSAGE_CHARS))}"
            if ev.get("hint"):
                text += f" · _remedy: {_inline(_truncate(ev['hint'], _SUMMARY_MESSAGE_CHARS))}_"
            lines.append(text)
        lines.append("")
    drift = (matrix.get("drift") or {}).get("cells") or {}
    if drift.get("new_failures") or drift.get("fixed"):
        lines.append(f"Drift since run {(matrix['drift'].get('compared_to') or {}).get('run')}: "
                     f"{len(drift.get('new_failures') or [])} new failures, {len(drift.get('fixed') or [])} fixed.")
        lines.append("")
    if report_link:
        lines += [f"Full report: {report_link}", ""]
    return "\n".join(lines)


def _truncate(text: Any, limit: int) -> str:
    """One line of at most ``limit`` characters: newlines folded, the cut marked with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


_ACTIVE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]", "`": "\\`", "|": "\\|", "*": "\\*"})
"""What endpoint text could use to act in GitHub's renderer: HTML, links and images, code spans, table
cells, emphasis. A step summary or PR comment shows what the endpoint sent, never runs or links it."""


def _inline(text: Any) -> str:
    """Endpoint text made inert for GitHub's renderer, on one line: a ``<script>`` in a message is shown,
    a ``[link](…)`` is not a link, a ``|`` does not split a table cell, a leading ``#`` is no heading."""
    escaped = " ".join(str(text).split()).translate(_ACTIVE)
    return "\\" + escaped if escaped[:1] in ("#", "-", "+", "=", "~") else escaped


def _code(text: Any) -> str:
    """Endpoint text as a code span (shown literally, markup and all), which no backtick can close early."""
    return "`" + " ".join(str(text).split()).replace("`", "'") + "`"


def _verdict(verdict: Mapping[str, Any] | None) -> list[str]:
    if not verdict:
        return []
    lines = [f"## Verdict: **{verdict.get('decision')}**", "", str(verdict.get("summary", "")), ""]
    blockers = verdict.get("blockers") or []
    if blockers:
        lines += [f"Blockers ({len(blockers)}):", ""]
        for b in blockers:
            lines.append(f"1. **{b.get('case')}**: baseline {b.get('baseline_outcome')}, candidate "
                         f"{b.get('candidate_outcome')} — {_inline(_truncate(b.get('message', ''), _SUMMARY_MESSAGE_CHARS))}")
            lines += [f"   - {r.get('text')}" for r in b.get("remedies") or []]
        lines.append("")
    waived = verdict.get("waived") or []
    if waived:
        lines += ["Waived:", ""]
        lines += [f"- {w.get('case')} on {w.get('endpoint')}: {w.get('outcome')} — {w.get('reason')}"
                  + (f" (until {w['expires']})" if w.get("expires") else " (no expiry)") for w in waived]
        lines.append("")
    undecided = verdict.get("undecided") or []
    if undecided:
        lines += ["Undecided:", ""]
        lines += [f"- {u.get('case')}: {u.get('reason')}" for u in undecided]
        lines.append("")
    return lines


def _stats_table(matrix: Mapping[str, Any]) -> list[str]:
    """Success rate, latency and cost per cell; only when some cell was repeated or has a price."""
    cases, endpoints, by_key = _grid(matrix)
    cells = [by_key[(c, e)] for c in cases for e in endpoints if (c, e) in by_key]
    shown = [c for c in cells if ((c.get("stats") or {}).get("attempts") or 1) > 1 or c.get("cost")]
    if not shown:
        return []
    lines = ["## Reliability and cost", "",
             "| case | endpoint | success | 95% interval | p50 | p95 | cold | $/image | $/1,000 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cell in shown:
        stats = cell.get("stats") or {}
        cost = cell.get("cost") or {}
        total = (stats.get("latency") or {}).get("total") or {}
        # One attempt (a priced cell, not repeated) is a fact, not a rate with an interval.
        rate = stats.get("success_rate") if (stats.get("attempts") or 1) > 1 else None
        wilson = (stats.get("wilson95") or []) if rate is not None else []
        lines.append("| " + " | ".join([
            cell["case"], cell["endpoint"],
            f"{stats.get('passed')}/{stats.get('attempts')} ({rate * 100:.0f}%)" if rate is not None else "–",
            f"{wilson[0] * 100:.0f}–{wilson[1] * 100:.0f}%" if len(wilson) == 2 else "–",
            _secs(total.get("p50")), _secs(total.get("p95")), _secs((stats.get("cold") or {}).get("total")),
            *_money(cost),
        ]) + " |")
    for endpoint in matrix.get("endpoints") or []:
        cost = endpoint.get("cost") or {}
        if cost.get("per_image") is not None:
            lines.append(f"| **all cases** | {endpoint['name']} | | | | | | " + " | ".join(_money(cost)) + " |")
    return [*lines, ""]


def _money(cost: Mapping[str, Any]) -> list[str]:
    """$/image and $/1,000 images, or dashes where there is no figure."""
    return [f"${cost['per_image']:.4f}" if cost.get("per_image") is not None else "–",
            f"${cost['per_1000_images']:.2f}" if cost.get("per_1000_images") is not None else "–"]


def _secs(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else "–"


def _drift(drift: Mapping[str, Any] | None) -> list[str]:
    if not drift:
        return []
    compared = drift.get("compared_to") or {}
    lines = ["## Drift", "", f"Compared to run {compared.get('run')}" + (f" (`{compared['dir']}`)" if compared.get("dir") else "") + ".", ""]
    cells = drift.get("cells") or {}
    for key, title in (("new_failures", "New failures"), ("changed", "Failing differently"),
                       ("fixed", "Fixed"), ("inherited_failures", "Inherited failures")):
        if cells.get(key):
            lines += [f"{title}:", ""]
            lines += [f"- {d.get('case')} on {d.get('endpoint')}: {d.get('previous')} → {d.get('outcome')}" for d in cells[key]]
            lines.append("")
    for name, changes in (drift.get("endpoints") or {}).items():
        items = _endpoint_drift(changes or {})
        lines += [f"Endpoint **{name}**:" + ("" if items else " no change"), ""]
        if items:
            lines += [*items, ""]
    return lines


def _endpoint_drift(changes: Mapping[str, Any]) -> list[str]:
    return [f"- {label}: " + ", ".join(_code(item) for item in items) for label, items in endpoint_change_lines(changes)]


def _failure_section(cell: Mapping[str, Any]) -> list[str]:
    ev = cell.get("evidence") or {}
    lines = [f"### {cell['case']} on {cell['endpoint']}: {cell['outcome']}" + (" (partial)" if cell.get("partial") else ""), ""]
    if ev.get("message"):
        lines.append(_inline(ev["message"]))
        lines.append("")
    packages = ev.get("packages") or {}
    for class_type in ev.get("missing_classes") or []:
        name = class_type if isinstance(class_type, str) else class_type.get("class_type", str(class_type))
        packs = packages.get(name) or []
        remedy = "; ".join(_pack_text(p) for p in packs) if packs else "no known pack provides it"
        lines.append(f"- missing node {_code(name)} — {remedy}")
    for model in ev.get("missing_models") or []:
        lines.append(f"- missing model {_code(model.get('file'))} for {_inline(model.get('node_type'))}.{_inline(model.get('input'))} "
                     f"(node {_inline(model.get('node_id'))}) — add it to `models/{model.get('folder')}/`"
                     + (f", from {model['url']}" if model.get("url") else ""))
    for err in ev.get("node_errors") or []:
        field_name = f" {_code(err['input'])}" if err.get("input") else ""
        lines.append(f"- node {_inline(err.get('node_id'))} ({_inline(err.get('node_type'))}){field_name}: {_inline(node_error_text(err))}")
    if ev.get("exception_type"):
        lines.append(f"- {_inline(ev.get('node_type'))} (node {_inline(ev.get('node_id'))}) raised {_inline(ev['exception_type'])}: "
                     f"{_inline(str(ev.get('exception_message', '')).strip())}")
    if ev.get("hint"):
        lines.append(f"- hint: {ev['hint']}")
    if cell.get("conversion"):
        lines.append(f"- {conversion_text(cell['conversion'])}")
    if cell.get("repro"):
        lines += ["", "```sh", cell["repro"], "```"]
    lines.append("")
    return lines


def conversion_text(conversion: Mapping[str, Any]) -> str:
    """One line on how a UI-format case became the endpoint's prompt (shared with report.html)."""
    return (f"UI export converted as frontend {conversion.get('frontend')} would ({conversion.get('reason')}), "
            f"with {conversion.get('catalogue') or 'no catalogue'}")


def _pack_text(pack: Any) -> str:
    if not isinstance(pack, Mapping):
        return str(pack)
    title = pack.get("title") or pack.get("url", "")
    install = pack.get("install")
    return f"{title} ({pack.get('url', '')})" + (f", install: `{install}`" if install else "")
