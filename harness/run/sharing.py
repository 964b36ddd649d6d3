"""How a run's cells are split between processes: CI jobs (``--shard=I/N``) and pytest-xdist workers.

Both go round robin through the cells endpoint by endpoint, so every part gets an even share of every
endpoint. That matters because an endpoint paces its own cells (``max_concurrency``): a part holding all
of one endpoint's cells would take as long as the whole run. The split is a function of the collection
alone, so every process computes the same one: the xdist controller hands each worker exactly the
share the worker computes for itself.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence

__all__ = ["parse_shard", "slots", "spread", "worker_index"]


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1-based, ``2/4``) as (I, N); ValueError saying the expected form."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--shard {text}: expected I/N with 1 <= I <= N, e.g. --shard=2/4")
    return int(match[1]), int(match[2])


def spread(keys: Sequence[Hashable], parts: int, widths: Mapping[Hashable, int] | None = None) -> list[int]:
    """The part (0-based) of each item, given each item's key (its endpoint).

    The items of one key are dealt round robin in their order, key after key, the count carried on
    from one key to the next so the parts' totals stay even. A key of width ``w`` (its endpoint's
    max_concurrency) is dealt over ``w`` slots, slot ``s`` belonging to part ``s % parts``: a part gets
    the key's items in proportion to the slots it holds (``slots``), and none when it holds none.
    """
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    part = [0] * len(keys)
    dealt = 0
    for key, members in groups.items():
        width = (widths or {}).get(key, parts)
        for i in members:
            part[i] = dealt % width % parts
            dealt += 1
    return part


def slots(limit: int, part: int, parts: int) -> int:
    """The part's share of an endpoint's ``limit`` (max_concurrency): the slots ``spread`` deals it."""
    return limit // parts + (part < limit % parts)


def worker_index(workerid: str, workercount: int) -> int | None:
    """An xdist worker's part (``gw1`` of 2 → 1); None for a worker that replaced a crashed one (``gw2``)."""
    match = re.fullmatch(r"gw(\d+)", workerid)
    return int(match[1]) if match and int(match[1]) < workercount else None
