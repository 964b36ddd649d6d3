"""(g) The reference endpoint's own CPU per prompt, with 1,000 and with 20,000 files already saved in its
output folder: the floor a bare client sees, which must not grow with what the server has saved
(ComfyUI lists the folder per save; the reference keeps the counters and the file listing instead).
Each figure is the server process's CPU time (utime + stime from /proc) over 100 distinct smoke
prompts (EmptyImage → ImageInvert → SaveImage, zero simulated latency) submitted back to back and all
executed, best of 3 rounds; the folder is filled by real saves (batches of 100 images per prompt).
Goal: 20k ÷ 1k <= 1.2.

Run: ``.venv/bin/python bench/bench_reference_files.py`` (prints three lines, exits 0; about half a minute).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from _common import report, server_process

PROMPTS, ROUNDS, BATCH, PREFIX, GOAL = 100, 3, 100, "bench", 1.2
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time (its threads included): fields 14 and 15 of /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class _Client:
    """Submits distinct prompts (a new colour each, so none is cached) and waits for them to finish."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.colour = 0
        self.saved = 0

    def submit(self, batch: int, invert: bool) -> str:
        self.colour += 1
        prompt = {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": batch, "color": self.colour}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2" if invert else "1", 0], "filename_prefix": PREFIX}},
        }
        if invert:
            prompt["2"] = {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}}
        reply = self.http.post("/prompt", json={"prompt": prompt})
        reply.raise_for_status()
        self.saved += batch
        return reply.json()["prompt_id"]

    def wait(self, prompt_ids: list[str]) -> None:
        """Until the last prompt is in the history (one worker runs the queue in order)."""
        while not self.http.get(f"/history/{prompt_ids[-1]}").json():
            time.sleep(0.05)

    def check(self, prompt_ids: list[str]) -> None:
        """Every prompt ran and saved its images."""
        for prompt_id in prompt_ids:
            entry = self.http.get(f"/history/{prompt_id}").json()[prompt_id]
            assert entry["status"]["status_str"] == "success" and entry["outputs"]["3"]["images"], entry["status"]

    def fill(self, files: int) -> None:
        """Saves batches of images until the output folder holds ``files``."""
        ids = [self.submit(BATCH, invert=False) for _ in range((files - self.saved) // BATCH)]
        self.wait(ids)
        self.check(ids)

    def cpu_per_prompt_ms(self, pid: int) -> float:
        """The server's CPU per smoke prompt, accepted and executed: the best of ``ROUNDS`` rounds."""
        best = float("inf")
        for _ in range(ROUNDS):
            before = _cpu_seconds(pid)
            ids = [self.submit(1, invert=True) for _ in range(PROMPTS)]
            self.wait(ids)
            best = min(best, (_cpu_seconds(pid) - before) / PROMPTS * 1000)
            self.check(ids)
        return best


def main() -> None:
    figures = {}
    with server_process() as (url, pid):
        client = _Client(url)
        for files in (1_000, 20_000):
            client.fill(files)
            figures[files] = client.cpu_per_prompt_ms(pid)
            print(f"bench (g) reference files: {files:,} saved, server CPU {figures[files]:.2f} ms per prompt", flush=True)
    ratio = figures[20_000] / figures[1_000]
    report("(g) reference files", f"server CPU per prompt at 20,000 saved files ÷ at 1,000: {ratio:.2f}", ratio, GOAL)


if __name__ == "__main__":
    main()
