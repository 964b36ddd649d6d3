"""ComfyUI's default ("classic") caches, reduced to what clients can observe.

Outputs are keyed by an input signature (class, ``IS_CHANGED``, literal inputs and the signatures of the
linked upstream nodes), so an unchanged node is reused under any node id; UI outputs are keyed by node
id and class. Before each prompt both caches drop every entry the new prompt does not name, which is
why only nodes of the previous prompt(s) still present in this one come back as cached.
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
    def __init__(self) -> None:
        self._outputs: dict[str, tuple] = {}
        self._ui: dict[tuple[str, str], dict] = {}
        self._signatures: dict[str, str] = {}

    def set_prompt(self, prompt: Mapping[str, Any], storage: Storage) -> None:
        """Compute this prompt's signatures, then drop what it does not use (``clean_unused``)."""
        self._signatures = {}
        for node_id in prompt:
            self._signature(prompt, node_id, storage)
        used = set(self._signatures.values())
        self._outputs = {k: v for k, v in self._outputs.items() if k in used}
        ids = {(node_id, node["class_type"]) for node_id, node in prompt.items()}
        self._ui = {k: v for k, v in self._ui.items() if k in ids}

    def _signature(self, prompt: Mapping[str, Any], node_id: str, storage: Storage) -> str:
        if node_id in self._signatures:
            return self._signatures[node_id]
        node = prompt[node_id]
        parts: dict[str, Any] = {}
        for name in sorted(node["inputs"]):
            value = node["inputs"][name]
            if isinstance(value, list) and len(value) == 2 and value[0] in prompt:
                parts[name] = ["link", self._signature(prompt, value[0], storage), value[1]]
            else:
                parts[name] = value
        changed = None
        hashed = _FILE_HASHED_INPUTS.get(node["class_type"])
        if hashed is not None:
            path = storage.annotated_path(str(node["inputs"].get(hashed)))
            changed = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        signature = json.dumps([node["class_type"], changed, parts], sort_keys=True, default=str)
        self._signatures[node_id] = signature
        return signature

    def outputs(self, node_id: str) -> tuple | None:
        return self._outputs.get(self._signatures[node_id])

    def store(self, node_id: str, outputs: tuple) -> None:
        self._outputs[self._signatures[node_id]] = outputs

    def ui(self, node_id: str, class_type: str) -> dict | None:
        return self._ui.get((node_id, class_type))

    def store_ui(self, node_id: str, class_type: str, entry: dict) -> None:
        self._ui[(node_id, class_type)] = entry

    def ui_entries(self, prompt: Mapping[str, Any]) -> list[tuple[str, dict]]:
        """Every UI entry of the prompt's nodes, in prompt order (ComfyUI walks a set here)."""
        found = ((node_id, self._ui.get((node_id, node["class_type"]))) for node_id, node in prompt.items())
        return [(node_id, entry) for node_id, entry in found if entry is not None]
