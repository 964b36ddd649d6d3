"""Legacy group nodes (``extra.groupNodes``, node types ``workflow>NAME`` or ``workflow/NAME``), expanded.

Before subgraphs, a group node packed inner nodes into one node type whose widgets are the inner
widgets that no inner link feeds and whose sockets are the inner inputs and outputs not linked
inside. Frontend 1.27.10 runs the inner nodes as ``<group id>:<inner index>``; 1.49.6 converts each
group node to a subgraph on load, so its inner nodes get fresh ids after the graph's last node id
and the new subgraph node the next one (``<new instance id>:<new inner id>``). Either way the prompt
holds the inner nodes, valued from the group node's ``widgets_values``, so the group is rewritten
here into those nodes before the graph is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.comfy._widgets import layout

__all__ = ["expand_group_nodes"]

_PREFIXES = ("workflow>", "workflow/")


def _group_name(node_type: Any, groups: Mapping[str, Any]) -> str | None:
    if not isinstance(node_type, str):
        return None
    for prefix in _PREFIXES:
        if node_type.startswith(prefix) and node_type[len(prefix):] in groups:
            return node_type[len(prefix):]
    return None


def expand_group_nodes(ui: Mapping[str, Any], object_info: Mapping[str, Any], frontend: str) -> Mapping[str, Any]:
    """``ui`` with each legacy group node replaced by its inner nodes (a shallow copy; ``ui`` is kept)."""
    groups = (ui.get("extra") or {}).get("groupNodes")
    nodes = ui.get("nodes") or ()
    if not isinstance(groups, Mapping) or not any(_group_name(n.get("type"), groups) for n in nodes
                                                  if isinstance(n, Mapping)):
        return ui
    links = [list(link) for link in ui.get("links") or () if isinstance(link, (list, tuple)) and len(link) >= 5]
    last = ui.get("last_node_id") if isinstance(ui.get("last_node_id"), int) else max(
        (n.get("id") for n in nodes if isinstance(n, Mapping) and isinstance(n.get("id"), int)), default=0)
    out_nodes: list = []
    for node in nodes:
        name = _group_name(node.get("type"), groups) if isinstance(node, Mapping) else None
        if name is None:
            out_nodes.append(node)
            continue
        group = groups[name]
        count = len(group.get("nodes") or ())
        if frontend == "1.27.10":
            ids = [f"{node.get('id')}:{i}" for i in range(count)]
        else:
            ids = [f"{last + count + 1}:{last + 1 + i}" for i in range(count)]
            last += count + 1
        out_nodes.extend(_expand(node, group, ids, links, object_info, frontend))
    return {**ui, "nodes": out_nodes, "links": links}


def _expand(node: Mapping[str, Any], group: Mapping[str, Any], ids: list[str], links: list,
            object_info: Mapping[str, Any], frontend: str) -> list[dict]:
    inner = [dict(n) for n in group.get("nodes") or ()]
    links_to: dict[int, dict[int, list]] = {}
    links_from: dict[int, dict[int, list]] = {}
    for link in group.get("links") or ():
        links_to.setdefault(link[2], {})[link[3]] = link
        links_from.setdefault(link[0], {}).setdefault(link[1], []).append(link)
    external = {(e[0], e[1]) for e in group.get("external") or ()}
    group_id = node.get("id")
    seen: dict[str, int] = {}
    widget_targets: list[tuple[int, str, Any]] = []   # (inner index, input name, widget layout entry)
    input_targets: dict[str, tuple[int, str]] = {}
    output_sources: list[tuple[int, int]] = []
    for index, data in enumerate(inner):
        info = object_info.get(data.get("type"))
        data["inputs"] = [dict(i) for i in data.get("inputs") or ()]
        data["outputs"] = [dict(o, links=[]) for o in data.get("outputs") or ()]
        if info is None:
            continue
        declared = info.get("input") or {}
        specs = {**(declared.get("required") or {}), **(declared.get("optional") or {})}
        lay = layout(data.get("type"), info, frontend)
        widget_names = {w.name for w in lay.widgets}
        converted = {i.get("name") for i in data["inputs"] if (i.get("widget") or {}).get("name") == i.get("name")}
        slots = [n for n in specs if n not in widget_names]
        for input_name in specs:
            if input_name in widget_names and input_name not in converted:
                widget_targets.append((index, _unique(data, input_name, seen), input_name))
        saved_inputs = data["inputs"]
        for position, input_name in enumerate(slots + sorted(converted & set(specs), key=lambda n: next(
                (k for k, i in enumerate(saved_inputs) if i.get("name") == n), 0))):
            if position in links_to.get(index, {}):
                continue
            input_targets[_unique(data, input_name, seen)] = (index, input_name)
        for slot in range(len(info.get("output") or ())):
            if slot not in links_from.get(index, {}) or (index, slot) in external:
                output_sources.append((index, slot))
    _apply_widget_values(node, inner, widget_targets, object_info, frontend)
    # Links inside the group: their target slot is the inner node's saved input at that index.
    for link in group.get("links") or ():
        origin, origin_slot, target, target_slot = link[0], link[1], link[2], link[3]
        if target >= len(inner) or target_slot >= len(inner[target]["inputs"]):
            continue
        link_id = f"g{group_id}:{origin}:{origin_slot}:{target}:{target_slot}"
        inner[target]["inputs"][target_slot]["link"] = link_id
        if origin < len(inner):
            _add_output_link(inner[origin], origin_slot, link_id)
        links.append([link_id, ids[origin] if origin < len(ids) else None, origin_slot, ids[target], target_slot,
                      link[5] if len(link) > 5 else None])
    # Links into the group node go to the inner input they stand for.
    for saved in node.get("inputs") or ():
        target = input_targets.get(saved.get("name"))
        if target is None or saved.get("link") is None:
            continue
        index, input_name = target
        entry = next((i for i in inner[index]["inputs"] if i.get("name") == input_name), None)
        if entry is None:
            entry = {"name": input_name, "type": saved.get("type")}
            inner[index]["inputs"].append(entry)
        entry["link"] = saved["link"]
        for link in links:
            if link[0] == saved["link"]:
                link[3], link[4] = ids[index], inner[index]["inputs"].index(entry)
    # Links out of the group node leave from the inner output they stand for.
    for slot, saved in enumerate(node.get("outputs") or ()):
        if slot >= len(output_sources):
            continue
        index, inner_slot = output_sources[slot]
        for link_id in saved.get("links") or ():
            _add_output_link(inner[index], inner_slot, link_id)
            for link in links:
                if link[0] == link_id:
                    link[1], link[2] = ids[index], inner_slot
    for index, data in enumerate(inner):
        data["id"] = ids[index]
        if node.get("mode") in (2, 4):
            data["mode"] = node.get("mode")
    return inner


def _unique(data: Mapping[str, Any], input_name: str, seen: dict[str, int]) -> str:
    """GroupNodeConfig.getInputConfig: a name already used in the group is prefixed with the node's title."""
    name = key = input_name
    if input_name in seen:
        prefix = f"{data.get('title') or data.get('type')} "
        key = name = f"{prefix}{input_name}"
        if name in seen:
            name = f"{prefix}{seen[name]} {input_name}"
    seen[key] = seen.get(key, 1) + 1
    return name


