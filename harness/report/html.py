"""report.html: the run as one self-contained page for people — verdict, matrix, filters, evidence.

Rendered from the matrix.json document alone (like matrix.md), so an old run can be re-rendered and
a run still in progress gives a readable page. The file carries its CSS and a little vanilla JS
inline and loads nothing: it is opened from disk, attached to CI runs and mailed around, often where
no network is allowed. Every string from the document goes through ``html.escape``: evidence holds
whatever an endpoint answered, tracebacks included.

Keys added after schema 1 (``verdict``, ``drift``, ``cells[].stats``, ``cells[].cost``,
``endpoints[].fingerprint``) are all optional here: a section is left out when its key is absent
or null.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from harness.report.drift import endpoint_change_lines
from harness.report.markdown import node_error_text
from harness.report.markdown import conversion_text

__all__ = ["DETAILS_LIMIT", "cell_anchor", "noteworthy", "render_html", "render_progress"]

_BADGE = {"passed": "✔", "product": "✖", "infra": "⚠"}
DETAILS_LIMIT = 1_000
"""Above this many cells the page details only the cells that failed or surprised: 20,000 detailed cells
make a 37 MB page that a browser takes many seconds to open; the matrix still shows every cell."""
_OPEN_LIMIT = 200
"""Failures' details open by default, up to this many (each open one costs the browser layout)."""
_VERDICT_CLASS = {"GO": "go", "NO-GO": "nogo", "UNDECIDABLE": "undecidable"}


