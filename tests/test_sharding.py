"""Scaling out: ``--shard=I/N`` runs merged by ``comfy-compat merge`` read as one run (matrix, verdict, drift,
repro paths), and under ``pytest -n 2`` every worker keeps its share in flight within its part of each
endpoint's max_concurrency."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import matrix
from harness.report.cells_log import read_cells
from harness.reference.profile import Latency, Profile
from harness.reference.server import ReferenceServer
from harness.run.sharing import slots, spread
from test_small_traps import smoke_cases


def found(data: dict) -> list[tuple]:
    """What a run found per cell, without what differs between two runs of it (times, ids, ports)."""
    return [(c["case"], c["endpoint"], c["outcome"], c["expected"], c["ok"],
             re.sub(r"127\.0\.0\.1:\d+", "HOST", str(c["evidence"].get("message") or ""))) for c in data["cells"]]


def merge(project: pytest.Pytester, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "merge", *args], cwd=project.path,
                          capture_output=True, text=True, timeout=120)


def test_two_shards_merged_are_the_run_they_split(project):
    verdict = ("--baseline=custom", "--candidate=stock")
    assert project.runpytest_subprocess("-p", "no:cacheprovider", *verdict).ret == 10  # NO-GO: Denrisi on stock
    whole = matrix(project)
    shards = []
    for i in (1, 2):
        result = project.runpytest_subprocess("-p", "no:cacheprovider", f"--shard={i}/2")
        result.assert_outcomes(passed=20, deselected=20)
        shard = matrix(project)
        assert shard["run"]["shard"] == {"index": i, "count": 2}
        assert shard["run"]["selection"] == f"shard {i}/2: 20 of 40 cells"
        # An even share of every endpoint: each column paces its own cells.
        assert sorted({c["endpoint"] for c in shard["cells"]}) == sorted(e["name"] for e in whole["endpoints"])
        shards.append(f"reports/{shard['run']['id']}")
    done = merge(project, *shards, "--baseline", "custom", "--candidate", "stock", "--compare-to=previous")
    assert done.returncode == 10, done.stderr  # the verdict's exit status, as the one run's
    merged = matrix(project)
    assert merged["run"]["id"] not in (whole["run"]["id"], *(s.split("/")[1] for s in shards))
    assert merged["run"]["selection"] is None and "shard" not in merged["run"]
    assert merged["cases"] == whole["cases"]
    assert [e["name"] for e in merged["endpoints"]] == [e["name"] for e in whole["endpoints"]]
    assert all(e["modelled"] and e["fingerprint"] for e in merged["endpoints"] if e["kind"] == "comfyui")
    assert found(merged) == found(whole)
    assert merged["verdict"]["decision"] == whole["verdict"]["decision"] == "NO-GO"
    assert [b["case"] for b in merged["verdict"]["blockers"]] == [b["case"] for b in whole["verdict"]["blockers"]]
    # The shards are partial runs: drift compares with the whole run, and nothing moved.
    assert merged["drift"]["compared_to"]["run"] == whole["run"]["id"]
    assert merged["drift"]["cells"]["new_failures"] == [] and merged["drift"]["cells"]["fixed"] == []
    run_dir = project.path / "reports" / merged["run"]["id"]
    assert (project.path / "reports/latest").resolve() == run_dir
    for cell in merged["cells"]:
        body = re.search(r"(cells/\S+?/request\.json)", cell["repro"])[1]
        assert (run_dir / body).is_file(), cell["repro"]
        assert all(Path(image["path"]).is_relative_to(run_dir.resolve()) and Path(image["path"]).is_file() for image in cell["images"])
    for entry in merged["endpoints"]:
        assert entry["fingerprint"] is None or (run_dir / entry["fingerprint"]).is_file()
    assert "denrisi_zimage" in (run_dir / "matrix.md").read_text()
    assert len(read_cells(run_dir / merged["cells_log"])) == len(merged["cells"])  # its log has every cell too


def test_merged_shards_are_judged_by_the_endpoints_files_budgets_as_the_one_run(project):
    """A budget in the endpoints file's verdict: made the one run NO-GO; merged without it, the same cells were GO."""
    with ReferenceServer("custom") as prod, ReferenceServer("custom") as cand:
        (project.path / "endpoints.yaml").write_text(
            f"endpoints:\n  prod: {{url: '{prod.url}', profile: custom}}\n  cand: {{url: '{cand.url}', profile: custom}}\n"
            "verdict: {baseline: prod, candidate: cand, budgets: {p95_seconds: 0.000001}}\n")
        assert project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml").ret == 10
        whole = matrix(project)
        shards = []
        for i in (1, 2):
            project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml", f"--shard={i}/2")
            shards.append(f"reports/{matrix(project)['run']['id']}")
    over = {b["case"] for b in whole["verdict"]["blockers"] if b["message"].startswith("over budget")}
    assert whole["verdict"]["decision"] == "NO-GO" and over == set(whole["cases"])
    judged = {}
    for how in (["--endpoints-file=endpoints.yaml"], ["--baseline=prod", "--candidate=cand", "--budget=p95_seconds=0.000001"],
                ["--baseline=prod", "--candidate=cand"]):
        done = merge(project, *shards, *how)
        judged[how[-1]] = (done.returncode, matrix(project)["verdict"])
    for how in ("--endpoints-file=endpoints.yaml", "--budget=p95_seconds=0.000001"):
        status, verdict = judged[how]
        assert status == 10 and verdict["decision"] == "NO-GO", how
        assert [b["case"] for b in verdict["blockers"]] == [b["case"] for b in whole["verdict"]["blockers"]], how
        assert _judged(verdict) == _judged(whole["verdict"]) and len(verdict["budgets"]) == len(whole["cases"]), how
    assert judged["--candidate=cand"][0] == 0 and judged["--candidate=cand"][1]["decision"] == "GO"  # no budget asked for