def _add_output_link(data: dict, slot: int, link_id: Any) -> None:
    while len(data["outputs"]) <= slot:
        data["outputs"].append({"links": []})
    data["outputs"][slot].setdefault("links", []).append(link_id)


def _apply_widget_values(node: Mapping[str, Any], inner: list[dict], targets: list,
                         object_info: Mapping[str, Any], frontend: str) -> None:
    """The group node's widgets (each exposed inner widget with its control companions) take its
    ``widgets_values`` by position; each then sets the inner widget it stands for."""
    saved = node.get("widgets_values")
    if not isinstance(saved, list):
        return
    position = 0
    for index, _name, input_name in targets:
        data = inner[index]
        lay = layout(data.get("type"), object_info[data.get("type")], frontend)
        slot_widgets = [w for w in lay.widgets if w.slot]
        at = next((k for k, w in enumerate(slot_widgets) if w.name == input_name), None)
        if at is None:
            continue
        width = 1
        while at + width < len(slot_widgets) and slot_widgets[at + width].control:
            width += 1
        if position >= len(saved):
            break
        values = list(data.get("widgets_values") or [w.default for w in slot_widgets])
        while len(values) < len(slot_widgets):
            values.append(slot_widgets[len(values)].default)
        values[at] = saved[position]
        data["widgets_values"] = values
        position += width
