"""Pre-migration go/no-go and nightly drift, end to end: whole runs against the reference endpoints.

A migration between the reference profiles: ``custom`` (RES4LYF + ControlAltAI-Nodes) to ``stock``
blocks on Denrisi with both packs as remedies; ``stock`` to ``custom`` is GO; waivers hold until they
expire. Drift: a class removed from the endpoint between two nights is a disappeared class and a new
failure; restored, the cell is fixed.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import cells, matrix
from harness.reference.profile import Profile
from harness.reference.server import ReferenceServer


def comfy_compat(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_custom_to_stock_is_no_go_with_both_packs_as_remedies(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--baseline=custom", "--candidate=stock")
    assert result.ret == 10
    verdict = matrix(project)["verdict"]
    assert (verdict["decision"], verdict["baseline"], verdict["candidate"]) == ("NO-GO", "custom", "stock")
    assert verdict["passed"] == ["smoke_invert", "sdxl_baseline", "sd15_ui", "sd15_api"]
    [blocker] = verdict["blockers"]
    assert (blocker["case"], blocker["candidate_outcome"]) == ("denrisi_zimage", "missing_node")
    packs = {r["pack"]["url"]: r["classes"] for r in blocker["remedies"] if r["kind"] == "install_pack"}
    assert packs == {"https://github.com/ClownsharkBatwing/RES4LYF": ["Sigmas Rescale", "ClownsharKSampler_Beta"],
                     "https://github.com/gseth/ControlAltAI-Nodes": ["FluxResolutionNode"]}
    result.stdout.fnmatch_lines(["verdict: NO-GO for moving from custom to stock (5 required cases): 1 blocking (exit 10)",
                                 "*remedy: install RES4LYF (https://github.com/ClownsharkBatwing/RES4LYF)*"])
    html = (project.path / "reports/latest/report.html").read_text()
    assert "NO-GO" in html and "ControlAltAI-Nodes" in html


def test_stock_to_custom_is_go(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--baseline=stock", "--candidate=custom")
    assert result.ret == 0
    verdict = matrix(project)["verdict"]
    assert (verdict["decision"], verdict["blockers"], verdict["passed"]) == ("GO", [], ["smoke_invert", "sdxl_baseline", "sd15_ui", "sd15_api"])
    # The same run against a latency budget no cell can meet, and one no run can measure (no price).
    run_dir = str(project.path / "reports/latest")
    slow = comfy_compat("verdict", run_dir, "--baseline", "stock", "--candidate", "custom", "--budget", "p95_seconds=0.000001", cwd=project.path)
    assert slow.returncode == 10 and "over budget: p95_seconds" in slow.stdout
    unpriced = comfy_compat("verdict", run_dir, "--baseline", "stock", "--candidate", "custom", "--budget", "cost_per_image=1", cwd=project.path)
    assert unpriced.returncode == 10 and "cost_per_image unknown (budget 1)" in unpriced.stdout
    typo = comfy_compat("verdict", run_dir, "--baseline", "stock", "--candidate", "custom", "--budget", "p59=1", cwd=project.path)
    assert typo.returncode == 4 and typo.stderr.strip() == (
        "comfy-compat: --budget 'p59=1': metric must be one of success_rate, p95_seconds, cost_per_image")


def test_a_waiver_holds_until_it_expires(project):
    seed = project.path / "cases/seed.yaml"
    seed.write_text(seed.read_text() + "\nwaivers:\n  - {case: denrisi_zimage, endpoint: stock, "
                    "reason: RES4LYF image rebuild in progress, expires: 2999-12-31}\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--baseline=custom", "--candidate=stock")
    assert result.ret == 0
    data = matrix(project)
    assert data["verdict"]["decision"] == "GO"
    assert data["verdict"]["waived"] == [{"case": "denrisi_zimage", "endpoint": "stock", "reason": "RES4LYF image rebuild in progress",
                                          "expires": "2999-12-31", "outcome": "missing_node"}]
    # The same run judged the day after the waiver's last day: it no longer waives.
    run_dir = project.path / "reports/latest"
    last_day = comfy_compat("verdict", str(run_dir), "--baseline", "custom", "--candidate", "stock", "--today", "2999-12-31", cwd=project.path)
    assert last_day.returncode == 0, last_day.stderr
    expired = comfy_compat("verdict", str(run_dir), "--baseline", "custom", "--candidate", "stock", "--today", "3000-01-01", cwd=project.path)
    assert expired.returncode == 10
    assert "NO-GO for moving from custom to stock" in expired.stdout and "remedy: install RES4LYF" in expired.stdout
    assert matrix(project)["verdict"]["decision"] == "GO"  # printed only: the run's files are as the run wrote them
    written = comfy_compat("verdict", str(run_dir), "--baseline", "custom", "--candidate", "stock", "--today", "3000-01-01",
                           "--write", cwd=project.path)
    assert written.returncode == 10
    assert matrix(project)["verdict"]["decision"] == "NO-GO"  # --write: into the run


def test_an_unreachable_baseline_is_undecidable(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "smoke", "--endpoint=old=http://127.0.0.1:9",
                                          "--endpoint=new=http://127.0.0.1:9", "--baseline=old", "--candidate=new")
    assert result.ret == 11
    verdict = matrix(project)["verdict"]
    assert verdict["decision"] == "UNDECIDABLE" and verdict["undecided"][0]["case"] == "smoke_invert"


def test_a_verdict_naming_an_unknown_endpoint_is_a_usage_error(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--baseline=custom", "--candidate=stok")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--candidate 'stok': no such endpoint (endpoints: stock, custom, runpod-stock*"])


def nightly(project, profile: Profile) -> pytest.RunResult:
    server = ReferenceServer(profile).start()
    try:
        return project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "denrisi or smoke", f"--endpoint=ref={server.url}",
                                            "--compare-to=previous")
    finally:
        server.stop()


def test_drift_a_class_disappears_then_comes_back(project):
    custom = Profile.builtin("custom")
    nightly(project, custom)
    first = matrix(project)
    assert first["drift"] is None  # no earlier run to compare with

    nightly(project, custom.replace(remove_classes=("FluxResolutionNode",)))
    second = matrix(project)
    drift = second["drift"]
    assert drift["compared_to"]["run"] == first["run"]["id"]
    assert drift["endpoints"]["ref"]["classes_disappeared"] == ["FluxResolutionNode"]
    assert [(c["case"], c["outcome"], c["previous"]) for c in drift["cells"]["new_failures"]] == [("denrisi_zimage", "missing_node", "passed")]
    assert cells(second)[("denrisi_zimage", "ref")]["evidence"]["missing_classes"] == ["FluxResolutionNode"]

    diff = comfy_compat("diff", str(project.path / "reports" / first["run"]["id"]), str(project.path / "reports" / second["run"]["id"]),
                        "--write", cwd=project.path)
    assert diff.returncode == 1  # a new product failure: what fails a nightly job
    assert "classes disappeared: FluxResolutionNode" in diff.stdout

    nightly(project, custom)
    drift = matrix(project)["drift"]
    assert drift["endpoints"]["ref"]["classes_appeared"] == ["FluxResolutionNode"]
    assert [(c["case"], c["outcome"], c["previous"]) for c in drift["cells"]["fixed"]] == [("denrisi_zimage", "passed", "missing_node")]
    assert drift["cells"]["new_failures"] == []


def test_a_compare_to_without_a_run_is_a_usage_error_before_any_cell(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--compare-to=reports/nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*reports/nope: no matrix.json here (expected a reports/<run-id> directory)"])
    assert not (project.path / "reports/latest").exists()
