"""The smaller traps of a new user, each reproduced end to end: the remedy hint names every pack, input
errors show the value and the limit, a single attempt shows no success rate, a failed cell's report is
a few lines (terminal, JUnit, Allure, with readable parameters and real durations), ``-x`` cancels the
cells not started, a partial run is no drift baseline, and ``-k`` takes a cell's test id.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import httpx

from conftest import cells, matrix
from harness.reference.profile import Profile
from harness.reference.server import ReferenceServer


def smoke_cases(*ids: str, **expect: str) -> str:
    """A case file of smoke_invert under the given ids; ``expect`` maps an id to its expected outcome.

    Each case's image is another width: identical prompts would be served from the server's cache.
    """
    return "cases:\n" + "".join(f"  - id: {i}\n    workflow: ../workflows/smoke_invert.json\n"
                                f"    overrides: {{inputs: [{{class: EmptyImage, input: width, value: {64 + n}}}]}}\n"
                                f"    expect: {expect.get(i, 'passed')}\n" for n, i in enumerate(ids))


def test_the_remedy_hint_installs_every_pack(project):
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "denrisi_zimage@stock").assert_outcomes(passed=1)
    hint = cells(matrix(project))[("denrisi_zimage", "stock")]["evidence"]["hint"]
    assert "RES4LYF" in hint and "ControlAltAI" in hint
    md = (project.path / "reports/latest/matrix.md").read_text()
    assert "- hint: Install ControlAltAI Nodes (comfy node install controlaltai-nodes); Install RES4LYF (" in md


def test_an_input_error_shows_the_value_and_the_limit_and_one_attempt_no_rate(project):
    (project.path / "cases/zero.yaml").write_text(
        "cases:\n  - id: zero_width\n    workflow: ../workflows/smoke_invert.json\n"
        "    overrides: {inputs: [{class: EmptyImage, input: width, value: 0}]}\n    expect: invalid_input\n")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "zero_width@stock").assert_outcomes(passed=1)
    md = (project.path / "reports/latest/matrix.md").read_text()
    assert "- node 1 (EmptyImage) `width`: Value 0 smaller than min of 1 (value_smaller_than_min)" in md
    html = (project.path / "reports/latest/report.html").read_text()
    assert "Value 0 smaller than min of 1 (value_smaller_than_min)" in html
    assert "0/1" not in html and "Wilson" not in html and "Reliability" not in md


def test_a_failed_cell_is_a_few_lines_in_terminal_junit_and_allure(project):
    slow = Profile.builtin("stock").replace(class_seconds={"ImageInvert": 0.3})
    (project.path / "cases/seed.yaml").write_text(smoke_cases("a", "b", "c", b="missing_node"))
    with ReferenceServer(slow) as srv:
        result = project.runpytest_subprocess("-p", "no:cacheprovider", f"--endpoint=ref={srv.url}", "--junitxml=junit.xml",
                                              "--alluredir=allure")
    result.assert_outcomes(passed=2, failed=1)
    run_dir = (project.path / "reports/latest").resolve()
    expected = ["b on ref: passed (expected missing_node)", f"report: {run_dir}/report.html#cell-b--ref"]
    result.stdout.fnmatch_lines(["*_ test_compat[[]b@ref[]] _*", *expected])
    assert "workflow" not in result.stdout.str() and "Cell(" not in result.stdout.str()

    [failure] = ET.parse(project.path / "junit.xml").getroot().iter("failure")
    assert failure.text.splitlines() == expected
    assert failure.get("message") == "\n".join(expected)

    results = [json.loads(p.read_text()) for p in (project.path / "allure").glob("*-result.json")]
    assert sorted(next(p["value"] for p in r["parameters"] if p["name"] == "compat_cell") for r in results) == ["'a@ref'", "'b@ref'", "'c@ref'"]
    # The outcome is shown but not part of the history id: a cell that changes outcome stays one test.
    assert all(next(p for p in r["parameters"] if p["name"] == "outcome")["excluded"] for r in results)
    assert all(r["stop"] - r["start"] >= 300 for r in results), [r["stop"] - r["start"] for r in results]
    [failed] = [r for r in results if r["status"] == "failed"]
    assert failed["statusDetails"]["trace"].splitlines() == expected


def test_x_cancels_the_cells_not_started(project):
    slow = Profile.builtin("stock").replace(class_seconds={"ImageInvert": 0.5})
    ids = [f"s{i}" for i in range(8)]
    (project.path / "cases/seed.yaml").write_text(smoke_cases(*ids, s0="missing_node"))
    with ReferenceServer(slow) as srv:
        (project.path / "endpoints.yaml").write_text(f"endpoints:\n  ref: {{url: '{srv.url}', max_concurrency: 1}}\n")
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml", "-x")
        time.sleep(1.0)  # anything still submitted would reach the server now
        prompts = len(httpx.get(f"{srv.url}/history").json())
    result.assert_outcomes(failed=1)
    assert prompts <= 2, prompts  # s0, and at most the one that had started when it failed
    data = matrix(project)
    # Not s1..s7 as failures: before, the engine was closed under them and each became a protocol_error.
    assert [c["case"] for c in data["cells"]] == ["s0"]
    assert data["run"]["selection"].endswith("the session stopped early")


def test_a_partial_run_is_no_drift_baseline(project):
    (project.path / "cases/seed.yaml").write_text(smoke_cases("a", "b"))
    with ReferenceServer("stock") as srv:
        def run(*args: str) -> dict:
            project.runpytest_subprocess(f"--endpoint=ref={srv.url}", "--compare-to=previous", *args)  # --lf needs the cache
            return matrix(project)

        full = run()
        time.sleep(1.1)  # run ids are to the second
        partial = run("-k", "a@ref")
        assert partial["run"]["selection"] == "1 of 2 cells"
        assert partial["drift"]["compared_to"]["run"] == full["run"]["id"]
        time.sleep(1.1)
        again = run("--lf")  # nothing failed: --lf runs all, a full run
        assert again["run"]["selection"] is None
        assert again["drift"]["compared_to"]["run"] == full["run"]["id"]  # not the partial run in between


def test_k_takes_a_cells_test_id(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-k", "smoke_invert@stock or sdxl_baseline@runpod-custom")
    result.assert_outcomes(passed=2)
    # The ids themselves are unchanged: they are the names in users' JUnit and Allure history.
    result.stdout.fnmatch_lines(["*test_compat[[]smoke_invert@stock[]] PASSED*", "*test_compat[[]sdxl_baseline@runpod-custom[]] PASSED*"])


def test_a_partial_run_under_xdist_is_marked_too(project):
    # The xdist controller collects nothing itself: it goes by the options that select.
    project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "1", "-k", "smoke_invert@stock").assert_outcomes(passed=1)
    assert matrix(project)["run"]["selection"] == "-k"
