"""matrix.md: the support matrix (cases × endpoints) and, under it, each failure's evidence and remedy.

Rendered from the matrix.json document alone, so a report can be re-rendered from an old run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render_markdown"]

_MARK = {"passed": "✅", "product": "❌", "infra": "⚠️"}


def _cell_text(cell: Mapping[str, Any]) -> str:
    mark = _MARK["passed"] if cell["outcome"] == "passed" else _MARK[cell["disposition"]]
    text = f"{mark} {cell['outcome']}"
    if cell.get("partial"):
        text += " (partial)"
    if not cell["ok"]:
        text += f" — expected {cell['expected']}"
    return text


def render_markdown(matrix: Mapping[str, Any]) -> str:
    run = matrix["run"]
    cells = matrix["cells"]
    endpoints = [e["name"] for e in matrix["endpoints"]]
    for cell in cells:
        if cell["endpoint"] not in endpoints:
            endpoints.append(cell["endpoint"])
    cases = list(dict.fromkeys([*matrix.get("cases", ()), *(c["case"] for c in cells)]))
    by_key = {(c["case"], c["endpoint"]): c for c in cells}
    unexpected = sum(not c["ok"] for c in cells)

    lines = [f"# Compatibility matrix — run {run['id']}", ""]
    status = run["status"] if run["status"] != "complete" else f"complete, finished {run['finished']}"
    lines.append(f"Started {run['started']}; {status}. {len(cells)} cells, {unexpected} not as expected. "
                 f"harness {run['harness_version']}.")
    lines.append("")
    if endpoints:
        lines.append("| case | " + " | ".join(endpoints) + " |")
        lines.append("|---|" + "---|" * len(endpoints))
        for case in cases:
            row = [_cell_text(by_key[(case, e)]) if (case, e) in by_key else "·" for e in endpoints]
            lines.append(f"| {case} | " + " | ".join(row) + " |")
        lines.append("")
    for e in matrix["endpoints"]:
        prov = e.get("provenance") or {}
        about = ", ".join(f"{k} {v}" for k, v in prov.items() if k != "devices" and v)
        lines.append(f"- **{e['name']}** ({e['kind']}) {e['url']}" + (f" — {about}" if about else ""))
    lines.append("")

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


def _failure_section(cell: Mapping[str, Any]) -> list[str]:
    ev = cell.get("evidence") or {}
    lines = [f"### {cell['case']} on {cell['endpoint']}: {cell['outcome']}" + (" (partial)" if cell.get("partial") else ""), ""]
    if ev.get("message"):
        lines.append(ev["message"])
        lines.append("")
    packages = ev.get("packages") or {}
    for class_type in ev.get("missing_classes") or []:
        name = class_type if isinstance(class_type, str) else class_type.get("class_type", str(class_type))
        packs = packages.get(name) or []
        remedy = "; ".join(_pack_text(p) for p in packs) if packs else "no known pack provides it"
        lines.append(f"- missing node `{name}` — {remedy}")
    for model in ev.get("missing_models") or []:
        lines.append(f"- missing model `{model.get('file')}` for {model.get('node_type')}.{model.get('input')} "
                     f"(node {model.get('node_id')}) — add it to `models/{model.get('folder')}/`")
    for err in ev.get("node_errors") or []:
        lines.append(f"- node {err.get('node_id')} ({err.get('node_type')}): {err.get('type')} — {err.get('details')}")
    if ev.get("exception_type"):
        lines.append(f"- {ev.get('node_type')} (node {ev.get('node_id')}) raised {ev['exception_type']}: "
                     f"{str(ev.get('exception_message', '')).strip()}")
    if ev.get("hint"):
        lines.append(f"- hint: {ev['hint']}")
    if cell.get("repro"):
        lines += ["", "```sh", cell["repro"], "```"]
    lines.append("")
    return lines


def _pack_text(pack: Any) -> str:
    if not isinstance(pack, Mapping):
        return str(pack)
    title = pack.get("title") or pack.get("url", "")
    install = pack.get("install")
    return f"{title} ({pack.get('url', '')})" + (f", install: `{install}`" if install else "")
