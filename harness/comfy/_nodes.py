"""The graph a UI workflow becomes in the frontend: nodes (with their widgets' values) and links by id."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

__all__ = ["BYPASSED", "MUTED", "NO_WIDGET", "UNSET", "Graph", "Node", "link_of", "virtual_types"]


class _Unset:
    """A JavaScript ``undefined``: the member is dropped when the prompt is serialised."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
NO_WIDGET: Any = object()
"""What getWidgetFromSlot finds for an input without a widget."""

# LGraphEventMode.NEVER (muted) and BYPASS.
MUTED, BYPASSED = 2, 4


# Nodes that only exist in the frontend (isVirtualNode): never sent, resolved away.
_CORE_VIRTUAL = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote"})
_PACK_VIRTUAL = {
    # ComfyUI-KJNodes, web/js/setgetnodes.js.
    "kjnodes": frozenset({"SetNode", "GetNode"}),
    # rgthree-comfy, src_web/comfyui: every RgthreeBaseVirtualNode (its muters, bypassers, relays, labels...).
    "rgthree": frozenset(f"{name} (rgthree)" for name in (
        "Reroute", "Label", "Bookmark", "Fast Muter", "Fast Bypasser", "Fast Groups Muter", "Fast Groups Bypasser",
        "Fast Actions Button", "Node Collector", "Mute / Bypass Relay", "Mute / Bypass Repeater", "Random Unmuter",
        "Power Conductor")),
}
"""Packs' JS-only nodes, by a word of the pack's module name. They are virtual only where the server has
the pack, whose web extension registers them; elsewhere the frontend does not know them and sends them
without a class_type (as the corpus shows for SetNode/GetNode on servers without KJNodes), which
ComfyUI refuses."""


@functools.cache
def virtual_types(python_modules: frozenset[str]) -> frozenset[str]:
    """The virtual node types of a frontend served by a ComfyUI whose classes come from ``python_modules``."""
    return _CORE_VIRTUAL.union(*(types for word, types in _PACK_VIRTUAL.items()
                                 if any(word in module for module in python_modules)))


class Node:
    """One node of a graph or subgraph definition, with its widgets' values."""

    __slots__ = ("id", "sid", "type", "mode", "title", "kind", "virtual", "inputs", "outputs", "widgets", "values",
                 "properties", "graph", "subgraph", "data", "class_type", "overrides")

    def __init__(self, data: Mapping[str, Any], graph: Graph) -> None:
        self.data = data
        self.graph = graph
        self.id = data.get("id")
        self.sid = str(self.id)
        self.type = data.get("type")
        self.mode = data.get("mode") or 0
        self.title = data.get("title")
        self.properties = data.get("properties") or {}
        self.kind = "comfy"
        self.virtual = False
        """Frontend-only (isVirtualNode): resolved away, never sent; ``kind`` is then its type."""
        self.class_type: str | None = None
        self.inputs: list[list] = []
        """``[name, type, link_id, widget_name]`` per input socket, in the frontend's order."""
        self.outputs: list[list] = []
        """``[name, type, link_ids]`` per output."""
        self.widgets: tuple = ()
        self.values: list = []
        self.subgraph: Graph | None = None
        self.overrides: dict[tuple[str, str], Any] = {}
        """Per instance (1.49.6 proxyWidgets): inner ``(node id, widget)`` → the value this instance sends."""

    def __repr__(self) -> str:
        return f"Node({self.id!r}, {self.type!r})"


def link_of(link: Any) -> tuple | None:
    """``(id, origin_id, origin_slot, target_id, target_slot, type)`` of a root (array) or subgraph (object) link."""
    if isinstance(link, Mapping):
        return (link.get("id"), str(link.get("origin_id")), link.get("origin_slot"), str(link.get("target_id")),
                link.get("target_slot"), link.get("type"))
    if isinstance(link, (list, tuple)) and len(link) >= 5:
        return (link[0], str(link[1]), link[2], str(link[3]), link[4], link[5] if len(link) > 5 else None)
    return None


class Graph:
    """The root graph or one subgraph definition: nodes in file order, links by id."""

    __slots__ = ("nodes", "links", "definition", "io_inputs", "io_outputs", "id")

    def __init__(self, data: Mapping[str, Any], definition: bool = False) -> None:
        self.id = data.get("id")
        self.definition = definition
        self.nodes: dict[str, Node] = {}
        self.links: dict[Any, tuple] = {}
        for raw in data.get("links") or ():
            link = link_of(raw)
            if link is not None:
                self.links[link[0]] = link
        self.io_inputs: list = list(data.get("inputs") or ()) if definition else []
        self.io_outputs: list = list(data.get("outputs") or ()) if definition else []
