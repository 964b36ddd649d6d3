"""Throughput figures of the validator and the reference endpoint per modelled ComfyUI release (prints
numbers; not a test). Goal: 0.33.0's rules (dynamic inputs expanded, V3 combos checked, replacements
looked up) validate Denrisi within 1.5× of 0.3.64's time.

Run: ``.venv/bin/python bench/bench_reference.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import httpx

from harness.comfy.versions import MODELLED
from harness.reference.profile import Profile, load_profile
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
        validate_prompt(prompt, catalogue, files, flavour=profile.flavour)
    return time.perf_counter() - start


def main() -> None:
    prompts = {name: json.loads((ROOT / "workflows" / f"{name}.json").read_text()) for name in WORKFLOWS}
    profiles = {version: load_profile("custom", version) for version in MODELLED}
    for version, profile in profiles.items():
        for name, prompt in prompts.items():
            _rate(prompt, profile, 50)  # warm the catalogue's class cache
            seconds = _rate(prompt, profile, 2000)
            print(f"validator {version} {name}: {2000 / seconds:,.0f} validations/s")
    # The releases take turns, best of 5 each: on a shared machine a load spike then hits both alike.
    denrisi = {version: float("inf") for version in MODELLED}
    for _ in range(5):
        for version, profile in profiles.items():
            denrisi[version] = min(denrisi[version], _rate(prompts["denrisi_zimage_res4lyf"], profile, 1000))
    for version, seconds in denrisi.items():
        print(f"validator {version} 1,000 denrisi validations: {seconds:.3f} s (goal < 1 s)")
    old, new = MODELLED[0], MODELLED[-1]
    print(f"validator denrisi {new} ÷ {old}: {denrisi[new] / denrisi[old]:.2f} (goal ≤ 1.5)")
    rejected = {"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}
    for version in MODELLED:
        with ReferenceServer(load_profile("custom", version)) as server, httpx.Client(base_url=server.url) as client:
            for label, body in (("rejected", rejected), ("sdxl accepted", {"prompt": prompts["sdxl_baseline"]})):
                median, p95 = _latency(client, body, 200)
                print(f"endpoint {version} POST /prompt ({label}, loopback): median {median:.2f} ms, p95 {p95:.2f} ms")


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
