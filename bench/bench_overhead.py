"""(d) Overhead: the harness end to end ÷ the fastest bare client sending the same requests to the same
server at the same concurrency. 1,000 cells of zero execution time, server capacity 16, concurrency 16;
the cells are 1,000 workflows (``_common.cases``), so the harness writes as many request.json files as a
run of that many workflows would, none of them a link of another.

The bare clients are plain asyncio + aiohttp, one session, and nothing else (no checks, no report): per
prompt POST /prompt, then GET /history/{id} until the entry is there, then GET /view streamed to a file.
They differ only in how they learn a prompt finished: polling /history every 0, 2 or 10 ms, or one
shared websocket (``executing`` with ``node: null``, as the harness does) before the one GET /history.
Each is timed first and the fastest is the yardstick. Then bare and harness alternate, ROUNDS rounds
(each warmed up), and each round's two ratios are kept: wall ÷ wall (goal <= 1.15) and harness CPU
per cell ÷ bare CPU per cell (goal <= 2). CPU is this process's (``time.process_time``): the server
runs in a subprocess.

Run: ``.venv/bin/python bench/bench_overhead.py`` (prints the figures, exits 0); BENCH_ROUNDS=N for
more or fewer rounds (default 5).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp

from _common import cases, endpoint, report, run_engine, server, spread

CELLS, CONCURRENCY, WALL_GOAL, CPU_GOAL = 1000, 16, 1.15, 2.0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
POLL_INTERVALS = (0.0, 0.002, 0.01)


async def _bare(url: str, workflows: list[dict], out: Path, cells: int, poll: float | None) -> tuple[float, float]:
    """(wall s, CPU s) of ``cells`` prompts (``workflows`` in turn), CONCURRENCY at a time: polling every
    ``poll`` s, or (None) waiting on one shared websocket."""
    limit = asyncio.Semaphore(CONCURRENCY)
    client_id = uuid.uuid4().hex
    finished: dict[str, asyncio.Future] = {}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY * 2)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        def done(prompt_id: str) -> asyncio.Future:
            return finished.setdefault(prompt_id, asyncio.get_running_loop().create_future())

        async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                data = event.get("data") or {}
                if event["type"] == "executing" and data.get("node") is None and not done(data["prompt_id"]).done():
                    done(data["prompt_id"]).set_result(None)

        async def one(index: int) -> None:
            async with limit:
                async with session.post("/prompt", json={"prompt": workflows[index % len(workflows)], "client_id": client_id}) as response:
                    prompt_id = (await response.json())["prompt_id"]
                if poll is None:
                    await done(prompt_id)
                    finished.pop(prompt_id)
                while True:
                    async with session.get(f"/history/{prompt_id}") as response:
                        entry = (await response.json()).get(prompt_id)
                    if entry is not None:
                        break
                    await asyncio.sleep(poll or 0)
                for node_id, output in entry["outputs"].items():
                    for image in output.get("images", []):
                        async with session.get("/view", params=image) as view:
                            with (out / f"{index}_{node_id}_{image['filename']}").open("wb") as fh:
                                async for chunk in view.content.iter_chunked(1 << 20):
                                    fh.write(chunk)

        ws = await session.ws_connect(f"/ws?clientId={client_id}") if poll is None else None
        listener = asyncio.create_task(listen(ws)) if ws is not None else None
        try:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(cells)))
            return time.perf_counter() - wall0, time.process_time() - cpu0
        finally:
            if ws is not None:
                await ws.close()
                listener.cancel()


def _client(url: str, workflows: list[dict], poll: float | None) -> Callable[[int], tuple[float, float]]:
    def run(cells: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory(prefix="comfy-compat-bench-bare-") as tmp:
            return asyncio.run(_bare(url, workflows, Path(tmp), cells, poll))
    return run


def _name(poll: float | None) -> str:
    return "websocket" if poll is None else f"polling every {poll * 1000:g} ms"


def main() -> None:
    run_cases = cases(CELLS)
    with server(capacity=CONCURRENCY) as url:
        clients = {_name(poll): _client(url, [case.workflow for case in run_cases], poll) for poll in (*POLL_INTERVALS, None)}
        for client in clients.values():
            client(CONCURRENCY * 4)  # warm-up
        tuning = {name: client(CELLS)[0] for name, client in clients.items()}
        fastest = min(tuning, key=tuning.get)
        bare = clients[fastest]
        print("bench (d) bare clients, wall for 1,000 cells: " + ", ".join(f"{n} {w:.2f} s" for n, w in tuning.items())
              + f"; the yardstick: {fastest}", flush=True)
        walls, cpus, outcomes = [], [], {}
        harness_cpu, bare_cpu = [], []
        for _ in range(ROUNDS):
            bare(CONCURRENCY * 4)  # each side warmed up right before it runs
            bare_wall, bare_s = bare(CELLS)
            run_engine([endpoint(url, CONCURRENCY)], cases(CONCURRENCY * 4))
            harness = run_engine([endpoint(url, CONCURRENCY)], run_cases)
            walls.append(harness.wall / bare_wall)
            cpus.append(harness.cpu / bare_s)
            harness_cpu.append(harness.cpu / CELLS * 1000)
            bare_cpu.append(bare_s / CELLS * 1000)
            outcomes = harness.outcomes
    figures = f"{CELLS} cells at zero execution time, concurrency {CONCURRENCY}, {ROUNDS} rounds, bare client: {fastest}"
    report("(d) overhead wall", f"{figures}; harness wall ÷ bare wall {spread(walls)}, outcomes {outcomes}",
           statistics.median(walls), WALL_GOAL)
    report("(d) overhead cpu", f"harness CPU per cell {spread(harness_cpu)} ms, bare {spread(bare_cpu)} ms; "
           f"harness ÷ bare {spread(cpus)}", statistics.median(cpus), CPU_GOAL)


if __name__ == "__main__":
    main()
