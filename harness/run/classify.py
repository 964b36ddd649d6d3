"""What ComfyUI answered, turned into one outcome with its evidence: a small, pure, ordered classifier.

Three native shapes come in: the answer to ``POST /prompt`` (``classify_prompt_response``), a finished
``/history/{id}`` entry (``classify_history``) and a single execution event, as a history message
``[type, data]`` or a websocket frame ``{"type", "data"}`` (``classify_event``). Each rule is tried in
order and the first that fits decides; nothing here does I/O except the pack index read on first use.

Where one answer shows several problems (ComfyUI reports every failing node), the outcome is the first
of ``NODE_ERROR_PRECEDENCE`` among them and the evidence lists all of them. A ``200`` whose
``node_errors`` is not empty ran only some outputs: it is classified like a rejection and marked
``partial``, never passed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.comfy.modelfiles import model_folder
from harness.run.outcomes import NODE_ERROR_PRECEDENCE, Outcome
from harness.comfy.packs import Attribution, Source, attribute, option_pack

__all__ = [
    "REASON_OUTCOMES",
    "Classification",
    "Evidence",
    "classify_event",
    "classify_history",
    "classify_prompt_response",
    "missing_node",
]

REASON_OUTCOMES: dict[str, Outcome] = {
    "required_input_missing": Outcome.INVALID_INPUT,
    "invalid_input_type": Outcome.INVALID_INPUT,
    "value_smaller_than_min": Outcome.INVALID_INPUT,
    "value_bigger_than_max": Outcome.INVALID_INPUT,
    # On a loader's model input this is how a missing model file shows: refined to missing_model.
    "value_not_in_list": Outcome.INVALID_INPUT,
    # LoadImage's missing input file; the 2026 loop-structure errors reuse this type (refined below).
    "custom_validation_failed": Outcome.INVALID_INPUT,
    # 2026 V3 dynamic inputs: the reason names the input whose slots are wrong.
    "invalid_dynamic_input": Outcome.INVALID_INPUT,
    "bad_linked_input": Outcome.INVALID_GRAPH,
    "return_type_mismatch": Outcome.INVALID_GRAPH,
    # A link to a node id the prompt lacks, or a slot the linked node does not have.
    "exception_during_validation": Outcome.INVALID_GRAPH,
    "exception_during_inner_validation": Outcome.INVALID_GRAPH,
    "dependency_cycle": Outcome.INVALID_GRAPH,
}
"""The outcome of each per-node reason ``type`` of ComfyUI's validation; an unknown type is invalid_graph."""

_TRACEBACK_FRAMES = 2
"""Frames of an execution traceback kept: the node's own code is at the end; the rest is ComfyUI's."""

_DOES_NOT_EXIST = re.compile(r"^Cannot execute because node (?P<class_type>.+) does not exist\.$")
_NODE_ID = re.compile(r"Node ID '#(?P<node_id>.*)'")
_OOM_TEXT = "out of memory"
"""Matched lower-cased: CUDA's "CUDA out of memory", MPS's "MPS backend out of memory", ComfyUI's tip "you ran out of memory"."""


