"""ComfyUI's prompt validation, reproduced offline from a node catalogue and the files an endpoint has.

``validate_prompt`` answers what ``POST /prompt`` of a real ComfyUI answers: accepted, accepted with
node_errors (partial acceptance), or rejected with the same error, node_errors, dependent_outputs and
the same quirks (see the comments marked "quirk"). It is pure: no I/O, and the given prompt is never
modified. Two releases are modelled, chosen by ``Flavour``: 0.3.64 (October 2025) and 0.33.0 (August
2026), whose differences are listed in ``_Rules``; each is checked against its own recordings
(tests/test_fidelity.py) and against real servers' answers to 398 public workflows (tests/test_corpus.py).

The control flow follows ComfyUI's ``execution.validate_prompt`` / ``validate_inputs`` operation by
operation, so a malformed prompt raises the same Python exception with the same message there and
here. Where ComfyUI turns such an exception into an ``exception_during_*`` reason, so does this module,
with the traceback frames the real server prints. Where ComfyUI lets it escape (a ``prompt`` that is
not a dict), this module lets it escape too and the server answers 500.

ComfyUI walks a node's inputs and the prompt's outputs as Python sets, so their order changes with the
process's hash seed. By default they are walked in catalogue and prompt order instead, which is stable;
a real run can then differ in the order of reasons and outputs and, where an exception stops a node's
walk early, in which of its inputs were checked before it. ``set_order=True`` walks the same sets
ComfyUI builds, so under the same ``PYTHONHASHSEED`` the answer is the real server's to the letter.
"""

from __future__ import annotations

import enum
import sys
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.comfy.catalogue import Catalogue, InputSpec, NodeClass
from harness.comfy.dynamic import MATCH_TYPE, node_inputs
from harness.comfy.modelfiles import INPUT_FOLDER, model_folder
from harness.comfy.replacements import REPLACEMENTS_0_33_0, apply_replacements

__all__ = ["Flavour", "Validation", "prompt_id_error", "replaced", "validate_prompt"]


class Flavour(str, enum.Enum):
    """Which ComfyUI release's validation to reproduce. Values are also profile YAML's ``flavour:``."""

    V0_3_64 = "0.3.64"
    """ComfyUI 0.3.64 (a125cd84): a missing class is ``invalid_prompt`` "... does not exist."."""
    V2026 = "2026"
    """0.3.64's rules with only the missing-class wording of PR #12194 (Feb 2026): ``missing_node_type``."""
    V0_33_0 = "0.33.0"
    """ComfyUI 0.33.0 (783545f): V3 combos and dynamic inputs checked, dependency cycles, node replacements,
    client prompt ids, ``missing_node_type``."""

    @classmethod
    def of_version(cls, modelled: str) -> Flavour:
        """The flavour of a modelled ComfyUI version (``harness.comfy.versions.MODELLED``)."""
        return cls(modelled)


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


def _frame(line: int, function: str, statement: str, carets: str = "") -> str:
    """One entry of ``traceback.format_tb`` for ComfyUI's execution.py at its install path."""
    return f'  File "/opt/ComfyUI/execution.py", line {line}, in {function}\n    {statement}\n' + (f"{carets}\n" if carets else "")


@dataclass(frozen=True)
class _Frames:
    """The traceback frames (Python 3.11) a release prints, keyed by the statement that raised.

    Clients see these in exception_during_* reasons; they are reproduced so a report built on the
    reference endpoint reads like one built on a real server.
    """

    validate_prompt: str
    inner_call: str
    node_inputs: str
    input_loop: str
    linked_class: str
    return_type: str
    min: str
    max: str
    custom_check: str
    """A node's own check raising is reported with the frame of its call only; the real traceback goes
    on into ComfyUI's node-mapping helpers and the node pack's file."""
    inner_handler: str
    """``traceback.format_tb(tb)`` in the inner-validation handler, where a too deep walk fails again."""


