"""UI workflows → API prompts, exactly as the ComfyUI web frontend's ``app.graphToPrompt()`` makes them.

A UI workflow (what the web UI saves: ``nodes``, ``links``, ``widgets_values``, subgraphs) is turned
into the ``{node_id: {"inputs", "class_type", "_meta"}}`` prompt the frontend would send, for one of
the two frontends modelled (``FRONTENDS``: 1.27.10, the ComfyUI 0.3.64 era, and 1.49.6, ComfyUI
0.33.0) and the target server's node catalogue, since the catalogue decides which widget each value
of ``widgets_values`` belongs to. Pure: no I/O.

What is reproduced, module by module: ``_widgets`` (the widgets and sockets each class gets,
control_after_generate companions, extension-added inputs, V3 DynamicCombo/Autogrow),
``_groupnodes`` (legacy group nodes), ``_load`` (LGraph.configure: input order, widgets_values,
migrations), ``_subgraphs`` (id renumbering, promoted widgets), ``_flatten`` (graphToPrompt:
execution ids, bypass/mute/virtual-node resolution), ``_serialize`` (serializeValue hooks).
"""

from __future__ import annotations

import decimal
import math
import random
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.comfy._groupnodes import expand_group_nodes
from harness.comfy._flatten import Flattener, all_nodes, emit
from harness.comfy._load import Builder
from harness.comfy._nodes import BYPASSED, MUTED, UNSET, virtual_types
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
    """Its id in the prompt (``instance:inner`` inside a subgraph)."""
    class_type: str | None
    """Its ``type`` in the UI file (None for a node without one)."""
    title: str | None
    """The title the file gives it, if any."""
    properties: dict = field(default_factory=dict)
    """The node's own ``properties``: ``cnr_id``/``aux_id``/``ver`` name the pack the author had."""


class MissingClasses(ConversionError):
    """Raised when nodes that would reach the prompt have classes the catalogue lacks; names them all."""

    def __init__(self, nodes: tuple[MissingNode, ...]) -> None:
        self.nodes = nodes
        """Every such node, subgraphs included, in execution order."""
        names = ", ".join(f"node {n.node_id} ({n.class_type}{f', {n.title!r}' if n.title else ''})" for n in nodes)
        classes = sorted({str(n.class_type) for n in nodes})
        super().__init__(f"the catalogue lacks {', '.join(classes)}: {names}")


def is_ui_workflow(data: Any) -> bool:
    """Whether ``data`` is a UI-format workflow (the frontend's own test: it has ``nodes`` and ``links``)."""
    return isinstance(data, Mapping) and "nodes" in data and "links" in data


# Layouts per catalogue and frontend: a catalogue is read-only, and one class's layout is needed by
# every node of that class in every workflow converted against it. Keyed by id (a Catalogue, being a
# Mapping, is unhashable); the entry goes with the catalogue, before its id can be reused.
_LAYOUTS: dict[int, dict[str, dict]] = {}


def _layouts(catalogue: Catalogue, frontend: str) -> dict:
    per_catalogue = _LAYOUTS.get(id(catalogue))
    if per_catalogue is None:
        per_catalogue = _LAYOUTS[id(catalogue)] = {}
        weakref.finalize(catalogue, _LAYOUTS.pop, id(catalogue), None)
    return per_catalogue.setdefault(frontend, {})


def convert(ui: Mapping, catalogue: Catalogue, *, frontend: str = "1.49.6", strict: bool = True,
            choose: Callable[[list[str]], str] | None = None) -> dict:
    """The API prompt frontend ``frontend`` makes of the UI workflow ``ui`` for a server whose node
    catalogue is ``catalogue``: ``(await app.graphToPrompt()).output`` after ``app.loadGraphData(ui)``.

    Raises ``MissingClasses`` when nodes that would be sent have classes the catalogue lacks (with
    ``strict=False`` they are sent as the frontend sends them: without a ``class_type``, their saved
    values as ``UNKNOWN``..., then their links), ``ConversionError`` when the graph cannot be resolved
    (a link to nowhere, a loop through virtual nodes), and ``ValueError`` for an unknown ``frontend``. ``choose`` picks one option of a
    dynamic prompt's ``{a|b}`` (the frontend picks at random; default ``random.choice``).
    """
    if frontend not in FRONTENDS:
        raise ValueError(f"unknown frontend {frontend!r}; valid: {', '.join(FRONTENDS)}")
    if not is_ui_workflow(ui) or not isinstance(ui.get("nodes"), list):
        raise ConversionError("not a UI workflow: expected an object with a 'nodes' list and 'links'")
    object_info = catalogue.object_info
    layouts = _layouts(catalogue, frontend)
    try:
        builder = Builder(expand_group_nodes(ui, object_info, frontend), object_info, frontend, layouts,
                          virtual_types(catalogue.python_modules))
        flat = Flattener(builder.root, frontend)
        if strict:
            missing = tuple(MissingNode(dto.id, dto.node.type, dto.node.data.get("title"), dict(dto.node.properties))
                            for dto in flat.dtos.values()
                            if dto.node.kind == "missing" and dto.node.mode not in (MUTED, BYPASSED))
            if missing:
                raise MissingClasses(missing)
        prompt = emit(flat, _serializer(frontend, builder.root, choose or random.choice))
    except LookupError as exc:
        raise ConversionError(str(exc).strip("'\"")) from None
    except (TypeError, AttributeError, IndexError, ValueError) as exc:
        # A file of the right shape but wrong types somewhere (a string where a list belongs...).
        raise ConversionError(f"malformed UI workflow: {exc}") from None
    return _in_js_order(prompt)


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
    if type(value) is str or value is None or isinstance(value, bool):
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
    """widget.serializeValue of the frontend's extensions, for one conversion."""
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
