"""Node replacements: ComfyUI 0.33.0 swaps a removed node class for its registered successor before it
validates a prompt (``server.py`` ``post_prompt`` → ``NodeReplaceManager.apply_replacements``).

``REPLACEMENTS_0_33_0`` comes from ``GET /node_replacements`` of the recorded stock server
(fixtures/captures/0.33.0/stock/v3_node_replacements.json), which the reference endpoint serves.
``apply_replacements`` reproduces the manager on a copy of the prompt: a node is replaced only when its class is absent and the successor is
present; it keeps ``_meta`` but starts from empty inputs (a mapping of ``null`` drops them all, so a
replaced Preview3DAnimation fails ``required_input_missing`` as Preview3D); links from it are remapped
by ``output_mapping``. Where the manager raises, this raises the same exception, and the server answers
500: a replaced node without ``_meta`` (``KeyError: '_meta'`` in ``copy_node_struct``), an
``old_id`` the node does not have.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["NODE_REPLACEMENTS_0_33_0", "REPLACEMENTS_0_33_0", "apply_replacements", "is_link"]


NODE_REPLACEMENTS_0_33_0: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).resolve().parents[2] / "fixtures/captures/0.33.0/stock/v3_node_replacements.json").read_text(encoding="utf-8"))["body"]
"""``GET /node_replacements`` of the recorded stock server: old class → its registered replacements."""

REPLACEMENTS_0_33_0: dict[str, dict[str, Any]] = {old: entries[0] for old, entries in NODE_REPLACEMENTS_0_33_0.items() if entries}
"""Old class → its first registered replacement (``new_node_id``, ``input_mapping``, ``output_mapping``)."""


def is_link(value: Any) -> bool:
    """``comfy_execution.graph_utils.is_link``: ``[node_id: str, slot: int | float]``."""
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], (int, float)))


def apply_replacements(prompt: Any, known: Any, table: Mapping[str, Mapping[str, Any]]) -> Any:
    """The prompt as ComfyUI validates it after replacements; the given prompt is not modified.

    ``known`` answers ``class_type in known`` (a catalogue). A prompt without a node to replace is
    returned as it is. Raises where ComfyUI's manager raises (a prompt that is not a dict, a replaced
    node without ``_meta``).
    """
    nodes = [(number, node) for number, node in prompt.items()
             if isinstance(node, dict) and "class_type" in node and "inputs" in node]
    need = [number for number, node in nodes
            if node["class_type"] not in known and node["class_type"] in table
            and table[node["class_type"]]["new_node_id"] in known]
    if not need:
        return prompt
    connections: dict[Any, list[tuple[Any, str, Any]]] = {}
    for number, node in nodes:
        for input_id, value in node["inputs"].items():
            if is_link(value):
                connections.setdefault(value[0], []).append((number, input_id, value[1]))
    replaced = copy.deepcopy(prompt)
    for number in need:
        old = prompt[number]
        replacement = table[old["class_type"]]
        new = {**old, "inputs": {}, "_meta": old["_meta"].copy(), "class_type": replacement["new_node_id"]}
        for entry in replacement["input_mapping"] or ():
            if "set_value" in entry:
                new["inputs"][entry["new_id"]] = entry["set_value"]
            else:
                new["inputs"][entry["new_id"]] = copy.deepcopy(old["inputs"][entry["old_id"]])
        replaced[number] = new
        for conn_number, conn_input, old_index in connections.get(number, ()) if replacement["output_mapping"] else ():
            for entry in replacement["output_mapping"]:
                if entry["old_idx"] == old_index:
                    replaced[conn_number]["inputs"][conn_input][1] = entry["new_idx"]
    return replaced