_LINKED_CLASS = ("o_class_type = prompt[o_id]['class_type']", "                   ~~~~~~^^^^^^")
_RETURN_TYPE = ("received_type = r[val[1]]", "                    ~^^^^^^^^")
_NODE_INPUTS = ("inputs = prompt[unique_id]['inputs']", "             ~~~~~~~~~~~~~~~~~^^^^^^^^^^")
_INPUT_LOOP = ("if x not in inputs:", "       ^^^^^^^^^^^^^^^")
_MIN = ('if "min" in extra_info and val < extra_info["min"]:', "                               ^^^^^^^^^^^^^^^^^^^^^^^")
_MAX = ('if "max" in extra_info and val > extra_info["max"]:', "                               ^^^^^^^^^^^^^^^^^^^^^^^")
_FORMAT_TB = ('"traceback": traceback.format_tb(tb),', "                 ^^^^^^^^^^^^^^^^^^^^^^^")
_VALIDATE_PROMPT = ("m = await validate_inputs(prompt_id, prompt, o, validated)",
                    "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^")

# ComfyUI 0.3.64 (a125cd84), every frame recorded (fixtures/captures/stock/prompt_e, k2, k4, ...).
_FRAMES_0_3_64 = _Frames(
    validate_prompt=_frame(1010, "validate_prompt", *_VALIDATE_PROMPT),
    inner_call=_frame(808, "validate_inputs", "r = await validate_inputs(prompt_id, prompt, o_id, validated)",
                      "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"),
    node_inputs=_frame(730, "validate_inputs", *_NODE_INPUTS),
    input_loop=_frame(757, "validate_inputs", *_INPUT_LOOP),
    linked_class=_frame(788, "validate_inputs", *_LINKED_CLASS),
    return_type=_frame(790, "validate_inputs", *_RETURN_TYPE),
    min=_frame(869, "validate_inputs", *_MIN),
    max=_frame(882, "validate_inputs", *_MAX),
    custom_check=_frame(932, "validate_inputs", "ret = await _async_map_node_over_list(prompt_id, unique_id, obj_class, "
                        "input_filtered, validate_function_name, hidden_inputs=hidden_inputs)"),
    inner_handler=_frame(826, "validate_inputs", *_FORMAT_TB),
)

# ComfyUI 0.33.0 (783545f). Recorded (fixtures/captures/0.33.0/stock/prompt_e, k2, k4, link_slot_out_of_range):
# validate_prompt 1184, the inner call 955 (it now passes ``visiting``), the linked class 933 and the
# return type 935. The others are not recorded: their lines are counted from the layout of a later
# execution.py whose recorded lines coincide with these (unverified for 0.33.0; the statements are
# 0.3.64's, except the custom check's call).
_FRAMES_0_33_0 = _Frames(
    validate_prompt=_frame(1184, "validate_prompt", *_VALIDATE_PROMPT),
    inner_call=_frame(955, "validate_inputs", "r = await validate_inputs(prompt_id, prompt, o_id, validated, visiting)",
                      "        ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"),
    node_inputs=_frame(860, "validate_inputs", *_NODE_INPUTS),
    input_loop=_frame(901, "validate_inputs", *_INPUT_LOOP),
    linked_class=_frame(933, "validate_inputs", *_LINKED_CLASS),
    return_type=_frame(935, "validate_inputs", *_RETURN_TYPE),
    min=_frame(1020, "validate_inputs", *_MIN),
    max=_frame(1033, "validate_inputs", *_MAX),
    custom_check=_frame(1103, "validate_inputs", "ret = await _async_map_node_over_list(prompt_id, unique_id, obj_class, "
                        "input_filtered, validate_function_name, v3_data=v3_data)"),
    inner_handler=_frame(975, "validate_inputs", *_FORMAT_TB),
)


@dataclass(frozen=True)
class _Rules:
    """What a release does differently, as switches the validation run consults."""

    frames: _Frames
    missing_node_type: bool
    """A missing class is ``missing_node_type`` with ``extra_info`` {node_id, class_type, node_title} and
    the node's title in the message (PR #12194), not ``invalid_prompt``."""
    v3: bool
    """0.33.0's validate_inputs: V3 ``COMBO`` values are checked (``repr`` of the value in ``details``),
    a V3 node's Autogrow/DynamicCombo inputs are expanded (harness.comfy.dynamic), MatchType and
    list-typed outputs pass ``validate_node_input``, a link back to a node being validated is a
    ``dependency_cycle``, removed classes are replaced first (harness.comfy.replacements)."""


