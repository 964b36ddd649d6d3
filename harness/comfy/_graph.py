"""A UI graph loaded the way the frontend's LiteGraph holds it, and its ``graphToPrompt``.

Each node of the file becomes a ``Node`` with the widgets its class gets in the frontend (see
``_widgets``) holding the values of ``widgets_values``; links are kept by id. The prompt is then
made as ``graphToPrompt`` does: every executable node in execution order, its widgets' values,
then each linked input resolved through bypassed, muted, virtual and subgraph nodes
(``ExecutableNodeDTO.resolveInput``/``resolveOutput``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.comfy._widgets import Widget, layout, option_widgets

__all__ = ["Graph", "Node", "UNSET"]


class _Unset:
    """A JavaScript ``undefined``: the member is dropped when the prompt is serialised."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
NO_WIDGET: Any = object()

MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20


# Nodes that only exist in the frontend (isVirtualNode): never sent, resolved away.
UI_ONLY = frozenset({"PrimitiveNode", "Reroute", "Note", "MarkdownNote", "SetNode", "GetNode"})


class Node:
    """One node of a graph or subgraph definition, with its widgets' values."""

    __slots__ = ("id", "sid", "type", "mode", "title", "kind", "inputs", "outputs", "widgets", "values",
                 "properties", "graph", "subgraph", "data", "class_type", "overrides")

    def __init__(self, data: Mapping[str, Any], graph: Graph) -> None:
        self.data = data
        self.graph = graph
        self.id = data.get("id")
        self.sid = str(self.id)
        self.type = data.get("type")
        self.mode = data.get("mode") or 0
        self.title = data.get("title")
        self.properties = data.get("properties") or {}
        self.kind = "comfy"
        self.class_type: str | None = None
        self.inputs: list[list] = []
        """``[name, type, link_id, widget_name]`` per input socket, in the frontend's order."""
        self.outputs: list[list] = []
        """``[name, type, link_ids]`` per output."""
        self.widgets: tuple = ()
        self.values: list = []
        self.subgraph: Graph | None = None
        self.overrides: dict[tuple[str, str], Any] = {}
        """Per instance (1.49.6 proxyWidgets): inner ``(node id, widget)`` → the value this instance sends."""

    def __repr__(self) -> str:
        return f"Node({self.id!r}, {self.type!r})"


def link_of(link: Any) -> tuple | None:
    """``(id, origin_id, origin_slot, target_id, target_slot, type)`` of a root (array) or subgraph (object) link."""
    if isinstance(link, Mapping):
        return (link.get("id"), str(link.get("origin_id")), link.get("origin_slot"), str(link.get("target_id")),
                link.get("target_slot"), link.get("type"))
    if isinstance(link, (list, tuple)) and len(link) >= 5:
        return (link[0], str(link[1]), link[2], str(link[3]), link[4], link[5] if len(link) > 5 else None)
    return None


class Graph:
    """The root graph or one subgraph definition: nodes in file order, links by id."""

    __slots__ = ("nodes", "links", "definition", "io_inputs", "io_outputs", "id")

    def __init__(self, data: Mapping[str, Any], definition: bool = False) -> None:
        self.id = data.get("id")
        self.definition = definition
        self.nodes: dict[str, Node] = {}
        self.links: dict[Any, tuple] = {}
        for raw in data.get("links") or ():
            link = link_of(raw)
            if link is not None:
                self.links[link[0]] = link
        self.io_inputs: list = list(data.get("inputs") or ()) if definition else []
        self.io_outputs: list = list(data.get("outputs") or ()) if definition else []


