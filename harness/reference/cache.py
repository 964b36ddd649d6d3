"""ComfyUI's node caches, classic (the default) or LRU (``--cache-lru N``), reduced to what clients can observe.

Outputs are keyed by an input signature (class, ``IS_CHANGED``, literal inputs and the signatures of the
linked upstream nodes), so an unchanged node is reused under any node id. Classic: UI outputs are keyed
by node id and class, and before each prompt both caches drop every entry the new prompt does not name,
which is why only nodes of the previous prompt still present in this one come back as cached (an A, B,
A sequence runs A twice, as recorded in providers.md). LRU (``comfy_execution/caching.py``
``LRUCache``): UI outputs are keyed by signature too, nothing is dropped for being unused, and past N
entries the oldest prompts' entries go, a whole generation at a time, never the current one's: a
prompt seen a few prompts ago comes back from the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from harness.reference.storage import Storage

__all__ = ["NodeCache"]

# Stock classes whose IS_CHANGED hashes the file they read, so a re-uploaded file is not served stale.
_FILE_HASHED_INPUTS = {"LoadImage": "image", "LoadImageMask": "image", "LoadImageOutput": "image"}


class NodeCache:
    def __init__(self, lru: int = 0) -> None:
        self.lru = lru
        """0: classic; N: at most N output entries kept across prompts."""
        self._outputs: dict[str, tuple] = {}
        self._ui: dict[Any, dict] = {}
        self._signatures: dict[str, str] = {}
        self._generation = 0
        self._used: dict[str, int] = {}
        """LRU: per signature, the generation (prompt) that last used it."""

    def set_prompt(self, prompt: Mapping[str, Any], storage: Storage) -> None:
        """Compute this prompt's signatures, then drop what the cache policy drops (``clean_unused``)."""
        self._signatures = {}
        for node_id in prompt:
            self._signature(prompt, node_id, storage)
        used = set(self._signatures.values())
        if self.lru:
            self._generation += 1
            for signature in used & self._outputs.keys():
                self._used[signature] = self._generation
            self._evict()
            return
        self._outputs = {k: v for k, v in self._outputs.items() if k in used}
        ids = {(node_id, node["class_type"]) for node_id, node in prompt.items()}
        self._ui = {k: v for k, v in self._ui.items() if k in ids}

    def _evict(self) -> None:
        """``LRUCache.clean_unused``: drop the oldest generations while over size, never the current one."""
        oldest = min(self._used.values(), default=self._generation)
        while len(self._outputs) > self.lru and oldest < self._generation:
            oldest += 1
            for signature in [s for s, g in self._used.items() if g < oldest]:
                del self._used[signature]
                self._outputs.pop(signature, None)
                self._ui.pop(signature, None)

    def _ui_key(self, node_id: str, class_type: str) -> Any:
        return self._signatures[node_id] if self.lru else (node_id, class_type)

    def _signature(self, prompt: Mapping[str, Any], node_id: str, storage: Storage) -> str:
        """The node's cache key: a digest of its class, IS_CHANGED, literal inputs and its upstream nodes'
        keys. Upstream keys enter as digests, not nested text (a nested key doubled with every node: 9 MB
        at 20 nodes), and the walk is iterative, so a chain of any length costs linear time and memory."""
        stack, on_path = [(node_id, False)], set()
        while stack:
            current, expanded = stack.pop()
            if current in self._signatures:
                continue
            if expanded:  # every upstream node is keyed now: key this one (post-order)
                on_path.discard(current)
                self._signatures[current] = self._key(prompt, current, storage)
                continue
            if current in on_path:
                continue
            on_path.add(current)
            stack.append((current, True))
            stack += [(v[0], False) for v in prompt[current]["inputs"].values()
                      if _is_link(v, prompt) and v[0] not in self._signatures and v[0] not in on_path]
        return self._signatures[node_id]

    def _key(self, prompt: Mapping[str, Any], node_id: str, storage: Storage) -> str:
        node = prompt[node_id]
        parts: dict[str, Any] = {}
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            # A link back to a node still being walked (a cycle, which validation refuses) keys by its id.
            parts[name] = (["link", self._signatures.get(value[0], value[0]), value[1]]
                           if _is_link(value, prompt) else value)
        changed = None
        hashed = _FILE_HASHED_INPUTS.get(node["class_type"])
        if hashed is not None:
            path = storage.annotated_path(str(node["inputs"].get(hashed)))
            changed = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        text = json.dumps([node["class_type"], changed, parts], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def outputs(self, node_id: str) -> tuple | None:
        return self._outputs.get(self._signatures[node_id])

    def store(self, node_id: str, outputs: tuple) -> None:
        self._outputs[self._signatures[node_id]] = outputs
        if self.lru:
            self._used[self._signatures[node_id]] = self._generation

    def ui(self, node_id: str, class_type: str) -> dict | None:
        return self._ui.get(self._ui_key(node_id, class_type))

    def store_ui(self, node_id: str, class_type: str, entry: dict) -> None:
        self._ui[self._ui_key(node_id, class_type)] = entry

    def ui_entries(self, prompt: Mapping[str, Any]) -> list[tuple[str, dict]]:
        """Every UI entry of the prompt's nodes, in prompt order (ComfyUI walks a set here)."""
        found = ((node_id, self._ui.get(self._ui_key(node_id, node["class_type"]))) for node_id, node in prompt.items())
        return [(node_id, entry) for node_id, entry in found if entry is not None]


def _is_link(value: Any, prompt: Mapping[str, Any]) -> bool:
    return isinstance(value, list) and len(value) == 2 and value[0] in prompt
