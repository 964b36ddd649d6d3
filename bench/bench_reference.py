"""Throughput figures of the validator and the reference endpoint (prints numbers; not a test).

Run: ``.venv/bin/python bench/bench_reference.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import httpx

from harness.reference.profile import Profile
from harness.reference.server import ReferenceServer
from harness.comfy.validator import validate_prompt

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ("sdxl_baseline", "denrisi_zimage_res4lyf")


def _rate(prompt: dict, profile: Profile, count: int) -> float:
    """Seconds for ``count`` validations against the profile's catalogue and model files."""
    catalogue, files = profile.catalogue(), {**profile.models, "input": ["example.png"]}
    start = time.perf_counter()
    for _ in range(count):
        validate_prompt(prompt, catalogue, files)
    return time.perf_counter() - start


def main() -> None:
    profile = Profile.builtin("custom")
    prompts = {name: json.loads((ROOT / "workflows" / f"{name}.json").read_text()) for name in WORKFLOWS}
    for name, prompt in prompts.items():
        _rate(prompt, profile, 50)  # warm the catalogue's class cache
        seconds = _rate(prompt, profile, 2000)
        print(f"validator {name}: {2000 / seconds:,.0f} validations/s")
    print(f"validator 1,000 denrisi validations: {_rate(prompts['denrisi_zimage_res4lyf'], profile, 1000):.3f} s (goal < 1 s)")
    rejected = {"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}
    with ReferenceServer(profile) as server, httpx.Client(base_url=server.url) as client:
        for label, body in (("rejected", rejected), ("sdxl accepted", {"prompt": prompts["sdxl_baseline"]})):
            median, p95 = _latency(client, body, 200)
            print(f"endpoint POST /prompt ({label}, loopback): median {median:.2f} ms, p95 {p95:.2f} ms")


def _latency(client: httpx.Client, body: dict, count: int, warmup: int = 20) -> tuple[float, float]:
    """Median and 95th percentile of POST /prompt round trips in ms, after a warm-up."""
    latencies = []
    for _ in range(warmup + count):
        start = time.perf_counter()
        client.post("/prompt", json=body)
        latencies.append((time.perf_counter() - start) * 1000)
    kept = latencies[warmup:]
    return statistics.median(kept), statistics.quantiles(kept, n=20)[18]

if __name__ == "__main__":
    main()