_RULES: dict[Flavour, _Rules] = {
    Flavour.V0_3_64: _Rules(_FRAMES_0_3_64, missing_node_type=False, v3=False),
    Flavour.V2026: _Rules(_FRAMES_0_3_64, missing_node_type=True, v3=False),
    Flavour.V0_33_0: _Rules(_FRAMES_0_33_0, missing_node_type=True, v3=True),
}


# How deep the real server can walk. ComfyUI validates a link by awaiting validate_inputs of the linked
# node, one Python frame per level, under Python's default limit of 1000 frames (both releases run Python
# 3.11.7). Below the output's level lie 15 frames: the event loop (main.py's run_until_complete,
# run_forever, _run_once, Handle._run), aiohttp's request handling, ComfyUI's three middlewares
# (cache_control, deprecation_warning, origin_only), post_prompt and validate_prompt. A level also calls
# INPUT_TYPES/get_input_info (one frame more), and an inner-validation handler needs 6 frames for
# traceback.format_tb (linecache warm, as on a server that has formatted a traceback before). So a chain
# EmptyImage → ImageInvert … → PreviewImage of 984 nodes is accepted and one of 985 is not: the node 985
# levels down raises RecursionError, the handlers above it fail again while formatting it, and the one at
# level 979 files it (quirk: under its upstream node). Counted by replaying that stack shape on Python
# 3.11.7 + aiohttp; the recorded bounds are 900 accepted, 990 rejected. The real traceback then goes on
# through traceback.py and linecache.py (5 frames); those are left out.
_STACK_LIMIT = 1000
_STACK_BELOW = 15
_NODE_CALL = 1
_FORMAT_TB_FRAMES = 6
_TOO_DEEP = "maximum recursion depth exceeded while calling a Python object"
# This walk takes ~4 Python frames a level where ComfyUI's takes one: give it room to reach the real limit.
_OWN_FRAMES = 8 * _STACK_LIMIT


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


_Files = Mapping[str, Collection[str]]


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
class _OwnCheck:
    """A stock node's own check, ``VALIDATE_INPUTS(s, <arg>)`` (or V3's ``validate_inputs``), that accepts
    everything. The inputs in its signature skip ComfyUI's range and combo checks; with ``**kwargs``
    (``varkw``) all of them do."""

    arg: str
    function: str = field(default="VALIDATE_INPUTS", kw_only=True)
    varkw: bool = field(default=False, kw_only=True)

    def exempts(self, input_name: str) -> bool:
        """Whether ComfyUI skips its range and combo checks for this input."""
        return self.varkw or input_name == self.arg

    def __call__(self, value: Any, files: _Files) -> bool | str:
        return True


@dataclass(frozen=True)
class _FileCheck(_OwnCheck):
    """A check that only looks for the named file."""

    message: str

    def __call__(self, value: Any, files: _Files) -> bool | str:
        return True if _annotated_file_exists(value, files) else self.message.format(value)


# The stock nodes whose own check ComfyUI calls (VALIDATE_INPUTS, or validate_inputs on V3 nodes). The
# checked input skips ComfyUI's range and combo checks; the check replaces them. All are 0.3.64's but
# CustomCombo (0.33.0's comfy_extras/nodes_logic.py, absent from 0.3.64): its options are written in
# the frontend, so the catalogue lists none and the node accepts any choice.
CUSTOM_CHECKS: dict[str, _OwnCheck] = {
    "CustomCombo": _OwnCheck("choice", function="CustomComboNode.validate_inputs", varkw=True),
    "LoadImage": _FileCheck("image", "Invalid image file: {}"),
    "LoadImageMask": _FileCheck("image", "Invalid image file: {}"),
    "LoadImageOutput": _FileCheck("image", "Invalid image file: {}"),
    "WebcamCapture": _FileCheck("image", "Invalid image file: {}"),
    "LoadLatent": _FileCheck("latent", "Invalid latent file: {}"),
    "LoadAudio": _FileCheck("audio", "Invalid audio file: {}"),
    "LoadVideo": _FileCheck("file", "Invalid video file: {}"),
}


