"""The feeder keeps DEPTH × max_concurrency cells submitted per endpoint, refills as they finish, submits a
cell a test waits on at once, and stops feeding when the session stops."""

from __future__ import annotations

import concurrent.futures
import threading
import time

from harness.run.cases import Case
from harness.run.feeder import DEPTH, Feeder


def case(n: int) -> Case:
    return Case(id=f"c{n:02d}", workflow={}, workflow_path=None)


class Endpoints:
    """A stand-in for the engine: records each submission, and finishes them when told."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.open: dict[tuple[str, str], concurrent.futures.Future] = {}

    def submit(self, c: Case, name: str) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        self.sent.append((c.id, name))
        self.open[(c.id, name)] = future
        return future

    def finish(self, key: tuple[str, str]) -> None:
        self.open.pop(key).set_result(f"cell {key}")

    def in_flight(self, name: str) -> int:
        return sum(1 for _, n in self.open if n == name)


def test_each_endpoint_keeps_its_own_window_full_until_every_cell_ran():
    cells = [(case(n), name) for n in range(20) for name in ("fast", "slow")]
    engine = Endpoints()
    feeder = Feeder(engine.submit, cells, {"fast": 2, "slow": 1})
    feeder.start()
    assert engine.in_flight("fast") == DEPTH * 2 and engine.in_flight("slow") == DEPTH * 1
    # The fast endpoint runs through all its cells while the slow one's first cells never finish.
    while any(n == "fast" for _, n in engine.open):
        engine.finish(next(k for k in engine.open if k[1] == "fast"))
        assert engine.in_flight("fast") <= DEPTH * 2 and engine.in_flight("slow") == DEPTH
    assert sum(1 for _, n in engine.sent if n == "fast") == 20
    while engine.open:
        engine.finish(next(iter(engine.open)))
    assert sorted(engine.sent) == sorted((c.id, n) for c, n in cells)  # each once


def test_a_cell_a_test_waits_on_is_sent_at_once_and_not_again():
    cells = [(case(n), "e") for n in range(10)]
    engine = Endpoints()
    feeder = Feeder(engine.submit, cells, {"e": 1})
    feeder.start()
    assert engine.sent == [("c00", "e"), ("c01", "e")]
    taken = {}
    waiter = threading.Thread(target=lambda: taken.update(cell=feeder.take(case(7), "e")))
    waiter.start()
    deadline = time.monotonic() + 5
    while ("c07", "e") not in engine.open:
        assert time.monotonic() < deadline, "the cell a test waits on was not sent"
        time.sleep(0.001)
    engine.finish(("c07", "e"))
    waiter.join(timeout=5)
    assert taken["cell"] == "cell ('c07', 'e')"
    while engine.open:
        engine.finish(next(iter(engine.open)))
    assert engine.sent.count(("c07", "e")) == 1 and len(engine.sent) == 10


def test_stop_sends_nothing_more_and_counts_what_never_ran():
    cells = [(case(n), "e") for n in range(10)]
    engine = Endpoints()
    feeder = Feeder(engine.submit, cells, {"e": 2})
    feeder.start()
    engine.finish(("c00", "e"))  # refilled: c04 sent
    running, unsent = feeder.stop()
    assert len(running) == 4 and unsent == 5
    for future in running:
        future.cancel()
    assert len(engine.sent) == 5
