"""The order ComfyUI 0.3.64 runs nodes in: ``comfy_execution.graph.ExecutionList`` and its
``ux_friendly_pick_node``, so ``executing`` events arrive in the order a real server sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.comfy.catalogue import Catalogue

__all__ = ["ExecutionOrder", "NodeNotFound"]


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2


class NodeNotFound(Exception):
    """``comfy_execution.graph.NodeNotFoundError``: a link (an undeclared input's, which validation lets
    through) to a node the prompt does not have."""


class ExecutionOrder:
    """The nodes still to run for the requested outputs; cached upstream nodes are never added.

    Lazy inputs are treated as ordinary ones: the reference has no ``check_lazy_status`` to consult.
    """

    def __init__(self, prompt: Mapping[str, Any], catalogue: Catalogue, is_cached: Callable[[str], bool]) -> None:
        self.prompt = prompt
        self.catalogue = catalogue
        self.is_cached = is_cached
        self.pending: dict[str, None] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, None]] = {}

    def add_node(self, node_id: str) -> None:
        """Queue a node and, first, every uncached node it links to; NodeNotFound for a link to no node."""
        stack, links = [node_id], []
        while stack:
            unique_id = stack.pop()
            if unique_id in self.pending:
                continue
            self.pending[unique_id] = None
            self.block_count[unique_id] = 0
            self.blocking[unique_id] = {}
            for value in self.prompt[unique_id]["inputs"].values():
                if _is_link(value) and value[0] not in self.prompt:
                    raise NodeNotFound(f"Node {value[0]} not found")
                if _is_link(value) and not self.is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], unique_id))
        for source, target in links:
            self._add_strong_link(source, target)

    def _add_strong_link(self, source: str, target: str) -> None:
        self.add_node(source)
        if target not in self.blocking[source]:
            self.blocking[source][target] = None
            self.block_count[target] += 1

    def __bool__(self) -> bool:
        return bool(self.pending)

    def next_node(self) -> str:
        ready = [node_id for node_id in self.pending if self.block_count[node_id] == 0]
        return self._ux_friendly_pick(ready)

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking.pop(node_id):
            self.block_count[blocked] -= 1

    def _is_output(self, node_id: str) -> bool:
        return self.catalogue[self.prompt[node_id]["class_type"]].output_node

    def _ux_friendly_pick(self, ready: list[str]) -> str:
        """Outputs first, then nodes one or two links away from an output, else the first ready node."""
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            if any(self._is_output(c) for b in self.blocking[node_id] for c in self.blocking[b]):
                return node_id
        return ready[0]
