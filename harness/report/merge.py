"""One run out of the shards of a run (``pytest --shard=I/N`` in N CI jobs): ``comfy-compat merge``.

``merge(shards, run_dir)`` takes the shards' matrices (``harness.report.drift.load_run``) and gives the
sections of the one run they make in ``run_dir``: the cells (the writer puts them in plan order), the
endpoints as introduced, the cases and waivers.
It checks the shards belong together (the same plan, no cell twice); the CLI writes the run, with
each shard's cell folders and fingerprints, and concludes it as the plugin concludes a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

__all__ = ["merge"]


def merge(shards: Sequence[dict[str, Any]], run_dir: Path) -> tuple[dict[str, Any], list[int]]:
    """The merged run's ``cases``, ``case_details``, ``waivers``, ``endpoints``, ``cells`` and ``selection``,
    and for each endpoint the index of the shard whose entry was kept (an introduced one, with provenance
    and fingerprint, before one only listed): its fingerprint file is the one to copy.

    Images' absolute paths are moved from each shard's run directory into ``run_dir``, where the CLI
    copies the cell folders. ConfigError, one line, when the shards disagree on the plan or a cell is in
    two of them.
    """
    first = shards[0]
    plan = (first.get("cases") or [], [e["name"] for e in first["endpoints"]])
    for shard in shards[1:]:
        other = (shard.get("cases") or [], [e["name"] for e in shard["endpoints"]])
        if other != plan:
            raise ConfigError(f"run {_id(shard)} is not a shard of the same run as {_id(first)}: "
                              f"its cases or endpoints differ")
    owner: dict[tuple[str, str], dict] = {}
    for shard in shards:
        for cell in shard["cells"]:
            key = (cell["case"], cell["endpoint"])
            if key in owner:
                raise ConfigError(f"cell {key[0]}@{key[1]} is in two shards: {_id(owner[key])} and {_id(shard)}")
            owner[key] = shard
    cases, names = plan
    kept = [next((i for i, shard in enumerate(shards) if shard["endpoints"][at].get("modelled") is not None), 0)
            for at in range(len(names))]
    # Rows: a shard lists the whole plan; the merged run keeps the cases that ran, as one run would.
    ran = {case for case, _ in owner}
    rows = [case for case in cases if case in ran]
    cells = [_moved(cell, _id(shard), run_dir) for shard in shards for cell in shard["cells"]]
    planned = len(cases) * len(names)
    return {
        "cases": rows,
        "case_details": {case: detail for shard in shards for case, detail in (shard.get("case_details") or {}).items()
                         if case in ran},
        "waivers": list({repr(w): w for shard in shards for w in shard.get("waivers") or []}.values()),
        "endpoints": [shards[i]["endpoints"][at] for at, i in enumerate(kept)],
        "cells": cells,
        "selection": None if len(cells) == planned else f"{len(cells)} of {planned} cells",
    }, kept


def _moved(cell: dict, run_id: str, run_dir: Path) -> dict:
    """The cell with its images' paths inside ``run_dir`` (a shard's are absolute, inside its own run directory,
    wherever that was: the CI job's machine, say)."""
    images = [{**image, "path": str(run_dir / image["path"].split(f"/{run_id}/", 1)[1])}
              if f"/{run_id}/" in str(image.get("path")) else image for image in cell.get("images") or []]
    return {**cell, "images": images}


def _id(matrix: dict) -> str:
    return str((matrix.get("run") or {}).get("id"))