class Builder:
    """Loads a UI workflow into Graphs against one catalogue and frontend version."""

    def __init__(self, ui: Mapping[str, Any], object_info: Mapping[str, Any], frontend: str,
                 layouts: dict) -> None:
        self.object_info = object_info
        self.frontend = frontend
        self.layouts = layouts
        self.definitions = {sg.get("id"): sg for sg in ((ui.get("definitions") or {}).get("subgraphs") or ())
                            if isinstance(sg, Mapping)}
        self.subgraphs: dict[str, Graph] = {}
        self.remaps: dict[Any, dict[str, int]] = {}
        if frontend == "1.49.6" and self.definitions:
            self.deduplicate(ui)
        self.root = self.graph(ui, False)

    def deduplicate(self, ui: Mapping[str, Any]) -> None:
        """deduplicateSubgraphNodeIds (1.49.6): an inner node whose id is already used (by a root node or
        an earlier definition) gets the next free id after the graph's last node id."""
        used = {n.get("id") for n in ui.get("nodes") or () if isinstance(n, Mapping) and type(n.get("id")) is int}
        state = ui.get("state") if ui.get("version") != 0.4 else None
        last = (state or {}).get("lastNodeId") if isinstance(state, Mapping) else ui.get("last_node_id")
        last = last if isinstance(last, (int, float)) and last > 0 else 0
        keys = {str(i) for i in used}
        for sg_id, sg in self.definitions.items():
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
                self.remaps[sg_id] = remap

    def graph(self, data: Mapping[str, Any], definition: bool) -> Graph:
        graph = Graph(data, definition)
        remap = self.remaps.get(graph.id) if definition else None
        if remap:
            graph.links = {k: (k, str(remap.get(o, o)), oslot, str(remap.get(t, t)), tslot, ltype)
                           for k, (_k, o, oslot, t, tslot, ltype) in graph.links.items()}
        if definition:
            self.subgraphs[graph.id] = graph
        for raw in data.get("nodes") or ():
            if isinstance(raw, Mapping):
                node = self.node(raw, graph)
                if remap and node.sid in remap:
                    node.id = remap[node.sid]
                    node.sid = str(node.id)
                graph.nodes[node.sid] = node
        return graph

    def layout(self, class_type: str):
        lay = self.layouts.get(class_type)
        if lay is None:
            lay = self.layouts[class_type] = layout(class_type, self.object_info[class_type], self.frontend)
        return lay

    def node(self, data: Mapping[str, Any], graph: Graph) -> Node:
        node = Node(data, graph)
        t = node.type
        file_inputs = [i for i in data.get("inputs") or () if isinstance(i, Mapping)]
        file_outputs = [o for o in data.get("outputs") or () if isinstance(o, Mapping)]
        node.outputs = [[o.get("name"), o.get("type"), o.get("links")] for o in file_outputs]
        if t in self.definitions:
            node.kind = "subgraph"
            sub = self.subgraphs.get(t)
            if sub is None:
                sub = self.graph(self.definitions[t], True)
            node.subgraph = sub
            # SubgraphNode.configure starts from the definition's slots and LGraphNode.configure copies
            # the saved inputs over them by index (cloneObject into the existing array), so slots the
            # file lacks at its end are still there.
            inputs = [[slot.get("name"), slot.get("type"), None, None] for slot in sub.io_inputs]
            for index, i in enumerate(file_inputs):
                entry = [i.get("name"), i.get("type"), i.get("link"), (i.get("widget") or {}).get("name")]
                if index < len(inputs):
                    inputs[index] = entry
                else:
                    inputs.append(entry)
            node.inputs = inputs
            outputs = [[slot.get("name"), slot.get("type"), None] for slot in sub.io_outputs]
            outputs[:len(node.outputs)] = node.outputs
            node.outputs = outputs
            self.promote(node, data.get("widgets_values"))
            return node
        if t in UI_ONLY or t not in self.object_info:
            node.kind = t if t in UI_ONLY else "missing"
            node.inputs = [[i.get("name"), i.get("type"), i.get("link"), (i.get("widget") or {}).get("name")]
                           for i in file_inputs]
            values = data.get("widgets_values")
            node.values = list(values) if isinstance(values, list) else []
            return node
        node.class_type = t
        lay = self.layout(t)
        if not node.title:
            node.title = lay.title
        # ComfyNode.configure: the inputs follow the node definition, taking each one's link from the
        # file by name; inputs the file has beyond the definition (added by extensions) follow.
        by_name = {i.get("name"): i for i in file_inputs}
        inputs = []
        for name, kind, has_widget in lay.sockets:
            saved = by_name.get(name)
            inputs.append([name, kind, saved.get("link") if saved else None, name if has_widget else None])
        defined = {s[0] for s in lay.sockets}
        for i in file_inputs:
            if i.get("name") not in defined:
                inputs.append([i.get("name"), i.get("type"), i.get("link"), (i.get("widget") or {}).get("name")])
        node.inputs = inputs
        outputs = []
        for index, out_type in enumerate(lay.outputs):
            saved = file_outputs[index] if index < len(file_outputs) else {}
            outputs.append([saved.get("name"), "COMBO" if isinstance(out_type, list) else out_type, saved.get("links")])
        outputs.extend(node.outputs[len(outputs):])
        node.outputs = outputs
        if t == "CustomCombo" and self.frontend == "1.49.6":
            self.custom_combo(node, lay, data.get("widgets_values"))
        else:
            self.values(node, lay, data.get("widgets_values"))
        return node

    def custom_combo(self, node: Node, lay, saved: Any) -> None:
        """Comfy.CustomWidgets (1.49.6) CustomCombo: after its combo, a hidden ``index`` (the position of
        the chosen value among the options) and ``option1``, ``option2``... text widgets, one more
        added whenever the last is given a value."""
        saved = saved if isinstance(saved, list) else []
        choice = saved[0] if saved else lay.widgets[0].default
        options: list = [""]
        for position, value in enumerate(saved[2:]):
            if position >= len(options):
                break
            options[position] = value
            if position == len(options) - 1:
                if value:
                    options.append("")
            elif not value and position == len(options) - 2 and not options[-1]:
                # Emptying the second-to-last option removes the empty last one.
                options.pop()
        node.widgets = (lay.widgets[0], Widget("index", -1, True, True),
                        *(Widget(f"option{i + 1}", "", True, True) for i in range(len(options))))
        index = next((i for i, v in enumerate(options) if v == choice and type(v) is type(choice)), -1)
        node.values = [choice, index, *options]

    def promote(self, node: Node, saved: Any) -> None:
        """SubgraphNode widgets: per instance input, the first inner widget its subgraph input feeds,
        valued from the instance's ``widgets_values``."""
        sub = node.subgraph
        by_name = {slot.get("name"): slot for slot in sub.io_inputs}
        if self.frontend == "1.49.6":
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
        if self.frontend == "1.49.6" and isinstance(proxies, list):
            self.flush_proxy_widgets(node, proxies, saved if isinstance(saved, list) else [], sources)

    def flush_proxy_widgets(self, node: Node, proxies: list, saved: list, sources: list) -> None:
        """flushProxyWidgetMigration (1.49.6): each legacy ``proxyWidgets`` entry takes the instance
        value at its own index; null or missing values leave what is there."""
        names = [name for _index, name in node.widgets]
        remap = self.remaps.get(node.subgraph.id) or {}
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

    def values(self, node: Node, lay, saved: Any) -> None:
        """LGraphNode.configure: ``widgets_values`` fill the widgets by position, skipping the unsaved."""
        widgets = list(lay.widgets)
        if any(w.options is not None for w in widgets):
            # A DynamicCombo builds its option's widgets when created (with its default) and again
            # whenever it is given a value, in the middle of this very loop.
            position = 0
            while position < len(widgets):
                if widgets[position].options is not None:
                    self.choose(widgets, position, widgets[position].default)
                position += 1
        values = [w.default for w in widgets]
        if isinstance(saved, list) and lay.migrate is not None:
            saved = migrate_widgets_values(lay.migrate, saved, self.frontend)
        if saved is not None and not isinstance(saved, list):
            # A dict of values (some packs save one): LGraphNode.configure indexes it by position, so
            # every saved widget becomes undefined.
            values = [UNSET if w.slot else v for w, v in zip(widgets, values)]
        elif saved is not None:
            index = position = 0
            while position < len(widgets):
                widget = widgets[position]
                if widget.slot:
                    if index >= len(saved):
                        break
                    values[position] = saved[index]
                    index += 1
                    if widget.options is not None:
                        added = self.choose(widgets, position, saved[index - 1])
                        values[position + 1:position + 1 + added[0]] = [w.default for w in added[1]]
                position += 1
        node.widgets = tuple(widgets)
        node.values = values

    def choose(self, widgets: list, position: int, key: Any) -> tuple[int, list]:
        """Replace the option widgets after the DynamicCombo at ``position`` with those of ``key``."""
        combo = widgets[position]
        prefix = combo.name + "."
        end = position + 1
        while end < len(widgets) and widgets[end].name.startswith(prefix):
            end += 1
        removed = end - position - 1
        added = option_widgets(combo, key, self.frontend)
        widgets[position + 1:end] = added
        return removed, added

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


