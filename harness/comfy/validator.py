"""ComfyUI's prompt validation, reproduced offline from a node catalogue and the files an endpoint has.

``validate_prompt`` answers what ``POST /prompt`` of a real ComfyUI 0.3.64 answers: accepted, accepted
with node_errors (partial acceptance), or rejected with the same error, node_errors, dependent_outputs
and the same quirks (see the comments marked "quirk"). It is pure: no I/O, and the given prompt is
never modified.

The control flow follows ComfyUI's ``execution.validate_prompt`` / ``validate_inputs`` operation by
operation, so a malformed prompt raises the same Python exception with the same message there and
here. Where ComfyUI turns such an exception into an ``exception_during_*`` reason, so does this module,
with the traceback frames the real server prints. Where ComfyUI lets it escape (a ``prompt`` that is
not a dict), this module lets it escape too and the server answers 500.

One deliberate difference: ComfyUI walks a node's inputs and the prompt's outputs as Python sets, so
their order changes with the process's hash seed; here they are walked in catalogue and prompt order.
Only the order of reasons within a node and of independent outputs can differ from a given real run.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.comfy.catalogue import Catalogue, InputSpec, NodeClass
from harness.comfy.modelfiles import INPUT_FOLDER, model_folder

__all__ = ["Flavour", "Validation", "validate_prompt"]


class Flavour(str, enum.Enum):
    """Which ComfyUI generation's wording to reproduce where the wording changed."""

    V0_3_64 = "0.3.64"
    """ComfyUI up to early 2026: a missing class is ``invalid_prompt`` "... does not exist."."""
    V2026 = "2026"
    """ComfyUI after PR #12194 (Feb 2026): a missing class is ``missing_node_type``."""


@dataclass(frozen=True)
class Validation:
    """What ``POST /prompt`` decided about one prompt."""

    error: dict | None
    """The top-level ``error`` object of a 400, or None when the prompt was accepted."""
    node_errors: dict
    """Every node with reasons: ``{id: {errors, dependent_outputs, class_type}}`` (also on a 200)."""
    outputs: list[str]
    """The output nodes that validated and will run."""
    prompt: Any
    """The prompt as ComfyUI queues it: literal inputs converted to their declared types."""

    @property
    def accepted(self) -> bool:
        return self.error is None

    @property
    def partial(self) -> bool:
        """Accepted, but some outputs failed validation and will not run."""
        return self.error is None and bool(self.node_errors)

    def response_body(self, prompt_id: str, number: float) -> dict:
        """The JSON body ComfyUI sends back: 200 when accepted, else 400."""
        if self.error is None:
            return {"prompt_id": prompt_id, "number": number, "node_errors": self.node_errors}
        return {"error": self.error, "node_errors": self.node_errors}


