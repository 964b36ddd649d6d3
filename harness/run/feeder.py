"""Cells handed to the engine a few at a time per endpoint, as its cells finish, rather than all at once.

Submitted at once, a 20,000-cell run is 20,000 tasks (~3 KB each, 60 MB) that convert, preflight and
write their request.json in one burst, while the replies of the cells already running wait behind it.
Each endpoint instead keeps ``DEPTH`` × its max_concurrency cells submitted: always some ready for a
slot that frees, so every endpoint stays busy and a run still lasts as long as its slowest endpoint
needs. A cell asked for before its turn (a test waiting on it) is submitted at once.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable, Mapping, Sequence

from harness.run.cases import Case
from harness.run.cells import Cell

__all__ = ["DEPTH", "Feeder"]

DEPTH = 2
"""Cells submitted per slot of an endpoint's max_concurrency."""

_TAKEN: concurrent.futures.Future = concurrent.futures.Future()
"""Stands for a cell its test has taken: done, and holding nothing (20,000 cells held to the end are ~50 MB)."""
_TAKEN.set_result(None)

Submit = Callable[[Case, str], concurrent.futures.Future]


class Feeder:
    """The cells of one session, fed to ``submit`` per endpoint; thread-safe (done callbacks come from the
    engine's loop, tests ask from pytest's thread)."""

    def __init__(self, submit: Submit, cells: Sequence[tuple[Case, str]], limits: Mapping[str, int]) -> None:
        self._submit = submit
        self._queues: dict[str, collections.deque[Case]] = {}
        for case, name in cells:
            self._queues.setdefault(name, collections.deque()).append(case)
        self._room = {name: DEPTH * max(1, limits.get(name, 1)) for name in self._queues}
        self._futures: dict[tuple[str, str], concurrent.futures.Future] = {}
        self._lock = threading.RLock()  # a callback of a future already done runs at once, lock held
        self.total = len(cells)

    def start(self) -> None:
        with self._lock:
            for name in self._queues:
                self._fill(name)

    def take(self, case: Case, endpoint: str) -> Cell:
        """The finished cell (waited for); submitted now if its turn has not come, again if asked again."""
        key = (case.id, endpoint)
        with self._lock:
            future = self._futures.get(key)
            if future is None or future is _TAKEN:  # not reached yet, or asked again (a rerun plugin)
                if future is _TAKEN:
                    self.total += 1
                future = self._send(case, endpoint, paced=False)
        cell = future.result()
        with self._lock:
            self._futures[key] = _TAKEN
        return cell

    def stop(self) -> tuple[list[concurrent.futures.Future], int]:
        """Submit nothing more: the futures not done, and how many cells were never submitted."""
        with self._lock:
            unsent = sum(1 for name, queue in self._queues.items() for case in queue if (case.id, name) not in self._futures)
            for queue in self._queues.values():
                queue.clear()
            return [f for f in self._futures.values() if not f.done()], unsent

    def _fill(self, endpoint: str) -> None:
        queue = self._queues[endpoint]
        while self._room[endpoint] > 0 and queue:
            case = queue.popleft()
            if (case.id, endpoint) not in self._futures:  # else a test asked for it first
                self._room[endpoint] -= 1
                self._send(case, endpoint, paced=True)

    def _send(self, case: Case, endpoint: str, *, paced: bool) -> concurrent.futures.Future:
        future = self._futures[(case.id, endpoint)] = self._submit(case, endpoint)
        if paced:
            future.add_done_callback(lambda _: self._finished(endpoint))
        return future

    def _finished(self, endpoint: str) -> None:
        with self._lock:
            self._room[endpoint] += 1
            self._fill(endpoint)