def migrate_widgets_values(inputs: tuple, values: list, frontend: str) -> list:
    """``migrateWidgetsValues``: drop the values that a forceInput input held before frontend 1.16."""
    if frontend == "1.27.10":
        # It counts 2 for a control_after_generate or seed input but zips values with the inputs
        # one to one, so past a control the wrong value is dropped; reproduced as is.
        count = sum(2 if control or seed else 1 for _forced, control, seed in inputs)
        if count != len(values):
            return values
        return [v for i, v in enumerate(values) if not (i < len(inputs) and inputs[i][0])]
    flags = [flag for forced, control, _seed in inputs for flag in ((forced, False) if control else (forced,))]
    if len(flags) != len(values):
        return values
    return [v for v, forced in zip(values, flags) if not forced]


def is_valid_connection(a: Any, b: Any) -> bool:
    """LiteGraph.isValidConnection: ``*``/empty match anything; comma lists match on any member."""
    if a == "" or a == "*":
        a = 0
    if b == "" or b == "*":
        b = 0
    if not a or not b or a == b:
        return True
    a, b = str(a).lower(), str(b).lower()
    if "," not in a and "," not in b:
        return a == b
    return any(is_valid_connection(x, y) for x in a.split(",") for y in b.split(","))


class Dto:
    """ExecutableNodeDTO: a node at one place of the flattened graph (``instance:inner`` id)."""

    __slots__ = ("id", "node", "path", "instance")

    def __init__(self, node: Node, path: tuple[str, ...], instance: Node | None) -> None:
        self.node = node
        self.path = path
        self.instance = instance
        self.id = ":".join((*path, node.sid))