# Traceback frames as ComfyUI 0.3.64 (a125cd84, Python 3.11) prints them, keyed by the statement that
# raised. Clients see these in exception_during_* reasons; they are reproduced so a report built on the
# reference endpoint reads like one built on a real server.
_FILE = '  File "/opt/ComfyUI/execution.py", '
_FRAME_VALIDATE_PROMPT = (
    _FILE + "line 1010, in validate_prompt\n"
    "    m = await validate_inputs(prompt_id, prompt, o, validated)\n"
    "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
)
_FRAME_INNER_CALL = (
    _FILE + "line 808, in validate_inputs\n"
    "    r = await validate_inputs(prompt_id, prompt, o_id, validated)\n"
    "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
)
_SITE_NODE_INPUTS = (
    _FILE + "line 730, in validate_inputs\n"
    "    inputs = prompt[unique_id]['inputs']\n"
    "             ~~~~~~~~~~~~~~~~~^^^^^^^^^^\n"
)
_SITE_INPUT_LOOP = _FILE + "line 757, in validate_inputs\n    if x not in inputs:\n       ^^^^^^^^^^^^^^^\n"
_SITE_LINKED_CLASS = (
    _FILE + "line 788, in validate_inputs\n"
    "    o_class_type = prompt[o_id]['class_type']\n"
    "                   ~~~~~~^^^^^^\n"
)
_SITE_RETURN_TYPE = (
    _FILE + "line 790, in validate_inputs\n"
    "    received_type = r[val[1]]\n"
    "                    ~^^^^^^^^\n"
)
_SITE_MIN = (
    _FILE + "line 869, in validate_inputs\n"
    '    if "min" in extra_info and val < extra_info["min"]:\n'
    "                               ^^^^^^^^^^^^^^^^^^^^^^^\n"
)
_SITE_MAX = (
    _FILE + "line 882, in validate_inputs\n"
    '    if "max" in extra_info and val > extra_info["max"]:\n'
    "                               ^^^^^^^^^^^^^^^^^^^^^^^\n"
)
# A node's own check raising is reported with the frame of its call only; the real traceback goes on
# into ComfyUI's node-mapping helpers and the node pack's file.
_SITE_CUSTOM_CHECK = (
    _FILE + "line 932, in validate_inputs\n"
    "    ret = await _async_map_node_over_list(prompt_id, unique_id, obj_class, input_filtered, "
    "validate_function_name, hidden_inputs=hidden_inputs)\n"
)


class _Raised(Exception):
    """Carries an exception out of ``_validate_node`` with the frame of the statement that raised it."""

    def __init__(self, exc: BaseException, frame: str) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.frame = frame


