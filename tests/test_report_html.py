"""report.html from a real run of the seed cases, plus the keys other parts add (verdict, drift, stats, cost).

The seed run is made once per module by running the compatibility suite in a subprocess against the
embedded reference endpoint; the synthetic keys follow the matrix.json contract. ``seed_matrix`` and
``enrich`` are imported by the other report tests.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import ROOT
from harness.report.html import cell_anchor, render_html

EVIL = "<script>alert('pwned')</script> & \"quotes\""


def run_seed(report_dir: Path) -> dict:
    """The seed cases on the embedded reference endpoint, as `make compat` runs them; its matrix.json."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "cases", "-p", "no:cacheprovider", "-q", "--report-dir", str(report_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((report_dir / "latest" / "matrix.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def seed_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_seed(tmp_path_factory.mktemp("seed-run"))


def by_cell(matrix: dict) -> dict:
    return {(c["case"], c["endpoint"]): c for c in matrix["cells"]}


def enrich(matrix: dict) -> dict:
    """A copy with every key added this session, as the contract describes them, and hostile evidence text."""
    m = copy.deepcopy(matrix)
    m["run"].update(repeat=5, compare_to="reports/20261101T000000Z-1")
    for cell in m["cells"]:
        passed = cell["outcome"] == "passed"
        total = cell["timings"]["total"] or 0.1
        cell["stats"] = {
            "attempts": 5, "passed": 5 if passed else 0,
            "success_rate": 1.0 if passed else 0.0, "wilson95": [0.566, 1.0] if passed else [0.0, 0.434],
            "histogram": {cell["outcome"]: 5},
            "latency": {"total": {"p50": total, "p95": 1.5 * total, "max": 2 * total}, "queue": None, "execution": None},
            "cold": {"queue": 3.0, "execution": 1.0, "total": 4.5}, "warm": {"p50": total, "p95": 1.2 * total, "max": 1.3 * total}}
        cell["cost"] = ({"billed_seconds": 2.5, "images": 1, "per_image": 0.00172, "per_1000_images": 1.72,
                         "price_per_gpu_hour": 2.49, "basis": "execution"} if passed else None)
    cells = by_cell(m)
    flaky = cells[("denrisi_zimage", "custom")]["stats"]
    flaky.update(passed=4, success_rate=0.8, wilson95=[0.376, 0.964], histogram={"passed": 4, "execution_timeout": 1})
    cells[("denrisi_zimage", "stock")]["evidence"]["message"] = EVIL
    vast = cells[("denrisi_zimage", "vast-stock")]["evidence"]
    vast["exception_type"] = "RuntimeError"
    vast["exception_message"] = "CUDA <error> in kernel"
    vast["traceback"] = ['  File "nodes.py", line 1, in <module>\n', "RuntimeError: CUDA <error>\n"]
    # One cell not as expected, so the "only unexpected" filter has something to keep.
    smoke = cells[("smoke_invert", "vast-custom")]
    smoke.update(outcome="server_error", disposition="infra", ok=False,
                 evidence={"message": "HTTP 502 from the load balancer", "hint": "Retry later."})
    m["verdict"] = {
        "decision": "NO-GO", "exit_code": 1, "baseline": "custom", "candidate": "stock",
        "summary": "NO-GO: stock vs custom, 3 required cases: 1 blocker",
        "blockers": [{"case": "denrisi_zimage", "baseline_outcome": "passed", "candidate_outcome": "missing_node",
                      "disposition": "product", "message": "3 node classes are not installed",
                      "remedies": [{"kind": "install_pack", "text": "install RES4LYF: git clone RES4LYF — provides Sigmas Rescale"},
                                   {"kind": "install_pack", "text": "install ControlAltAI Nodes: comfy node install controlaltai-nodes"}]}],
        "waived": [{"case": "sdxl_baseline", "endpoint": "stock", "outcome": "missing_model", "reason": "ticket OPS-12",
                    "expires": "2027-01-01"}],
        "undecided": [{"case": "smoke_invert", "reason": "the baseline's cell was unreachable"}],
        "passed": ["sdxl_baseline"],
        "budgets": [{"case": "sdxl_baseline", "metric": "p95_seconds", "limit": 0.1, "value": 0.3, "ok": False}]}
    m["drift"] = {
        "compared_to": {"run": "20261101T000000Z-1", "dir": "reports/20261101T000000Z-1"},
        "cells": {"new_failures": [{"case": "smoke_invert", "endpoint": "vast-custom", "outcome": "server_error", "previous": "passed"}],
                  "inherited_failures": [{"case": "denrisi_zimage", "endpoint": "stock", "outcome": "missing_node", "previous": "missing_node"}],
                  "fixed": [{"case": "sdxl_baseline", "endpoint": "custom", "outcome": "passed", "previous": "missing_model"}],
                  "changed": []},
        "endpoints": {"stock": {"classes_appeared": ["ImageBlur"], "classes_disappeared": ["FluxResolutionNode"],
                                "classes_changed": [{"class": "KSampler", "inputs_added": ["noise_mode"], "inputs_removed": [],
                                                     "inputs_changed": ["sampler_name"]}],
                                "models_added": {"checkpoints": ["new_model.safetensors"]},
                                "models_removed": {"loras": ["gone_lora.safetensors"]},
                                "system_changed": {"comfyui_version": ["0.3.63", "0.3.64"]}},
                      "custom": {}}}
    for endpoint in m["endpoints"]:
        endpoint["fingerprint"] = f"fingerprints/{endpoint['name']}.json"
        endpoint["price_per_gpu_hour"] = 2.49
    return m