class Flattener:
    """graphToPrompt over a built graph for one frontend version."""

    def __init__(self, root: Graph, frontend: str) -> None:
        self.frontend = frontend
        self.dtos: dict[str, Dto] = {}
        order = execution_order(root)
        apply_primitives(order, set())
        for node in order:
            dto = Dto(node, (), None)
            if frontend == "1.49.6":
                # 1.49.6 does not flatten a muted or bypassed subgraph instance: it is bypassed whole.
                self.dtos[dto.id] = dto
                if node.mode in (MUTED, BYPASSED):
                    continue
                self.inner(dto)
            else:
                self.inner(dto)
                self.dtos[dto.id] = dto

    def inner(self, dto: Dto) -> None:
        node = dto.node
        if node.kind != "subgraph":
            return
        self.dtos[dto.id] = dto
        path = (*dto.path, node.sid)
        for inner in node.subgraph.nodes.values():
            child = Dto(inner, path, node)
            self.dtos[child.id] = child
            self.inner(child)

    def instance_dto(self, dto: Dto) -> Dto:
        return self.dtos[":".join(dto.path)]

    def resolve_input(self, dto: Dto, slot: int, visited: set, want: Any = None):
        """``None``, ``("link", origin_id, slot)`` or ``("value", value)`` for one input of a node."""
        key = (dto.id, "I", slot)
        if key in visited:
            raise RecursionError(f"circular reference through input {slot} of node {dto.id}")
        visited.add(key)
        node = dto.node
        if slot >= len(node.inputs):
            return None
        link_id = node.inputs[slot][2]
        if link_id is None:
            return None
        link = node.graph.links.get(link_id)
        if link is None:
            raise LookupError(f"node {dto.id} input {node.inputs[slot][0]!r}: link {link_id} does not exist")
        instance = dto.instance
        if instance is not None and link[1] == "-10":
            outer_input = instance.inputs[link[2]] if link[2] < len(instance.inputs) else None
            if outer_input is None:
                raise LookupError(f"subgraph node {instance.sid} has no input {link[2]}")
            if outer_input[2] is None:
                return self.promoted_value(instance, link[2])
            outer = instance.graph.links.get(outer_input[2])
            if outer is None:
                raise LookupError(f"subgraph node {instance.sid}: link {outer_input[2]} does not exist")
            return self.resolve_input(self.instance_dto(dto), outer[4], visited)
        origin = node.graph.nodes.get(link[1])
        if origin is None:
            raise LookupError(f"node {dto.id} input {node.inputs[slot][0]!r}: origin node {link[1]} does not exist")
        origin_dto = self.dtos[":".join((*dto.path, origin.sid))]
        return self.resolve_output(origin_dto, link[2], want if want is not None else node.inputs[slot][1], visited)

    def resolve_output(self, dto: Dto, slot: int, want: Any, visited: set):
        key = (dto.id, "O", slot)
        if key in visited:
            raise RecursionError(f"circular reference through output {slot} of node {dto.id}")
        visited.add(key)
        node = dto.node
        if node.mode == MUTED and self.frontend == "1.49.6":
            return None
        if node.mode == BYPASSED:
            index = self.bypass_slot(node, slot, want)
            return None if index < 0 else self.resolve_input(dto, index, visited)
        if node.kind == "subgraph":
            return self.subgraph_output(dto, slot, want, visited)
        if node.kind in UI_ONLY:
            return self.virtual_output(dto, slot, want, visited)
        return ("link", dto.id, slot)

    def bypass_slot(self, node: Node, slot: int, want: Any) -> int:
        """_getBypassSlotIndex: the input a bypassed node passes to output ``slot``."""
        inputs = node.inputs
        if want in ("*", ""):
            return slot if len(inputs) > slot else 0
        out_type = node.outputs[slot][1] if slot < len(node.outputs) else None
        if slot < len(inputs):
            opposite = inputs[slot][1]
            if is_valid_connection(opposite, out_type) and is_valid_connection(opposite, want):
                return slot
        for index, entry in enumerate(inputs):
            if entry[1] == want:
                return index
        for index, entry in enumerate(inputs):
            if is_valid_connection(entry[1], out_type) and is_valid_connection(entry[1], want):
                return index
        return -1

    def subgraph_output(self, dto: Dto, slot: int, want: Any, visited: set):
        node = dto.node
        sub = node.subgraph
        if slot >= len(sub.io_outputs):
            return None
        for link_id in sub.io_outputs[slot].get("linkIds") or ():
            link = sub.links.get(link_id)
            if link is not None:
                break
        else:
            return None
        inner = self.dtos.get(":".join((*dto.path, node.sid, link[1])))
        if inner is None:
            return None
        return self.resolve_output(inner, link[2], want, visited)

    def virtual_output(self, dto: Dto, slot: int, want: Any, visited: set):
        node = dto.node
        if node.kind == "GetNode":
            setter = self.setter(dto)
            return None if setter is None else self.resolve_input(setter, 0, visited, want)
        if slot < len(node.inputs):
            if self.frontend == "1.27.10" or node.inputs[slot][2] is not None:
                return self.resolve_input(dto, slot, visited, want)
        return None

    def setter(self, dto: Dto) -> Dto | None:
        """KJNodes' GetNode reads the SetNode of the same graph whose constant name it holds."""
        name = dto.node.values[0] if dto.node.values else None
        for other in dto.node.graph.nodes.values():
            if other.kind == "SetNode" and other.values and other.values[0] == name:
                return self.dtos.get(":".join((*dto.path, other.sid)))
        return None

    def promoted_value(self, instance: Node, slot: int):
        """The value of the instance's widget for a subgraph input nothing is linked to."""
        for (index, _name), value in zip(instance.widgets, instance.values):
            if index == slot:
                return ("value", value)
        return None