def _e(value: Any) -> str:
    """Escaped text of any value; None is empty rather than the word "None"."""
    return "" if value is None else html.escape(str(value), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def cell_anchor(case: str, endpoint: str) -> str:
    """The id of a cell's details section: ``report.html#<id>`` links straight to its evidence."""
    return f"cell-{_slug(case)}--{_slug(endpoint)}"


def _figure(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "–" if value is None else str(value)


def _seconds(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else "–"


def _disposition(cell: Mapping[str, Any], outcomes: Mapping[str, Any]) -> str:
    """passed, product or infra: what the cell's colour says (an unknown outcome counts as infra)."""
    if cell.get("outcome") == "passed":
        return "passed"
    return cell.get("disposition") or (outcomes.get(cell.get("outcome")) or {}).get("disposition") or "infra"


# --------------------------------------------------------------------------------------------- layout


def _grid(matrix: Mapping[str, Any]) -> tuple[list[str], list[str], dict[tuple[str, str], Mapping[str, Any]]]:
    """Rows (planned cases first, then any other case with a cell), columns, cells by (case, endpoint)."""
    cells = matrix.get("cells") or []
    endpoints = [e["name"] for e in matrix.get("endpoints") or []]
    for cell in cells:
        if cell["endpoint"] not in endpoints:
            endpoints.append(cell["endpoint"])
    cases = list(dict.fromkeys([*(matrix.get("cases") or ()), *(c["case"] for c in cells)]))
    return cases, endpoints, {(c["case"], c["endpoint"]): c for c in cells}


def render_html(matrix: Mapping[str, Any]) -> str:
    """The whole page as one string; never raises on a document missing optional keys."""
    run = matrix.get("run") or {}
    cases, endpoints, by_key = _grid(matrix)
    outcomes = matrix.get("outcomes") or {}
    ordered = [by_key[(c, e)] for c in cases for e in endpoints if (c, e) in by_key]
    detailed = ordered if len(ordered) <= DETAILS_LIMIT else [c for c in ordered if noteworthy(c)]
    body = [
        _header(run, ordered),
        _verdict(matrix.get("verdict")),
        _filters(ordered, endpoints),
        _matrix_table(cases, endpoints, by_key, outcomes, {(c["case"], c["endpoint"]) for c in detailed}),
        _endpoints(matrix.get("endpoints") or []),
        _drift(matrix.get("drift")),
        _details(detailed, outcomes, left_out=len(ordered) - len(detailed)),
        _disagreements(ordered),
    ]
    return _page(f"comfy-compat run {run.get('id', '?')}", body, script=_JS)


def render_progress(matrix: Mapping[str, Any], *, done: int, planned: int | None, counts: Mapping[str, int],
                    recent: Sequence[Mapping[str, Any]]) -> str:
    """report.html while the run goes on: how far it got and its latest surprises, reloading itself.

    Its size does not grow with the cells (the whole report replaces it when the run ends): rendering
    every cell each time would make a long run's report writing quadratic.
    """
    run = matrix.get("run") or {}
    outcomes = matrix.get("outcomes") or {}
    of = f" of {planned:,}" if planned else ""
    tally = ", ".join(f"{n:,} {_e(o)}" for o, n in sorted(counts.items(), key=lambda item: -item[1]))
    items = "".join(
        f"<li><span class=\"badge d-{_slug(_disposition(c, outcomes))}\">{_e(c.get('outcome'))}</span> "
        f"<b>{_e(c.get('case'))}</b> on <b>{_e(c.get('endpoint'))}</b> (expected {_e(c.get('expected'))}): "
        f"{_e(str((c.get('evidence') or {}).get('message') or '')[:300])}</li>" for c in recent)
    body = [
        _title(run, f"<b>{done:,}</b>{of} cells finished"),
        f"<section id=\"progress\"><h2>Running</h2><p><b>{done:,}</b>{of} cells finished"
        + (f": {tally}" if tally else "") + ". This page reloads every 5 s; the full report replaces it when the run "
        f"ends. Every finished cell is in <code>{_e(matrix.get('cells_log') or 'cells.jsonl')}</code>.</p>"
        + (f"<h3>Latest not as expected</h3><ul class=\"recent\">{items}</ul>" if items else "") + "</section>",
    ]
    return _page(f"comfy-compat run {run.get('id', '?')} (running)", body, refresh=5)


def _page(title: str, body: Sequence[str], *, script: str = "", refresh: int | None = None) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        + (f"<meta http-equiv=\"refresh\" content=\"{refresh}\">" if refresh else "")
        # No fetches of any kind: the page must work opened from disk on a machine without network.
        + "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + (f"\n<script>{script}</script>" if script else "") + "\n</body></html>\n"
    )


def _header(run: Mapping[str, Any], cells: Sequence[Mapping[str, Any]]) -> str:
    unexpected = sum(not c.get("ok", True) for c in cells)
    return _title(run, f"{len(cells)} cells, <b>{unexpected}</b> not as expected")


def _title(run: Mapping[str, Any], summary: str) -> str:
    """The run's heading: id, status, when, ``summary`` (trusted HTML), harness version."""
    status = run.get("status", "unknown")
    when = f"started {_e(run.get('started'))}"
    if run.get("finished"):
        when += f", finished {_e(run.get('finished'))}"
    extras = []
    if (run.get("repeat") or 1) > 1:
        extras.append(f"{_e(run['repeat'])} attempts per cell")
    if run.get("compare_to"):
        extras.append(f"compared to {_e(run['compare_to'])}")
    return (
        f"<header><h1>comfy-compat run <span class=\"run-id\">{_e(run.get('id', '?'))}</span></h1>"
        f"<p class=\"meta\"><span class=\"status status-{_e(_slug(str(status)))}\">{_e(status)}</span> "
        f"{when} · {summary} · "
        f"harness {_e(run.get('harness_version'))}"
        + "".join(f" · {x}" for x in extras) + "</p></header>"
    )


# -------------------------------------------------------------------------------------------- verdict


def _verdict(verdict: Mapping[str, Any] | None) -> str:
    if not verdict:
        return ""
    decision = str(verdict.get("decision", "UNDECIDABLE"))
    parts = [
        f"<section id=\"verdict\" class=\"verdict verdict-{_VERDICT_CLASS.get(decision, 'undecidable')}\">",
        f"<div class=\"decision\">{_e(decision)}</div>",
        f"<p class=\"summary\">{_e(verdict.get('summary'))}</p>",
        f"<p class=\"pair\">candidate <b>{_e(verdict.get('candidate'))}</b> against baseline "
        f"<b>{_e(verdict.get('baseline'))}</b> · exit code {_e(verdict.get('exit_code'))}</p>",
    ]
    blockers = verdict.get("blockers") or []
    if blockers:
        parts.append(f"<h3>Blockers ({len(blockers)})</h3><ol class=\"blockers\">")
        for b in blockers:
            remedies = "".join(f"<li>{_e(r.get('text'))}</li>" for r in b.get("remedies") or [])
            parts.append(
                f"<li class=\"blocker\"><b>{_e(b.get('case'))}</b>: baseline {_e(b.get('baseline_outcome'))}, "
                f"candidate <span class=\"o-{_e(b.get('candidate_outcome'))}\">{_e(b.get('candidate_outcome'))}</span>"
                f" ({_e(b.get('disposition'))}) — {_e(b.get('message'))}"
                + (f"<ul class=\"remedies\">{remedies}</ul>" if remedies else "") + "</li>")
        parts.append("</ol>")
    parts.append(_simple_list("Waived", verdict.get("waived"), lambda w: (
        f"<b>{_e(w.get('case'))}</b> on {_e(w.get('endpoint'))}: {_e(w.get('outcome'))} — {_e(w.get('reason'))}"
        + (f" (until {_e(w.get('expires'))})" if w.get("expires") else " (no expiry)"))))
    parts.append(_simple_list("Undecided", verdict.get("undecided"),
                              lambda u: f"<b>{_e(u.get('case'))}</b>: {_e(u.get('reason'))}"))
    over = [b for b in verdict.get("budgets") or [] if not b.get("ok", True)]
    parts.append(_simple_list("Over budget", over, lambda b: (
        f"<b>{_e(b.get('case'))}</b>: {_e(b.get('metric'))} {_e(_figure(b.get('value'), 4))} "
        f"(limit {_e(_figure(b.get('limit'), 4))})")))
    if verdict.get("passed"):
        parts.append(f"<p class=\"passed-cases\">Passed on both: {_e(', '.join(map(str, verdict['passed'])))}</p>")
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _simple_list(title: str, items: Iterable[Any] | None, line) -> str:
    items = list(items or [])
    if not items:
        return ""
    return f"<h3>{_e(title)} ({len(items)})</h3><ul class=\"{_slug(title.lower())}\">" + "".join(
        f"<li>{line(i)}</li>" for i in items) + "</ul>"


# ------------------------------------------------------------------------------------ filters + matrix


def _filters(cells: Sequence[Mapping[str, Any]], endpoints: Sequence[str]) -> str:
    if not cells:
        return ""
    outcomes = sorted({str(c.get("outcome")) for c in cells})
    options = "".join(f"<option value=\"{_e(o)}\">{_e(o)}</option>" for o in outcomes)
    columns = "".join(f"<option value=\"{_e(e)}\">{_e(e)}</option>" for e in endpoints)
    return (
        "<form id=\"filters\" class=\"filters\" onsubmit=\"return false\">"
        f"<label>outcome <select id=\"f-outcome\"><option value=\"\">all</option>{options}</select></label>"
        f"<label>endpoint <select id=\"f-endpoint\"><option value=\"\">all</option>{columns}</select></label>"
        "<label>search <input id=\"f-text\" type=\"search\" placeholder=\"case, class, message…\"></label>"
        "<label><input id=\"f-unexpected\" type=\"checkbox\"> only unexpected</label>"
        "<span id=\"f-count\" class=\"count\"></span></form>"
    )


def noteworthy(cell: Mapping[str, Any]) -> bool:
    """Failed, or not the expected outcome: a cell every report details, however large the run."""
    return cell.get("outcome") != "passed" or not cell.get("ok", True)


def _matrix_table(cases: Sequence[str], endpoints: Sequence[str], by_key: Mapping[tuple[str, str], Mapping[str, Any]],
                  outcomes: Mapping[str, Any], detailed: set[tuple[str, str]]) -> str:
    if not cases or not endpoints:
        return "<section id=\"matrix\"><p class=\"empty\">No cells yet: nothing has run.</p></section>"
    head = "".join(f"<th class=\"col\" data-endpoint=\"{_e(e)}\">{_e(e)}</th>" for e in endpoints)
    rows = []
    for case in cases:
        tds = [_matrix_cell(by_key.get((case, e)), case, e, outcomes, (case, e) in detailed) for e in endpoints]
        rows.append(f"<tr class=\"row\" data-case=\"{_e(case)}\"><th scope=\"row\">{_e(case)}</th>{''.join(tds)}</tr>")
    legend = ("<p class=\"legend\"><span class=\"d-passed\">✔ passed</span> "
              "<span class=\"d-product\">✖ product failure (the endpoint cannot run it)</span> "
              "<span class=\"d-infra\">⚠ infrastructure (could not find out)</span> "
              "<span class=\"unexpected-sample\">outlined: not the expected outcome</span></p>")
    return (f"<section id=\"matrix\"><h2>Matrix</h2>{legend}<table class=\"matrix\"><thead><tr><th>case</th>{head}"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def _search_text(cell: Mapping[str, Any]) -> str:
    """What the text filter looks in: names, outcome, message and missing classes of the cell."""
    ev = cell.get("evidence") or {}
    words = [cell.get("case"), cell.get("endpoint"), cell.get("outcome"), ev.get("message"),
             *(str(c) for c in ev.get("missing_classes") or [])]
    return " ".join(str(w) for w in words if w).lower()


def _matrix_cell(cell: Mapping[str, Any] | None, case: str, endpoint: str, outcomes: Mapping[str, Any],
                 detailed: bool) -> str:
    if cell is None:
        return f"<td class=\"cell empty\" data-endpoint=\"{_e(endpoint)}\" data-outcome=\"\">·</td>"
    disposition = _disposition(cell, outcomes)
    outcome = str(cell.get("outcome"))
    ok = bool(cell.get("ok", True))
    classes = f"cell d-{_slug(disposition)} o-{_slug(outcome)}" + ("" if ok else " unexpected")
    text = f"{_BADGE.get(disposition, '?')} {_e(outcome)}"
    if cell.get("partial"):
        text += " <small>(partial)</small>"
    if not ok:
        text += f"<div class=\"expected\">expected {_e(cell.get('expected'))}</div>"
    stats = cell.get("stats") or {}
    if (stats.get("attempts") or 1) > 1:
        text += f"<div class=\"rate\">{_e(stats.get('passed'))}/{_e(stats.get('attempts'))} passed</div>"
    anchor = cell_anchor(case, endpoint)
    target, text = (f" data-target=\"{anchor}\"", f"<a href=\"#{anchor}\">{text}</a>") if detailed else ("", text)
    return (f"<td class=\"{classes}\" data-endpoint=\"{_e(endpoint)}\" data-outcome=\"{_e(outcome)}\" "
            f"data-ok=\"{'1' if ok else '0'}\" data-search=\"{_e(_search_text(cell))}\"{target} "
            f"title=\"{_e(cell.get('case'))} on {_e(endpoint)}: {_e(outcome)}\">{text}</td>")


def _endpoints(endpoints: Sequence[Mapping[str, Any]]) -> str:
    if not endpoints:
        return ""
    items = []
    for e in endpoints:
        prov = e.get("provenance") or {}
        about = ", ".join(f"{k} {v}" for k, v in prov.items() if k != "devices" and v not in (None, "", False))
        if prov.get("devices"):
            about += f"; devices {', '.join(map(str, prov['devices']))}"
        if e.get("modelled"):
            about += f"{'; ' if about else ''}modelled as ComfyUI {e['modelled']['comfyui_version']} ({e['modelled']['reason']})"
        extra = ""
        if e.get("profile"):
            extra += f" · profile {_e(e['profile'])}"
        if e.get("price_per_gpu_hour") is not None:
            extra += f" · ${_e(_figure(e['price_per_gpu_hour'], 2))}/GPU-hour"
        cost = e.get("cost") or {}
        if cost.get("per_image") is not None:
            extra += (f" · <b>${_e(_figure(cost['per_image'], 4))}/image</b>, ${_e(_figure(cost['per_1000_images'], 2))}"
                      f" per 1,000 over {_e(cost['images'])} images")
        if e.get("fingerprint"):
            extra += f" · fingerprint <a href=\"{_e(e['fingerprint'])}\">{_e(e['fingerprint'])}</a>"
        items.append(f"<li><b>{_e(e.get('name'))}</b> ({_e(e.get('kind'))}) <code>{_e(e.get('url'))}</code>{extra}"
                     + (f"<div class=\"prov\">{_e(about)}</div>" if about else "") + "</li>")
    return f"<section id=\"endpoints\"><h2>Endpoints</h2><ul>{''.join(items)}</ul></section>"


# ---------------------------------------------------------------------------------------------- drift


def _drift(drift: Mapping[str, Any] | None) -> str:
    if not drift:
        return ""
    compared = drift.get("compared_to") or {}
    parts = [f"<section id=\"drift\"><h2>Drift</h2><p>Compared to run <b>{_e(compared.get('run'))}</b>"
             + (f" (<code>{_e(compared.get('dir'))}</code>)" if compared.get("dir") else "") + "</p>"]
    cells = drift.get("cells") or {}
    for key, title in (("new_failures", "New failures"), ("changed", "Failing differently"),
                       ("fixed", "Fixed"), ("inherited_failures", "Inherited failures")):
        parts.append(_simple_list(title, cells.get(key), lambda d: (
            f"<b>{_e(d.get('case'))}</b> on {_e(d.get('endpoint'))}: "
            f"{_e(d.get('previous'))} → <span class=\"o-{_e(d.get('outcome'))}\">{_e(d.get('outcome'))}</span>")))
    for name, changes in (drift.get("endpoints") or {}).items():
        body = _endpoint_drift(changes or {})
        parts.append(f"<h3>Endpoint {_e(name)}</h3>" + (body or "<p>no change</p>"))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _endpoint_drift(changes: Mapping[str, Any]) -> str:
    rows = [f"<tr><th>{_e(label)}</th><td>{', '.join(f'<code>{_e(item)}</code>' for item in items)}</td></tr>"
            for label, items in endpoint_change_lines(changes)]
    return f"<table class=\"kv\">{''.join(rows)}</table>" if rows else ""


# -------------------------------------------------------------------------------------------- details


def _details(cells: Sequence[Mapping[str, Any]], outcomes: Mapping[str, Any], left_out: int = 0) -> str:
    if not cells and not left_out:
        return ""
    sections = [_cell_details(c, outcomes, opened=i < _OPEN_LIMIT) for i, c in enumerate(cells)]
    note = (f"<p class=\"hint\">{left_out:,} cells that passed as expected are in the matrix only (a run of more than "
            f"{DETAILS_LIMIT:,} cells details the others): each one's evidence is its line in matrix.json and its "
            "folder <code>cells/&lt;case&gt;@&lt;endpoint&gt;/</code>.</p>") if left_out else ""
    return ("<section id=\"cells\"><h2>Cells</h2><p class=\"hint\">Click a matrix cell to open its evidence.</p>"
            + note + "\n".join(sections) + "</section>")


def _cell_details(cell: Mapping[str, Any], outcomes: Mapping[str, Any], opened: bool = True) -> str:
    disposition = _disposition(cell, outcomes)
    outcome = str(cell.get("outcome"))
    ok = bool(cell.get("ok", True))
    # Failures and surprises open by default: they are what a reader came for; passes stay folded.
    opened = " open" if opened and (outcome != "passed" or not ok) else ""
    summary = (f"<span class=\"badge d-{_slug(disposition)}\">{_BADGE.get(disposition, '?')} {_e(outcome)}</span> "
               f"<b>{_e(cell.get('case'))}</b> on <b>{_e(cell.get('endpoint'))}</b>"
               + ("" if ok else f" <span class=\"unexpected-tag\">expected {_e(cell.get('expected'))}</span>")
               + (" <small>(partial)</small>" if cell.get("partial") else ""))
    meaning = (outcomes.get(outcome) or {}).get("meaning")
    body = [f"<p class=\"meaning\">{_e(meaning)}</p>" if meaning and outcome != "passed" else "",
            _evidence(cell.get("evidence") or {}),
            f"<p class=\"conversion\">{_e(conversion_text(cell['conversion']))}</p>" if cell.get("conversion") else "",
            _prediction(cell),
            _repro(cell.get("repro")),
            _timings(cell.get("timings") or {}),
            _stats(cell.get("stats")),
            _cost(cell.get("cost")),
            _images(cell.get("images") or [])]
    anchor = cell_anchor(str(cell.get("case")), str(cell.get("endpoint")))
    return (f"<details id=\"{anchor}\" class=\"cell-details d-{_slug(disposition)}\" data-endpoint=\"{_e(cell.get('endpoint'))}\" "
            f"data-outcome=\"{_e(outcome)}\" data-ok=\"{'1' if ok else '0'}\" data-search=\"{_e(_search_text(cell))}\"{opened}>"
            f"<summary>{summary}</summary><div class=\"body\">{''.join(b for b in body if b)}</div></details>")


def _evidence(ev: Mapping[str, Any]) -> str:
    parts = []
    if ev.get("message"):
        parts.append(f"<p class=\"message\">{_e(ev['message'])}</p>")
    packages = ev.get("packages") or {}
    missing = ev.get("missing_classes") or []
    if missing:
        items = []
        for entry in missing:
            name = entry if isinstance(entry, str) else (entry or {}).get("class_type", str(entry))
            packs = (packages.get(name) or []) if isinstance(packages, Mapping) else []
            items.append(f"<li>missing node <code>{_e(name)}</code>" + _packs(packs) + "</li>")
        parts.append(f"<h4>Missing node classes</h4><ul class=\"missing-classes\">{''.join(items)}</ul>")
    models = ev.get("missing_models") or []
    if models:
        parts.append("<h4>Missing models</h4><ul class=\"missing-models\">" + "".join(
            f"<li><code>{_e(m.get('file'))}</code> for {_e(m.get('node_type'))}.{_e(m.get('input'))} "
            f"(node {_e(m.get('node_id'))}) — add it to <code>models/{_e(m.get('folder'))}/</code></li>"
            for m in models) + "</ul>")
    errors = ev.get("node_errors") or []
    if errors:
        parts.append("<h4>Node errors</h4><table class=\"node-errors\"><tr><th>node</th><th>class</th><th>type</th>"
                     "<th>input</th><th>error</th></tr>" + "".join(
                         f"<tr><td>{_e(r.get('node_id'))}</td><td>{_e(r.get('node_type'))}</td><td>{_e(r.get('type'))}</td>"
                         f"<td>{_e(r.get('input'))}</td><td>{_e(node_error_text(r))}</td></tr>"
                         for r in errors if isinstance(r, Mapping)) + "</table>")
    if ev.get("exception_type"):
        parts.append(f"<p class=\"exception\">{_e(ev.get('node_type'))} (node {_e(ev.get('node_id'))}) raised "
                     f"<code>{_e(ev['exception_type'])}</code>: {_e(str(ev.get('exception_message') or '').strip())}</p>")
    traceback = ev.get("traceback")
    if traceback:
        text = traceback if isinstance(traceback, str) else "".join(
            line if str(line).endswith("\n") else f"{line}\n" for line in traceback)
        parts.append(f"<pre class=\"traceback\">{_e(text)}</pre>")
    if ev.get("http_status"):
        parts.append(f"<p class=\"http\">HTTP {_e(ev['http_status'])}</p>")
    if ev.get("hint"):
        parts.append(f"<p class=\"remedy\"><b>Remedy:</b> {_e(ev['hint'])}</p>")
    return "".join(parts)


def _packs(packs: Sequence[Any]) -> str:
    if not packs:
        return " — no known pack provides it"
    items = []
    for p in packs:
        if not isinstance(p, Mapping):
            items.append(f"<li>{_e(p)}</li>")
            continue
        title = p.get("title") or p.get("name") or p.get("url")
        flag = " <small>(preferred)</small>" if p.get("preferred") and len(packs) > 1 else ""
        install = f" <code class=\"copy\">{_e(p['install'])}</code>" if p.get("install") else ""
        items.append(f"<li>{_e(title)} <span class=\"url\">{_e(p.get('url'))}</span>{flag}{install}</li>")
    return f"<ul class=\"packs\">{''.join(items)}</ul>"


def _prediction(cell: Mapping[str, Any]) -> str:
    if cell.get("predicted") is None:
        return ""
    agrees = cell.get("prediction_agrees")
    note = "agrees" if agrees else "<b>disagrees</b>"
    return f"<p class=\"predicted\">preflight predicted {_e(cell['predicted'])} ({note})</p>"


def _repro(repro: Any) -> str:
    if not repro:
        return ""
    return ("<h4>Reproduce</h4><div class=\"repro\"><code class=\"copy\">" + _e(repro) +
            "</code> <button type=\"button\" class=\"copy-btn\">copy</button></div>")


def _timings(timings: Mapping[str, Any]) -> str:
    if not any(timings.get(k) is not None for k in ("queue", "execution", "total")):
        return ""
    return ("<p class=\"timings\">queue " + _seconds(timings.get("queue")) + " · execution "
            + _seconds(timings.get("execution")) + " · total " + _seconds(timings.get("total")) + "</p>")


def _stats(stats: Mapping[str, Any] | None) -> str:
    if not stats:
        return ""
    rows = []
    rate = stats.get("success_rate")
    # One attempt is a fact, not a rate: "0/1 = 0% (95% Wilson 0–79%)" on an expected failure misleads.
    if rate is not None and (stats.get("attempts") or 1) > 1:
        wilson = stats.get("wilson95") or []
        interval = f" (95% Wilson {wilson[0] * 100:.0f}–{wilson[1] * 100:.0f}%)" if len(wilson) == 2 else ""
        rows.append(("success", f"{_e(stats.get('passed'))}/{_e(stats.get('attempts'))} = {rate * 100:.0f}%{interval}"))
    histogram = stats.get("histogram") or {}
    if len(histogram) > 1:
        rows.append(("outcomes", _e(", ".join(f"{k} {v}" for k, v in histogram.items()))))
    latency = stats.get("latency") or {}
    for key in ("total", "queue", "execution"):
        q = latency.get(key)
        if q:
            rows.append((f"{key} latency", f"p50 {_seconds(q.get('p50'))} · p95 {_seconds(q.get('p95'))} · max {_seconds(q.get('max'))}"))
    if stats.get("cold"):
        cold = stats["cold"]
        rows.append(("cold (first)", f"queue {_seconds(cold.get('queue'))} · execution {_seconds(cold.get('execution'))} "
                                     f"· total {_seconds(cold.get('total'))}"))
    if stats.get("warm"):
        warm = stats["warm"]
        rows.append(("warm", f"p50 {_seconds(warm.get('p50'))} · p95 {_seconds(warm.get('p95'))} · max {_seconds(warm.get('max'))}"))
    if not rows:
        return ""
    return "<h4>Statistics</h4><table class=\"kv stats\">" + "".join(
        f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _cost(cost: Mapping[str, Any] | None) -> str:
    if not cost:
        return ""
    per_image = cost.get("per_image")
    per_1000 = cost.get("per_1000_images")
    return ("<h4>Cost</h4><p class=\"cost\">"
            + (f"${per_image:.4f}/image" if isinstance(per_image, (int, float)) else "no image, no per-image cost")
            + (f" · ${per_1000:.2f} per 1,000 images" if isinstance(per_1000, (int, float)) else "")
            + f" · {_e(_figure(cost.get('billed_seconds')))} s billed at ${_e(_figure(cost.get('price_per_gpu_hour')))}/GPU-hour"
            + f" ({_e(cost.get('basis'))} time, {_e(cost.get('images'))} images)</p>")


def _images(images: Sequence[Mapping[str, Any]]) -> str:
    # Names and sizes only: embedding image bytes would make the page huge and the run dir has them.
    if not images:
        return ""
    rows = "".join(
        f"<tr><td>{_e(i.get('filename'))}</td><td>{_e(i.get('format'))}</td>"
        f"<td>{_e(i.get('width'))}×{_e(i.get('height'))}</td><td>{_e(i.get('bytes'))} bytes</td>"
        f"<td>{_e(i.get('error'))}</td></tr>" for i in images)
    return ("<h4>Images</h4><table class=\"images\"><tr><th>file</th><th>format</th><th>size</th><th>bytes</th>"
            f"<th>problem</th></tr>{rows}</table>")


def _disagreements(cells: Sequence[Mapping[str, Any]]) -> str:
    wrong = [c for c in cells if c.get("prediction_agrees") is False]
    return _simple_list("Preflight disagreements", wrong, lambda c: (
        f"<a href=\"#{cell_anchor(str(c['case']), str(c['endpoint']))}\">{_e(c['case'])} on {_e(c['endpoint'])}</a>: "
        f"predicted {_e(c.get('predicted'))}, observed {_e(c.get('outcome'))}"))


# ----------------------------------------------------------------------------------------- CSS and JS

_CSS = """
:root{--pass:#1a7f37;--pass-bg:#dafbe1;--prod:#cf222e;--prod-bg:#ffebe9;--infra:#9a6700;--infra-bg:#fff8c5;
--line:#d0d7de;--muted:#57606a}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem;color:#1f2328}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin-top:1.8rem}h3{font-size:1rem}h4{margin:.8rem 0 .3rem}
.meta,.prov,.hint,.legend{color:var(--muted)}.run-id{font-family:ui-monospace,monospace}
.status{padding:0 .4em;border-radius:3px;background:#eaeef2}.status-complete{background:var(--pass-bg)}
.status-interrupted,.status-running{background:var(--infra-bg)}
.verdict{border-radius:8px;padding:1rem 1.2rem;margin:1rem 0;border:2px solid}
.verdict .decision{font-size:2.4rem;font-weight:800;letter-spacing:.04em}
.verdict-go{background:var(--pass-bg);border-color:var(--pass)}.verdict-go .decision{color:var(--pass)}
.verdict-nogo{background:var(--prod-bg);border-color:var(--prod)}.verdict-nogo .decision{color:var(--prod)}
.verdict-undecidable{background:var(--infra-bg);border-color:var(--infra)}.verdict-undecidable .decision{color:var(--infra)}
.verdict .summary{font-size:1.1rem;font-weight:600}
.filters{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;padding:.6rem;background:#f6f8fa;border-radius:6px}
.count{color:var(--muted)}
table{border-collapse:collapse}
table.matrix th,table.matrix td{border:1px solid var(--line);padding:.35rem .6rem;text-align:left;vertical-align:top}
table.matrix thead th{background:#f6f8fa}
td.cell{cursor:pointer;white-space:nowrap}td.cell a{color:inherit;text-decoration:none;display:block}
.d-passed{background:var(--pass-bg);color:var(--pass)}.d-product{background:var(--prod-bg);color:var(--prod)}
.d-infra{background:var(--infra-bg);color:var(--infra)}
td.unexpected,.unexpected-sample{outline:3px solid #8250df;outline-offset:-3px;font-weight:700}
.expected,.rate{font-size:.8em;font-weight:400}.legend span{padding:.1rem .4rem;margin-right:.3rem}
td.dim{opacity:.25}.hidden{display:none!important}td.selected{box-shadow:inset 0 0 0 3px #0969da}
details.cell-details{border:1px solid var(--line);border-left-width:6px;border-radius:4px;margin:.5rem 0;background:#fff;color:#1f2328}
details.cell-details.d-passed{border-left-color:var(--pass)}details.cell-details.d-product{border-left-color:var(--prod)}
details.cell-details.d-infra{border-left-color:var(--infra)}details.cell-details:target{box-shadow:0 0 0 3px #0969da}
details summary{padding:.4rem .6rem;cursor:pointer}details .body{padding:0 .8rem .6rem}
.badge{padding:0 .35rem;border-radius:3px}.unexpected-tag{color:#8250df;font-weight:700}
pre.traceback{background:#f6f8fa;padding:.6rem;overflow:auto;max-height:24rem;font-size:12px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;background:#f6f8fa;padding:0 .2rem;word-break:break-all}
table.kv th{text-align:left;padding-right:1rem;font-weight:600;vertical-align:top}table.kv td,table.kv th{padding:.1rem .4rem}
table.images td,table.images th,table.node-errors td,table.node-errors th{border:1px solid var(--line);padding:.15rem .4rem}
.remedy{background:#ddf4ff;padding:.3rem .5rem;border-radius:4px}.url{color:var(--muted)}
.copy-btn{font-size:11px;margin-left:.3rem}
"""

# Filters only toggle classes: every cell and section is in the page already, so nothing is fetched
# and the page still reads top to bottom without JavaScript.
_JS = """
(function(){
  var $ = function(s){return document.getElementById(s);};
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr.row'));
  var details = Array.prototype.slice.call(document.querySelectorAll('details.cell-details'));
  function matches(el, f){
    if (f.outcome && el.dataset.outcome !== f.outcome) return false;
    if (f.unexpected && el.dataset.ok !== '0') return false;
    if (f.text && (el.dataset.search || '').indexOf(f.text) < 0) return false;
    return true;
  }
  function apply(){
    if (!$('filters')) return;
    var f = {outcome: $('f-outcome').value, endpoint: $('f-endpoint').value,
             text: $('f-text').value.trim().toLowerCase(), unexpected: $('f-unexpected').checked};
    var active = f.outcome || f.text || f.unexpected, shown = 0;
    document.querySelectorAll('[data-endpoint]').forEach(function(el){
      if (el.tagName === 'TH' || el.tagName === 'TD')
        el.classList.toggle('hidden', !!f.endpoint && el.dataset.endpoint !== f.endpoint);
    });
    rows.forEach(function(row){
      var any = false;
      row.querySelectorAll('td.cell').forEach(function(td){
        var inColumn = !f.endpoint || td.dataset.endpoint === f.endpoint;
        var hit = inColumn && !td.classList.contains('empty') && (!active || matches(td, f));
        td.classList.toggle('dim', !!active && !hit);
        if (hit) { any = true; shown++; }
      });
      row.classList.toggle('hidden', !!(active || f.endpoint) && !any);
    });
    details.forEach(function(d){
      var inColumn = !f.endpoint || d.dataset.endpoint === f.endpoint;
      d.classList.toggle('hidden', !(inColumn && matches(d, f)));
    });
    $('f-count').textContent = shown + ' cell' + (shown === 1 ? '' : 's') + ' shown';
  }
  function reveal(id){
    var d = id && document.getElementById(id);
    if (!d || d.tagName !== 'DETAILS') return;
    d.classList.remove('hidden'); d.open = true; d.scrollIntoView({block: 'start'});
    document.querySelectorAll('td.selected').forEach(function(td){td.classList.remove('selected');});
    var td = document.querySelector('td[data-target="' + id + '"]');
    if (td) td.classList.add('selected');
  }
  document.querySelectorAll('td.cell[data-target]').forEach(function(td){
    td.addEventListener('click', function(ev){
      ev.preventDefault(); history.replaceState(null, '', '#' + td.dataset.target); reveal(td.dataset.target);
    });
  });
  document.querySelectorAll('.copy-btn').forEach(function(b){
    b.addEventListener('click', function(){
      var text = b.previousElementSibling.textContent;
      var done = function(){ b.textContent = 'copied'; setTimeout(function(){ b.textContent = 'copy'; }, 1500); };
      if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, function(){});
      else { var r = document.createRange(); r.selectNodeContents(b.previousElementSibling);
             var s = getSelection(); s.removeAllRanges(); s.addRange(r); }
    });
  });
  ['f-outcome','f-endpoint','f-text','f-unexpected'].forEach(function(id){
    var el = $(id); if (el) { el.addEventListener('input', apply); el.addEventListener('change', apply); }
  });
  window.addEventListener('hashchange', function(){ reveal(location.hash.slice(1)); });
  apply();
  if (location.hash) reveal(location.hash.slice(1));
})();
"""