def _judged(verdict: dict) -> list[tuple]:
    """What a verdict's budget rows judge; their figures differ between runs (latencies)."""
    return [(r["case"], r["metric"], r["limit"], r["ok"]) for r in verdict["budgets"]]


@pytest.mark.parametrize("value", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_a_bad_shard_is_a_one_line_usage_error(project, value):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", f"--shard={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line] == [f"ERROR: --shard {value}: expected I/N with 1 <= I <= N, e.g. --shard=2/4"]


def test_the_ini_key_shards_too(project):
    (project.path / "pytest.ini").write_text((project.path / "pytest.ini").read_text() + "comfy_shard = 2/8\n")
    project.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=5, deselected=35)
    assert matrix(project)["run"]["shard"] == {"index": 2, "count": 8}


def test_merge_refuses_a_cell_in_two_shards_and_runs_of_another_plan(project):
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "smoke_invert", "--shard=1/2").assert_outcomes(passed=4, deselected=36)
    shard = f"reports/{matrix(project)['run']['id']}"
    runs_before = sorted((project.path / "reports").iterdir())
    twice = merge(project, shard, shard)
    assert twice.returncode == 4 and twice.stdout == ""
    assert re.fullmatch(r"comfy-compat: cell smoke_invert@\S+ is in two shards: \S+ and \S+\n", twice.stderr), twice.stderr
    (project.path / "cases/seed.yaml").write_text(smoke_cases("a"))
    project.runpytest_subprocess("-p", "no:cacheprovider", "--shard=2/2").assert_outcomes(passed=4, deselected=4)
    other = merge(project, shard, f"reports/{matrix(project)['run']['id']}")
    assert other.returncode == 4 and "is not a shard of the same run" in other.stderr and other.stderr.count("\n") == 1
    assert len(sorted((project.path / "reports").iterdir())) == len(runs_before) + 1  # only the second shard: no merged run


def test_spread_deals_each_endpoint_by_its_slots():
    keys = ["a"] * 5 + ["b"] * 5 + ["one"] * 4 + ["five"] * 10
    dealt = spread(keys, 2, {"a": 4, "b": 4, "one": 1, "five": 5})
    share = {k: [dealt[i] for i, key in enumerate(keys) if key == k].count(0) for k in dict.fromkeys(keys)}
    assert share == {"a": 3, "b": 2, "one": 4, "five": 6}  # a and b even; one on the part holding its slot; five 3:2
    assert [slots(5, p, 2) for p in (0, 1)] == [3, 2] and [slots(1, p, 2) for p in (0, 1)] == [1, 0]
    assert spread(keys, 2, {"a": 4}) == spread(keys, 2, {"a": 4})  # a function of the collection alone


@pytest.fixture
def slow_endpoint():
    """A reference server that runs every prompt it gets at once (capacity 32), each for 0.5 s."""
    server = ReferenceServer(Profile.builtin("stock").replace(capacity=32, latency=Latency("fixed", 0.5))).start()
    yield server.url
    server.stop()


def test_xdist_workers_keep_their_share_in_flight_within_max_concurrency(project, slow_endpoint):
    (project.path / "cases/seed.yaml").write_text(smoke_cases(*(f"s{i}" for i in range(16))))
    (project.path / "endpoints.yaml").write_text(f"endpoints:\n  slow: {{url: '{slow_endpoint}', max_concurrency: 8}}\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--endpoints-file=endpoints.yaml")
    result.assert_outcomes(passed=16)
    assert len(matrix(project)["cells"]) == 16
    runs = []  # (start, end, worker's client id) of each prompt, as the server saw it
    for entry in httpx.get(f"{slow_endpoint}/history").json().values():
        times = dict((m[0], m[1]["timestamp"] / 1000) for m in entry["status"]["messages"])
        runs.append((times["execution_start"], times["execution_success"], entry["prompt"][3]["client_id"]))
    assert len(runs) == 16

    def most_at_once(spans: list[tuple]) -> int:
        return max(sum(s <= start < e for s, e, _ in spans) for start, _, _ in spans)

    workers = {client for _, _, client in runs}
    assert len(workers) == 2  # one websocket client per worker
    assert most_at_once(runs) <= 8  # max_concurrency across both workers
    for worker in workers:
        mine = [r for r in runs if r[2] == worker]
        assert len(mine) == 8 and most_at_once(mine) >= 3, mine  # its share in flight, up to its 4 slots
    # 16 × 0.5 s at 8 at once is 1 s; one cell at a time per worker would be 4 s.
    assert max(e for _, e, _ in runs) - min(s for s, _, _ in runs) < 3.0
