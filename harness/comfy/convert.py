"""UI workflows → API prompts, as the ComfyUI web frontend's ``app.graphToPrompt()`` makes them.

WIP
"""

from __future__ import annotations

import decimal
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.comfy._groupnodes import expand_group_nodes
from harness.comfy._graph import UNSET, Builder, Flattener, all_nodes, emit
from harness.comfy._serialize import SAVE_NODES, dynamic_prompt, js_string, text_replacements
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


def convert(ui: Mapping, catalogue: Catalogue, *, frontend: str = "1.49.6", strict: bool = True,
            choose: Callable[[list[str]], str] | None = None) -> dict:
    """The API prompt the frontend ``frontend`` makes of ``ui`` against ``catalogue``."""
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown frontend {frontend!r}; valid: {', '.join(FRONTENDS)}")
    object_info = catalogue.object_info
    layouts = _LAYOUTS.setdefault((id(object_info), frontend), {})
    builder = Builder(expand_group_nodes(ui, object_info, frontend), object_info, frontend, layouts)
    flat = Flattener(builder.root, frontend)
    return _in_js_order(emit(flat, _serializer(frontend, builder.root, choose or random.choice)))


def _in_js_order(prompt: dict) -> dict:
    """The prompt's keys in the order the frontend's JSON has them, which is the order ComfyUI validates
    in (and so which failing node its message names first): a JavaScript object lists integer-like keys
    ("7", "397") in ascending order before every other key ("12:5") in insertion order."""
    ordered = {key: prompt[key] for key in sorted(filter(_is_array_index, prompt), key=int)}
    ordered.update((key, value) for key, value in prompt.items() if key not in ordered)
    for node in ordered.values():
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            inputs = _in_js_order(node["inputs"]) if any(map(_is_array_index, node["inputs"])) else node["inputs"]
            node["inputs"] = {key: _js_number(value) for key, value in inputs.items()}
    return ordered


def _js_number(value: Any) -> Any:
    """A value as it leaves JavaScript: the UI file's numbers were parsed into doubles, so ``1.0`` is sent as
    ``1`` and an integer past 2**53 (a seed, say) as the nearest double, printed in its shortest digits."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON.stringify writes NaN and Infinity as null
        # repr gives the shortest digits that round-trip, as JavaScript prints them (1e21 and up in exponent form).
        return int(decimal.Decimal(repr(value))) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 else _js_number(float(value))
    if isinstance(value, list):
        return [_js_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _js_number(v) for k, v in value.items()}
    return value


def _is_array_index(key: str) -> bool:
    """ECMAScript's canonical array index: digits without a leading zero, below 2**32 - 1."""
    return key.isdigit() and key.isascii() and (key == "0" or key[0] != "0") and int(key) < 2**32 - 1


def _serializer(frontend: str, root, choose: Callable[[list[str]], str]) -> Callable:
    save_nodes = SAVE_NODES[frontend]
    everything: list = []

    def serialize(node, widget, value):
        if widget.text and value is not UNSET:
            value = js_string(value)
        if widget.dynamic_prompt and isinstance(value, str):
            value = dynamic_prompt(value, choose)
        elif widget.name == "filename_prefix" and node.class_type in save_nodes and isinstance(value, str) and "%" in value:
            if not everything:
                everything.extend(all_nodes(root))
            value = text_replacements(value, everything)
        return value

    return serialize
