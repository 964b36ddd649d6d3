"""Repeats that execute: a measured attempt varies every seed-like input with a value unique to the run
and the attempt, so ComfyUI's cache (the reference endpoint's, classic or ``--cache-lru``) cannot serve
it; ``--repeat-identical`` sends attempts as written; wholly cached attempts are counted and kept out of
latency and cost. End to end over loopback, two runs after one another against the same server."""

from __future__ import annotations

import httpx
import pytest

from conftest import cells, load_json, matrix, wait_history
from harness.comfy.workflows import seed_inputs, vary_seeds
from harness.providers.base import Timings
from harness.reference.profile import Profile
from harness.run.outcomes import Outcome
from harness.run.stats import Attempt, cell_cost, cell_stats

SDXL = load_json("workflows/sdxl_baseline.json")
SAMPLER = "3"  # the KSampler of sdxl_baseline.json: what a cache hit skips


def test_seed_like_inputs_are_varied_within_their_declared_limits():
    workflow = {"1": {"class_type": "A", "inputs": {"seed": 42, "noise_seed": 1, "steps": 20}},
                "2": {"class_type": "B", "inputs": {"my_seed": 7, "seed": ["1", 0], "flag_seed": True}}}
    assert seed_inputs(workflow) == [("1", "seed"), ("1", "noise_seed"), ("2", "my_seed")]
    varied = {vary_seeds(workflow, f"run/cell/{i}", {("1", "seed"): (10, 20)})["1"]["inputs"]["seed"] for i in range(200)}
    assert varied <= set(range(10, 21)) and len(varied) > 5
    one, other = vary_seeds(workflow, "run-a/cell/0"), vary_seeds(workflow, "run-b/cell/0")
    assert one["1"]["inputs"]["noise_seed"] != other["1"]["inputs"]["noise_seed"]
    assert one["2"]["inputs"]["seed"] == ["1", 0] and one["1"]["inputs"]["steps"] == 20 and workflow["1"]["inputs"]["seed"] == 42


def timed(total: float, *, cached: bool = False) -> Attempt:
    return Attempt(Outcome.PASSED, Timings(queue=0.0, execution=total, total=total), images=1, wholly_cached=cached)


def test_wholly_cached_attempts_are_left_out_of_latency_and_cost():
    attempts = [timed(4.0), timed(0.001, cached=True), timed(6.0), timed(0.002, cached=True)]
    stats = cell_stats(attempts)
    assert stats["latency"]["total"] == {"p50": 4.0, "p95": 6.0, "max": 6.0}
    assert stats["wholly_cached"] == 2 and "2 of 4 attempts were served wholly from the endpoint's cache" in stats["cache_note"]
    assert stats["passed"] == 4  # the success rate still counts them: the endpoint did answer
    cost = cell_cost(attempts, 3.6)
    assert (cost["billed_seconds"], cost["images"], cost["wholly_cached_left_out"]) == (10.0, 2, 2)


def sampler_runs(url: str) -> int:
    """How many prompts in the server's history really ran the sampler (it is not in execution_cached)."""
    ran = 0
    for entry in httpx.get(f"{url}/history").json().values():
        [cached] = [m[1]["nodes"] for m in entry["status"]["messages"] if m[0] == "execution_cached"]
        ran += SAMPLER not in cached
    return ran


def run_sdxl(project, *args: str, terminal: str = "sdxl_baseline@ref: *") -> dict:
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "sdxl", "--endpoints-file=endpoints.yaml", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([terminal])
    return cells(matrix(project))[("sdxl_baseline", "ref")]


def test_repeats_execute_run_after_run_and_repeat_identical_measures_the_cache(project, reference_endpoint):
    url = reference_endpoint("stock").url
    (project.path / "endpoints.yaml").write_text(f"endpoints:\n  ref:\n    url: {url}\n    price_per_gpu_hour: 3.6\n")
    first = run_sdxl(project, "--repeat=5")
    second = run_sdxl(project, "--repeat=5")
    assert sampler_runs(url) == 10  # five real executions per run, the second run too
    seeds = [a["seeds"]["3.seed"] for cell in (first, second) for a in cell["attempts"]]
    assert len(set(seeds)) == 10 and SDXL["3"]["inputs"]["seed"] not in seeds
    for cell in (first, second):
        assert cell["stats"]["repeats"]["inputs"] == ["3.seed"] and cell["stats"]["wholly_cached"] == 0
        assert all(a["executed_nodes"] >= 3 and not a["wholly_cached"] for a in cell["attempts"])
    # The first attempt ever loads the checkpoint; the rest reuse the unseeded loaders, as ComfyUI does.
    assert min(a["cached_nodes"] for a in first["attempts"]) == 0

    identical = run_sdxl(project, "--repeat=5", "--repeat-identical",
                         terminal="sdxl_baseline@ref: 5/5 passed (95% CI *), 4 served wholly from cache (not in p95 or cost), p95 *")
    assert sampler_runs(url) == 11  # one execution, four replays of the cache
    attempts = identical["attempts"]
    assert [a["wholly_cached"] for a in attempts].count(True) == 4 and all(a["seeds"] == {} for a in attempts)
    assert [a["executed_nodes"] for a in attempts if a["wholly_cached"]] == [0, 0, 0, 0]
    stats = identical["stats"]
    assert stats["wholly_cached"] == 4 and "left out of latency and cost" in stats["cache_note"]
    [executed] = [a for a in attempts if not a["wholly_cached"]]
    assert stats["latency"]["total"]["max"] == executed["timings"]["total"]
    assert identical["cost"]["images"] == 1 and identical["cost"]["wholly_cached_left_out"] == 4
    assert stats["repeats"]["note"].startswith("--repeat-identical")


