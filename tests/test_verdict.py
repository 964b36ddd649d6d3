"""The go/no-go decision over matrices: blockers with remedies, waivers and their expiry, undecidable
baselines, budgets. The end-to-end migration between the reference profiles is in test_plugin.py."""

from __future__ import annotations

import datetime as dt

import pytest

from harness.errors import ConfigError
from harness.run.outcomes import Outcome
from harness.report.verdict import Budgets, Waiver, decide, remedies

TODAY = dt.date(2026, 11, 26)
RES4LYF = {"name": "RES4LYF", "title": "RES4LYF", "url": "https://github.com/ClownsharkBatwing/RES4LYF",
           "registry": None, "install": "git clone https://github.com/ClownsharkBatwing/RES4LYF ComfyUI/custom_nodes/RES4LYF"}


def cell(case: str, endpoint: str, outcome: str = "passed", **evidence) -> dict:
    return {"case": case, "endpoint": endpoint, "outcome": outcome, "disposition": Outcome(outcome).disposition.value,
            "evidence": {"message": evidence.pop("message", ""), **evidence}}


def matrix(*cells: dict, cases=("a", "b"), details=None) -> dict:
    return {"run": {"id": "r1"}, "cases": list(cases), "case_details": details or {},
            "endpoints": [{"name": "old"}, {"name": "new"}], "cells": list(cells)}


def test_go_when_everything_the_baseline_runs_runs_on_the_candidate():
    m = matrix(cell("a", "old"), cell("a", "new"), cell("b", "old", "missing_node"), cell("b", "new", "missing_node"))
    v = decide(m, "old", "new", today=TODAY)
    assert (v["decision"], v["exit_code"], v["passed"], v["blockers"]) == ("GO", 0, ["a"], [])
    assert v["baseline_failures"] == [{"case": "b", "baseline_outcome": "missing_node"}]


def test_a_product_failure_on_the_candidate_blocks_with_the_pack_to_install():
    m = matrix(cell("a", "old"), cell("a", "new", "missing_node", message="no ClownsharKSampler_Beta",
                                      missing_classes=["ClownsharKSampler_Beta", "Sigmas Rescale"],
                                      packages={"ClownsharKSampler_Beta": [RES4LYF], "Sigmas Rescale": [RES4LYF]}),
               cell("b", "old"), cell("b", "new"))
    v = decide(m, "old", "new", today=TODAY)
    assert (v["decision"], v["exit_code"]) == ("NO-GO", 10)
    [blocker] = v["blockers"]
    assert (blocker["case"], blocker["baseline_outcome"], blocker["candidate_outcome"]) == ("a", "passed", "missing_node")
    [remedy] = blocker["remedies"]  # one pack, both classes
    assert remedy["kind"] == "install_pack" and remedy["classes"] == ["ClownsharKSampler_Beta", "Sigmas Rescale"]
    assert RES4LYF["url"] in remedy["text"] and RES4LYF["install"] in remedy["text"]


def test_model_and_input_remedies_name_the_folder_and_the_input():
    c = cell("a", "new", "missing_model",
             missing_models=[{"node_id": "4", "node_type": "CheckpointLoaderSimple", "input": "ckpt_name",
                              "file": "sd_xl_base_1.0.safetensors", "folder": "checkpoints"}],
             node_errors=[{"node_id": "3", "node_type": "KSampler", "type": "value_not_in_list", "input": "sampler_name",
                           "details": "sampler_name: 'foo' not in [...]", "received_value": "foo", "outcome": "invalid_input"}])
    texts = [r["text"] for r in remedies(c)]
    assert texts[0] == "add sd_xl_base_1.0.safetensors to models/checkpoints/ (node 4 CheckpointLoaderSimple.ckpt_name)"
    assert texts[1].startswith("change node 3 (KSampler) input sampler_name")


def test_infra_failures_on_the_candidate_block_unless_waived_and_expired_waivers_stop_waiving():
    m = matrix(cell("a", "old"), cell("a", "new", "unreachable", message="cannot connect"), cell("b", "old"), cell("b", "new"))
    assert decide(m, "old", "new", today=TODAY)["blockers"][0]["remedies"][0]["kind"] == "fix_endpoint"
    live = Waiver("a", "new", "endpoint being redeployed", dt.date(2026, 11, 30))
    v = decide(m, "old", "new", waivers=[live], today=TODAY)
    assert (v["decision"], v["waived"][0]["outcome"], v["waived"][0]["expires"]) == ("GO", "unreachable", "2026-11-30")
    assert decide(m, "old", "new", waivers=[live], today=dt.date(2026, 11, 30))["decision"] == "GO"  # the last day holds
    expired = decide(m, "old", "new", waivers=[live], today=dt.date(2026, 12, 1))
    assert (expired["decision"], expired["waived"]) == ("NO-GO", [])


def test_a_baseline_that_could_not_run_makes_the_verdict_undecidable():
    m = matrix(cell("a", "old", "unreachable", message="cannot connect to old"), cell("a", "new"), cell("b", "old"), cell("b", "new"))
    v = decide(m, "old", "new", today=TODAY)
    assert (v["decision"], v["exit_code"]) == ("UNDECIDABLE", 11)
    assert v["undecided"] == [{"case": "a", "reason": "baseline old unreachable: cannot connect to old"}]


def test_a_blocker_outranks_an_undecided_case_and_a_missing_candidate_cell_blocks():
    m = matrix(cell("a", "old", "unreachable"), cell("a", "new"), cell("b", "old"))
    v = decide(m, "old", "new", today=TODAY)
    assert v["decision"] == "NO-GO" and v["blockers"][0]["case"] == "b" and v["blockers"][0]["candidate_outcome"] is None


def test_cases_not_required_do_not_count():
    m = matrix(cell("a", "old"), cell("a", "new", "execution_error"), cell("b", "old"), cell("b", "new"),
               details={"a": {"required": False}})
    assert decide(m, "old", "new", today=TODAY)["decision"] == "GO"


def test_budgets_block_a_passing_cell_that_misses_them_and_an_unmeasured_budget_is_not_met():
    fast = {**cell("a", "new"), "stats": {"success_rate": 0.97, "latency": {"total": {"p95": 2.0}}}, "cost": None}
    m = matrix(cell("a", "old"), fast, cell("b", "old"), {**fast, "case": "b"})
    assert decide(m, "old", "new", budgets=Budgets(success_rate=0.95, p95_seconds=3), today=TODAY)["decision"] == "GO"
    v = decide(m, "old", "new", budgets=Budgets(success_rate=0.99), today=TODAY)
    assert v["decision"] == "NO-GO" and "success_rate 0.97 (budget 0.99)" in v["blockers"][0]["message"]
    v = decide(m, "old", "new", budgets=Budgets(cost_per_image=0.01), today=TODAY)
    assert v["budgets"][0] == {"case": "a", "metric": "cost_per_image", "limit": 0.01, "value": None, "ok": False}


def test_unknown_endpoints_are_a_one_line_error():
    with pytest.raises(ConfigError, match=r"--candidate 'nope': no such endpoint in run r1 \(endpoints: old, new\)"):
        decide(matrix(), "old", "nope")
