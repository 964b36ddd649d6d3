"""The reference endpoint's load knobs over HTTP on loopback: capacity (prompts executing at once),
injected 429s and execution errors at a seeded rate, latency distributions and large outputs.
"""

from __future__ import annotations

import asyncio
import io
import math
import random
import statistics
import time
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from conftest import collect_until_done, load_json, outcome, run_provider
from harness.run.outcomes import Outcome
from harness.reference.failures import RUN_FRAMES
from harness.reference.profile import Injection, Latency, Profile
from harness.reference.server import running_server

SMOKE = load_json("workflows/smoke_invert.json")
STOCK = Profile.builtin("stock")


def smoke(colour: int, size: int = 8) -> dict:
    """The smoke workflow, made distinct by its colour (so capacity 1's cache does not serve it)."""
    return {**SMOKE, "1": {**SMOKE["1"], "inputs": {"width": size, "height": size, "batch_size": 1, "color": colour}}}


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return abs(count - mean) <= sigmas * sd


async def submit(session: aiohttp.ClientSession, url: str, prompt: dict) -> str:
    async with session.post(f"{url}/prompt", json={"prompt": prompt}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["prompt_id"]


async def finished(session: aiohttp.ClientSession, url: str, prompt_id: str, timeout: float = 30.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            async with session.get(f"{url}/history/{prompt_id}") as resp:
                body = await resp.json()
            if body:
                return body[prompt_id]
            await asyncio.sleep(0.01)


def run_span(entry: dict) -> tuple[float, float]:
    """(execution_start, last message) timestamps of a history entry, in seconds."""
    stamps = [data["timestamp"] / 1000 for _, data in entry["status"]["messages"]]
    return stamps[0], stamps[-1]


# --- capacity -----------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("capacity", [1, 4])
async def test_capacity_n_runs_n_prompts_at_once(capacity):
    profile = STOCK.replace(capacity=capacity, latency=Latency("fixed", 0.4))
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        started = time.monotonic()
        ids = [await submit(session, srv.url, smoke(i)) for i in range(4)]
        await asyncio.sleep(0.2)
        async with session.get(f"{srv.url}/queue") as resp:
            queue = await resp.json()
        assert len(queue["queue_running"]) == capacity and len(queue["queue_pending"]) == 4 - capacity
        entries = [await finished(session, srv.url, i) for i in ids]
        wall = time.monotonic() - started
    assert all(e["status"]["status_str"] == "success" for e in entries)
    spans = [run_span(e) for e in entries]
    if capacity == 1:
        assert wall >= 1.6
        # One at a time, in queue order: each starts after the previous one ended.
        assert all(spans[k + 1][0] >= spans[k][1] - 0.002 for k in range(3))
    else:
        assert wall < 1.0
        assert max(s for s, _ in spans) < min(e for _, e in spans)  # all four overlapped


@pytest.mark.asyncio
async def test_capacity_n_runs_without_the_cache_and_capacity_1_keeps_it():
    for capacity, cached in ((1, ["1", "2", "3"]), (2, [])):
        async with running_server(STOCK.replace(capacity=capacity)) as srv, aiohttp.ClientSession() as session:
            first = await finished(session, srv.url, await submit(session, srv.url, smoke(7)))
            second = await finished(session, srv.url, await submit(session, srv.url, smoke(7)))
            messages = dict((kind, data) for kind, data in second["status"]["messages"])
            assert messages["execution_cached"]["nodes"] == cached
            assert first["outputs"]["3"]["images"] and second["outputs"]["3"]["images"]


@pytest.mark.asyncio
async def test_interrupt_by_prompt_id_stops_only_that_prompt_when_two_run():
    profile = STOCK.replace(capacity=2, class_seconds={"ImageInvert": 1.0})
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{srv.url}/ws?clientId=c1") as ws:
            ids = []
            for colour in (1, 2):
                async with session.post(f"{srv.url}/prompt", json={"prompt": smoke(colour), "client_id": "c1"}) as resp:
                    ids.append((await resp.json())["prompt_id"])
            await asyncio.sleep(0.3)
            async with session.get(f"{srv.url}/queue") as resp:
                assert len((await resp.json())["queue_running"]) == 2
            async with session.post(f"{srv.url}/interrupt", json={"prompt_id": ids[0]}) as resp:
                assert resp.status == 200
            first = await finished(session, srv.url, ids[0], 5)
            second = await finished(session, srv.url, ids[1], 5)
            await collect_until_done(ws, ids[1])
    assert first["status"]["messages"][-1][0] == "execution_interrupted"
    assert second["status"]["status_str"] == "success"


@pytest.mark.asyncio
async def test_interrupt_without_prompt_id_stops_every_running_prompt():
    profile = STOCK.replace(capacity=2, class_seconds={"ImageInvert": 1.0})
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        ids = [await submit(session, srv.url, smoke(c)) for c in (1, 2)]
        await asyncio.sleep(0.3)
        async with session.post(f"{srv.url}/interrupt") as resp:
            assert resp.status == 200
        entries = [await finished(session, srv.url, i, 5) for i in ids]
        # The flag is cleared by the next prompt, as ComfyUI's: a later prompt runs.
        later = await finished(session, srv.url, await submit(session, srv.url, smoke(3)), 5)
    assert [e["status"]["messages"][-1][0] for e in entries] == ["execution_interrupted"] * 2
    assert later["status"]["status_str"] == "success"


# --- injected failures --------------------------------------------------------------------------------


async def post_many(url: str, count: int) -> list[tuple[int, str | None, str, str]]:
    """(status, Retry-After, Content-Type, body) of ``count`` sequential POST /prompt."""
    answers = []
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            async with session.post(f"{url}/prompt", json={"prompt": smoke(i)}) as resp:
                answers.append((resp.status, resp.headers.get("Retry-After"), resp.content_type, await resp.text()))
    return answers


@pytest.mark.asyncio
async def test_rate_limited_answers_429_with_retry_after_at_the_seeded_rate():
    profile = STOCK.replace(inject=Injection(rate_limited=0.05, retry_after=7), seed=11, node_seconds=0.0)
    async with running_server(profile) as srv:
        answers = await post_many(srv.url, 400)
    async with running_server(profile) as srv:
        again = await post_many(srv.url, 400)
    refused = [a for a in answers if a[0] == 429]
    assert within_binomial(len(refused), 400, 0.05)
    assert {a[0] for a in answers} == {200, 429}
    assert all(a[1:] == ("7", "text/plain", "429 Too Many Requests\n") for a in refused)
    # The same seed refuses the same requests.
    assert [a[0] for a in again] == [a[0] for a in answers]


@pytest.mark.asyncio
async def test_execution_errors_at_the_seeded_rate_have_comfyuis_shape():
    profile = STOCK.replace(capacity=4, inject=Injection(execution_error=0.1), seed=5, node_seconds=0.0)
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        ids = [await submit(session, srv.url, smoke(i)) for i in range(400)]
        entries = [await finished(session, srv.url, i) for i in ids]
    failed = [e for e in entries if e["status"]["status_str"] == "error"]
    assert within_binomial(len(failed), 400, 0.1)
    for entry in failed:
        kinds = [kind for kind, _ in entry["status"]["messages"]]
        assert kinds == ["execution_start", "execution_cached", "execution_error"]
        error = entry["status"]["messages"][-1][1]
        assert set(error) == {"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type",
                              "traceback", "current_inputs", "current_outputs", "timestamp"}
        # The first node that runs fails.
        assert (error["node_id"], error["node_type"], error["executed"]) == ("1", "EmptyImage", [])
        assert error["exception_type"] == "RuntimeError"
        assert error["exception_message"] == "injected failure (reference endpoint, inject.execution_error)\n"
        assert error["traceback"] == list(RUN_FRAMES)
        assert error["current_outputs"] == ["1", "2", "3"]
        assert entry["outputs"] == {}


@pytest.mark.asyncio
async def test_the_comfyui_provider_sees_injected_failures_as_rate_limited_and_execution_error(tmp_path: Path):
    oom = Injection(execution_error=1.0, exception_type="torch.OutOfMemoryError", exception_message="Allocation on device ")
    for inject, want in ((Injection(rate_limited=1.0), Outcome.RATE_LIMITED), (Injection(execution_error=1.0), Outcome.EXECUTION_ERROR),
                         (oom, Outcome.OUT_OF_MEMORY)):
        async with running_server(STOCK.replace(inject=inject)) as srv:
            record = await run_provider("comfyui", srv.url, SMOKE, tmp_path)
        assert outcome(record) is want, record.classification


@pytest.mark.asyncio
async def test_envelopes_carry_the_injected_failures(monkeypatch):
    monkeypatch.setenv("COMFY_REFERENCE_VAST_UNSECURED", "true")
    async with running_server(STOCK.replace(inject=Injection(rate_limited=1.0, retry_after=3))) as srv, aiohttp.ClientSession() as session:
        async with session.post(f"{srv.url}/runpod/v2/ep/run", json={"input": {"workflow": SMOKE}}) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "3"
        auth = {k: "x" for k in ("cost", "endpoint", "reqnum", "request_idx", "signature", "url")}
        async with session.post(f"{srv.url}/vast/worker/generate/sync", json={"auth_data": auth, "payload": {}}) as resp:
            # The PyWorker's own 429: empty, without Retry-After.
            assert resp.status == 429 and await resp.read() == b"" and "Retry-After" not in resp.headers
    async with running_server(STOCK.replace(inject=Injection(execution_error=1.0))) as srv, aiohttp.ClientSession() as session:
        async with session.post(f"{srv.url}/runpod/v2/ep/runsync", json={"input": {"workflow": SMOKE}}) as resp:
            body = await resp.json()
        assert body["status"] == "FAILED" and body["error"] == "Job processing failed"
        assert body["output"]["details"] == [
            "Workflow execution error: Node Type: EmptyImage, Node ID: 1, Message: "
            "injected failure (reference endpoint, inject.execution_error)\n"]


# --- latency and large outputs --------------------------------------------------------------------------


@pytest.mark.parametrize("distribution", ["fixed", "uniform", "lognormal"])
def test_latency_draws_have_the_configured_mean_and_spread(distribution):
    latency = Latency(distribution, 0.5, 0.2)
    draws = [latency.draw(random.Random(f"3:{i}")) for i in range(4000)]
    assert min(draws) >= 0
    assert statistics.fmean(draws) == pytest.approx(0.5, abs=0.02)
    want_sd = 0.0 if distribution == "fixed" else 0.2 / math.sqrt(3) if distribution == "uniform" else 0.2
    assert statistics.pstdev(draws) == pytest.approx(want_sd, abs=0.02)


@pytest.mark.asyncio
async def test_a_latency_draw_is_the_prompts_execution_time_and_is_seeded():
    profile = STOCK.replace(latency=Latency("uniform", 0.3, 0.2), seed=42, capacity=2)

    async def durations() -> list[float]:
        async with running_server(profile) as srv, aiohttp.ClientSession() as session:
            ids = [await submit(session, srv.url, smoke(i)) for i in range(4)]
            spans = [run_span(await finished(session, srv.url, i)) for i in ids]
        return [end - start for start, end in spans]

    first, second = await durations(), await durations()
    rng = profile.rng("latency")
    expected = [Latency("uniform", 0.3, 0.2).draw(rng) for _ in range(4)]
    for got in (first, second):
        assert got == pytest.approx(expected, abs=0.08)


def test_a_profile_file_sets_the_load_knobs(tmp_path: Path):
    path = tmp_path / "load.yaml"
    catalogue = Path(STOCK.catalogue_path)
    path.write_text(
        f"name: load\ncatalogue: {catalogue}\nexecution:\n  capacity: 16\n  seed: 3\n"
        "  latency: {distribution: lognormal, mean: 0.5, sigma: 0.2}\n"
        "  inject: {rate_limited: 0.03, execution_error: 0.01, retry_after: 2}\n  output_megabytes: 50\n",
        encoding="utf-8",
    )
    profile = Profile.from_file(path)
    assert (profile.capacity, profile.seed, profile.output_megabytes) == (16, 3, 50)
    assert profile.latency == Latency("lognormal", 0.5, 0.2)
    assert profile.inject == Injection(rate_limited=0.03, execution_error=0.01, retry_after=2)


@pytest.mark.asyncio
async def test_output_megabytes_saves_a_noise_png_of_that_size_streamed_by_view(tmp_path: Path):
    async with running_server(STOCK.replace(output_megabytes=3)) as srv, aiohttp.ClientSession() as session:
        entries = [await finished(session, srv.url, await submit(session, srv.url, smoke(i))) for i in range(2)]
        sizes = []
        for entry in entries:
            image = entry["outputs"]["3"]["images"][0]
            async with session.get(f"{srv.url}/view", params=image) as resp:
                assert resp.status == 200 and resp.content_type == "image/png"
                data = await resp.read()
            sizes.append(len(data))
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
        record = await run_provider("comfyui", srv.url, smoke(9), tmp_path)
    assert all(2_900_000 < size < 3_200_000 for size in sizes)
    assert outcome(record) is Outcome.PASSED and record.images[0].bytes == sizes[0]


@pytest.mark.asyncio
async def test_an_unexpected_exception_in_a_node_is_an_execution_error_and_the_worker_lives_on(monkeypatch):
    from harness.reference import storage

    def broken(self, target):
        raise PermissionError("read-only output folder")

    monkeypatch.setattr(storage.Storage, "place_large_output", broken)
    async with running_server(STOCK.replace(output_megabytes=0.01)) as srv, aiohttp.ClientSession() as session:
        entry = await finished(session, srv.url, await submit(session, srv.url, smoke(1)), 5)
        error = entry["status"]["messages"][-1][1]
        assert (error["node_type"], error["exception_type"]) == ("SaveImage", "PermissionError")
        assert error["exception_message"] == "read-only output folder\n"
        again = await finished(session, srv.url, await submit(session, srv.url, smoke(2)), 5)
        assert again["status"]["messages"][-1][0] == "execution_error"


def test_the_builtin_load_profile_sets_every_knob():
    profile = Profile.builtin("stock-load")
    assert (profile.capacity, profile.seed, profile.output_megabytes) == (4, 1, None)
    assert profile.latency == Latency("lognormal", 0.5, 0.2)
    assert profile.inject == Injection(rate_limited=0.03, execution_error=0.01, retry_after=2)
