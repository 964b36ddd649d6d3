"""(d) Overhead: the harness end to end ÷ a bare client sending the same requests to the same server at
the same concurrency. 160 cells of 0.2 s simulated execution, server capacity 16, concurrency 16.

The bare client is a plain httpx loop, the yardstick the goal names: per prompt it opens a websocket
with a client_id, POSTs /prompt, waits for ``executing`` with ``node: null``, GETs /history/{id} and
streams GET /view to a file, and nothing else (no checks, no report). The harness makes the same
requests (over one shared websocket and aiohttp, which is why it can come out below 1). Goal:
harness ÷ bare <= 1.3.

Run: ``.venv/bin/python bench/bench_overhead.py`` (prints one line, exits 0).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import httpx

from _common import SMOKE, cases, endpoint, report, run_engine, server

CELLS, SECONDS, CONCURRENCY, GOAL = 160, 0.2, 16, 1.3


async def bare(url: str, workflow: dict, out: Path) -> float:
    """Wall seconds for CELLS prompts through a minimal client, CONCURRENCY at a time."""
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url) as client, aiohttp.ClientSession() as session:

        async def one(index: int) -> None:
            async with limit:
                client_id = uuid.uuid4().hex
                async with session.ws_connect(f"{url.replace('http', 'ws', 1)}/ws?clientId={client_id}") as ws:
                    response = await client.post("/prompt", json={"prompt": workflow, "client_id": client_id})
                    prompt_id = response.json()["prompt_id"]
                    async for message in ws:
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            continue
                        event = json.loads(message.data)
                        data = event.get("data") or {}
                        if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                            break
                entry = (await client.get(f"/history/{prompt_id}")).json()[prompt_id]
                for node_id, output in entry["outputs"].items():
                    for image in output.get("images", []):
                        async with client.stream("GET", "/view", params=image) as view:
                            with (out / f"{index}_{node_id}_{image['filename']}").open("wb") as fh:
                                async for chunk in view.aiter_bytes(1 << 20):
                                    fh.write(chunk)

        await asyncio.gather(*(one(i) for i in range(min(CONCURRENCY, CELLS))))  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(CELLS)))
        return time.perf_counter() - started


def main() -> None:
    run_cases = cases(CELLS)
    with server(capacity=CONCURRENCY, latency={"distribution": "fixed", "mean": SECONDS}) as url:
        with tempfile.TemporaryDirectory(prefix="comfy-compat-bench-bare-") as tmp:
            bare_wall = asyncio.run(bare(url, run_cases[0].workflow, Path(tmp)))
        run_engine([endpoint(url, CONCURRENCY)], cases(CONCURRENCY))  # warm-up, as the bare client had
        harness = run_engine([endpoint(url, CONCURRENCY)], run_cases)
    ratio = harness.wall / bare_wall
    report("(d) overhead", f"{CELLS} cells x {SECONDS} s, concurrency {CONCURRENCY}, harness {harness.wall:.2f} s, "
           f"bare client {bare_wall:.2f} s, ratio {ratio:.2f}, outcomes {harness.run.outcomes}", ratio, GOAL)


if __name__ == "__main__":
    main()