@dataclass(frozen=True)
class Evidence:
    """Why a cell has its outcome, for people (``message``, ``hint``) and for scripts (the rest)."""

    message: str = ""
    """One line: what failed, where, and the remedy when one is known."""
    missing_classes: tuple[str, ...] = ()
    """Node classes the endpoint lacks, in prompt order, each once."""
    packages: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Per missing class, the packs that may provide it (preferred first) with install commands."""
    missing_models: tuple[dict[str, Any], ...] = ()
    """``{node_id, node_type, input, file, folder}`` per model file the endpoint lacks."""
    node_errors: tuple[dict[str, Any], ...] = ()
    """Every validation reason, flattened: ``{node_id, node_type, type, input, details, received_value,
    outcome}``, plus ``pack`` where a pack adds the refused combo option."""
    node_id: str | None = None
    node_type: str | None = None
    exception_type: str | None = None
    exception_message: str | None = None
    traceback: tuple[str, ...] = ()
    """The last frames of an execution traceback (the node's own code), never the inputs."""
    http_status: int | None = None
    hint: str = ""
    retry_after: str | None = None
    """A refusal's ``Retry-After`` header as sent (seconds or an HTTP date): when to come back."""
    phase: str | None = None
    """For a deadline that ended the cell: what it was waiting for (``submit``, ``queue``, ``execution``, ``download``)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON for matrix.json; always the same keys, in this order."""
        return {
            "message": self.message,
            "missing_classes": list(self.missing_classes),
            "packages": {k: list(v) for k, v in self.packages.items()},
            "missing_models": list(self.missing_models),
            "node_errors": list(self.node_errors),
            "node_id": self.node_id,
            "node_type": self.node_type,
            "exception_type": self.exception_type,
            "exception_message": self.exception_message,
            "traceback": list(self.traceback),
            "http_status": self.http_status,
            "hint": self.hint,
            "retry_after": self.retry_after,
            "phase": self.phase,
        }

    def canonical_message(self) -> str:
        """The message with what differs between runs of one failure stripped: ids, paths, addresses, numbers."""
        text = self.message
        for pattern, stand_in in _CANONICAL:
            text = pattern.sub(stand_in, text)
        return text


# Applied in order: uuids and paths before the numbers inside them.
_CANONICAL: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"), "<uuid>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<addr>"),
    (re.compile(r"(?:[A-Za-z]:)?(?:[/\\][\w.\-]+){2,}"), "<path>"),
    (re.compile(r"\(nodes? [^)]*\)"), "(node <id>)"),
    (re.compile(r"#[^\s,;:)']+"), "#<id>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\w)"), "<n>"),
)


@dataclass(frozen=True)
class Classification:
    """One cell's verdict: its outcome, whether ComfyUI ran part of the workflow, and why."""

    outcome: Outcome
    partial: bool = False
    """Accepted with node_errors: only the outputs that validated ran."""
    evidence: Evidence = field(default_factory=Evidence)
    hidden: bool = False
    """The provider withheld ComfyUI's reason; the endpoint's catalogue may still prove it (see engine)."""

    def group_key(self) -> tuple[str, str, str]:
        """(outcome code, node type, canonical message): cells with one key fail the same way."""
        return self.outcome.value, self.evidence.node_type or "", self.evidence.canonical_message()


class _Malformed(Exception):
    """Raised inside the classifier where an answer stops looking like ComfyUI's; becomes protocol_error."""


def _verdict(
    outcome: Outcome, message: str, http_status: int | None = None, *, partial: bool = False, hint: str = "", **evidence: Any
) -> Classification:
    """A classification; without a specific hint, the outcome's own."""
    return Classification(outcome, partial, Evidence(message=message, http_status=http_status, hint=hint or outcome.info.hint, **evidence))


def _protocol_error(what: str, http_status: int | None) -> Classification:
    return _verdict(Outcome.PROTOCOL_ERROR, f"not a ComfyUI answer: {what}", http_status)


