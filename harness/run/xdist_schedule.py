"""The xdist scheduler of a compatibility run: every worker gets its whole share of the cells at once.

xdist's ``load`` scheduling hands a worker a few tests at a time, so a worker knows only the cell it is
running and its engine runs one cell at a time. Handed its whole share up front, as
``harness.run.sharing.spread`` deals it, a worker submits all of it on its first cell and its engine
keeps as many in flight as its part of each endpoint's max_concurrency allows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xdist.scheduler import LoadScheduling

from harness.run.sharing import worker_index

__all__ = ["ShareScheduling"]


class ShareScheduling(LoadScheduling):
    """``LoadScheduling`` with another first distribution: worker ``gwK`` gets every test of part K.

    Everything after it is LoadScheduling's own: the tests of a crashed worker go back to the pending
    list and a replacement worker gets them a few at a time (it has no part; it runs what it is asked).
    """

    def __init__(self, config, log=None, *, share: Callable[[Sequence[str], int], list[int]]) -> None:
        super().__init__(config, log)
        self.share = share
        """Test ids, number of parts → each test's part: what the workers compute for themselves too."""

    def schedule(self) -> None:
        parts = {node: worker_index(node.gateway.id, self.numnodes) for node in self.nodes}
        if self.collection is not None or set(parts.values()) != set(range(self.numnodes)) or len(parts) != self.numnodes:
            # A replacement worker joined (or the workers are not xdist's gw0..gwN-1): load scheduling.
            super().schedule()
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = next(iter(self.node2collection.values()))
        if not self.collection:
            return
        dealt = self.share(self.collection, self.numnodes)
        for node, part in parts.items():
            mine = [i for i, p in enumerate(dealt) if p == part]
            self.node2pending[node].extend(mine)
            if mine:
                node.send_runtest_some(mine)
            node.shutdown()  # nothing more will come: the worker runs its share, then ends
