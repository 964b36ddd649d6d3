"""V3 dynamic inputs as ComfyUI 0.33.0 expands them for one prompt node before validating it.

A V3 node's ``/object_info`` declares an Autogrow (``COMFY_AUTOGROW_V3``) or DynamicCombo
(``COMFY_DYNAMICCOMBO_V3``) input once, under its own id; the inputs a prompt may give it are named
``<id>.<name>`` (``images.image0``, ``resize_type.multiplier``). ``finalized_inputs`` does what
``comfy_api.latest._io.get_finalized_class_inputs`` does with the node's inputs and the prompt's own
("live") inputs: an Autogrow becomes its slots (the first ``min`` required when its template is), a
DynamicCombo becomes itself plus the inputs of the option the prompt selects, nested options
recursively. What is not declared after expansion is not validated, which is why 0.33.0 accepts an
Autogrow slot beyond ``max`` or a DynamicCombo key that is no option and fails only when the node runs.
MatchType (``COMFY_MATCHTYPE_V3``) is no dynamic input: it stays one input that accepts any link.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.comfy.catalogue import InputSpec, NodeClass

__all__ = ["AUTOGROW", "DYNAMIC_COMBO", "MATCH_TYPE", "finalized_inputs", "node_inputs", "specs_of"]

AUTOGROW = "COMFY_AUTOGROW_V3"
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
MATCH_TYPE = "COMFY_MATCHTYPE_V3"


def specs_of(declared: Mapping[str, Any]) -> list[InputSpec]:
    """``{"required": {name: spec}, "optional": ...}`` (a template's or an option's inputs) as InputSpecs."""
    return [
        InputSpec(name, category, spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
        for category in ("required", "optional")
        for name, spec in (declared.get(category) or {}).items()
    ]


def finalized_inputs(declared: Iterable[InputSpec], live: Any) -> tuple[dict[str, InputSpec], bool]:
    """The inputs ComfyUI validates for this node, keyed by their dotted names, and whether any is dynamic.

    The flag is ComfyUI's "``v3_data`` is not empty": with it, a missing required input's ``details``
    is the last part of its dotted name (``image0`` for ``images.image0``).
    """
    out: dict[str, InputSpec] = {}
    paths: dict[str, str] = {}
    _parse(declared, live, None, out, paths)
    return out, bool(paths)


_CACHE_SIZE = 4096
_expanded: dict[tuple[int, tuple], tuple[NodeClass, dict[str, InputSpec], bool]] = {}


def node_inputs(node: NodeClass, live: Any) -> tuple[dict[str, InputSpec], bool]:
    """``finalized_inputs`` of a V3 node, shared by prompts that give its dynamic inputs alike.

    The expansion reads only which dotted names a prompt gives and the values of the selectors
    (strings compared with option keys), so those are the cache key; a node without dynamic inputs is
    its declared inputs as they are.
    """
    dynamic = [spec.name for spec in node.inputs.values() if spec.type in (AUTOGROW, DYNAMIC_COMBO)]
    if not dynamic:
        return node.inputs, False
    if not isinstance(live, dict):
        return finalized_inputs(node.inputs.values(), live)
    given = tuple(sorted(
        (name, value if isinstance(value, str) else None)
        for name, value in live.items() if "." in name or name in dynamic
    ))
    key = (id(node), given)
    hit = _expanded.get(key)
    if hit is not None and hit[0] is node:
        return hit[1], hit[2]
    declared, has_paths = finalized_inputs(node.inputs.values(), live)
    if len(_expanded) >= _CACHE_SIZE:
        _expanded.clear()
    _expanded[key] = (node, declared, has_paths)
    return declared, has_paths


def _finalize(prefix: list[str] | None, name: str | None = None) -> str:
    """``finalize_prefix``: the prefix and the name joined with dots."""
    if prefix is None:
        return name
    return ".".join(prefix if name is None else [*prefix, name])


def _parse(declared: Iterable[InputSpec], live: Any, prefix: list[str] | None, out: dict, paths: dict) -> None:
    """``parse_class_inputs``: plain inputs under their finalized name, dynamic ones expanded."""
    for spec in declared:
        if spec.type == AUTOGROW:
            _autogrow(spec, live, [*(prefix or ()), spec.name], out, paths)
        elif spec.type == DYNAMIC_COMBO:
            _dynamic_combo(spec, live, [*(prefix or ()), spec.name], out, paths)
        else:
            name = _finalize(prefix, spec.name)
            out[name] = InputSpec(name, spec.category, spec.type, spec.extra)
            if prefix:
                paths[name] = name


def _autogrow(spec: InputSpec, live: Any, prefix: list[str], out: dict, paths: dict) -> None:
    """``Autogrow._expand_schema_for_dynamic``: every slot declared, the given ones parsed as nested inputs."""
    template = spec.extra["template"]
    if "names" in template:
        names, minimum = template["names"], template["min"]
    elif "prefix" in template:
        names, minimum = [f"{template['prefix']}{i}" for i in range(template["max"])], template["min"]
    else:
        return
    slot = next(iter(specs_of(template["input"])), None)
    if slot is None:
        raise Exception("template_input could not be determined; this should never happen.")
    given: list[InputSpec] = []
    for i, name in enumerate(names):
        expected = _finalize(prefix, name)
        category = "required" if i < minimum and slot.category == "required" else "optional"
        out[expected] = InputSpec(expected, category, slot.type, slot.extra)
        if expected in live:
            given.append(InputSpec(name, category, slot.type, slot.extra))
    if not given:
        # The Autogrow's own path with an empty-dict default: v3_data is not empty.
        paths[_finalize(prefix)] = _finalize(prefix)
    _parse(given, live, prefix, out, paths)


def _dynamic_combo(spec: InputSpec, live: Any, prefix: list[str], out: dict, paths: dict) -> None:
    """``DynamicCombo._expand_schema_for_dynamic``: only a selected key that is an option declares anything."""
    name = _finalize(prefix)
    if name not in live:
        return
    key = live[name]
    selected = next((option for option in spec.extra["options"] if option["key"] == key), None)
    if selected is None:
        return
    _parse(specs_of(selected["inputs"]), live, prefix, out, paths)
    out[name] = InputSpec(name, spec.category, spec.type, spec.extra)
    paths[name] = _finalize(prefix, prefix[-1])