def apply_primitives(nodes: list[Node], seen: set) -> None:
    """PrimitiveNode.applyToGraph, run by graphToPrompt before anything else: its value becomes the
    value of every widget its output feeds (the link then resolves to nothing)."""
    for node in nodes:
        if node.kind == "subgraph":
            if node.subgraph.id not in seen:
                seen.add(node.subgraph.id)
                apply_primitives(list(node.subgraph.nodes.values()), seen)
            continue
        if node.kind != "PrimitiveNode" or not node.outputs or not node.outputs[0][2] or not node.values:
            continue
        value = node.values[0]
        graph = node.graph
        for link_id in node.outputs[0][2]:
            link = graph.links.get(link_id)
            target = graph.nodes.get(link[3]) if link else None
            if target is None:
                continue
            name = next((i[3] for i in target.inputs if i[2] == link_id), None)
            for index, widget in enumerate(target.widgets):
                if name is not None and getattr(widget, "name", None) == name:
                    target.values[index] = value
                    break


def execution_order(graph: Graph) -> list[Node]:
    """LGraph.computeExecutionOrder: Kahn's order from the nodes without inputs, loops last by id."""
    nodes = list(graph.nodes.values())
    remaining: dict[str, int] = {}
    start: list[Node] = []
    for node in nodes:
        count = sum(1 for i in node.inputs if i[2] is not None)
        if count:
            remaining[node.sid] = count
        else:
            start.append(node)
    order: list[Node] = []
    pending = {node.sid: node for node in nodes}
    visited: set = set()
    position = 0
    while position < len(start):
        node = start[position]
        position += 1
        order.append(node)
        pending.pop(node.sid, None)
        for output in node.outputs:
            for link_id in output[2] or ():
                link = graph.links.get(link_id)
                if link is None or link_id in visited:
                    continue
                visited.add(link_id)
                target = graph.nodes.get(link[3])
                if target is None or target.sid not in remaining:
                    continue
                remaining[target.sid] -= 1
                if remaining[target.sid] == 0:
                    start.append(target)
    order.extend(node for _key, node in sorted(pending.items(), key=lambda kv: _id_key(kv[0])))
    return order


