"""An endpoint's fingerprint: what it runs (system), which node classes it offers with which inputs,
and which model files its loaders list, as one small JSON document per endpoint and run
(``reports/<run-id>/fingerprints/<endpoint>.json``). Two runs' fingerprints say what changed on an
endpoint between them (``harness.report.drift``).

Each input of a class gets a signature string: ``required:INT``, ``optional:IMAGE``, and for a combo
its options, ``required:COMBO["euler","heun"]``. Combos ComfyUI fills from the server's files are
named by where the files come from instead, so a new model file or input image does not look like a
changed class: ``required:COMBO<models:checkpoints>`` (the files go to the document's ``models``) and
``required:COMBO<files:input>`` for upload combos (LoadImage and friends).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.comfy.catalogue import Catalogue, InputSpec
from harness.comfy.modelfiles import model_folder

__all__ = [
    "SYSTEM_KEYS",
    "combo_options",
    "fingerprint",
    "input_signature",
    "load_fingerprint",
    "system_of",
    "write_fingerprint",
]

SYSTEM_KEYS = ("comfyui_version", "python_version", "pytorch_version", "os", "devices")
"""The provenance keys a fingerprint keeps (``/system_stats``, as the providers report it)."""

# Entries loaders list besides files: VAELoader's built-in decoder, RES4LYF's ".none"/".use_ckpt_vae".
_VIRTUAL_ENTRIES = frozenset({"pixel_space", "None", "none"})

_COMBO = "COMBO"

# Stock combos ComfyUI fills from input/ without an upload flag (``folder_paths.get_input_directory()``).
_INPUT_FILE_COMBOS = frozenset({
    ("LoadLatent", "latent"),
    ("LoadImageSetFromFolderNode", "folder"),
    ("LoadImageTextSetFromFolderNode", "folder"),
    ("OpenAIInputFiles", "file"),
    ("GeminiInputFiles", "file"),
})


def _is_virtual(entry: Any) -> bool:
    return not isinstance(entry, str) or entry in _VIRTUAL_ENTRIES or entry.startswith(".")


def _file_source(class_type: str, spec: InputSpec) -> str | None:
    """``input`` for a combo listing input/ (image_upload, video_upload, ...), ``output`` or the route
    for a remote one, None for a combo of fixed options."""
    if (class_type, spec.name) in _INPUT_FILE_COMBOS:
        return "input"
    extra = spec.extra
    remote = extra.get("remote")
    if isinstance(remote, dict):  # LoadImageOutput lists output/, though it also allows uploads
        route = str(remote.get("route", ""))
        return "output" if route.endswith("/output") else f"remote:{route}"
    if any(key.endswith("_upload") and value for key, value in extra.items()):
        return "input"
    return None


def input_signature(class_type: str, spec: InputSpec) -> tuple[str, str | None, list | None]:
    """(signature, model folder or None, the combo's options or None) of one input."""
    options = spec.options
    if options is None:
        kind = spec.type if isinstance(spec.type, str) else json.dumps(spec.type, separators=(",", ":"), default=str)
        return f"{spec.category}:{kind}", None, None
    folder = model_folder(class_type, spec.name)
    if folder is not None:
        return f"{spec.category}:{_COMBO}<models:{folder}>", folder, options
    source = _file_source(class_type, spec)
    if source is not None:
        return f"{spec.category}:{_COMBO}<files:{source}>", None, options
    return f"{spec.category}:{_COMBO}{json.dumps(options, separators=(',', ':'), default=str)}", None, options


def combo_options(signature: str) -> list | None:
    """The option list a plain combo signature spells, or None for any other signature."""
    _, _, kind = signature.partition(":")
    if kind.startswith(_COMBO + "["):
        try:
            options = json.loads(kind[len(_COMBO):])
        except ValueError:
            return None
        return options if isinstance(options, list) else None
    return None


def system_of(provenance: dict | None) -> dict | None:
    """The fingerprint's ``system`` from provider provenance: the SYSTEM_KEYS, devices as a list."""
    if not isinstance(provenance, dict):
        return None
    system = {key: provenance.get(key) for key in SYSTEM_KEYS}
    system["devices"] = list(system["devices"] or [])
    return system


def fingerprint(endpoint_name: str, catalogue: Catalogue | None, provenance: dict | None) -> dict:
    """The fingerprint document of one endpoint from its ``/object_info`` and ``/system_stats``.

    ``classes`` and ``models`` are None when the endpoint gave no catalogue (a provider envelope
    without ``/object_info``), ``system`` None when it gave no provenance.
    """
    classes: dict[str, dict[str, str]] | None = None
    models: dict[str, list[str]] | None = None
    if catalogue is not None:
        classes, found = {}, {}
        for class_type in catalogue:
            try:
                inputs = catalogue[class_type].inputs
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                classes[class_type] = {"<unreadable>": f"{type(exc).__name__}: {exc}"}
                continue
            signatures = {}
            for name, spec in inputs.items():
                signature, folder, options = input_signature(class_type, spec)
                signatures[name] = signature
                if folder is not None:
                    files = found.setdefault(folder, set())
                    files.update(entry for entry in options if not _is_virtual(entry))
            classes[class_type] = signatures
        models = {folder: sorted(files) for folder, files in sorted(found.items())}
    return {"endpoint": endpoint_name, "system": system_of(provenance), "classes": classes, "models": models}


def write_fingerprint(path: str | Path, doc: dict) -> Path:
    """Write a fingerprint as JSON with sorted keys (atomically: a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Named per process: under xdist every worker introduces every endpoint and writes its fingerprint,
    # and a shared temporary name let one worker's os.replace take another's file away mid-write.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_fingerprint(path: str | Path) -> dict | None:
    """A fingerprint file's document, or None when it is missing or not a fingerprint."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and "classes" in doc else None
