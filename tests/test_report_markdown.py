"""matrix.md and the step summary from a real seed run, with and without the keys added this session."""

from __future__ import annotations

import copy

import pytest

from harness.report.markdown import render_markdown, step_summary
from test_report_html import EVIL, enrich, run_seed


@pytest.fixture(scope="module")
def seed_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_seed(tmp_path_factory.mktemp("seed-run"))


def old_form(matrix: dict) -> dict:
    """The document as a run before verdict/drift/stats/cost existed would have written it."""
    old = copy.deepcopy(matrix)
    for key in ("verdict", "drift"):
        old.pop(key, None)
    for cell in old["cells"]:
        cell.pop("stats", None)
        cell.pop("cost", None)
    return old


def test_existing_output_kept(seed_matrix):
    md = render_markdown(old_form(seed_matrix))
    assert md == render_markdown(seed_matrix)  # single attempts, no price: nothing added
    assert md.startswith(f"# Compatibility matrix — run {seed_matrix['run']['id']}\n")
    assert ("| case | stock | runpod-stock | vast-stock | modal-stock | custom | runpod-custom | vast-custom | modal-custom |"
            in md)
    assert ("| denrisi_zimage | ❌ missing_node | ❌ missing_node | ❌ missing_node | ❌ missing_node | ✅ passed | ✅ passed "
            "| ✅ passed | ✅ passed |" in md)
    assert "## Failures and remedies" in md and "### denrisi_zimage on stock: missing_node" in md
    assert "comfy node install controlaltai-nodes" in md and "```sh\ncurl " in md
    for absent in ("## Verdict", "## Drift", "## Reliability and cost"):
        assert absent not in md


def test_verdict_on_top_with_remedies_and_waivers(seed_matrix):
    md = render_markdown(enrich(seed_matrix))
    assert md.index("## Verdict: **NO-GO**") < md.index("| case |")
    assert "NO-GO: stock vs custom, 3 required cases: 1 blocker" in md
    assert "1. **denrisi_zimage**: baseline passed, candidate missing_node — 3 node classes are not installed" in md
    assert "   - install RES4LYF: git clone RES4LYF — provides Sigmas Rescale" in md
    assert "   - install ControlAltAI Nodes: comfy node install controlaltai-nodes" in md
    assert "- sdxl_baseline on stock: missing_model — ticket OPS-12 (until 2027-01-01)" in md
    assert "- smoke_invert: the baseline's cell was unreachable" in md


def test_reliability_and_cost_columns(seed_matrix):
    md = render_markdown(enrich(seed_matrix))
    assert "| case | endpoint | success | 95% interval | p50 | p95 | cold | $/image | $/1,000 |" in md
    row = next(line for line in md.splitlines() if line.startswith("| denrisi_zimage | custom |"))
    assert "4/5 (80%)" in row and "38–96%" in row and "$0.0017" in row and "$1.72" in row
    failed = next(line for line in md.splitlines() if line.startswith("| denrisi_zimage | stock |"))
    assert "0/5 (0%)" in failed and failed.endswith("| – | – |")  # no image, no cost
    # A price alone (single attempts) is enough to show the table.
    priced = copy.deepcopy(seed_matrix)
    priced["cells"][0]["cost"] = {"billed_seconds": 1.0, "images": 2, "per_image": 0.0005, "per_1000_images": 0.5,
                                  "price_per_gpu_hour": 1.8, "basis": "execution"}
    assert "## Reliability and cost" in render_markdown(priced)


def test_drift_section(seed_matrix):
    md = render_markdown(enrich(seed_matrix))
    drift = md[md.index("## Drift"):md.index("## Failures and remedies")]
    assert "Compared to run 20261101T000000Z-1 (`reports/20261101T000000Z-1`)." in drift
    assert "New failures:\n\n- smoke_invert on vast-custom: passed → server_error" in drift
    assert "Fixed:\n\n- sdxl_baseline on custom: missing_model → passed" in drift
    assert "Inherited failures:\n\n- denrisi_zimage on stock: missing_node → missing_node" in drift
    assert "- classes appeared: `ImageBlur`" in drift and "- classes disappeared: `FluxResolutionNode`" in drift
    assert "- class KSampler changed: `+noise_mode`, `sampler_name`" in drift
    assert "- models removed from loras: `gone_lora.safetensors`" in drift
    assert "- models added to checkpoints: `new_model.safetensors`" in drift
    assert "- comfyui_version: `0.3.63 → 0.3.64`" in drift
    assert "Endpoint **custom**: no change" in drift


def test_step_summary_is_short_and_has_verdict_matrix_failures(seed_matrix):
    m = enrich(seed_matrix)
    m["cells"][0]["evidence"]["message"] = "boom " * 2000  # a huge message is cut
    m["cells"][0]["evidence"]["traceback"] = ["frame\n"] * 5000
    m["cells"][0]["outcome"] = "execution_error"
    summary = step_summary(m, report_link="https://ci.example/artifacts/report.html")
    assert summary.startswith("## Compatibility matrix — run ")
    assert summary.index("### Verdict: **NO-GO**") < summary.index("| case |") < summary.index("### Failures")
    assert "   - install RES4LYF: git clone RES4LYF — provides Sigmas Rescale" in summary
    assert "- **smoke_invert** on vast-custom: server_error (expected passed) — HTTP 502 from the load balancer" in summary
    assert "_remedy: Retry later._" in summary
    assert "frame" not in summary and "curl " not in summary  # no tracebacks, no repro commands
    assert max(len(line) for line in summary.splitlines()) < 1000
    assert "…" in summary
    # Endpoint text cannot inject HTML into a PR comment.
    assert EVIL not in summary and "&lt;script&gt;" in summary
    assert "Drift since run 20261101T000000Z-1: 1 new failures, 1 fixed." in summary
    assert summary.rstrip().endswith("Full report: https://ci.example/artifacts/report.html")
    assert len(summary) < len(render_markdown(m)) / 2


def test_empty_run():
    empty = {"schema_version": 1, "run": {"id": "r1", "started": "2026-01-01T00:00:00+00:00", "finished": None,
                                          "status": "running", "harness_version": "0.1.0"},
             "outcomes": {}, "cases": [], "endpoints": [], "cells": []}
    md = render_markdown(empty)
    assert "run r1" in md and "running. 0 cells" in md and "| case |" not in md
    assert "0 cells" in step_summary(empty)
