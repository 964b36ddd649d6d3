"""UI workflows → API prompts, as the ComfyUI web frontend's ``app.graphToPrompt()`` makes them.

WIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.comfy._graph import Builder, Flattener, emit
from harness.comfy.catalogue import Catalogue
from harness.errors import WorkflowError

__all__ = ["FRONTENDS", "ConversionError", "MissingClasses", "MissingNode", "convert", "is_ui_workflow"]

FRONTENDS: tuple[str, ...] = ("1.27.10", "1.49.6")


class ConversionError(WorkflowError):
    """Raised when a UI workflow cannot be converted; the message names the node and what was wrong."""


@dataclass(frozen=True)
class MissingNode:
    """A node that would reach the prompt but whose class the catalogue lacks."""

    node_id: str
    class_type: str | None
    title: str | None
    properties: dict = field(default_factory=dict)


class MissingClasses(ConversionError):
    """Raised when nodes that would reach the prompt have classes the catalogue lacks; names them all."""

    def __init__(self, nodes: tuple[MissingNode, ...]) -> None:
        self.nodes = nodes
        names = ", ".join(f"node {n.node_id} ({n.class_type})" for n in nodes)
        super().__init__(f"the catalogue lacks the class of {names}")


def is_ui_workflow(data: Any) -> bool:
    """Whether ``data`` is a UI-format workflow (the frontend's own test: it has ``nodes`` and ``links``)."""
    return isinstance(data, Mapping) and "nodes" in data and "links" in data


_LAYOUTS: dict = {}


def convert(ui: Mapping, catalogue: Catalogue, *, frontend: str = "1.49.6", strict: bool = True) -> dict:
    """The API prompt the frontend ``frontend`` makes of ``ui`` against ``catalogue``."""
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown frontend {frontend!r}; valid: {', '.join(FRONTENDS)}")
    object_info = catalogue.object_info
    layouts = _LAYOUTS.setdefault((id(object_info), frontend), {})
    builder = Builder(ui, object_info, frontend, layouts)
    flat = Flattener(builder.root, frontend)
    return emit(flat, _serialize)


def _serialize(node, widget, value):
    return value
