"""Which widgets and input sockets the ComfyUI frontend gives a node class, in its order.

The frontend builds a node from its ``/object_info`` entry: one input socket per input that has no
widget, then one widget per widget input (each also gets a socket), in ``input_order``; extensions
add inputs the catalogue does not list (the upload button of an image combo, ...). A UI file's
``widgets_values`` fill these widgets by position, so this layout decides what every value means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from harness.comfy._nodes import UNSET

__all__ = ["Layout", "Widget", "layout", "option_widgets"]


class Widget(NamedTuple):
    """One widget of a node, as the frontend creates it."""

    name: str
    default: Any
    slot: bool
    """Whether it takes a place in ``widgets_values`` (the frontend skips ``widget.serialize === false``)."""
    prompt: bool
    """Whether it reaches the API prompt (the frontend skips ``widget.options.serialize === false``)."""
    dynamic_prompt: bool = False
    """A text widget whose ``{a|b}`` choices and comments the frontend resolves when queueing."""
    control: bool = False
    """A ``control_after_generate`` companion (or its filter list): a slot, never in the prompt."""
    curve: bool = False
    """A 1.49.6 curve widget, sent as ``{"__type__": "CURVE", "__value__": [...]}``."""
    text: bool = False
    """Its value is read back as a string (a textarea's)."""
    options: Any = None
    """A V3 DynamicCombo's ``{key: inputs}``: choosing a key puts that option's widgets, named
    ``<combo>.<input>``, right after the combo."""


class Layout(NamedTuple):
    """The widgets and input sockets of one node class."""

    widgets: tuple[Widget, ...]
    sockets: tuple[tuple[str, Any, bool], ...]
    """``(name, type, has_widget)`` in the frontend's order: socket-only inputs, then widget inputs."""
    title: str
    outputs: tuple[Any, ...]
    migrate: tuple[tuple[bool, bool, bool], ...] | None
    """For ``migrateWidgetsValues``: ``(forceInput, control_after_generate, named like a seed)`` of the
    inputs it counts, when any is ``forceInput`` (otherwise the migration never changes anything)."""


# The widget constructors each frontend registers (scripts/widgets.ts ComfyWidgets, plus the
# extensions' getCustomWidgets); an input of another type is a socket only.
_WIDGET_TYPES = {
    "1.27.10": frozenset({
        "INT", "FLOAT", "BOOLEAN", "STRING", "MARKDOWN", "COMBO", "IMAGEUPLOAD", "FILEUPLOAD", "COLOR",
        "IMAGECOMPARE", "TREESELECT", "MULTISELECT", "CHART", "GALLERIA", "SELECTBUTTON", "TEXTAREA",
        "WEBCAM", "AUDIO_UI", "AUDIOUPLOAD", "AUDIO_RECORD", "LOAD_3D", "LOAD_3D_ANIMATION", "PREVIEW_3D",
        "PREVIEW_3D_ANIMATION",
    }),
    "1.49.6": frozenset({
        "INT", "FLOAT", "BOOLEAN", "STRING", "MARKDOWN", "COMBO", "IMAGEUPLOAD", "COLOR", "IMAGECOMPARE",
        "BOUNDING_BOX", "CHART", "GALLERIA", "PAINTER", "COMPOSITOR", "TEXTAREA", "CURVE", "RANGE",
        "VIDEO_EDIT", "BOUNDING_BOXES", "COLORS", "COMFY_DYNAMICCOMBO_V3", "WEBCAM", "AUDIO_UI",
        "AUDIOUPLOAD", "AUDIO_RECORD", "LOAD_3D", "PREVIEW_3D",
    }),
}
# Widgets that extensions add after the class's own (onNodeCreated), per frontend.
_EXTRA_WIDGETS: dict[str, dict[str, tuple[Widget, ...]]] = {
    # Comfy.PreviewAny 1.27.10: a read-only text widget that is not saved but is sent, empty.
    "1.27.10": {"PreviewAny": (Widget("preview", "", False, True),)},
    # 1.49.6's preview widgets are neither saved nor sent.
    "1.49.6": {},
}
# Node titles: the frontend shows its own English locale's display_name (nodeDefs.<class>.display_name)
# before the server's. Only the names where the locale differs from the ComfyUI version that frontend
# shipped with (0.3.64 and 0.33.0) are listed.
_LOCALE_TITLES: dict[str, dict[str, str]] = {
    "1.27.10": {
        "ImageBlend": "Image Blend", "ImageBlur": "Image Blur", "ImageQuantize": "Image Quantize",
        "ImageSharpen": "Image Sharpen", "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
    },
    "1.49.6": {
        "LTXVConcatAVLatent": "LTXVConcatAVLatent", "LTXVSeparateAVLatent": "LTXVSeparateAVLatent",
        "ByteDanceSeedreamNodeV2": "ByteDance Seedream 4.5 & 5.0",
        "ByteDance2ReferenceNode": "ByteDance Seedance 2.5 Reference to Video",
        "IdeogramPImage": "Ideogram P-Image", "TopazImageEnhance": "Topaz Image Enhance",
    },
}
_MEDIA_UPLOAD = ("image_upload", "video_upload", "animated_image_upload")


# Comfy.AudioWidget gives these classes an audio player input the catalogue does not list.
_AUDIO_UI = {
    "1.27.10": frozenset({"LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus"}),
    "1.49.6": frozenset({"LoadAudio", "SaveAudio", "PreviewAudio", "SaveAudioMP3", "SaveAudioOpus",
                         "SaveAudioAdvanced"}),
}


def _ordered_inputs(info: Mapping[str, Any], class_type: str,
                    frontend: str) -> tuple[dict[str, tuple[list, bool]], list[tuple[str, list, bool]]]:
    """The inputs as the frontend's V2 node definition holds them (``{name: (spec, optional)}``, required
    first), and ``(name, spec, optional)`` in the order it builds them (getOrderedInputSpecs)."""
    declared = info.get("input") or {}
    specs: dict[str, tuple[list, bool]] = {}
    for category in ("required", "optional"):
        for name, spec in (declared.get(category) or {}).items():
            specs[name] = (spec, category == "optional")

    def add_required(name: str, spec: list) -> None:
        # An extension's `nodeData.input.required[name] = spec`: a new key ends the required inputs.
        nonlocal specs
        specs.pop(name, None)
        required = {k: v for k, v in specs.items() if not v[1]}
        optional = {k: v for k, v in specs.items() if v[1]}
        specs = {**required, name: (spec, False), **optional}

    if class_type in _AUDIO_UI[frontend] and isinstance(declared.get("required"), Mapping):
        add_required("audioUI", ["AUDIO_UI", {}])
    audio = (declared.get("required") or {}).get("audio")
    audio_opts = audio[1] if isinstance(audio, list) and len(audio) > 1 and isinstance(audio[1], dict) else {}
    if audio_opts.get("audio_upload") is True:
        # Comfy.UploadAudio: an upload button after the audio combo.
        add_required("upload", ["AUDIOUPLOAD", {}])
    # Comfy.UploadImage adds an upload button input after the required ones for a media combo.
    for name, spec in (declared.get("required") or {}).items():
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        if any(opts.get(k) is True for k in _MEDIA_UPLOAD) and (isinstance(spec[0], list) or spec[0] == "COMBO"):
            add_required("upload", ["IMAGEUPLOAD", {**opts, "imageInputName": name}])
            break
    order = info.get("input_order")
    if not order:
        return specs, [(name, spec, optional) for name, (spec, optional) in specs.items()]
    ordered: list[tuple[str, list, bool]] = []
    seen: set[str] = set()
    for category, optional in (("required", False), ("optional", True)):
        for name in order.get(category) or ():
            entry = specs.get(name)
            if entry is not None and entry[1] is optional and name not in seen:
                ordered.append((name, entry[0], optional))
                seen.add(name)
    ordered.extend((name, spec, optional) for name, (spec, optional) in specs.items() if name not in seen)
    return specs, ordered


def _widgets_of(name: str, kind: str, opts: Mapping[str, Any], spec: list, frontend: str) -> list[Widget]:
    if kind == "INT":
        widgets = [Widget(name, opts.get("default", 0), True, True)]
        # useIntWidget: a seed gets its control widget even when the catalogue does not ask for one.
        control = opts.get("control_after_generate")
        if control is None:
            control = name in ("seed", "noise_seed")
        if control:
            widgets.append(Widget("control_after_generate", "randomize", True, False, control=True))
        return widgets
    if kind == "FLOAT":
        widgets = [Widget(name, opts.get("default", 0), True, True)]
        if opts.get("control_after_generate"):
            widgets.append(Widget("control_after_generate", "randomize", True, False, control=True))
        return widgets
    if kind == "COMBO":
        options = spec[0] if isinstance(spec[0], list) else opts.get("options") or []
        default = opts.get("default") or (options[0] if options else None)
        widgets = [Widget(name, default, True, True)]
        if opts.get("control_after_generate"):
            widgets.append(Widget("control_after_generate", "randomize", True, False, control=True))
            widgets.append(Widget("control_filter_list", "", True, False, control=True))
        return widgets
    if kind == "COMFY_DYNAMICCOMBO_V3":
        # dynamicComboWidget: a combo of the option keys whose value builds the option's widgets.
        choices = {o.get("key"): o.get("inputs") or {} for o in opts.get("options") or () if isinstance(o, Mapping)}
        return [Widget(name, next(iter(choices), None), True, True, options=choices)]
    if kind == "STRING":
        # 1.27.10 keeps a multiline text in a textarea, whose value is always a string.
        return [Widget(name, opts.get("default", ""), True, True, dynamic_prompt=bool(opts.get("dynamicPrompts")),
                       text=frontend == "1.27.10" and bool(opts.get("multiline")))]
    if kind == "BOOLEAN":
        return [Widget(name, opts.get("default", False), True, True)]
    if kind in ("LOAD_3D", "LOAD_3D_ANIMATION"):
        # Comfy.Load3D's widget brings three buttons before the scene widget; a button is saved and
        # sent with its fixed value.
        return [Widget("upload 3d model", "upload3dmodel", True, True),
                Widget("upload extra resources", "uploadExtraResources", True, True),
                Widget("clear", "clear", True, True), Widget(name, UNSET, True, True)]
    if kind == "CURVE":
        return [Widget(name, opts.get("default"), True, True, curve=True)]
    if kind == "AUDIO_UI":
        # The audio player is not saved; 1.27.10 sends its empty value, 1.49.6 does not send it.
        return [Widget(name, "", False, frontend == "1.27.10")]
    if kind in ("IMAGEUPLOAD", "AUDIOUPLOAD"):
        # The upload button keeps a place in widgets_values ("image") but is never sent.
        return [Widget(name, "image", True, False)]
    if kind == "IMAGECOMPARE":
        # useImageCompareWidget: not saved in the workflow (widget.serialize = false), but sent.
        return [Widget(name, ["", ""], False, True)]
    return [Widget(name, opts.get("default"), True, True)]


def option_widgets(combo: Widget, key: Any, frontend: str) -> list[Widget]:
    """The widgets a DynamicCombo adds for option ``key`` (required, then optional inputs)."""
    inputs = combo.options.get(key) if isinstance(key, str) else None
    if not isinstance(inputs, Mapping):
        return []
    known = _WIDGET_TYPES[frontend]
    made: list[Widget] = []
    for category in ("required", "optional"):
        for sub, spec in (inputs.get(category) or {}).items():
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if kind in known and not opts.get("forceInput"):
                made.extend(_widgets_of(f"{combo.name}.{sub}", kind, opts, spec, frontend))
    return made


def _autogrow_sockets(name: str, opts: Mapping[str, Any]) -> list[tuple[str, Any, bool]]:
    """applyAutogrow: the first ``min + 1`` groups of the template's sockets (at least one), named
    ``<input>.<prefix><n>`` (or ``<input>.<names[n]>``); later groups come from the saved inputs."""
    template = opts.get("template") or {}
    inputs = template.get("input") or {}
    specs = [(key, spec) for category in ("required", "optional") for key, spec in (inputs.get(category) or {}).items()]
    names = template.get("names")
    minimum = template.get("min", 1)
    maximum = len(names) if names else template.get("max", 100)
    sockets = []
    for ordinal in range(min(max(1, minimum + 1), maximum)):
        for key, spec in specs:
            base = names[ordinal] if names else f"{template.get('prefix', '') if len(specs) == 1 else key}{ordinal}"
            sockets.append((f"{name}.{base}", "COMBO" if isinstance(spec[0], list) else spec[0], False))
    return sockets


def layout(class_type: str, info: Mapping[str, Any], frontend: str) -> Layout:
    """The frontend's widgets and sockets for one ``/object_info`` entry."""
    known = _WIDGET_TYPES[frontend]
    widgets: list[Widget] = []
    plain: list[tuple[str, Any, bool]] = []
    widget_inputs: list[tuple[str, Any, bool]] = []
    specs, ordered = _ordered_inputs(info, class_type, frontend)
    for name, spec, _optional in ordered:
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        # A multi-type input ("FLOAT,INT") names the widget it gets in widgetType.
        kind = "COMBO" if isinstance(spec[0], list) else opts.get("widgetType") or spec[0]
        forced = bool(opts.get("forceInput"))
        if kind in known and not forced:
            made = _widgets_of(name, kind, opts, spec, frontend)
            widgets.extend(made)
            widget_inputs.append((name, kind, True))
        elif kind == "COMFY_AUTOGROW_V3" and frontend == "1.49.6":
            plain.extend(_autogrow_sockets(name, opts))
        else:
            plain.append((name, kind, False))
    names = {w.name for w in widgets}
    migrate = []
    for name, (spec, _optional) in specs.items():
        opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
        forced = bool(opts.get("forceInput"))
        if forced or name in names:
            migrate.append((forced, bool(opts.get("control_after_generate")), name in ("seed", "noise_seed")))
    any_forced = any(m[0] for m in migrate)
    widgets.extend(_EXTRA_WIDGETS[frontend].get(class_type, ()))
    title = _LOCALE_TITLES[frontend].get(class_type) or info.get("display_name") or info.get("name") or class_type
    return Layout(tuple(widgets), tuple(plain + widget_inputs), title, tuple(info.get("output") or ()),
                  tuple(migrate) if any_forced else None)