def _excerpt(body: Any, limit: int = 200) -> str:
    """The first line of a body, shortened, for messages about opaque answers."""
    text = body if isinstance(body, str) else repr(body)
    line = next((part for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


# --- POST /prompt ---------------------------------------------------------------------------------


def classify_prompt_response(status: int, body: Mapping[str, Any] | str | None) -> Classification | None:
    """The verdict on ComfyUI's answer to ``POST /prompt``; None when every output was queued.

    ``body`` is the decoded JSON, or the text when it was not JSON (ComfyUI's 500s are text/plain).
    """
    try:
        if status == 200:
            return _accepted(body)
        if status in (401, 403):
            return _verdict(Outcome.AUTH_ERROR, _refused_text(status), status)
        if status == 429:
            return _verdict(Outcome.RATE_LIMITED, "HTTP 429: the endpoint refused the request for rate or capacity", status)
        if status == 413:
            # Deterministic and caused by the workflow's own content (mostly images inlined as base64):
            # a finding about this workflow on this endpoint, fixed by changing the input, so not infra.
            return _verdict(
                Outcome.INVALID_INPUT,
                "HTTP 413: the request body is larger than the endpoint accepts (ComfyUI's --max-upload-size, 100 MB by default)",
                status,
                hint="Upload large inputs instead of inlining them, or raise the endpoint's --max-upload-size.",
            )
        if status >= 500:
            return _verdict(Outcome.SERVER_ERROR, f"HTTP {status} from POST /prompt: {_excerpt(body)}", status)
        if status == 400 and isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
            return _rejected(body["error"], body.get("node_errors"))
        return _protocol_error(f"HTTP {status} from POST /prompt: {_excerpt(body)}", status)
    except _Malformed as exc:
        return _protocol_error(str(exc), status)


def _refused_text(status: int) -> str:
    if status == 403:
        # ComfyUI's only 403 on /prompt: its origin check, with an empty body, when Origin and Host differ.
        return "HTTP 403: refused; on ComfyUI itself this is the origin check (an Origin header that does not match Host)"
    return "HTTP 401: the endpoint refused the credentials"


def _accepted(body: Any) -> Classification | None:
    if not isinstance(body, Mapping) or "prompt_id" not in body:
        raise _Malformed(f"HTTP 200 from POST /prompt without a prompt_id: {_excerpt(body)}")
    node_errors = body.get("node_errors") or {}
    if not node_errors:
        return None
    return _from_node_errors(node_errors, http_status=200, partial=True)


def _rejected(error: Mapping[str, Any], node_errors: Any) -> Classification:
    kind, text = error.get("type"), str(error.get("message", ""))
    missing = _missing_from_error(kind, text, error)
    if missing is not None:
        return missing_node([missing], http_status=400)
    if kind == "prompt_outputs_failed_validation" and node_errors:
        return _from_node_errors(node_errors, http_status=400)
    details = str(error.get("details") or "")
    return _verdict(Outcome.INVALID_GRAPH, f"{kind}: {text}" + (f" ({details})" if details and details != text else ""), 400)


def _missing_from_error(kind: Any, text: str, error: Mapping[str, Any]) -> tuple[str | None, str | None] | None:
    """(node_id, class_type or None) when the top-level error says a node class is absent."""
    node_id_match = _NODE_ID.search(str(error.get("details", "")))
    node_id = node_id_match["node_id"] if node_id_match else None
    if kind == "missing_node_type":
        # 2026 form: extra_info carries the class (None when the node has no class_type at all).
        extra = error.get("extra_info") if isinstance(error.get("extra_info"), Mapping) else {}
        return extra.get("node_id", node_id), extra.get("class_type")
    if kind != "invalid_prompt":
        return None
    if "missing the class_type property" in text:
        return node_id, None
    found = _DOES_NOT_EXIST.match(text)
    return (node_id, found["class_type"]) if found else None


def missing_node(
    missing: Sequence[tuple[str | None, str | None]], *, http_status: int | None = None,
    declared: Mapping[str, Mapping[str, Any]] | None = None,
) -> Classification:
    """missing_node for the given (node_id, class_type) pairs, with the packs that provide each class.

    A class_type of None is a node without ``class_type``: in the wild the usual trace of a custom node
    the exporting ComfyUI did not have (its frontend drops the field of nodes it cannot resolve).
    ``declared`` maps a class to the UI file's node ``properties``, which name the pack its author had.
    """
    nodes_of: dict[str, list[str]] = {}
    untyped = [str(node_id) for node_id, class_type in missing if class_type is None]
    for node_id, class_type in missing:
        if class_type is not None:
            nodes_of.setdefault(class_type, []).append(str(node_id))
    attributions = {class_type: attribute(class_type, (declared or {}).get(class_type)) for class_type in nodes_of}
    providers = {class_type: _provider_text(a) for class_type, a in attributions.items()}
    if len(nodes_of) == 1 and not untyped:
        [(class_type, ids)] = nodes_of.items()
        parts = [f"{class_type} ({_nodes_text(ids)}) is not installed; {providers[class_type]}"]
    else:
        listed = "; ".join(f"{c} ({_nodes_text(ids)}), {providers[c]}" for c, ids in nodes_of.items())
        count = "1 node class is" if len(nodes_of) == 1 else f"{len(nodes_of)} node classes are"
        parts = [f"{count} not installed: {listed}"] if nodes_of else []
    if untyped:
        verb = "has" if len(untyped) == 1 else "have"
        parts.append(f"{_nodes_text(untyped)} {verb} no class_type (usually a custom node missing where the workflow was exported)")
    installs = list(dict.fromkeys(f"Install {a.pack.title} ({a.pack.install})" for a in attributions.values() if a.pack))
    only = missing[0] if len(missing) == 1 else (None, None)
    return _verdict(
        Outcome.MISSING_NODE,
        "; ".join(parts),
        http_status,
        missing_classes=tuple(nodes_of),
        packages={class_type: a.to_dicts() for class_type, a in attributions.items()},
        node_id=None if only[0] is None else str(only[0]),
        node_type=only[1],
        hint="; ".join(installs),
    )


def _provider_text(attribution: Attribution) -> str:
    pack = attribution.pack
    if pack is None:
        return "no known pack provides it"
    if attribution.source is Source.DECLARED:
        had = f" {pack.version}" if pack.version else ""
        return f"from {pack.title}{had} ({pack.url}), as the workflow file says"
    others = len(attribution.candidates) - 1
    return f"provided by {pack.title}" + (f", also claimed by {others} other pack{'s' if others > 1 else ''}" if others else "")


_NODES_LISTED = 10
"""Node ids a message names before it counts the rest: a file of hundreds of untyped nodes stays readable."""


def _nodes_text(ids: Sequence[str]) -> str:
    if len(ids) == 1:
        return f"node {ids[0]}"
    more = len(ids) - _NODES_LISTED
    return f"nodes {', '.join(ids[:_NODES_LISTED])}" + (f" and {more} more" if more > 0 else "")


def _from_node_errors(node_errors: Any, *, http_status: int, partial: bool = False) -> Classification:
    """One verdict from every reason of every node; the outcome is the first by precedence."""
    if not isinstance(node_errors, Mapping):
        raise _Malformed(f"node_errors is a {type(node_errors).__name__}, not an object")
    reasons: list[dict[str, Any]] = []
    missing_models: list[dict[str, Any]] = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("errors"), list):
            raise _Malformed(f"node_errors[{node_id!r}] has no list of errors")
        for reason in entry["errors"]:
            flat = _flatten(str(node_id), entry.get("class_type"), reason)
            reasons.append(flat)
            if flat["outcome"] == Outcome.MISSING_MODEL.value:
                missing_models.append({
                    "node_id": flat["node_id"], "node_type": flat["node_type"], "input": flat["input"],
                    "file": flat["received_value"], "folder": model_folder(flat["node_type"], flat["input"]),
                })
    if not reasons:
        raise _Malformed("node_errors lists nodes but no reasons")
    outcome = next(o for o in NODE_ERROR_PRECEDENCE if any(r["outcome"] == o.value for r in reasons))
    first = next(r for r in reasons if r["outcome"] == outcome.value)
    message = _reason_text(first, missing_models)
    others = len(reasons) - (len(missing_models) if outcome is Outcome.MISSING_MODEL else 1)
    if others:
        message += f" (+{others} other problem{'s' if others > 1 else ''})"
    if partial:
        message = "accepted in part, only the outputs that validated ran: " + message
    return _verdict(
        outcome,
        message,
        http_status,
        partial=partial,
        missing_models=tuple(missing_models),
        node_errors=tuple(reasons),
        node_id=first["node_id"],
        node_type=first["node_type"],
        hint="; ".join(dict.fromkeys(_remedies(reasons, missing_models))),
    )


def _remedies(reasons: Sequence[Mapping[str, Any]], missing_models: Sequence[Mapping[str, Any]]) -> list[str]:
    """What to do, where the reasons say: model files to add, packs that add a refused option."""
    remedies = [f"Add {m['file']} to models/{m['folder']}/" for m in missing_models]
    remedies += [f"Install {r['pack']['title']} ({r['pack']['install']}) for {r['input']} {r['received_value']!r}"
                 for r in reasons if "pack" in r]
    return remedies


def _flatten(node_id: str, class_type: Any, reason: Any) -> dict[str, Any]:
    if not isinstance(reason, Mapping) or "type" not in reason:
        raise _Malformed(f"node_errors[{node_id!r}] holds a reason without a type: {_excerpt(reason)}")
    extra = reason.get("extra_info") if isinstance(reason.get("extra_info"), Mapping) else {}
    kind, input_name = reason["type"], extra.get("input_name")
    outcome = REASON_OUTCOMES.get(kind, Outcome.INVALID_GRAPH)
    pack = None
    if kind == "value_not_in_list" and isinstance(class_type, str) and isinstance(input_name, str):
        if model_folder(class_type, input_name) is not None:
            outcome = Outcome.MISSING_MODEL
        else:
            pack = option_pack(class_type, input_name, extra.get("received_value"))
    elif kind == "custom_validation_failed" and "loop_error_type" in extra:
        outcome = Outcome.INVALID_GRAPH  # 2026 loop-structure errors: the graph's shape, not a value
    flat = {
        "node_id": node_id,
        "node_type": class_type,
        "type": kind,
        "input": input_name,
        "message": reason.get("message"),
        "details": reason.get("details"),
        "received_value": extra.get("received_value"),
        "outcome": outcome.value,
    }
    if pack is not None:
        flat["pack"] = pack.to_dict()
    return flat


def _reason_text(reason: Mapping[str, Any], missing_models: Sequence[Mapping[str, Any]]) -> str:
    where = f"{reason['node_type']} (node {reason['node_id']})"
    if reason["outcome"] == Outcome.MISSING_MODEL.value:
        model = missing_models[0]
        text = f"{where} needs {model['file']} in models/{model['folder']}, which the endpoint does not have"
        more = len(missing_models) - 1
        return text + (f", nor {more} other model file{'s' if more > 1 else ''}" if more else "")
    field_name = f" {reason['input']}" if reason["input"] else ""
    if "pack" in reason:
        return f"{where}{field_name}: {reason['received_value']!r} is not an option here; {reason['pack']['title']} adds it"
    details = f" ({reason['details']})" if reason["details"] and reason["details"] != reason["input"] else ""
    return f"{where}{field_name}: {reason['message']}{details}"


# --- execution: /history and the websocket ----------------------------------------------------------


def classify_history(entry: Any) -> Classification | None:
    """The verdict on a finished ``/history/{id}`` entry; None when it succeeded (then check its outputs)."""
    status = entry.get("status") if isinstance(entry, Mapping) else None
    if not isinstance(status, Mapping) or not isinstance(status.get("messages", []), list):
        return _protocol_error(f"a history entry without a status: {_excerpt(entry)}", None)
    for message in status.get("messages", []):
        verdict = classify_event(message)
        if verdict is not None:
            return verdict
    if status.get("status_str") == "success":
        return None
    return _protocol_error(f"history status {status.get('status_str')!r} without an execution_error or execution_interrupted message", None)


def classify_event(event: Any) -> Classification | None:
    """The verdict an execution event carries, or None for events that are not an ending by failure.

    Takes a history message ``["execution_error", data]`` or a websocket frame ``{"type":
    "execution_error", "data": data}``; the payload is the same in both.
    """
    if isinstance(event, Mapping):
        kind, data = event.get("type"), event.get("data")
    elif isinstance(event, Sequence) and not isinstance(event, str) and len(event) == 2:
        kind, data = event
    else:
        return None
    if kind not in ("execution_error", "execution_interrupted"):
        return None
    if not isinstance(data, Mapping):
        return _protocol_error(f"{kind} without a payload object: {_excerpt(data)}", None)
    node_id = None if data.get("node_id") is None else str(data["node_id"])
    node_type = data.get("node_type")
    if kind == "execution_interrupted":
        return _verdict(Outcome.CANCELLED, f"interrupted at {node_type} (node {node_id})", node_id=node_id, node_type=node_type)
    return _execution_error(node_id, node_type, data)


def _execution_error(node_id: str | None, node_type: Any, data: Mapping[str, Any]) -> Classification:
    """execution_error or out_of_memory; ``current_inputs`` is left out (secrets, whole tensors)."""
    exception_type = str(data.get("exception_type") or "")
    # ComfyUI always appends "\n" and its tips to the exception text.
    exception_message = str(data.get("exception_message") or "").rstrip("\n")
    oom = "OutOfMemory" in exception_type or _OOM_TEXT in exception_message.lower()
    frames = data.get("traceback") if isinstance(data.get("traceback"), list) else []
    first_line = exception_message.split("\n", 1)[0]
    return _verdict(
        Outcome.OUT_OF_MEMORY if oom else Outcome.EXECUTION_ERROR,
        f"{node_type} (node {node_id}) raised {exception_type}: {first_line}",
        node_id=node_id,
        node_type=node_type,
        exception_type=exception_type,
        exception_message=exception_message,
        traceback=tuple(str(f) for f in frames[-_TRACEBACK_FRAMES:]),
    )
