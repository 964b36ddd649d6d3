"""(h) Conversion speed: every UI file of ../shared/corpus converted to an API prompt, per modelled
frontend, against the /object_info that frontend ran with (best effort for files with classes that
catalogue lacks, as the frontend itself converts them). Prints conversions per second and the
median milliseconds per workflow per frontend. Goal: median <= 1 ms per workflow.

Run: ``.venv/bin/python bench/bench_convert.py`` (prints one line per frontend, exits 0).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from _common import ROOT, report

from harness.comfy.catalogue import Catalogue
from harness.comfy.convert import FRONTENDS, ConversionError, convert

CORPUS = ROOT.parent / "shared" / "corpus"
ROUNDS, GOAL_MS = 5, 1.0


def main() -> None:
    if not (CORPUS / "index.json").is_file():
        print(f"bench (h) convert: skipped, ../shared/corpus is not here ({CORPUS})")
        return
    index = json.loads((CORPUS / "index.json").read_text(encoding="utf-8"))
    workflows = [json.loads((CORPUS / "ui" / name).read_text(encoding="utf-8")) for name in index["ui"]]
    for frontend in FRONTENDS:
        path = CORPUS / index["frontends"][f"frontend-{frontend}"]["object_info"]
        catalogue = Catalogue(json.loads(path.read_text(encoding="utf-8")))
        timings: list[float] = []
        failed = 0
        for round_ in range(ROUNDS + 1):   # the first round warms the catalogue's layouts up, unmeasured
            for ui in workflows:
                start = time.perf_counter()
                try:
                    convert(ui, catalogue, frontend=frontend, strict=False)
                except ConversionError:
                    failed += round_ == 0
                if round_:
                    timings.append(time.perf_counter() - start)
        median_ms = statistics.median(timings) * 1000
        rate = len(timings) / sum(timings)
        report(f"(h) convert {frontend}", f"{len(workflows)} UI workflows x {ROUNDS} rounds, {rate:,.0f} conversions/s, "
               f"median {median_ms:.3f} ms, p95 {statistics.quantiles(timings, n=20)[-1] * 1000:.3f} ms per workflow, "
               f"{failed} not convertible", median_ms, GOAL_MS, " ms")


if __name__ == "__main__":
    sys.exit(main())
