"""Node replacements: ComfyUI 0.33.0 swaps a removed node class for its registered successor before it
validates a prompt (``server.py`` ``post_prompt`` → ``NodeReplaceManager.apply_replacements``).

``REPLACEMENTS_0_33_0`` is ``GET /node_replacements`` of the recorded stock server
(fixtures/captures/0.33.0/stock/v3_node_replacements.json). ``apply_replacements`` reproduces the
manager on a copy of the prompt: a node is replaced only when its class is absent and the successor is
present; it keeps ``_meta`` but starts from empty inputs (a mapping of ``null`` drops them all, so a
replaced Preview3DAnimation fails ``required_input_missing`` as Preview3D); links from it are remapped
by ``output_mapping``. Where the manager raises, this raises the same exception, and the server answers
500: a replaced node without ``_meta`` (``KeyError: '_meta'`` in ``copy_node_struct``), an
``old_id`` the node does not have.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["REPLACEMENTS_0_33_0", "apply_replacements", "is_link"]


def _mapping(*pairs: tuple[str, str]) -> list[dict]:
    return [{"new_id": new, "old_id": old} for new, old in pairs]


REPLACEMENTS_0_33_0: dict[str, dict[str, Any]] = {
    "ResizeImagesByLongerEdge": {
        "new_node_id": "ImageScaleToMaxDimension",
        "input_mapping": [*_mapping(("image", "images"), ("largest_size", "longer_edge")),
                          {"new_id": "upscale_method", "set_value": "lanczos"}],
        "output_mapping": [{"new_idx": 0, "old_idx": 0}],
    },
    "ImageBatch": {
        "new_node_id": "BatchImagesNode",
        "input_mapping": _mapping(("images.image0", "image1"), ("images.image1", "image2")),
        "output_mapping": None,
    },
    "ImageScaleBy": {
        "new_node_id": "ResizeImageMaskNode",
        "input_mapping": [{"new_id": "input", "old_id": "image"},
                          {"new_id": "resize_type", "set_value": "scale by multiplier"},
                          *_mapping(("resize_type.multiplier", "scale_by"), ("scale_method", "upscale_method"))],
        "output_mapping": None,
    },
    "T2IAdapterLoader": {
        "new_node_id": "ControlNetLoader",
        "input_mapping": _mapping(("control_net_name", "t2i_adapter_name")),
        "output_mapping": None,
    },
    "Load3DAnimation": {"new_node_id": "Load3D", "input_mapping": None, "output_mapping": None},
    "Preview3DAnimation": {"new_node_id": "Preview3D", "input_mapping": None, "output_mapping": None},
    "SDV_img2vid_Conditioning": {"new_node_id": "SVD_img2vid_Conditioning", "input_mapping": None, "output_mapping": None},
    "ConditioningAverage ": {"new_node_id": "ConditioningAverage", "input_mapping": None, "output_mapping": None},
}
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
