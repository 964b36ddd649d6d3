"""API-format workflows: loading them, refusing UI exports, and applying a case's overrides."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import WorkflowError

__all__ = ["Override", "apply_overrides", "check_api_format", "load_workflow", "positive_prompt", "shorthand_overrides"]

_UI_EXPORT_HINT = (
    "it is a UI export (it has 'nodes' and 'links'), not API format; in ComfyUI enable "
    "Settings > Comfy > DevMode and use Workflow > Export (API), or 'Save (API Format)'"
)


def load_workflow(path: str | Path) -> dict:
    """Read an API-format workflow: ``{node_id: {"class_type": ..., "inputs": {...}}}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkflowError(f"{path}: no such workflow file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkflowError(f"{path}: not valid JSON ({exc})") from None
    check_api_format(data, str(path))
    return data


def check_api_format(data: Any, source: str) -> None:
    """Raise a one-line WorkflowError unless ``data`` is an API-format graph."""
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(f"{source}: {_UI_EXPORT_HINT}")
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"{source}: expected an API-format workflow (a JSON object of nodes), got {type(data).__name__}")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(f"{source}: node {node_id!r}: expected an object with 'class_type' and 'inputs'")


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
