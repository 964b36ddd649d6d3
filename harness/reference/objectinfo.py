"""``/object_info`` as a server with files answers it: the recorded catalogue (taken from a server
without models) with the profile's model files and the input folder's images filled into the combos
that ComfyUI fills from disk.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from typing import Any

from harness.comfy.catalogue import Catalogue
from harness.comfy.modelfiles import INPUT_FOLDER, model_folder

__all__ = ["object_info"]

# Stock nodes whose combo lists the top-level images of input/ (``LoadImage.INPUT_TYPES``).
_INPUT_IMAGE_COMBOS = {("LoadImage", "image"), ("LoadImageMask", "image")}


def _input_images(names: Sequence[str]) -> list[str]:
    return sorted(
        n for n in names if "/" not in n and (mimetypes.guess_type(n)[0] or "").startswith("image/")
    )


def _filled(spec: list, files: Sequence[str], keep_fixed: bool) -> list:
    """The spec listing the files (before its fixed entries if kept), in either combo encoding."""
    if isinstance(spec[0], list):
        return [[*files, *(spec[0] if keep_fixed else ())], *spec[1:]]
    extra = dict(spec[1])
    extra["options"] = [*files, *(extra.get("options", []) if keep_fixed else ())]
    return [spec[0], extra, *spec[2:]]


def object_info(catalogue: Catalogue, files: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The ``/object_info`` document; only the classes whose combos change are copied."""
    images = _input_images(files.get(INPUT_FOLDER, ()))
    out = dict(catalogue.object_info)
    for class_type, info in catalogue.object_info.items():
        changed: dict[str, dict] = {}
        for category in ("required", "optional"):
            for name, spec in (info.get("input", {}).get(category) or {}).items():
                if not (isinstance(spec[0], list) or spec[0] == "COMBO"):
                    continue
                # The recording server's own input/ held example.png; the live folder replaces that list.
                from_input = (class_type, name) in _INPUT_IMAGE_COMBOS
                folder = None if from_input else model_folder(class_type, name)
                listed = images if from_input else files.get(folder, ()) if folder else ()
                if listed or from_input:
                    changed.setdefault(category, dict(info["input"][category]))[name] = _filled(spec, listed, not from_input)
        if changed:
            out[class_type] = {**info, "input": {**info["input"], **changed}}
    return out
