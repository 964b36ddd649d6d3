"""Node catalogues: what a ComfyUI server's ``/object_info`` says about each node class.

A catalogue is read-only data. It is parsed lazily, class by class, because a full catalogue holds
hundreds of classes and one workflow touches a dozen.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Catalogue", "InputSpec", "NodeClass", "load_catalogue"]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One declared input of a node class."""

    name: str
    category: str
    """``required`` or ``optional``."""
    type: Any
    """``"INT"``, ``"IMAGE"``, ``"COMBO"`` (V3 combo), or the option list itself (V1 combo)."""
    extra: dict
    """The options dict (min, max, default, tooltip, ...); ``{}`` when the catalogue gives none."""

    @property
    def config(self) -> list:
        """The ``input_config`` ComfyUI echoes in validation errors: ``[type, extra]``."""
        return [self.type, self.extra]

    @property
    def options(self) -> list | None:
        """The allowed values of a combo input in either encoding, or None for other inputs."""
        if isinstance(self.type, list):
            return self.type
        if self.type == "COMBO":
            return self.extra.get("options", [])
        return None


@dataclass(frozen=True, slots=True)
class NodeClass:
    """One node class of a catalogue."""

    name: str
    inputs: dict[str, InputSpec]
    """Required inputs, then optional ones, each in the catalogue's ``input_order``."""
    outputs: tuple
    output_names: tuple[str, ...]
    output_node: bool
    python_module: str
    display_name: str
    v3: bool = False
    """A V3 (``comfy_api``) node: its ``/object_info`` entry has ``price_badge`` (0.33.0's
    ``GET_NODE_INFO_V1`` always writes it, a V1 ``node_info`` never)."""
    output_matchtypes: tuple = ()
    """Per output, the MatchType template it takes its type from (``None`` for a typed output)."""

    @classmethod
    def from_info(cls, name: str, info: Mapping[str, Any]) -> NodeClass:
        declared = info.get("input", {})
        order = info.get("input_order", {})
        inputs: dict[str, InputSpec] = {}
        for category in ("required", "optional"):
            specs = declared.get(category) or {}
            for input_name in order.get(category) or list(specs):
                spec = specs[input_name]
                extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
                inputs[input_name] = InputSpec(input_name, category, spec[0], extra)
        return cls(
            name=name,
            inputs=inputs,
            outputs=tuple(info.get("output", ())),
            output_names=tuple(info.get("output_name", ())),
            output_node=bool(info.get("output_node", False)),
            python_module=info.get("python_module", ""),
            display_name=info.get("display_name", name),
            v3="price_badge" in info,
            output_matchtypes=tuple(info.get("output_matchtypes") or ()),
        )


class Catalogue(Mapping[str, NodeClass]):
    """The node classes of one server, keyed by class_type."""

    def __init__(self, object_info: Mapping[str, Any], source: str = "<memory>") -> None:
        self.object_info = object_info
        """The raw ``/object_info`` document, served as is by the reference endpoint."""
        self.source = source
        """Where the catalogue came from (a file path or an endpoint URL), for reports."""
        self._parsed: dict[str, NodeClass] = {}

    def __getitem__(self, class_type: str) -> NodeClass:
        node = self._parsed.get(class_type)
        if node is None:
            node = NodeClass.from_info(class_type, self.object_info[class_type])
            self._parsed[class_type] = node
        return node

    def __contains__(self, class_type: object) -> bool:
        return class_type in self.object_info

    def __iter__(self) -> Iterator[str]:
        return iter(self.object_info)

    def __len__(self) -> int:
        return len(self.object_info)

    @functools.cached_property
    def python_modules(self) -> frozenset[str]:
        """The modules its classes come from, lowercased (``nodes``, ``custom_nodes.rgthree-comfy``...):
        which packs the server has, their web extensions included."""
        return frozenset(str(info.get("python_module", "")).lower() for info in self.object_info.values()
                         if isinstance(info, Mapping))

    def without(self, *class_types: str) -> Catalogue:
        """A copy lacking the given classes (a pack uninstalled, a class removed upstream)."""
        kept = {k: v for k, v in self.object_info.items() if k not in class_types}
        return Catalogue(kept, f"{self.source} without {', '.join(class_types)}")


@functools.lru_cache(maxsize=8)
def load_catalogue(path: str | Path) -> Catalogue:
    """Read a recorded ``/object_info`` file; repeated loads of one path share one catalogue."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        return Catalogue(json.load(fh), str(path))
