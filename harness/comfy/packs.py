"""Which custom node pack provides a node class, or a combo option, and how to install it.

The source is ComfyUI-Manager's ``extension-node-map.json`` (``{repo_url: [[class names], {title_aux,
nodename_pattern?, preemptions?, ...}]}``), read as the Manager reads it: exact names first, then, for a
name no pack lists, the packs whose ``nodename_pattern`` matches it. Patterns are searched for
(``re.search``): they are written for that (those meant as prefixes say ``^``), whereas under the
``re.match`` of the Manager's Python side a suffix pattern such as ``' \\(rgthree\\)$'`` never matches.

About one name in twenty is claimed by several repositories (forks, copies); every claimant is kept and
the attribution says it is ambiguous. The preferred candidate comes first: a pin from
``fixtures/packs/overrides.yaml`` (a node list read from the pack's own source), else a pack that
declares the name in its ``preemptions`` (the Manager's own tie-break), else ComfyUI itself (a stock
class missing on an older server), else map order.

Everything is indexed once, on first use, and shared.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CORE_URL",
    "PACKS_DIR",
    "Attribution",
    "Pack",
    "PackIndex",
    "Source",
    "attribute",
    "default_index",
    "option_pack",
]

CORE_URL = "https://github.com/comfyanonymous/ComfyUI"
"""The map lists ComfyUI's own classes under ComfyUI's repository; they come with an update, not a pack."""

PACKS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "packs"
"""The map, the pack node lists and overrides.yaml (the repository's fixtures; installed editable)."""


@dataclass(frozen=True)
class Pack:
    """One custom node pack: where it lives and how to install it."""

    url: str
    title: str
    """ComfyUI-Manager's title for it (``title_aux``), which is what its install dialog lists."""
    registry: str | None = None
    """Its registry.comfy.org id, where the pack's own source names one."""
    version: str | None = None
    """The version (or commit) a workflow's author had, where the UI file says (``properties.ver``)."""

    @property
    def name(self) -> str:
        """The folder it takes under ``ComfyUI/custom_nodes`` (the repository's name)."""
        return self.url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")

    @property
    def install(self) -> str:
        """A shell command that installs it (for ComfyUI's own classes, what to do instead)."""
        if self.url == CORE_URL:
            return "update ComfyUI: a core node of a newer version than the endpoint runs"
        if self.registry:
            return f"comfy node install {self.registry}"
        if self.url.endswith(".py"):
            # Single-file packs (gists, raw files) are dropped into custom_nodes as they are.
            return f"curl -fLo ComfyUI/custom_nodes/{self.name} {self.url}"
        return f"git clone {self.url} ComfyUI/custom_nodes/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "url": self.url, "registry": self.registry, "install": self.install,
                "version": self.version}


class Source(str, enum.Enum):
    """Why the first candidate of an attribution is the preferred one."""

    DECLARED = "declared"
    """The UI file's node names the pack its author had (``properties.cnr_id`` / ``aux_id``)."""
    OVERRIDE = "override"
    """Pinned in overrides.yaml from the pack's own node list."""
    PREEMPTION = "preemption"
    """The pack lists the name in its ``preemptions``."""
    CORE = "core"
    """ComfyUI itself lists the name: the endpoint's ComfyUI is older than the workflow's."""
    MAP = "map"
    """Listed by name in the map; first in map order."""
    PATTERN = "pattern"
    """No pack lists the name; a ``nodename_pattern`` matches it (a naming convention, not ownership)."""


@dataclass(frozen=True)
class Attribution:
    """The packs that may provide one node class, preferred first."""

    class_type: str
    candidates: tuple[Pack, ...]
    source: Source | None
    """None when no pack is known to provide the class."""

    @property
    def pack(self) -> Pack | None:
        return self.candidates[0] if self.candidates else None

    @property
    def ambiguous(self) -> bool:
        """Several repositories claim the class; the first is a recommendation, not a certainty."""
        return len(self.candidates) > 1

    def to_dicts(self) -> list[dict[str, Any]]:
        """The candidates as JSON for evidence ``packages``; each says whether it is the preferred one and why."""
        source = self.source.value if self.source is not None else None
        return [
            {**pack.to_dict(), "preferred": i == 0, "source": source, "ambiguous": self.ambiguous}
            for i, pack in enumerate(self.candidates)
        ]