class _Cells(HTMLParser):
    """Collects the matrix's <td class="cell ..."> elements and every id, to check structure, not substrings."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict] = []
        self.ids: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "td" and "cell" in (a.get("class") or "").split():
            self.cells.append(a)


def parse(page: str) -> _Cells:
    parser = _Cells()
    parser.feed(page)
    return parser


def details_of(page: str, anchor: str) -> str:
    start = page.index(f'<details id="{anchor}"')
    return page[start:page.index("</details>", start)]


def test_seed_run_page_has_every_cell_coloured_by_disposition(seed_matrix):
    page = render_html(seed_matrix)
    parsed = parse(page)
    cells = {(c["data-target"]): c for c in parsed.cells}
    assert len(cells) == len(seed_matrix["cells"]) == 40
    denrisi = cells[cell_anchor("denrisi_zimage", "stock")]["class"].split()
    assert {"d-product", "o-missing_node"} <= set(denrisi) and "unexpected" not in denrisi
    # Vast hides the reason; the envelope's saved catalogue proves it, as on the native column.
    assert "o-missing_node" in cells[cell_anchor("denrisi_zimage", "vast-stock")]["class"].split()
    assert "d-passed" in cells[cell_anchor("sdxl_baseline", "custom")]["class"].split()
    # Rows in the plan's order, columns in the endpoints' order.
    rows = re.findall(r'<tr class="row" data-case="([^"]+)"', page)
    assert rows == seed_matrix["cases"]
    heads = re.findall(r'<th class="col" data-endpoint="([^"]+)"', page)
    assert heads == [e["name"] for e in seed_matrix["endpoints"]]
    # Every cell has its details section, reachable by anchor; ids are unique.
    assert len(parsed.ids) == len(set(parsed.ids))
    for cell in seed_matrix["cells"]:
        assert cell_anchor(cell["case"], cell["endpoint"]) in parsed.ids


def test_self_contained_no_network_references(seed_matrix):
    page = render_html(enrich(seed_matrix))
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "default-src 'none'" in page  # the CSP forbids any fetch
    assert "base64" not in page  # image bytes are never embedded
    assert "<style>" in page and page.count("<script>") == 1


def test_evidence_of_missing_node_names_classes_packs_and_repro(seed_matrix):
    page = render_html(seed_matrix)
    section = details_of(page, cell_anchor("denrisi_zimage", "stock"))
    for name in ("ClownsharKSampler_Beta", "Sigmas Rescale", "FluxResolutionNode"):
        assert f"<code>{name}</code>" in section
    assert "comfy node install controlaltai-nodes" in section
    assert "git clone https://github.com/ClownsharkBatwing/RES4LYF" in section
    assert "<b>Remedy:</b> Install ControlAltAI Nodes" in section
    repro = by_cell(seed_matrix)[("denrisi_zimage", "stock")]["repro"]
    assert f'<code class="copy">{repro.replace("&", "&amp;").replace(chr(39), "&#x27;")}</code>' in section
    assert "preflight predicted missing_node (agrees)" in section
    assert " open>" in section.split(">", 1)[0] + ">"  # failures are unfolded


def test_passed_cell_lists_images_and_timings_without_bytes(seed_matrix):
    page = render_html(seed_matrix)
    cell = by_cell(seed_matrix)[("sdxl_baseline", "custom")]
    section = details_of(page, cell_anchor("sdxl_baseline", "custom"))
    image = cell["images"][0]
    assert image["filename"] in section and f"{image['width']}×{image['height']}" in section
    assert f"{image['bytes']} bytes" in section
    assert "total " in section and "queue " in section
    assert " open" not in section.split(">", 1)[0]  # passes stay folded


def test_evidence_text_is_escaped(seed_matrix):
    page = render_html(enrich(seed_matrix))
    assert EVIL not in page and "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    section = details_of(page, cell_anchor("denrisi_zimage", "vast-stock"))
    assert '<pre class="traceback">' in section and "RuntimeError: CUDA &lt;error&gt;" in section
    assert "raised <code>RuntimeError</code>: CUDA &lt;error&gt; in kernel" in section
    # The only script element is ours.
    assert parse(page).tags.count("script") == 1


def test_verdict_banner_blockers_remedies_waived_undecided(seed_matrix):
    page = render_html(enrich(seed_matrix))
    banner = page[page.index('<section id="verdict"'):page.index("</section>", page.index('<section id="verdict"'))]
    assert 'class="verdict verdict-nogo"' in banner and '<div class="decision">NO-GO</div>' in banner
    assert "NO-GO: stock vs custom, 3 required cases: 1 blocker" in banner
    assert "<li>install RES4LYF: git clone RES4LYF — provides Sigmas Rescale</li>" in banner
    assert "<li>install ControlAltAI Nodes: comfy node install controlaltai-nodes</li>" in banner
    assert "ticket OPS-12 (until 2027-01-01)" in banner
    assert "the baseline&#x27;s cell was unreachable" in banner
    assert "p95_seconds" in banner  # over budget
    # The banner comes before the matrix.
    assert page.index('id="verdict"') < page.index('id="matrix"')
    for decision, css in (("GO", "verdict-go"), ("UNDECIDABLE", "verdict-undecidable")):
        other = enrich(seed_matrix)
        other["verdict"].update(decision=decision, blockers=[])
        assert f'class="verdict {css}"' in render_html(other)


def test_unexpected_cell_marked_with_expected(seed_matrix):
    page = render_html(enrich(seed_matrix))
    cells = {c["data-target"]: c for c in parse(page).cells}
    smoke = cells[cell_anchor("smoke_invert", "vast-custom")]
    assert "unexpected" in smoke["class"].split() and smoke["data-ok"] == "0"
    assert sum(c["data-ok"] == "0" for c in cells.values()) == 1
    assert '<div class="expected">expected passed</div>' in page
    assert "1</b> not as expected" in page


def test_stats_and_cost_per_cell(seed_matrix):
    page = render_html(enrich(seed_matrix))
    section = details_of(page, cell_anchor("sdxl_baseline", "custom"))
    assert "5/5 = 100% (95% Wilson 57–100%)" in section
    assert "p50 " in section and "p95 " in section
    assert "cold (first)" in section and "warm" in section
    assert "$0.0017/image" in section and "$1.72 per 1,000 images" in section
    assert "4/5 passed" in page  # repeated cells show their rate in the matrix too (custom's Denrisi)


def test_drift_section(seed_matrix):
    page = render_html(enrich(seed_matrix))
    drift = page[page.index('<section id="drift"'):]
    drift = drift[:drift.index("</section>")]
    assert "20261101T000000Z-1" in drift
    assert "New failures (1)" in drift and "Fixed (1)" in drift and "Inherited failures (1)" in drift
    assert "<b>smoke_invert</b> on vast-custom: passed → " in drift
    assert "<code>ImageBlur</code>" in drift and "<code>FluxResolutionNode</code>" in drift
    assert "<th>class KSampler changed</th><td><code>+noise_mode</code>, <code>sampler_name</code>" in drift
    assert "<th>models removed from loras</th><td><code>gone_lora.safetensors</code>" in drift
    assert "<code>new_model.safetensors</code>" in drift
    assert "0.3.63 → 0.3.64" in drift
    assert "<h3>Endpoint custom</h3><p>no change</p>" in drift


def test_fingerprint_and_price_per_endpoint(seed_matrix):
    page = render_html(enrich(seed_matrix))
    assert '<a href="fingerprints/stock.json">' in page and "$2.49/GPU-hour" in page


def test_old_run_without_added_keys_and_empty_run(seed_matrix):
    old = copy.deepcopy(seed_matrix)
    for key in ("verdict", "drift", "case_details", "waivers"):
        old.pop(key, None)
    for cell in old["cells"]:
        cell.pop("stats", None)
        cell.pop("cost", None)
    page = render_html(old)
    assert 'id="verdict"' not in page and 'id="drift"' not in page and len(parse(page).cells) == 40
    empty = {"schema_version": 1, "run": {"id": "r1", "started": "2026-01-01T00:00:00+00:00", "finished": None,
                                          "status": "running", "harness_version": "0.1.0"},
             "outcomes": seed_matrix["outcomes"], "cases": [], "endpoints": [], "cells": []}
    page = render_html(empty)
    assert "No cells yet" in page and "running" in page and "r1" in page
    assert parse(page).cells == []
    # Planned but nothing finished: the grid is there, every cell a placeholder.
    planned = dict(empty, cases=seed_matrix["cases"], endpoints=seed_matrix["endpoints"])
    assert len(parse(render_html(planned)).cells) == 40
    assert "0 cells" in render_html(planned)
