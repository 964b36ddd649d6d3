"""A UI workflow loaded the way the frontend's LiteGraph configures it (``LGraph.configure``).

Each node of the file becomes a ``Node`` with the widgets its class gets in the frontend (see
``_widgets``) holding the values of ``widgets_values``, its inputs in the order of the node
definition; subgraph definitions become shared ``Graph``s whose instances promote widgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.comfy._nodes import UNSET, Graph, Node
from harness.comfy._subgraphs import promote, renumber
from harness.comfy._widgets import Widget, layout, option_widgets

__all__ = ["Builder", "migrate_widgets_values"]


class Builder:
    """Loads a UI workflow into Graphs against one catalogue and frontend version."""

    def __init__(self, ui: Mapping[str, Any], object_info: Mapping[str, Any], frontend: str,
                 layouts: dict, virtual: frozenset[str]) -> None:
        self.object_info = object_info
        self.virtual = virtual
        """The node types this frontend keeps to itself (``_nodes.virtual_types``)."""
        self.frontend = frontend
        self.layouts = layouts
        self.definitions = {sg.get("id"): sg for sg in ((ui.get("definitions") or {}).get("subgraphs") or ())
                            if isinstance(sg, Mapping)}
        self.subgraphs: dict[str, Graph] = {}
        # Frontend 1.49.6 renumbers inner node ids that collide (deduplicateSubgraphNodeIds).
        self.remaps = renumber(ui, self.definitions) if frontend == "1.49.6" and self.definitions else {}
        self.root = self.graph(ui, False)

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
                try:
                    node = self.node(raw, graph)
                except (TypeError, AttributeError, IndexError, ValueError) as exc:
                    raise LookupError(f"node {raw.get('id')} ({raw.get('type')}, {raw.get('title')!r}) is malformed: "
                                      f"{exc}") from None
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
                entry = _saved_input(i)
                if index < len(inputs):
                    inputs[index] = entry
                else:
                    inputs.append(entry)
            node.inputs = inputs
            outputs = [[slot.get("name"), slot.get("type"), None] for slot in sub.io_outputs]
            outputs[:len(node.outputs)] = node.outputs
            node.outputs = outputs
            promote(node, data.get("widgets_values"), self.frontend, self.remaps.get(sub.id) or {})
            return node
        if t in self.virtual or t not in self.object_info:
            node.virtual = t in self.virtual
            node.kind = t if node.virtual else "missing"
            node.inputs = [_saved_input(i) for i in file_inputs]
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
                _place(inputs, _saved_input(i))
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


def _place(inputs: list, entry: list) -> None:
    """Append an input the definition lacks; a V3 dynamic one (``group.name``) goes after the last input of
    its group, where Autogrow and DynamicCombo splice theirs."""
    name = entry[0]
    if isinstance(name, str) and "." in name:
        group = name.split(".", 1)[0]
        last = max((k for k, i in enumerate(inputs) if isinstance(i[0], str)
                    and (i[0] == group or i[0].startswith(group + "."))), default=None)
        if last is not None:
            inputs.insert(last + 1, entry)
            return
    inputs.append(entry)


def _saved_input(saved: Mapping[str, Any]) -> list:
    """``[name, type, link id, widget name]`` of an input as the file saved it."""
    return [saved.get("name"), saved.get("type"), saved.get("link"), (saved.get("widget") or {}).get("name")]


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