class PackIndex:
    """The map indexed by class name, with the overrides applied."""

    def __init__(self, node_map: Mapping[str, Any], overrides: Mapping[str, Any], base: Path = PACKS_DIR) -> None:
        self._meta: dict[str, Mapping[str, Any]] = {}
        self._claims: dict[str, list[str]] = {}
        self._preempted: dict[str, str] = {}
        self._patterns: list[tuple[str, str]] = []
        for url, entry in node_map.items():
            names, meta = entry[0], entry[1] if len(entry) > 1 else {}
            self._meta[url] = meta
            for name in names:
                self._claims.setdefault(name, []).append(url)
            for name in meta.get("preemptions", ()):
                self._preempted.setdefault(name, url)
            if meta.get("nodename_pattern"):
                self._patterns.append((meta["nodename_pattern"], url))
        self._registry: dict[str, str] = {}
        self._pinned: dict[str, str] = {}
        self._options: dict[tuple[str, str, str], str] = {}
        for pack in overrides.get("packs", ()):
            url = pack["url"]
            if pack.get("registry"):
                self._registry[url] = pack["registry"]
            if pack.get("classes_from"):
                for node in _read_json(base / pack["classes_from"])["nodes"]:
                    self._pinned[node["class_type"]] = url
            if pack.get("options_from"):
                for class_type, inputs in _read_json(base / pack["options_from"]).items():
                    for key, change in inputs.items():
                        # Keys are "required.scheduler": the input's category, then its name.
                        input_name = key.split(".", 1)[-1]
                        for value in change.get("added_options", ()):
                            self._options[(class_type, input_name, value)] = url

    def pack(self, url: str) -> Pack:
        meta = self._meta.get(url, {})
        title = meta.get("title_aux") or meta.get("title") or url.rstrip("/").rsplit("/", 1)[-1]
        return Pack(url, title, self._registry.get(url))

    @functools.cached_property
    def _compiled(self) -> list[tuple[re.Pattern[str], str]]:
        """The packs' nodename_patterns, compiled only when a name is not listed by any pack."""
        compiled = []
        for pattern, url in self._patterns:
            try:
                compiled.append((re.compile(pattern), url))
            except re.error:
                continue  # a pack's broken regex must not hide every other pack's attribution
        return compiled

    def attribute(self, class_type: str, declared: Mapping[str, Any] | None = None) -> Attribution:
        """The packs that provide ``class_type``, preferred first.

        ``declared`` is the node's ``properties`` from a UI file: the frontend records there the pack
        (registry id ``cnr_id``, GitHub ``aux_id``) and version ``ver`` the author's node came from, which
        beats any guess from the map; the map's candidates follow it.
        """
        found = self._attribute(class_type)
        pack = self._declared(declared or {}, found.candidates)
        if pack is None:
            return found
        return Attribution(class_type, (pack, *(c for c in found.candidates if c.url != pack.url)), Source.DECLARED)

    def _declared(self, properties: Mapping[str, Any], candidates: tuple[Pack, ...]) -> Pack | None:
        cnr_id, aux_id, version = (properties.get(k) if isinstance(properties.get(k), str) else None
                                   for k in ("cnr_id", "aux_id", "ver"))
        if cnr_id == "comfy-core":
            return dataclasses.replace(self.pack(CORE_URL), version=version)
        if aux_id and re.fullmatch(r"[\w.-]+/[\w.-]+", aux_id):
            url = f"https://github.com/{aux_id}"
        elif cnr_id:
            # A registry id alone: the map's candidate of that name has its repository URL.
            named = [c.url for c in candidates if c.name.lower() == cnr_id.lower()]
            url = named[0] if named else f"https://registry.comfy.org/nodes/{cnr_id}"
        else:
            return None
        # The map knows repositories by URL spelled either way (case, trailing .git).
        known = next((u for u in self._meta if u.lower().removesuffix(".git") == url.lower()), url)
        return dataclasses.replace(self.pack(known), registry=cnr_id or self._registry.get(known), version=version)

    def _attribute(self, class_type: str) -> Attribution:
        # A pinned class the map does not list (a pack's frontend-only node) is the pinning pack's alone.
        claims = self._claims.get(class_type) or ([self._pinned[class_type]] if class_type in self._pinned else [])
        if not claims:
            matches = [url for pattern, url in self._compiled if pattern.search(class_type)]
            return Attribution(class_type, tuple(self.pack(u) for u in matches), Source.PATTERN if matches else None)
        preferred, source = claims[0], Source.MAP
        if class_type in self._pinned:
            preferred, source = self._pinned[class_type], Source.OVERRIDE
        elif class_type in self._preempted:
            preferred, source = self._preempted[class_type], Source.PREEMPTION
        elif CORE_URL in claims:
            preferred, source = CORE_URL, Source.CORE
        ordered = [preferred, *(u for u in claims if u != preferred)]
        return Attribution(class_type, tuple(self.pack(u) for u in ordered), source)

    def option_pack(self, class_type: str, input_name: str, value: Any) -> Pack | None:
        """The pack that adds ``value`` to the options of ``class_type.input_name``, if one is known."""
        url = self._options.get((class_type, input_name, value)) if isinstance(value, str) else None
        return self.pack(url) if url is not None else None


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


@functools.cache
def default_index() -> PackIndex:
    """The index of the recorded map and overrides.yaml, built on first use (tens of milliseconds)."""
    with (PACKS_DIR / "overrides.yaml").open(encoding="utf-8") as fh:
        overrides = yaml.safe_load(fh)
    return PackIndex(_read_json(PACKS_DIR / "extension-node-map.json"), overrides)


def attribute(class_type: str, declared: Mapping[str, Any] | None = None) -> Attribution:
    """``default_index().attribute``."""
    return default_index().attribute(class_type, declared)


def option_pack(class_type: str, input_name: str, value: Any) -> Pack | None:
    """``default_index().option_pack``."""
    return default_index().option_pack(class_type, input_name, value)