def _validate_node_input(received_type: Any, input_type: Any, v3: bool) -> bool:
    """``comfy_execution.validation.validate_node_input`` (non-strict).

    ``*`` matches anything: in a catalogue it is how an ``AnyType`` socket (a str subclass whose
    ``__ne__`` is always False) is serialised, and that is what makes it match on the real server.
    0.33.0 also passes MatchType on either side ("handled by the frontend"), a list-typed output (a
    custom node's options) into a ``COMBO``, and ``*`` inside a comma-joined type.
    """
    if received_type == input_type or received_type == "*" or input_type == "*":
        return True
    if v3 and (MATCH_TYPE in (received_type, input_type) or (isinstance(received_type, list) and input_type == "COMBO")):
        return True
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    accepted = {t.strip() for t in input_type.split(",")}
    if v3 and ("*" in received or "*" in accepted):
        return True
    return bool(received & accepted)


class _Validator:
    """One validation run: the state ComfyUI keeps in locals while it walks the graph."""

    def __init__(self, prompt: Any, catalogue: Catalogue, files: _Files | None, rules: _Rules, set_order: bool) -> None:
        self.prompt = prompt
        self.set_order = set_order
        self.catalogue = catalogue
        self.files = files
        self.rules = rules
        self.frames = rules.frames
        self.validated: dict[Any, tuple[bool, list, Any]] = {}
        self.converted: dict[Any, dict] = {}
        self.visiting: list[Any] = []
        """0.33.0: the nodes whose validation is under way, outermost first (cycle detection)."""
        self.depth = 1
        """The level of the node being validated: 1 for an output, +1 per link followed."""

    def options(self, node: NodeClass, spec: InputSpec) -> list:
        """A combo's allowed values; model inputs list the deployment's files before fixed entries."""
        listed = spec.options
        folder = model_folder(node.name, spec.name) if self.files is not None else None
        return listed if folder is None else [*self.files.get(folder, ()), *listed]

    def declared(self, node: NodeClass, inputs: Any) -> tuple[dict[str, InputSpec], bool]:
        """The inputs validated and whether any is dynamic (0.33.0 expands a V3 node's for these inputs)."""
        declared, dynamic = node_inputs(node, inputs) if self.rules.v3 and node.v3 else (node.inputs, False)
        if self.set_order:
            # ``set(class_inputs.get('required', {})).union(set(class_inputs.get('optional', {})))``,
            # built from dicts of the same keys in the same order, so its order is the server's.
            required = {name: None for name, spec in declared.items() if spec.category == "required"}
            optional = {name: None for name, spec in declared.items() if spec.category == "optional"}
            declared = {name: declared[name] for name in set(required).union(set(optional))}
        return declared, dynamic

    def validate_node(self, unique_id: Any) -> tuple[bool, list, Any]:
        if unique_id in self.validated:
            return self.validated[unique_id]
        if self.rules.v3 and unique_id in self.visiting:
            return self.cycle(unique_id)
        frame = self.frames.node_inputs
        if _STACK_BELOW + self.depth + _NODE_CALL > _STACK_LIMIT:
            raise _Raised(RecursionError(_TOO_DEEP), frame)
        try:
            inputs = self.prompt[unique_id]["inputs"]
            node = self.catalogue[self.prompt[unique_id]["class_type"]]
            check = CUSTOM_CHECKS.get(node.name)
            errors: list[dict] = []
            valid = True
            declared, dynamic = self.declared(node, inputs)
            for x, spec in declared.items():
                frame = self.frames.input_loop
                if x not in inputs:
                    if spec.category == "required":
                        details = x.split(".")[-1] if dynamic else x
                        errors.append(_reason("required_input_missing", "Required input is missing", details, {"input_name": x}))
                    continue
                val = inputs[x]
                if isinstance(val, list):
                    frame = self.frames.linked_class
                    error = self.check_link(unique_id, x, spec, val)
                    if error is None:
                        continue
                    if error is not _UPSTREAM_INVALID:
                        errors.append(error)
                        continue
                    valid = False
                    continue
                error = self.check_literal(unique_id, node, spec, val, custom=check is not None and check.exempts(x))
                if error is not None:
                    errors.append(error)
            if check is not None:
                frame = self.frames.custom_check
                errors += self.run_custom_check(unique_id, check, inputs)
        except _Raised:
            raise
        except Exception as exc:
            raise _Raised(exc, frame) from exc
        # 0.33.0: a cycle found below this node has filed its reason here already; join it.
        before_ok, before, _ = self.validated.get(unique_id, (True, [], unique_id))
        result = (before_ok and not errors and valid is True, before + [e for e in errors if e not in before], unique_id)
        self.validated[unique_id] = result
        return result

    def cycle(self, unique_id: Any) -> tuple[bool, list, Any]:
        """0.33.0: every node of the cycle gets a ``dependency_cycle`` reason naming the whole path."""
        path = [*self.visiting[self.visiting.index(unique_id):], unique_id]
        members = list(dict.fromkeys(path))
        details = " -> ".join(f"{node_id} ({self.prompt[node_id]['class_type']})" for node_id in path)
        for node_id in members:
            self.validated[node_id] = (False, [_reason(
                "dependency_cycle", "Dependency cycle detected", details, {"node_id": node_id, "cycle_nodes": members}
            )], node_id)
        return self.validated[unique_id]

    def check_link(self, unique_id: Any, x: str, spec: InputSpec, val: list) -> dict | object | None:
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
            raise _Raised(exc, self.frames.return_type) from exc
        if not _validate_node_input(received_type, spec.type, self.rules.v3):
            return _reason(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                f"{x}, received_type({received_type}) mismatch input_type({spec.type})",
                {"input_name": x, "input_config": info, "received_type": received_type, "linked_node": val},
            )
        self.visiting.append(unique_id)
        self.depth += 1
        try:
            return _UPSTREAM_INVALID if self.validate_node(o_id)[0] is False else None
        except _Raised as raised:
            # This handler runs at this node's level (one above the linked node's).
            if isinstance(raised.exc, RecursionError) and _STACK_BELOW + self.depth - 1 + _FORMAT_TB_FRAMES > _STACK_LIMIT:
                # Formatting the traceback needs more frames than are left: the handler itself raises.
                raise _Raised(RecursionError(_TOO_DEEP), self.frames.inner_handler) from raised
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
                    "traceback": [self.frames.inner_call, raised.frame],
                    "linked_node": val,
                },
            )], o_id)
            return _UPSTREAM_INVALID
        finally:
            self.depth -= 1
            self.visiting.pop()

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
        if "min" in extra and _compare(val, extra["min"], self.frames.min) < 0:
            return _reason(
                "value_smaller_than_min",
                f"Value {val} smaller than min of {extra['min']}",
                x,
                {"input_name": x, "input_config": info, "received_value": val},
            )
        if "max" in extra and _compare(val, extra["max"], self.frames.max) > 0:
            return _reason(
                "value_bigger_than_max",
                f"Value {val} bigger than max of {extra['max']}",
                x,
                {"input_name": x, "input_config": info, "received_value": val},
            )
        # 0.3.64 checks only V1 list combos; a V3 "COMBO" value is first refused when the node runs.
        if isinstance(input_type, list) or (self.rules.v3 and input_type == "COMBO"):
            options = self.options(node, spec)
            if val not in options:
                # ComfyUI leaves out long lists (lots of scanned model paths) from the reply.
                if len(options) > 20:
                    listed, config = f"(list of length {len(options)})", None
                else:
                    listed = str(options)
                    config = [options, extra] if isinstance(input_type, list) else [input_type, {**extra, "options": options}]
                shown = repr(val) if self.rules.v3 else f"'{val}'"
                return _reason(
                    "value_not_in_list",
                    "Value not in list",
                    f"{x}: {shown} not in {listed}",
                    {"input_name": x, "input_config": config, "received_value": val},
                )
        return None

    def run_custom_check(self, unique_id: Any, check: _OwnCheck, inputs: Mapping[str, Any]) -> list[dict]:
        """Call the node's own check as ComfyUI does: linked inputs arrive as None, an absent one not at all."""
        if check.arg not in inputs:
            # ComfyUI calls the check without the argument; Python refuses the call.
            raise TypeError(f"{check.function}() missing 1 required positional argument: '{check.arg}'")
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