def _id_key(sid: str) -> tuple:
    # JavaScript walks an object's integer keys first, ascending, then the others in insertion order.
    return (0, int(sid), "") if sid.isdigit() else (1, 0, sid)


def emit(flat: Flattener, serialize) -> dict:
    """graphToPrompt's output: every executable node's widget values, then its resolved links."""
    output: dict[str, dict] = {}
    for dto in flat.dtos.values():
        node = dto.node
        if node.kind in UI_ONLY or node.kind == "subgraph" or node.mode in (MUTED, BYPASSED):
            continue
        inputs: dict[str, Any] = {}
        overrides = dto.instance.overrides if dto.instance is not None else None
        for index, widget in enumerate(node.widgets):
            if widget.prompt:
                value = node.values[index]
                if overrides:
                    value = overrides.get((node.sid, widget.name), value)
                value = serialize(node, widget, value)
                if value is not UNSET:
                    inputs[widget.name] = {"__value__": value} if isinstance(value, list) else value
        for index, entry in enumerate(node.inputs):
            if overrides and entry[3] is not None and (node.sid, entry[3]) in overrides:
                continue
            resolved = flat.resolve_input(dto, index, set())
            if resolved is None:
                continue
            if resolved[0] == "value":
                value = resolved[1]
                if value is not UNSET:
                    inputs[entry[0]] = {"__value__": value} if isinstance(value, list) else value
                continue
            inputs[entry[0]] = [resolved[1], resolved[2]]
        record: dict[str, Any] = {"inputs": inputs}
        if node.class_type is not None:
            record["class_type"] = node.class_type
        record["_meta"] = {"title": node.title}
        output[dto.id] = record
    # graphToPrompt: "Remove inputs connected to removed nodes".
    for record in output.values():
        inputs = record["inputs"]
        for name in [k for k, v in inputs.items() if type(v) is list and len(v) == 2 and v[0] not in output]:
            del inputs[name]
    return output


def all_nodes(graph: Graph) -> list[Node]:
    """collectAllNodes: the graph's nodes, then each subgraph's (once per definition)."""
    found: list[Node] = []
    seen: set = set()

    def walk(g: Graph) -> None:
        for node in g.nodes.values():
            found.append(node)
            if node.kind == "subgraph" and node.subgraph.id not in seen:
                seen.add(node.subgraph.id)
                walk(node.subgraph)

    walk(graph)
    return found