def _type_name(exc: BaseException) -> str:
    """``full_type_name`` of ComfyUI: ``module.QualName``, bare for builtins."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"


_Files = Mapping[str, Sequence[str]]


def _annotated_file_exists(name: Any, files: _Files) -> bool:
    """``folder_paths.exists_annotated_filepath``: "x.png", "sub/x.png" or "x.png [output]".

    Written with the same string operations, so a non-string (a linked input arrives as None)
    raises the same AttributeError as on the real server.
    """
    for folder in ("input", "output", "temp"):
        suffix = f" [{folder}]"
        if name.endswith(suffix):
            return name[: -len(suffix)] in files.get(folder, ())
    return name in files.get(INPUT_FOLDER, ())


@dataclass(frozen=True)
class _FileCheck:
    """A stock ``VALIDATE_INPUTS(s, <arg>)`` that only checks that the named file exists."""

    arg: str
    message: str

    def __call__(self, value: Any, files: _Files) -> bool | str:
        return True if _annotated_file_exists(value, files) else self.message.format(value)


# The stock nodes of 0.3.64 whose own check ComfyUI calls (VALIDATE_INPUTS, or validate_inputs on V3
# nodes). The checked input skips ComfyUI's range and combo checks; the check replaces them.
CUSTOM_CHECKS: dict[str, _FileCheck] = {
    "LoadImage": _FileCheck("image", "Invalid image file: {}"),
    "LoadImageMask": _FileCheck("image", "Invalid image file: {}"),
    "LoadImageOutput": _FileCheck("image", "Invalid image file: {}"),
    "WebcamCapture": _FileCheck("image", "Invalid image file: {}"),
    "LoadLatent": _FileCheck("latent", "Invalid latent file: {}"),
    "LoadAudio": _FileCheck("audio", "Invalid audio file: {}"),
    "LoadVideo": _FileCheck("file", "Invalid video file: {}"),
}


def _validate_node_input(received_type: Any, input_type: Any) -> bool:
    """``comfy_execution.validation.validate_node_input`` (non-strict).

    ``*`` matches anything: in a catalogue it is how an ``AnyType`` socket (a str subclass whose
    ``__ne__`` is always False) is serialised, and that is what makes it match on the real server.
    """
    if received_type == input_type or received_type == "*" or input_type == "*":
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    accepted = {t.strip() for t in input_type.split(",")}
    return bool(received & accepted)


class _Validator:
    """One validation run: the state ComfyUI keeps in locals while it walks the graph."""

    def __init__(self, prompt: Any, catalogue: Catalogue, files: _Files | None) -> None:
        self.prompt = prompt
        self.catalogue = catalogue
        self.files = files
        self.validated: dict[Any, tuple[bool, list, Any]] = {}
        self.converted: dict[Any, dict] = {}

    def options(self, node: NodeClass, spec: InputSpec) -> list:
        """A V1 combo's allowed values; model inputs list the deployment's files before fixed entries."""
        listed = spec.type
        folder = model_folder(node.name, spec.name) if self.files is not None else None
        return listed if folder is None else [*self.files.get(folder, ()), *listed]

    def validate_node(self, unique_id: Any) -> tuple[bool, list, Any]:
        if unique_id in self.validated:
            return self.validated[unique_id]
        frame = _SITE_NODE_INPUTS
        try:
            inputs = self.prompt[unique_id]["inputs"]
            node = self.catalogue[self.prompt[unique_id]["class_type"]]
            check = CUSTOM_CHECKS.get(node.name)
            errors: list[dict] = []
            valid = True
            for x, spec in node.inputs.items():
                frame = _SITE_INPUT_LOOP
                if x not in inputs:
                    if spec.category == "required":
                        errors.append(_reason("required_input_missing", "Required input is missing", x, {"input_name": x}))
                    continue
                val = inputs[x]
                if isinstance(val, list):
                    frame = _SITE_LINKED_CLASS
                    error = self.check_link(x, spec, val)
                    if error is None:
                        continue
                    if error is not _UPSTREAM_INVALID:
                        errors.append(error)
                        continue
                    valid = False
                    continue
                error = self.check_literal(unique_id, node, spec, val, custom=check is not None and x == check.arg)
                if error is not None:
                    errors.append(error)
            if check is not None:
                frame = _SITE_CUSTOM_CHECK
                errors += self.run_custom_check(unique_id, check, inputs)
        except _Raised:
            raise
        except Exception as exc:
            raise _Raised(exc, frame) from exc
        result = (not errors and valid is True, errors, unique_id)
        self.validated[unique_id] = result
        return result

    def check_link(self, x: str, spec: InputSpec, val: list) -> dict | object | None:
        """A linked input: a reason, ``_UPSTREAM_INVALID``, or None when the link is fine."""
        info = spec.config
        if len(val) != 2:
            return _reason(
                "bad_linked_input",
                "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                x,
                {"input_name": x, "input_config": info, "received_value": val},
            )
        o_id = val[0]
        o_class_type = self.prompt[o_id]["class_type"]
        try:
            received_type = self.catalogue[o_class_type].outputs[val[1]]
        except Exception as exc:
            raise _Raised(exc, _SITE_RETURN_TYPE) from exc
        if not _validate_node_input(received_type, spec.type):
            return _reason(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                f"{x}, received_type({received_type}) mismatch input_type({spec.type})",
                {"input_name": x, "input_config": info, "received_type": received_type, "linked_node": val},
            )
        try:
            return _UPSTREAM_INVALID if self.validate_node(o_id)[0] is False else None
        except _Raised as raised:
            # quirk: the reason names this node's input but is filed under the upstream node.
            self.validated[o_id] = (False, [_reason(
                "exception_during_inner_validation",
                "Exception when validating inner node",
                str(raised.exc),
                {
                    "input_name": x,
                    "input_config": info,
                    "exception_message": str(raised.exc),
                    "exception_type": _type_name(raised.exc),
                    "traceback": [_FRAME_INNER_CALL, raised.frame],
                    "linked_node": val,
                },
            )], o_id)
            return _UPSTREAM_INVALID

    def check_literal(self, unique_id: Any, node: NodeClass, spec: InputSpec, val: Any, custom: bool) -> dict | None:
        """Convert a literal to its declared type, then check range and list; a reason or None."""
        x, info, input_type = spec.name, spec.config, spec.type
        if isinstance(val, dict) and "__value__" in val:
            val = val["__value__"]
            self.converted.setdefault(unique_id, {})[x] = val
        convert = _CONVERTERS.get(input_type) if isinstance(input_type, str) else None
        if convert is not None:
            try:
                val = convert(val)
            except Exception as ex:
                return _reason(
                    "invalid_input_type",
                    f"Failed to convert an input value to a {input_type} value",
                    f"{x}, {val}, {ex}",
                    {"input_name": x, "input_config": info, "received_value": val, "exception_message": str(ex)},
                )
            self.converted.setdefault(unique_id, {})[x] = val
        if custom:
            return None
        extra = spec.extra
        if "min" in extra and _compare(val, extra["min"], _SITE_MIN) < 0:
            return _reason(
                "value_smaller_than_min",
                f"Value {val} smaller than min of {extra['min']}",
                x,
                {"input_name": x, "input_config": info, "received_value": val},
            )
        if "max" in extra and _compare(val, extra["max"], _SITE_MAX) > 0:
            return _reason(
                "value_bigger_than_max",
                f"Value {val} bigger than max of {extra['max']}",
                x,
                {"input_name": x, "input_config": info, "received_value": val},
            )
        # 0.3.64 checks only V1 list combos; a V3 "COMBO" value is first refused when the node runs.
        if isinstance(input_type, list):
            options = self.options(node, spec)
            if val not in options:
                # ComfyUI leaves out long lists (lots of scanned model paths) from the reply.
                if len(options) > 20:
                    listed, config = f"(list of length {len(options)})", None
                else:
                    listed, config = str(options), [options, spec.extra]
                return _reason(
                    "value_not_in_list",
                    "Value not in list",
                    f"{x}: '{val}' not in {listed}",
                    {"input_name": x, "input_config": config, "received_value": val},
                )
        return None

    def run_custom_check(self, unique_id: Any, check: _FileCheck, inputs: Mapping[str, Any]) -> list[dict]:
        """Call the node's own check as ComfyUI does: linked inputs arrive as None, an absent one not at all."""
        if check.arg not in inputs:
            # ComfyUI calls the check without the argument; Python refuses the call.
            raise TypeError(f"VALIDATE_INPUTS() missing 1 required positional argument: '{check.arg}'")
        value = inputs[check.arg]
        value = None if isinstance(value, list) else self.converted.get(unique_id, {}).get(check.arg, value)
        verdict = check(value, self.files or {})
        if verdict is True:
            return []
        details = check.arg if verdict is False else f"{check.arg} - {verdict}"
        return [_reason("custom_validation_failed", "Custom validation failed for node", details, {"input_name": check.arg})]