def _missing_class(node_id: Any, node: Any, rules: _Rules) -> dict:
    """The top-level error for a node whose class is absent, null or not given, in the release's wording.

    Written with the same dict operations as ComfyUI, so a ``_meta`` that is not an object raises
    there and here (the server answers 500).
    """
    details = f"Node ID '#{node_id}'"
    if not rules.missing_node_type:
        if "class_type" not in node:
            return _graph_error("invalid_prompt", "Cannot execute because a node is missing the class_type property.", details)
        # A null class_type reads "node None": the message formats the value.
        return _graph_error("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.", details)
    if "class_type" not in node:
        title = node.get("_meta", {}).get("title")
        return _graph_error(
            "missing_node_type",
            f"Node '{title or f'ID #{node_id}'}' has no class_type. The workflow may be corrupted or a custom node is missing.",
            details,
            {"node_id": node_id, "class_type": None, "node_title": title},
        )
    class_type = node["class_type"]
    # The title falls back to the class only when ``_meta`` has none: an empty title stays empty.
    title = node.get("_meta", {}).get("title", class_type)
    return _graph_error(
        "missing_node_type",
        f"Node '{title}' not found. The custom node may not be installed.",
        details,
        {"node_id": node_id, "class_type": class_type, "node_title": title},
    )


