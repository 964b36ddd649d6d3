"""What nodes compute on the reference endpoint: no tensors, only the facts a compatibility run checks.

Image-like values (IMAGE, MASK, LATENT, VIDEO) carry their batch size (a video's frames), height, width,
channel count and a flat colour; model-like values (MODEL, CLIP, VAE, CONDITIONING, ...) are opaque handles. A few classes are
modelled after their real code (sizes, file I/O, the recorded failures); every other class passes the
size of its first image-like input through to its image-like outputs.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from harness.comfy.catalogue import NodeClass
from harness.comfy.dynamic import AUTOGROW, DYNAMIC_COMBO, MATCH_TYPE, node_inputs
from harness.comfy.validator import Flavour
from harness.reference.failures import RUN_FRAMES_0_33_0, V3_CALL_FRAMES, NodeFailure, frame
from harness.reference.png import write_flat_png
from harness.reference.storage import Storage
from harness.reference.media import write_flac, write_video

__all__ = ["Handle", "NodeCall", "Pixels", "format_value", "run_node"]

_LATENT_SCALE = 8
_IMAGE_KINDS = ("IMAGE", "MASK", "LATENT", "VIDEO")
_PIXEL_KINDS = {"IMAGE", "MASK", "VIDEO"}
"""Kinds measured in pixels: a latent is in cells of 8."""


@dataclass(frozen=True)
class Pixels:
    """An IMAGE, MASK, LATENT or VIDEO; a LATENT's height and width are in latent cells (pixels / 8)."""

    kind: str
    batch: int
    height: int
    width: int
    channels: int = 3
    colour: tuple[int, ...] = (0, 0, 0)

    def as_kind(self, kind: str) -> Pixels:
        """The same picture as another kind: latents grow ×8 when decoded, images shrink when encoded."""
        if kind == self.kind or {kind, self.kind} <= _PIXEL_KINDS:
            return replace(self, kind=kind)
        if kind == "LATENT":
            return replace(self, kind=kind, height=self.height // _LATENT_SCALE, width=self.width // _LATENT_SCALE)
        return replace(self, kind=kind, height=self.height * _LATENT_SCALE, width=self.width * _LATENT_SCALE, channels=3)

    def __str__(self) -> str:
        # The real server prints torch's tensor repr here; the reference shows the shape it tracks.
        return f"{self.kind.lower()}(batch={self.batch}, height={self.height}, width={self.width}, channels={self.channels})"


@dataclass(frozen=True)
class Handle:
    """A model-like output: what produced it, for messages."""

    type: str
    node_id: str

    def __str__(self) -> str:
        return f"<{self.type} from node {self.node_id}>"


@dataclass
class NodeCall:
    """One node about to run: its class, resolved inputs and the server's files."""

    node_id: str
    node: NodeClass
    inputs: dict[str, Any]
    storage: Storage
    prompt: Mapping[str, Any]
    extra_data: Mapping[str, Any]
    flavour: Flavour = Flavour.V0_3_64
    """The ComfyUI release the server answers as: 0.33.0 runs some nodes differently."""

    def number(self, name: str) -> Any:
        """An input's value, or the catalogue default when a link delivered nothing the reference tracks."""
        value = self.inputs.get(name)
        return self.node.inputs[name].extra.get("default") if value is None else value

    def first_pixels(self) -> Pixels | None:
        return next((v for v in self.inputs.values() if isinstance(v, Pixels)), None)


def format_value(value: Any) -> Any:
    """``execution.format_value``: how ``current_inputs`` shows a value."""
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


Result = tuple[tuple, dict | None]
"""A node's outputs by slot and its UI dict (None when it shows nothing)."""


def _passthrough(call: NodeCall) -> Result:
    source = call.first_pixels() or Pixels("IMAGE", 1, 512, 512)
    outputs = tuple(
        source.as_kind(t) if t in _IMAGE_KINDS else _matched(call, slot) if t == MATCH_TYPE else Handle(str(t), call.node_id)
        for slot, t in enumerate(call.node.outputs)
    )
    return outputs, None


def _matched(call: NodeCall, slot: int, name: str | None = None) -> Any:
    """A MatchType output: the value of the input of its template (``name``, or the first one linked),
    whatever its type: a V3 MatchType passes the type through."""
    template = call.node.output_matchtypes[slot] if slot < len(call.node.output_matchtypes) else None
    for input_name, spec in call.node.inputs.items():
        if (spec.type == MATCH_TYPE and (spec.extra.get("template") or {}).get("template_id") == template
                and (name is None or input_name == name) and call.inputs.get(input_name) is not None):
            return call.inputs[input_name]
    return Handle(MATCH_TYPE, call.node_id)


def _switch(call: NodeCall) -> Result:
    """ComfySwitchNode (0.33.0 comfy_extras/nodes_logic.py): on_true or on_false, by ``switch``."""
    return (_matched(call, 0, "on_true" if call.inputs.get("switch") else "on_false"),), None


def _rgb(color: int) -> tuple[int, int, int]:
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def _empty_image(call: NodeCall) -> Result:
    size = (call.number("batch_size"), call.number("height"), call.number("width"))
    return (Pixels("IMAGE", *size, colour=_rgb(call.number("color"))),), None


def _empty_latent(call: NodeCall) -> Result:
    height, width = call.number("height") // _LATENT_SCALE, call.number("width") // _LATENT_SCALE
    return (Pixels("LATENT", call.number("batch_size"), height, width),), None


def _solid_mask(call: NodeCall) -> Result:
    grey = round(call.number("value") * 255)
    return (Pixels("MASK", 1, call.number("height"), call.number("width"), 1, (grey,)),), None


def _invert(call: NodeCall) -> Result:
    image = call.inputs["image"]
    return (replace(image, colour=tuple(255 - c for c in image.colour)),), None


def _join_alpha(call: NodeCall) -> Result:
    image = call.inputs["image"]
    return (replace(image, channels=4, colour=(*image.colour[:3], 255 - call.inputs["alpha"].colour[0])),), None


def _image_batch(call: NodeCall) -> Result:
    first, second = call.inputs["image1"], call.inputs["image2"]
    if call.flavour is Flavour.V0_33_0:
        # 0.33.0's ImageBatch pads the image with fewer channels (history_j_exec_error: success, 2 images).
        return (replace(first, batch=first.batch + second.batch, channels=max(first.channels, second.channels)),), None
    if first.channels != second.channels:
        # nodes.ImageBatch rescales image2 to image1's size, then torch.cat fails on the channel count.
        raise NodeFailure(
            "RuntimeError",
            "Sizes of tensors must match except in dimension 0. "
            f"Expected size {first.channels} but got size {second.channels} for tensor number 1 in the list.",
            (frame("/opt/ComfyUI/nodes.py", 1857, "batch", "s = torch.cat((image1, image2), dim=0)", " " * 8 + "^" * 34),),
        )
    return (replace(first, batch=first.batch + second.batch),), None


def _batch_images(call: NodeCall) -> Result:
    """BatchImagesNode (0.33.0, the V3 successor of ImageBatch): its Autogrow ``images.*`` in one batch,
    padded to the most channels as 0.33.0's ImageBatch is (history_v3_autogrow_valid: 2 images)."""
    images = [v for k, v in call.inputs.items() if k.startswith("images.") and isinstance(v, Pixels)]
    if not images:
        return _passthrough(call)
    first = images[0]
    return (replace(first, batch=sum(i.batch for i in images), channels=max(i.channels for i in images)),), None


def _preview_any(call: NodeCall) -> Result:
    """PreviewAny (0.33.0): its source as text in its UI: a string as it is, anything else as str()
    (history_v3_autogrow_names_valid: "hello 42"; _ksamplerselect_res_2m_custom: an object's repr)."""
    source = call.inputs.get("source")
    return (), {"text": [source if isinstance(source, str) else str(source)]}


def _string_format(call: NodeCall) -> Result:
    """StringFormat (0.33.0): ``f_string`` formatted with its Autogrow ``values.*`` by name
    (history_v3_autogrow_names_valid: "{a} {b}" with a="hello", b=42 → "hello 42")."""
    values = {k.split(".", 1)[1]: v for k, v in call.inputs.items() if k.startswith("values.")}
    return (str(call.inputs.get("f_string", "")).format(**values),), None


def _custom_combo(call: NodeCall) -> Result:
    """CustomCombo (0.33.0): the choice and the ``index`` the frontend sends beside it; the node takes all
    its inputs (``accept_all_inputs``), so the undeclared ``index`` reaches it too."""
    index = call.prompt[call.node_id]["inputs"].get("index", 0)
    return (call.inputs.get("choice"), Handle("INT", call.node_id) if isinstance(index, list) else index), None


def _flux_resolution(call: NodeCall) -> Result:
    """ControlAltAI-Nodes 721492b ``FluxResolutionNode.calculate_dimensions``."""
    megapixel = float(call.number("megapixel"))
    round_to = int(call.number("divisible_by"))
    custom = call.inputs.get("custom_aspect_ratio")
    ratio = custom if call.inputs.get("custom_ratio") and custom else call.number("aspect_ratio").split(" ")[0]
    width_ratio, height_ratio = map(int, ratio.split(":"))
    dimension = (megapixel * 1_000_000 / (width_ratio * height_ratio)) ** 0.5
    width = round(int(dimension * width_ratio) / round_to) * round_to
    height = round(int(dimension * height_ratio) / round_to) * round_to
    # The node draws its preview on a fixed 1024x1024 canvas; it returns no UI, so nothing is saved.
    return (width, height, f"{width} x {height}", Pixels("IMAGE", 1, 1024, 1024)), None


def _load_image(call: NodeCall) -> Result:
    name = call.inputs["image"]
    path = call.storage.annotated_path(name)
    try:
        with Image.open(path) as img:
            # LoadImage converts to RGB and returns the alpha channel as the MASK.
            width, height = img.size
    except UnidentifiedImageError:
        raise NodeFailure(
            "PIL.UnidentifiedImageError",
            f"cannot identify image file '/opt/ComfyUI/input/{name}'",
            (
                frame("/opt/ComfyUI/nodes.py", 1647, "load_image", "img = node_helpers.pillow(Image.open, image_path)", " " * 10 + "^" * 43),
                frame("/opt/ComfyUI/node_helpers.py", 31, "pillow", "x = fn(arg)", " " * 8 + "^" * 7),
                frame("/opt/venv/lib/python3.11/site-packages/PIL/Image.py", 3730, "open", "raise UnidentifiedImageError(msg)"),
            ),
        ) from None
    image = Pixels("IMAGE", 1, height, width, 3, (128, 128, 128))
    return (image, Pixels("MASK", 1, height, width, 1, (0,))), None


def _image_saver(kind: str, compress_level: int, prefix_suffix: Callable[[], str], name: str = "{}_{:05}_.png",
                 passes_on: bool = False) -> Callable[[NodeCall], Result]:
    """SaveImage (``output``) and PreviewImage (``temp``): one PNG per batch item, ComfyUI's names
    (``name`` formats the base and the counter); ``passes_on``: the node outputs its images too."""

    def save(call: NodeCall) -> Result:
        with call.storage.save_lock:
            ui = _save(call)
        return ((call.inputs["images"],) if passes_on else ()), ui

    def _save(call: NodeCall) -> dict:
        images = call.inputs["images"].as_kind("IMAGE")
        prefix = str(call.inputs.get("filename_prefix", "ComfyUI")) + prefix_suffix()
        _refuse_outside(kind, prefix)
        folder, base, subfolder, counter = call.storage.next_save_path(kind, prefix)
        info = None
        if call.extra_data.get("client_id") not in call.storage.without_metadata:
            info = PngImagePlugin.PngInfo()
            info.add_text("prompt", json.dumps(dict(call.prompt)))
            for key, value in (call.extra_data.get("extra_pnginfo") or {}).items():
                info.add_text(key, json.dumps(value))
        mode = "RGBA" if images.channels == 4 else "RGB"
        colour = (tuple(images.colour) * 3)[: len(mode)]
        results = []
        large = kind == "output" and call.storage.large_output is not None
        for batch_number in range(images.batch):
            filename = name.format(base.replace('%batch_num%', str(batch_number)), counter)
            try:
                if large:
                    # The profile's output_megabytes: the server's one noise PNG (its own size, no metadata).
                    call.storage.place_large_output(folder / filename)
                else:
                    write_flat_png(folder / filename, mode, (images.width, images.height), colour,
                                   info=info, compress_level=compress_level)
            finally:
                # A file a failing save left half-written is in the folder all the same.
                if (folder / filename).exists():
                    call.storage.added(kind, os.path.join(subfolder, filename))
            results.append({"filename": filename, "subfolder": subfolder, "type": kind})
            counter += 1
        return {"images": results}

    return save


def _refuse_outside(kind: str, prefix: str) -> None:
    """``folder_paths.get_save_image_path``'s check: a prefix leading out of the folder (``../x``) raises.

    Real ComfyUI 0.3.64 was seen to answer ``filename_prefix: "../outside/x"`` this way; the message
    names the recorded server's folders, as every reference traceback does.
    """
    root = f"/opt/ComfyUI/{kind}"
    full = os.path.abspath(os.path.join(root, os.path.dirname(os.path.normpath(prefix))))
    common = os.path.commonpath((root, full))
    if common != root:
        raise NodeFailure(
            "Exception",
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {full}\n         output_dir: {root}\n         commonpath: {common}",
            (
                frame("/opt/ComfyUI/nodes.py", 1590, "save_images",
                      "full_output_folder, filename, counter, subfolder, filename_prefix = folder_paths.get_save_image_path("
                      "filename_prefix, self.output_dir, images[0].shape[1], images[0].shape[0])"),
                frame("/opt/ComfyUI/folder_paths.py", 397, "get_save_image_path", "raise Exception(err)"),
            ),
        )


def _preview_suffix() -> str:
    # PreviewImage appends "_temp_" and five random letters from this alphabet (sic, ComfyUI's).
    return "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))


_SAVE_ADVANCED_PNG = _image_saver("output", 4, str, "{}_{:05}.png", passes_on=True)


def _save_advanced(call: NodeCall) -> Result:
    """SaveImageAdvanced (0.33.0 comfy_extras/nodes_images.py) as PNG: ``<prefix>_<counter>.png``. With no
    underscore after the counter its own files never advance it (``map_filename`` reads them as 0), so
    each save writes ``_00001.png`` again, as the real node does. EXR is not written: its files and UI
    entry are left out, and the workflow returns no output here."""
    return _SAVE_ADVANCED_PNG(call) if call.inputs.get("format") == "png" else _passthrough(call)


_Listed = Callable[[dict, Pixels], dict]


def _video_ui(entry: dict, frames: Pixels) -> dict:
    """comfy_api's PreviewVideo: the file among the images, always animated."""
    return {"images": [entry], "animated": [True]}


def _whole_saver(extension: Callable[[NodeCall], str], write: Callable[[Path, Pixels, NodeCall], None],
                 listed: _Listed = _video_ui) -> Callable[[NodeCall], Result]:
    """Savers that write all their frames (or all the sound) into one file, ``<prefix>_<counter>_.<ext>``,
    ``listed`` in the node's UI: SaveVideo and SaveWEBM among the images, always animated; SaveAnimatedWEBP
    animated unless one frame, SaveAnimatedPNG always; SaveAudio under ``audio``. On 0.33.0 they pass
    their input on (its catalogue lists an output)."""

    def save(call: NodeCall) -> Result:
        source = next((call.inputs[k] for k in ("video", "images", "audio") if k in call.inputs), None)
        frames = source if isinstance(source, Pixels) else Pixels("VIDEO", 1, 512, 512)
        prefix = str(call.inputs.get("filename_prefix", "ComfyUI"))
        _refuse_outside("output", prefix)
        with call.storage.save_lock:
            folder, base, subfolder, counter = call.storage.next_save_path("output", prefix)
            filename = f"{base}_{counter:05}_.{extension(call)}"
            try:
                write(folder / filename, frames, call)
            finally:
                if (folder / filename).exists():
                    call.storage.added("output", os.path.join(subfolder, filename))
        ui = listed({"filename": filename, "subfolder": subfolder, "type": "output"}, frames)
        return ((source,) if call.node.outputs else ()), ui

    return save


def _save_video_container(call: NodeCall) -> str:
    """SaveVideo's ``format``: ``auto`` is WebM for AV1 (0.33.0's ``format.codec``), else MP4."""
    chosen = str(call.inputs.get("format", "auto"))
    if chosen == "auto":
        return "webm" if call.inputs.get("format.codec") == "av1" else "mp4"
    return chosen


def _write_video(path: Path, frames: Pixels, call: NodeCall) -> None:
    """A container with the video track's header and no frames (``video``)."""
    write_video(path, path.suffix[1:], frames.width, frames.height)


def _write_animated(fmt: str) -> Callable[[Path, Pixels, NodeCall], None]:
    """Pillow's animated WebP or PNG of the flat frames, ``fps`` apart (Pillow merges identical frames)."""

    def write(path: Path, frames: Pixels, call: NodeCall) -> None:
        mode = "RGBA" if frames.channels == 4 else "RGB"
        picture = Image.new(mode, (frames.width, frames.height), (tuple(frames.colour) * 3)[: len(mode)])
        duration = int(1000.0 / float(call.number("fps")))
        picture.save(path, fmt, save_all=True, append_images=[picture] * (frames.batch - 1), duration=duration)

    return write


_BEHAVIOURS: dict[str, Callable[[NodeCall], Result]] = {
    "EmptyImage": _empty_image,
    "EmptyLatentImage": _empty_latent,
    "EmptySD3LatentImage": _empty_latent,
    "SolidMask": _solid_mask,
    "ImageInvert": _invert,
    "JoinImageWithAlpha": _join_alpha,
    "ImageBatch": _image_batch,
    "FluxResolutionNode": _flux_resolution,
    "LoadImage": _load_image,
    "SaveImage": _image_saver("output", 4, str),
    "PreviewImage": _image_saver("temp", 1, _preview_suffix),
    "SaveImageAdvanced": _save_advanced,
    "ComfySwitchNode": _switch,
    "BatchImagesNode": _batch_images,
    "PreviewAny": _preview_any,
    "StringFormat": _string_format,
    "CustomCombo": _custom_combo,
    "SaveVideo": _whole_saver(_save_video_container, _write_video),
    "SaveWEBM": _whole_saver(lambda call: "webm", _write_video),
    "SaveAnimatedWEBP": _whole_saver(lambda call: "webp", _write_animated("WEBP"),
                                     lambda entry, frames: {"images": [entry], "animated": [frames.batch != 1]}),
    "SaveAnimatedPNG": _whole_saver(lambda call: "png", _write_animated("PNG")),
    "SaveAudio": _whole_saver(lambda call: "flac", lambda path, frames, call: write_flac(path),
                              lambda entry, frames: {"audio": [entry]}),
}

@dataclass(frozen=True)
class _KindError:
    """What a node's own code raises on 0.33.0 for a value of a kind it cannot take, where MatchType let it
    through validation: at ``input`` holding one of ``kinds``, on the recorded path (``given`` inputs)."""

    input: str
    kinds: frozenset[str]
    message: str
    frames: tuple[str, ...]
    given: Mapping[str, Any] = field(default_factory=dict)


_KIND_ERRORS: dict[str, _KindError] = {
    # ResizeImageMaskNode's input is MatchType IMAGE,MASK, which validation never checks: a LATENT (a
    # dict) gets as far as is_image (history_v3_matchtype_disallowed_type: the one path recorded).
    "ResizeImageMaskNode": _KindError("input", frozenset({"LATENT"}), "'dict' object has no attribute 'shape'", (
        *V3_CALL_FRAMES,
        frame("/opt/ComfyUI/comfy_extras/nodes_post_processing.py", 495, "execute",
              'return io.NodeOutput(scale_by(input, resize_type["multiplier"], scale_method))', " " * 25 + "^" * 56),
        frame("/opt/ComfyUI/comfy_extras/nodes_post_processing.py", 287, "scale_by", "is_type_image = is_image(input)",
              " " * 20 + "^" * 15),
        frame("/opt/ComfyUI/comfy_extras/nodes_post_processing.py", 270, "is_image", "return len(input.shape) == 4",
              " " * 15 + "^" * 11)), {"resize_type": "scale by multiplier"}),
    # A MatchType output is linked into any input: an IMAGE or MASK (a tensor) into LatentUpscaleBy's
    # samples (history_v3_matchtype_output_into_wrong_input).
    "LatentUpscaleBy": _KindError("samples", frozenset({"IMAGE", "MASK"}), "'Tensor' object has no attribute 'copy'", (
        frame("/opt/ComfyUI/nodes.py", 1383, "upscale", "s = samples.copy()", " " * 8 + "^" * 12),)),
}
"""By class; recorded cases only."""


def _kind_error(call: NodeCall) -> None:
    error = _KIND_ERRORS.get(call.node.name)
    value = call.inputs.get(error.input) if error is not None else None
    if (isinstance(value, Pixels) and value.kind in error.kinds
            and all(call.inputs.get(k) == v for k, v in error.given.items())):
        raise NodeFailure("AttributeError", error.message, error.frames, RUN_FRAMES_0_33_0)


def _v3_call(call: NodeCall) -> None:
    """0.33.0: what calling a V3 node's ``execute`` raises for dynamic inputs validation let through.

    Validation checks only the inputs the prompt's own dynamic inputs expand to, so a slot beyond an
    Autogrow's maximum reaches ``execute`` as an unexpected keyword, and a required DynamicCombo whose key
    is absent or no option never reaches it (history_v3_autogrow_beyond_max, _dynamiccombo_invalid_key).
    """
    given = call.prompt[call.node_id]["inputs"]
    declared, _ = node_inputs(call.node, given)
    grown = {spec.name for spec in call.node.inputs.values() if spec.type == AUTOGROW}
    for name in given:
        if name.split(".")[0] in grown and name not in declared:
            raise NodeFailure("TypeError", f"{call.node.name}.execute() got an unexpected keyword argument '{name}'",
                              V3_CALL_FRAMES, RUN_FRAMES_0_33_0)
    for spec in call.node.inputs.values():
        if spec.type == DYNAMIC_COMBO and spec.category == "required" and spec.name not in declared:
            raise NodeFailure("TypeError", f"{call.node.name}.execute() missing 1 required positional argument: '{spec.name}'",
                              V3_CALL_FRAMES, RUN_FRAMES_0_33_0)


def run_node(call: NodeCall) -> Result:
    """Compute a node's outputs and UI; raises NodeFailure where the real node would raise."""
    if call.flavour is Flavour.V0_33_0:
        if call.node.v3:
            _v3_call(call)
        _kind_error(call)
    return _BEHAVIOURS.get(call.node.name, _passthrough)(call)