_UPSTREAM_INVALID = object()
"""check_link's answer when the linked node is invalid: this node fails with no reason of its own."""


def _compare(val: Any, bound: Any, frame: str) -> int:
    """-1, 0 or 1 like ComfyUI's ``val < min`` / ``val > max``, raising where they raise."""
    try:
        return -1 if val < bound else (1 if val > bound else 0)
    except Exception as exc:
        raise _Raised(exc, frame) from exc


_CONVERTERS: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def _reason(type_: str, message: str, details: str, extra_info: dict) -> dict:
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info}


def _graph_error(type_: str, message: str, details: str = "", extra_info: dict | None = None) -> dict:
    return _reason(type_, message, details, extra_info or {})


def _missing_class(node_id: Any, node: Any, class_type: Any, flavour: Flavour) -> dict:
    """The top-level error for a node whose class is absent (or not given) in either wording."""
    details = f"Node ID '#{node_id}'"
    if flavour is Flavour.V0_3_64:
        if class_type is None:
            return _graph_error("invalid_prompt", "Cannot execute because a node is missing the class_type property.", details)
        return _graph_error("invalid_prompt", f"Cannot execute because node {class_type} does not exist.", details)
    meta = node.get("_meta") if isinstance(node, dict) else None
    title = meta.get("title") if isinstance(meta, dict) else None
    extra = {"node_id": node_id, "class_type": class_type, "node_title": title}
    if class_type is None:
        shown = title or f"ID #{node_id}"
        return _graph_error(
            "missing_node_type",
            f"Node '{shown}' has no class_type. The workflow may be corrupted or a custom node is missing.",
            details,
            extra,
        )
    shown = title or class_type
    return _graph_error("missing_node_type", f"Node '{shown}' not found. The custom node may not be installed.", details, extra)