def prompt_id_error(body: Mapping[str, Any], flavour: Flavour) -> dict | None:
    """The ``error`` of a 400 for a client-chosen ``prompt_id`` the release refuses, or None.

    0.33.0 takes a client's ``prompt_id`` only as a UUID in canonical form (lowercase, hyphenated);
    ``null`` or no key lets the server mint one. 0.3.64 takes any value and queues it as ``str()``.
    """
    supplied = body.get("prompt_id")
    if not _RULES[flavour].v3 or supplied is None:
        return None
    try:
        canonical = isinstance(supplied, str) and str(uuid.UUID(supplied)) == supplied
    except ValueError:
        canonical = False
    if canonical:
        return None
    return _graph_error(
        "invalid_prompt_id",
        "prompt_id must be a valid UUID",
        "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one",
    )


def replaced(prompt: Any, catalogue: Catalogue, flavour: Flavour) -> Any:
    """The prompt after the node replacements the release applies before validating (0.33.0's only)."""
    return apply_replacements(prompt, catalogue, REPLACEMENTS_0_33_0) if _RULES[flavour].v3 else prompt


def validate_prompt(
    prompt: Any,
    catalogue: Catalogue,
    files: _Files | None = None,
    *,
    flavour: Flavour = Flavour.V0_3_64,
    partial_execution_targets: Sequence[str] | None = None,
    set_order: bool = False,
) -> Validation:
    """Validate an API-format prompt as ComfyUI's ``POST /prompt`` would.

    ``files`` maps a models folder (``checkpoints``, ``vae``, ...) and ``input`` to the file names the
    endpoint has; model and input-file inputs take their options from it. With ``files=None`` the
    catalogue's own lists are used as they are (a catalogue read from a live endpoint already lists its
    models). Raises whatever ComfyUI's handler would let escape (a ``prompt`` that is not a dict).
    ``Validation.prompt`` is the prompt as queued: 0.33.0's node replacements applied, literals converted.
    ``set_order`` walks inputs and outputs in the hash order of ComfyUI's sets (see the module docstring).
    """
    rules = _RULES[flavour]
    if sys.getrecursionlimit() < _OWN_FRAMES:
        sys.setrecursionlimit(_OWN_FRAMES)
    prompt = replaced(prompt, catalogue, flavour)
    outputs: list[Any] = []
    for x in prompt:
        node = prompt[x]
        if "class_type" not in node or node["class_type"] not in catalogue:
            return Validation(_missing_class(x, node, rules), {}, [], prompt)
        if catalogue[node["class_type"]].output_node:
            if partial_execution_targets is None or x in partial_execution_targets:
                outputs.append(x)
    if not outputs:
        return Validation(_graph_error("prompt_no_outputs", "Prompt has no outputs"), {}, [], prompt)
    if set_order:
        walked: set[Any] = set()
        for o in outputs:
            walked.add(o)
        outputs = list(walked)

    run = _Validator(prompt, catalogue, files, rules, set_order)
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
                {"exception_type": _type_name(raised.exc), "traceback": [run.frames.validate_prompt, raised.frame]},
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
