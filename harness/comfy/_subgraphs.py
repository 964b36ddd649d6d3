"""Subgraphs as the frontend loads them: ids renumbered, and each instance's promoted widgets.

A subgraph definition is shared by all its instances; what differs per instance is the value of the
widgets it promotes (inner widgets fed by a subgraph input, or listed in its legacy
``properties.proxyWidgets``), which ``widgets_values`` of the instance hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.comfy._nodes import NO_WIDGET, Node

__all__ = ["promote", "renumber", "widget_for_link"]


def renumber(ui: Mapping[str, Any], definitions: Mapping[Any, Mapping[str, Any]]) -> dict[Any, dict[str, int]]:
    """deduplicateSubgraphNodeIds (1.49.6): an inner node whose id is already used (by a root node or
    an earlier definition) gets the next free id after the graph's last node id. Returns, per definition
    id, old id → new id."""
    remaps: dict[Any, dict[str, int]] = {}
    used = {n.get("id") for n in ui.get("nodes") or () if isinstance(n, Mapping) and type(n.get("id")) is int}
    # LGraph.configure reads a v1 file's state.lastNodeId, then copies every other top-level field, so a
    # last_node_id, when there is one, is what counts.
    state = ui.get("state") if ui.get("version") != 0.4 and isinstance(ui.get("state"), Mapping) else {}
    last = ui.get("last_node_id", state.get("lastNodeId", 0))
    last = last if isinstance(last, (int, float)) and last > 0 else 0
    keys = {str(i) for i in used}
    for sg_id, sg in definitions.items():
        remap: dict[str, int] = {}
        for raw in sg.get("nodes") or ():
            if not isinstance(raw, Mapping):
                continue
            key = str(raw.get("id"))
            if key in keys:
                while True:
                    last += 1
                    if last not in used:
                        break
                remap[key] = last
                used.add(last)
                keys.add(str(last))
            else:
                keys.add(key)
                if key.lstrip("-").isdigit() and str(int(key)) == key:
                    used.add(int(key))
                    last = max(last, int(key))
        if remap:
            remaps[sg_id] = remap
    return remaps


def promote(node: Node, saved: Any, frontend: str, remap: Mapping[str, int]) -> None:
    """SubgraphNode widgets: per instance input, the first inner widget its subgraph input feeds,
    valued from the instance's ``widgets_values``."""
    sub = node.subgraph
    by_name = {slot.get("name"): slot for slot in sub.io_inputs}
    if frontend == "1.49.6":
        # _rebindInputSubgraphSlots: inputs matching no slot of the definition are dropped.
        node.inputs = [entry for entry in node.inputs if entry[0] in by_name]
    promoted: list[tuple[int, str]] = []
    values: list = []
    sources: list[tuple[str, str]] = []
    for index, entry in enumerate(node.inputs):
        slot = by_name.get(entry[0])
        if slot is None:
            continue
        for link_id in slot.get("linkIds") or ():
            link = sub.links.get(link_id)
            target = sub.nodes.get(link[3]) if link else None
            found = widget_for_link(target, link_id) if target else NO_WIDGET
            if found is not NO_WIDGET:
                promoted.append((index, entry[0]))
                values.append(found[1])
                sources.append((target.sid, found[0]))
                break
    if isinstance(saved, list):
        for position, value in enumerate(saved[:len(values)]):
            values[position] = value
    node.widgets = tuple(promoted)
    node.values = values
    proxies = node.properties.get("proxyWidgets")
    if frontend == "1.49.6" and isinstance(proxies, list):
        _flush_proxy_widgets(node, proxies, saved if isinstance(saved, list) else [], sources, remap)


def _flush_proxy_widgets(node: Node, proxies: list, saved: list, sources: list, remap: Mapping[str, int]) -> None:
    """flushProxyWidgetMigration (1.49.6): each legacy ``proxyWidgets`` entry takes the instance
    value at its own index; null or missing values leave what is there."""
    names = [name for _index, name in node.widgets]
    for index, entry in enumerate(proxies):
        if not isinstance(entry, list) or len(entry) < 2:
            continue
        # pickHostValue: a missing or null value is a hole, which changes nothing.
        hole = index >= len(saved) or saved[index] is None
        source, widget_name = str(entry[0]), entry[1]
        source = str(remap.get(source, source))
        if (source, widget_name) in sources:
            if not hole:
                node.values[sources.index((source, widget_name))] = saved[index]
        elif source == "-1":
            if widget_name in names and not hole:
                node.values[names.index(widget_name)] = saved[index]
        else:
            inner = node.subgraph.nodes.get(source)
            if inner is None or inner.kind != "comfy":
                continue
            for position, widget in enumerate(inner.widgets):
                if widget.name == widget_name and any(i[3] == widget_name for i in inner.inputs):
                    # A promoted widget no subgraph input feeds: 1.49.6 links a new subgraph
                    # input to it, so it sends this instance's value (or its own, for a hole)
                    # whatever its input was linked to before.
                    node.overrides[(source, widget_name)] = inner.values[position] if hole else saved[index]
                    break


def widget_for_link(node: Node, link_id: Any) -> Any:
    """getWidgetFromSlot: ``(widget name, current value)`` behind the input ``link_id`` enters, or NO_WIDGET."""
    for entry in node.inputs:
        if entry[2] == link_id:
            name = entry[3]
            break
    else:
        return NO_WIDGET
    if name is None:
        return NO_WIDGET
    if node.kind == "subgraph":
        for (_index, widget_name), value in zip(node.widgets, node.values):
            if widget_name == name:
                return (name, value)
        return NO_WIDGET
    for widget, value in zip(node.widgets, node.values):
        if widget.name == name:
            return (name, value)
    return NO_WIDGET