def test_the_ini_twin_and_a_workflow_with_nothing_to_vary(project, reference_endpoint):
    url = reference_endpoint("stock").url
    (project.path / "endpoints.yaml").write_text(f"endpoints:\n  ref:\n    url: {url}\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "smoke", "--endpoints-file=endpoints.yaml", "--repeat=3")
    result.assert_outcomes(passed=1)
    cell = cells(matrix(project))[("smoke_invert", "ref")]
    assert (cell["stats"]["repeats"]["varied"], cell["stats"]["repeats"]["inputs"]) == (False, [])
    assert cell["stats"]["repeats"]["note"].startswith("nothing to vary: the workflow has no seed-like input")
    assert cell["stats"]["wholly_cached"] == 2  # what the endpoint's cache did, said rather than measured as latency

    project.path.joinpath("pytest.ini").write_text(project.path.joinpath("pytest.ini").read_text() + "comfy_repeat_identical = true\n")
    assert run_sdxl(project, "--repeat=2")["stats"]["repeats"]["note"].startswith("--repeat-identical")


def submit(url: str, workflow: dict) -> list[str]:
    """POST /prompt and wait: the nodes the run's execution_cached named."""
    prompt_id = httpx.post(f"{url}/prompt", json={"prompt": workflow}).json()["prompt_id"]
    with httpx.Client(base_url=url) as client:
        entry = wait_history(client, prompt_id)
    return next(m[1]["nodes"] for m in entry["status"]["messages"] if m[0] == "execution_cached")


def seeded(seed: int) -> dict:
    return {**SDXL, SAMPLER: {**SDXL[SAMPLER], "inputs": {**SDXL[SAMPLER]["inputs"], "seed": seed}}}


@pytest.mark.parametrize(("cache_lru", "third_cached"), [(0, False), (64, True)])
def test_the_reference_cache_keeps_earlier_prompts_as_comfyuis_does(reference_endpoint, cache_lru, third_cached):
    """Classic (the default) keeps only what the next prompt reuses, so A, B, A runs A twice (as recorded
    in front of a real 0.3.64); ``--cache-lru`` keeps A's outputs, so the third prompt is a cache hit."""
    url = reference_endpoint(Profile.builtin("stock").replace(cache_lru=cache_lru)).url
    assert SAMPLER not in submit(url, seeded(1))
    assert SAMPLER not in submit(url, seeded(2))
    assert (len(submit(url, seeded(1))) == len(SDXL)) is third_cached


def test_seeds_unique_to_the_run_execute_even_where_the_cache_keeps_earlier_prompts(project, reference_endpoint):
    url = reference_endpoint(Profile.builtin("stock").replace(cache_lru=64)).url
    (project.path / "endpoints.yaml").write_text(f"endpoints:\n  ref:\n    url: {url}\n")
    first = run_sdxl(project, "--repeat=3")
    second = run_sdxl(project, "--repeat=3")
    assert sampler_runs(url) == 6 and not any(a["wholly_cached"] for c in (first, second) for a in c["attempts"])
    # What a value repeated from the last run would have met: run 1's first attempt, sent again, is a cache hit.
    assert len(submit(url, seeded(first["attempts"][0]["seeds"]["3.seed"]))) == len(SDXL)


async def test_a_repeated_cell_keeps_the_files_of_one_passed_attempt(reference_endpoint, tmp_path):
    """Every file a passed repeat downloaded goes once it is checked, its audio too (the native provider
    downloads SaveAudio's FLAC): five attempts of a sound leave one FLAC, in the first attempt's folder."""
    from pathlib import Path

    from harness.report.matrix import MatrixWriter
    from harness.run.cases import Case
    from harness.run.endpoints import Endpoint
    from harness.run.engine import Engine

    workflow = {"1": {"class_type": "EmptyAudio", "inputs": {"duration": 1.0, "sample_rate": 44100, "channels": 1}},
                "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/clip"}}}
    srv = reference_endpoint("stock")
    writer = MatrixWriter(tmp_path)
    engine = Engine([Endpoint("ref", srv.url, max_concurrency=2)], writer, listeners=[writer])
    await engine.start()
    try:
        cell = await engine.run_cell(Case(id="sound", workflow=workflow, workflow_path=Path("sound.json"), repeat=5), "ref")
    finally:
        await engine.close()
    assert cell.outcome is Outcome.PASSED and len(cell.attempts) == 5
    outputs = writer.dir / "cells" / "sound@ref" / "outputs"
    assert [p.relative_to(outputs).as_posix() for p in sorted(outputs.rglob("*"))] == ["2_audio_clip_00001_.flac"]