def validate_prompt(
    prompt: Any,
    catalogue: Catalogue,
    files: _Files | None = None,
    *,
    flavour: Flavour = Flavour.V0_3_64,
    partial_execution_targets: Sequence[str] | None = None,
) -> Validation:
    """Validate an API-format prompt as ComfyUI's ``POST /prompt`` would.

    ``files`` maps a models folder (``checkpoints``, ``vae``, ...) and ``input`` to the file names the
    endpoint has; model and input-file inputs take their options from it. With ``files=None`` the
    catalogue's own lists are used as they are (a catalogue read from a live endpoint already lists its
    models). Raises whatever ComfyUI's handler would let escape (a ``prompt`` that is not a dict).
    """
    outputs: list[Any] = []
    for x in prompt:
        node = prompt[x]
        if "class_type" not in node:
            return Validation(_missing_class(x, node, None, flavour), {}, [], prompt)
        class_type = node["class_type"]
        if class_type not in catalogue:
            return Validation(_missing_class(x, node, class_type, flavour), {}, [], prompt)
        if catalogue[class_type].output_node:
            if partial_execution_targets is None or x in partial_execution_targets:
                outputs.append(x)
    if not outputs:
        return Validation(_graph_error("prompt_no_outputs", "Prompt has no outputs"), {}, [], prompt)

    run = _Validator(prompt, catalogue, files)
    good_outputs: list[str] = []
    failures: list[tuple[Any, list]] = []
    node_errors: dict = {}
    for o in outputs:
        try:
            valid, reasons, _ = run.validate_node(o)
        except _Raised as raised:
            valid = False
            reasons = [_reason(
                "exception_during_validation",
                "Exception when validating node",
                str(raised.exc),
                {"exception_type": _type_name(raised.exc), "traceback": [_FRAME_VALIDATE_PROMPT, raised.frame]},
            )]
            run.validated[o] = (False, reasons, o)
        if valid is True:
            good_outputs.append(o)
            continue
        failures.append((o, reasons))
        # quirk: every node with reasons validated so far, even under an earlier output, gains this
        # output as a dependent; nodes that are invalid only because of an upstream node are left out.
        for node_id, (ok, node_reasons, _) in run.validated.items():
            if ok is not True and node_reasons:
                if node_id not in node_errors:
                    node_errors[node_id] = {
                        "errors": node_reasons,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    }
                node_errors[node_id]["dependent_outputs"].append(o)

    queued = _with_conversions(prompt, run.converted)
    if not good_outputs:
        details = "\n".join(f"{r['message']}: {r['details']}" for _, reasons in failures for r in reasons)
        error = _graph_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return Validation(error, node_errors, [], queued)
    return Validation(None, node_errors, good_outputs, queued)


def _with_conversions(prompt: Mapping, converted: Mapping[Any, dict]) -> dict:
    """A copy of the prompt with converted literals written back, as ComfyUI mutates it in place."""
    if not converted:
        return dict(prompt)
    queued = dict(prompt)
    for node_id, values in converted.items():
        node = dict(queued[node_id])
        node["inputs"] = {**node["inputs"], **values}
        queued[node_id] = node
    return queued
