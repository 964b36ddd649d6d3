"""Repeats and scale, end to end: a 100-repeat run against a reference endpoint with injected failures
reports an interval containing the injected rate with latency and cost figures; ``pytest -n 2`` gives
the same matrix as one process; ``--cold-start`` times the endpoint's first request apart."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import cells, matrix
from harness.reference.profile import Injection, Latency, Profile
from harness.reference.server import ReferenceServer
from harness.run.stats import wilson_interval

RATE_LIMITED, EXECUTION_ERROR = 0.03, 0.01


@pytest.fixture
def flaky_endpoint():
    """The stock profile behind a proxy refusing 3% of submissions with 429 and 1% of prompts failing."""
    profile = Profile.builtin("stock").replace(
        inject=Injection(rate_limited=RATE_LIMITED, execution_error=EXECUTION_ERROR), seed=7, capacity=8,
        latency=Latency("lognormal", 0.02, 0.01))
    server = ReferenceServer(profile).start()
    yield server.url
    server.stop()


def test_a_100_repeat_run_reports_the_injected_rates_latency_and_cost(project, flaky_endpoint):
    (project.path / "endpoints.yaml").write_text(
        f"endpoints:\n  flaky:\n    url: {flaky_endpoint}\n    max_concurrency: 8\n    price_per_gpu_hour: 2.5\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "smoke", "--endpoints-file=endpoints.yaml", "--repeat=100")
    result.assert_outcomes(passed=1)  # the typical outcome of the cell is still `passed`
    result.stdout.fnmatch_lines(["smoke_invert@flaky: 9?/100 passed (95% CI *), p95 * s, $*/image"])
    data = matrix(project)
    assert data["run"]["repeat"] == 100
    cell = cells(data)[("smoke_invert", "flaky")]
    stats = cell["stats"]
    assert stats["attempts"] == len(cell["attempts"]) == 100
    assert sum(stats["histogram"].values()) == 100 and set(stats["histogram"]) <= {"passed", "rate_limited", "execution_error"}
    assert stats["histogram"].get("rate_limited", 0) >= 1 and stats["histogram"].get("execution_error", 0) >= 1
    expected_success = (1 - RATE_LIMITED) * (1 - EXECUTION_ERROR)
    lo, hi = stats["wilson95"]
    assert lo <= expected_success <= hi
    for outcome, rate in (("rate_limited", RATE_LIMITED), ("execution_error", EXECUTION_ERROR * (1 - RATE_LIMITED))):
        low, high = wilson_interval(stats["histogram"].get(outcome, 0), 100)
        assert low <= rate <= high, outcome
    latency = stats["latency"]
    assert 0 < latency["total"]["p50"] <= latency["total"]["p95"] <= latency["total"]["max"]
    assert latency["execution"]["p50"] > 0 and latency["queue"] is not None
    # Passed repeats' outputs go once checked: only the cell's own image stays (in an attempt folder if not the first's).
    outputs = project.path / "reports/latest/cells/smoke_invert@flaky/outputs"
    assert len(list(outputs.rglob("*.png"))) == 1 and len(list(outputs.glob("attempt-*"))) <= 1
    cost = cell["cost"]
    assert cost["images"] == stats["passed"] and cost["per_image"] == pytest.approx(cost["billed_seconds"] * 2.5 / 3600 / cost["images"])
    assert data["endpoints"][0]["cost"]["per_1000_images"] == pytest.approx(cost["per_1000_images"])
    md = (project.path / "reports/latest/matrix.md").read_text()
    assert "$/image" in md and "p95" in md
    assert f"| **all cases** | flaky | | | | | | ${cost['per_image']:.4f} |" in md
    html = (project.path / "reports/latest/report.html").read_text()
    assert f"<b>${cost['per_image']:.4f}/image</b>" in html


def projection(data: dict) -> list[tuple]:
    """What a run found, without what differs between two runs of it (times, ids, ports)."""
    return [(c["case"], c["endpoint"], c["outcome"], c["expected"], c["ok"], c["predicted"], c["partial"],
             tuple(c["evidence"].get("missing_classes", ())), tuple((i.get("width"), i.get("height")) for i in c["images"]))
            for c in data["cells"]]


def test_xdist_workers_write_one_matrix_equal_to_a_single_process_run(project):
    project.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=40)
    single = matrix(project)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=40)
    merged = matrix(project)
    assert merged["run"]["id"] != single["run"]["id"] and merged["run"]["status"] == "complete"
    assert sorted((project.path / "reports/latest/parts").glob("*.json")) != []  # the workers' parts were merged
    assert merged["cases"] == single["cases"]
    assert [e["name"] for e in merged["endpoints"]] == [e["name"] for e in single["endpoints"]]
    assert projection(merged) == projection(single)
    result.stdout.fnmatch_lines(["40 cells: 4 missing_node, 36 passed"])


def test_cold_start_waits_the_idle_period_and_times_the_first_request_apart(project, reference_endpoint):
    url = reference_endpoint().url
    idle = 3.0
    (project.path / "endpoints.yaml").write_text(
        f"endpoints:\n  ref:\n    url: {url}\n    cold_start: {{idle: {idle}}}\n")
    launched_ms = time.time() * 1000
    # A seeded case: its warm attempts vary the seed and really run (smoke_invert's would be cache hits).
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "sdxl", "--endpoints-file=endpoints.yaml",
                                          "--repeat=4", "--cold-start")
    result.assert_outcomes(passed=1)
    cell = cells(matrix(project))[("sdxl_baseline", "ref")]
    first, *rest = cell["attempts"]
    assert first["cold"] and not any(a["cold"] for a in rest)
    assert cell["stats"]["cold"] == first["timings"] and cell["stats"]["warm"] is not None
    # What the server saw: nothing before the idle period, then the cold prompt alone, then the rest.
    spans = sorted(
        tuple(m[1]["timestamp"] for m in entry["status"]["messages"] if m[0] in ("execution_start", "execution_success"))
        for entry in httpx.get(f"{url}/history").json().values()
    )
    assert len(spans) == 4
    (cold_start, cold_end), *warm = spans
    assert cold_start >= launched_ms + idle * 1000
    assert all(start >= cold_end for start, _ in warm)
