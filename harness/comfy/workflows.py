"""Workflows as files hold them: loading either format (API prompts, and the UI exports the web
frontend saves), what only a UI file knows (the model files it lists), and applying a case's overrides
to an API prompt."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.comfy.convert import is_ui_workflow
from harness.errors import WorkflowError

__all__ = ["Override", "apply_overrides", "check_api_format", "listed_models", "load_workflow", "positive_prompt",
           "seed_inputs", "shorthand_overrides", "vary_seeds"]


def load_workflow(path: str | Path) -> dict:
    """Read a workflow in either format: an API prompt ``{node_id: {"class_type", "inputs"}}``, or a UI
    export (``nodes``, ``links``), which is converted per endpoint (``harness.comfy.convert``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkflowError(f"{path}: no such workflow file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkflowError(f"{path}: not valid JSON ({exc})") from None
    if is_ui_workflow(data):
        _check_ui_format(data, str(path))
    else:
        check_api_format(data, str(path))
    return data


def _check_ui_format(data: Mapping[str, Any], source: str) -> None:
    for key in ("nodes", "links"):
        if not isinstance(data[key], list):
            raise WorkflowError(f"{source}: $.{key}: expected a list (a UI export), got {type(data[key]).__name__}")
    for index, node in enumerate(data["nodes"]):
        if not isinstance(node, dict) or "id" not in node:
            raise WorkflowError(f"{source}: $.nodes[{index}]: expected a node object with an 'id'")


def check_api_format(data: Any, source: str) -> None:
    """Raise a one-line WorkflowError unless ``data`` is an API-format graph."""
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{source}: expected an API-format workflow (a JSON object of nodes) or a UI export "
                            f"(with 'nodes' and 'links'), got {type(data).__name__}")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(f"{source}: node {node_id!r}: expected an object with 'class_type' and 'inputs'")


def listed_models(ui: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """File name → ``{url, directory}`` for every model a UI file lists: the frontend keeps the
    ``models`` of a template or of a node (``properties.models``) so that a missing one can be downloaded."""
    found: dict[str, dict[str, str]] = {}
    for entry in _model_entries(ui):
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            found.setdefault(entry["name"], {k: str(entry[k]) for k in ("url", "directory") if entry.get(k)})
    return found


def _model_entries(ui: Mapping[str, Any]) -> Iterator[Any]:
    yield from _as_list(ui.get("models"))
    subgraphs = (ui.get("definitions") or {}).get("subgraphs") if isinstance(ui.get("definitions"), Mapping) else None
    for graph in [ui, *_as_list(subgraphs)]:
        for node in _as_list(graph.get("nodes")) if isinstance(graph, Mapping) else ():
            properties = node.get("properties") if isinstance(node, Mapping) else None
            if isinstance(properties, Mapping):
                yield from _as_list(properties.get("models"))


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


@dataclass(frozen=True)
class Override:
    """Set one literal input: on one node (``node``), or on every node of a class (``class_type``)."""

    input: str
    value: Any
    node: str | None = None
    class_type: str | None = None


# The shorthands a case may use, and the inputs they set on every node that has them as literals.
_SHORTHANDS: Mapping[str, tuple[str, ...]] = {
    "seed": ("seed", "noise_seed"),
    "steps": ("steps",),
}


def shorthand_overrides(spec: Mapping[str, Any], workflow: Mapping[str, Any], source: str) -> list[Override]:
    """Expand a case's ``seed``, ``steps``, ``prompt`` and ``size`` into node-level overrides.

    A shorthand that finds no node to set is an error: a silently ignored override would make a
    case test something other than what its author wrote.
    """
    expanded: dict[str, list[Override]] = {}
    for key, inputs in _SHORTHANDS.items():
        if key in spec:
            expanded[key] = [
                Override(name, spec[key], node=node_id)
                for node_id, node in workflow.items()
                for name in inputs
                if _is_literal(node, name)
            ]
    if "prompt" in spec:
        expanded["prompt"] = [Override("text", spec["prompt"], node=n) for n in _positive_text_nodes(workflow)]
    if "size" in spec:
        width, height = spec["size"]
        sized = [n for n, node in workflow.items() if _is_literal(node, "width") and _is_literal(node, "height")]
        expanded["size"] = [Override(k, v, node=n) for n in sized for k, v in (("width", width), ("height", height))]
    for key, found in expanded.items():
        if not found:
            raise WorkflowError(f"{source}: override {key!r}: no node of the workflow has that input as a literal value")
    return [o for found in expanded.values() for o in found]


def _is_literal(node: Mapping[str, Any], name: str) -> bool:
    inputs = node.get("inputs", {})
    return name in inputs and not isinstance(inputs[name], list)


def _positive_text_nodes(workflow: Mapping[str, Any]) -> list[str]:
    """The text-encode nodes wired to a sampler's ``positive`` input (the prompt a user means)."""
    found = []
    for node in workflow.values():
        link = node.get("inputs", {}).get("positive")
        if isinstance(link, list) and link and _is_literal(workflow.get(str(link[0]), {}), "text"):
            found.append(str(link[0]))
    return list(dict.fromkeys(found))


def positive_prompt(workflow: Mapping[str, Any]) -> str | None:
    """The text of the first positive prompt node, for endpoints that take a prompt rather than a workflow."""
    nodes = _positive_text_nodes(workflow)
    return str(workflow[nodes[0]]["inputs"]["text"]) if nodes else None


def apply_overrides(workflow: Mapping[str, Any], overrides: Iterable[Override], source: str) -> dict:
    """A copy of the workflow with the overrides set; an override that matches nothing is an error."""
    result = copy.deepcopy(dict(workflow))
    for o in overrides:
        if o.node is not None:
            targets = [o.node] if o.node in result else []
        else:
            targets = [n for n, node in result.items() if node.get("class_type") == o.class_type]
        if not targets:
            where = f"node {o.node!r}" if o.node is not None else f"class {o.class_type!r}"
            raise WorkflowError(f"{source}: override of {o.input!r}: the workflow has no {where}")
        for node_id in targets:
            result[node_id].setdefault("inputs", {})[o.input] = o.value
    return result


_SEED_LIMIT = 2**32 - 1
"""The largest varied seed without a catalogue to say an input's own maximum: within every seed input
seen (KSampler's is 2**64 - 1, several packs' 2**32 - 1)."""


def seed_inputs(workflow: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(node_id, input) of every literal seed-like input: ``seed``, ``noise_seed`` and any ``*_seed``.

    These are what ComfyUI's cache keys on that a repeat may change without changing what the
    workflow tests: a sampler with a new seed runs again, and so does everything downstream of it.
    """
    return [
        (str(node_id), name)
        for node_id, node in workflow.items()
        if isinstance(node, Mapping) and isinstance(node.get("inputs"), Mapping)
        for name, value in node["inputs"].items()
        if (name == "seed" or name.endswith("_seed")) and isinstance(value, int) and not isinstance(value, bool)
    ]


def vary_seeds(workflow: Mapping[str, Any], salt: str, limits: Mapping[tuple[str, str], tuple[int, int]] | None = None) -> dict:
    """A copy of the workflow with each seed-like input set to a value derived from ``salt``.

    ``salt`` names the run, cell and attempt, so no two attempts of any run share a value: ComfyUI
    keeps the outputs of earlier prompts, and a seed repeated from the previous run would be served
    from its cache. ``limits`` are the (min, max) an endpoint's catalogue declares per input.
    """
    result = copy.deepcopy(dict(workflow))
    for node_id, name in seed_inputs(workflow):
        low, high = (limits or {}).get((node_id, name), (0, _SEED_LIMIT))
        digest = int.from_bytes(hashlib.sha256(f"{salt}/{node_id}/{name}".encode()).digest()[:8], "big")
        result[node_id]["inputs"][name] = low + digest % (high - low + 1)
    return result
