"""graphToPrompt over a loaded graph: flatten subgraphs, resolve each input, emit the prompt.

As ``ExecutableNodeDTO`` does, every node gets an execution id (``instance:inner`` inside subgraphs),
and each linked input is followed through bypassed nodes (by type), muted nodes, virtual nodes
(Reroute, and packs' frontend-only nodes where the server has the pack) and subgraph boundaries to
the node that really produces it, or to a widget value.
"""

from __future__ import annotations

import copy
from typing import Any

from harness.comfy._nodes import BYPASSED, MUTED, UNSET, Graph, Node
from harness.comfy._serialize import js_json

__all__ = ["Flattener", "all_nodes", "describe", "emit"]


def describe(dto: Dto) -> str:
    """``node 5:3 (KSampler, 'My sampler')``: how error messages name a node."""
    return f"node {dto.id} ({dto.node.type}, {dto.node.title!r})"


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
        apply_primitives(order, set(), root, frontend)
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
            raise LookupError(f"{describe(dto)}: its input {slot} leads back to itself (a loop of links)")
        visited.add(key)
        node = dto.node
        if slot >= len(node.inputs):
            return None
        link_id = node.inputs[slot][2]
        if link_id is None:
            return None
        link = node.graph.links.get(link_id)
        if link is None:
            raise LookupError(f"{describe(dto)}: input {node.inputs[slot][0]!r} names link {link_id}, which the graph lacks")
        instance = dto.instance
        if instance is not None and link[1] == "-10":
            outer_input = instance.inputs[link[2]] if link[2] < len(instance.inputs) else None
            if outer_input is None:
                raise LookupError(f"{describe(self.instance_dto(dto))}: the subgraph links from its input {link[2]}, which it lacks")
            if outer_input[2] is None:
                return self.promoted_value(instance, link[2])
            outer = instance.graph.links.get(outer_input[2])
            if outer is None:
                raise LookupError(f"{describe(self.instance_dto(dto))}: input {outer_input[0]!r} names link {outer_input[2]}, "
                                  "which the graph lacks")
            return self.resolve_input(self.instance_dto(dto), link[2], visited)
        origin = node.graph.nodes.get(link[1])
        if origin is None:
            raise LookupError(f"{describe(dto)}: input {node.inputs[slot][0]!r} is linked from node {link[1]}, "
                              "which the graph lacks")
        origin_dto = self.dtos[":".join((*dto.path, origin.sid))]
        return self.resolve_output(origin_dto, link[2], want if want is not None else node.inputs[slot][1], visited)

    def resolve_output(self, dto: Dto, slot: int, want: Any, visited: set):
        key = (dto.id, "O", slot)
        if key in visited:
            raise LookupError(f"{describe(dto)}: its output {slot} leads back to itself (a loop of links)")
        visited.add(key)
        node = dto.node
        if node.mode == MUTED and self.frontend == "1.49.6":
            return None
        if node.mode == BYPASSED:
            index = self.bypass_slot(node, slot, want)
            return None if index < 0 else self.resolve_input(dto, index, visited)
        if node.kind == "subgraph":
            return self.subgraph_output(dto, slot, want, visited)
        if node.virtual:
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
        # A Reroute (and any other virtual node) passes on what enters its input of the same index.
        return self.resolve_input(dto, slot, visited, want) if slot < len(node.inputs) else None

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


def apply_primitives(nodes: list[Node], seen: set, root: Graph, frontend: str) -> None:
    """PrimitiveNode.applyToGraph, run by graphToPrompt before anything else: its value becomes the
    value of every widget its output feeds (the link then resolves to nothing)."""
    for node in nodes:
        if node.kind == "subgraph":
            if node.subgraph.id not in seen:
                seen.add(node.subgraph.id)
                apply_primitives(list(node.subgraph.nodes.values()), seen, root, frontend)
            continue
        if node.kind != "PrimitiveNode" or not node.outputs or not node.outputs[0][2] or not node.values:
            continue
        graph = node.graph
        # 1.27.10 looks the links up in the root graph (app.graph.links) even for a primitive inside
        # a subgraph, and fails on a link that is not there; 1.49.6 uses the primitive's own graph.
        links = root.links if frontend == "1.27.10" else graph.links
        for link_id in node.outputs[0][2]:
            link = links.get(link_id)
            if link is None:
                if frontend == "1.27.10":
                    raise LookupError(f"node {node.sid} (PrimitiveNode, {node.title!r}): frontend 1.27.10 fails on it "
                                      f"(its link {link_id} is not in the root graph)")
                continue
            target = graph.nodes.get(link[3])
            if target is None:
                continue
            # The link's target slot as fixLinkInputSlots left it: the input holding that link.
            name = next((i[3] for i in target.inputs if i[2] == link_id), None)
            if name is None and isinstance(link[4], int) and 0 <= link[4] < len(target.inputs):
                name = target.inputs[link[4]][3]
            for index, widget in enumerate(target.widgets):
                if name is not None and getattr(widget, "name", None) == name:
                    target.values[index] = node.values[0]
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
        if node.virtual or node.kind == "subgraph" or node.mode in (MUTED, BYPASSED):
            continue
        try:
            output[dto.id] = _record(flat, dto, serialize)
        except (TypeError, AttributeError, IndexError, ValueError) as exc:
            raise LookupError(f"{describe(dto)} is malformed: {exc}") from None
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


def _sendable(value: Any) -> Any:
    """A widget value for the prompt, copied off the UI file: an array is wrapped as ``{"__value__": [...]}``
    (graphToPrompt: a bare array would read as a link)."""
    if isinstance(value, (list, dict)):
        value = copy.deepcopy(value)
        return {"__value__": value} if isinstance(value, list) else value
    return value


def _record(flat: Flattener, dto: Dto, serialize) -> dict:
    """One node's prompt entry: its widgets' values, then its resolved inputs."""
    node = dto.node
    inputs: dict[str, Any] = {}
    overrides = dto.instance.overrides if dto.instance is not None else None
    for index, widget in enumerate(node.widgets):
        if widget.prompt:
            value = node.values[index]
            if overrides:
                value = overrides.get((node.sid, widget.name), value)
            value = serialize(node, widget, value)
            if value is not UNSET:
                value = _sendable(value)
                if widget.curve and isinstance(value, dict) and "__value__" in value:
                    value = {"__type__": "CURVE", **value}
                inputs[widget.name] = value
    if node.kind == "missing":
        # The frontend knows no widget of it: the saved values go as UNKNOWN, UNKNOWN_1, ... (1.49.6), or
        # all as UNKNOWN, the last one staying (1.27.10); one that is no string, number or boolean as JSON text.
        for index, value in enumerate(node.values):
            sent = value if isinstance(value, (str, int, float)) else js_json(value)
            inputs["UNKNOWN" if index == 0 or flat.frontend == "1.27.10" else f"UNKNOWN_{index}"] = sent
    for index, entry in enumerate(node.inputs):
        if overrides and entry[3] is not None and (node.sid, entry[3]) in overrides:
            continue
        resolved = flat.resolve_input(dto, index, set())
        if resolved is None:
            continue
        if resolved[0] == "value":
            if resolved[1] is not UNSET:
                inputs[entry[0]] = _sendable(resolved[1])
            continue
        inputs[entry[0]] = [resolved[1], resolved[2]]
    record: dict[str, Any] = {"inputs": inputs}
    if node.class_type is not None:
        record["class_type"] = node.class_type
    record["_meta"] = {} if node.title is None and node.kind == "missing" else {"title": node.title}
    return record
