"""Request templates and response mappings: how to call a team's own code in front of ComfyUI.

Modal apps, a custom Vast PyWorker behind the route service and plain HTTP wrappers define their own
request and reply, so an endpoint says what they are (``request:`` in endpoints.yaml, every field
optional) and this module is the one place that builds the request and reads the reply:

- ``path``: POSTed to, relative to the endpoint URL (the kind's own default when left out);
- ``body``: a JSON template. A string that is exactly ``"{{workflow}}"`` becomes the case's workflow,
  and ``{{prompt}}`` inside a string the text of its positive prompt;
- ``response``: ``bytes`` (the reply is the image), ``json_base64`` or ``urls`` (a JSON reply whose
  ``images`` path holds base64 strings, data URIs or URLs);
- where a failure lands, each a dotted path into a JSON reply (lists are walked): ``status`` with the
  ``success`` values that mean it worked (any other value is a failure, whatever the HTTP status),
  ``message`` (the app's own words), ``comfyui_error`` (ComfyUI's refusal of ``POST /prompt`` passed
  through: ``{"error", "node_errors"}``), ``node_errors`` (ComfyUI's node_errors, of a refusal or of a
  prompt it accepted only in part) and ``execution_error`` (ComfyUI's ``execution_error`` payload).

Whatever ComfyUI said that the reply keeps goes through the native classifier, so a missing node or
model reads the same as on ComfyUI itself; an app that keeps only a message hides the reason (the
endpoint's catalogue may still prove it, see the engine).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.providers.base import OutputImage, failure, inspect_image, output_suffix, with_retry_after
from harness.run.classify import Classification, Evidence, classify_event, classify_prompt_response
from harness.run.outcomes import Outcome

__all__ = ["PROMPT", "WORKFLOW", "RequestMapping", "decode_image", "pluck"]

WORKFLOW = "{{workflow}}"
PROMPT = "{{prompt}}"
_HIDDEN_HINT = ("Give the endpoint `object_info:` (a saved /object_info of the ComfyUI behind the app) so the preflight "
                "can prove a validation failure, or have the app pass ComfyUI's answer through (comfyui_error, node_errors).")


@dataclass(frozen=True)
class RequestMapping:
    """One endpoint's ``request:``: its template and where its reply keeps images and failures."""

    path: str = ""
    body: Any = dataclasses.field(default_factory=lambda: {"prompt": PROMPT})
    response: str = "bytes"
    images: str = "images"
    status: str | None = None
    success: tuple[Any, ...] = ()
    message: str | None = None
    comfyui_error: str | None = None
    node_errors: str | None = None
    execution_error: str | None = None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None) -> RequestMapping:
        """The mapping of an endpoint's ``request`` (validated by the endpoints schema), over a kind's defaults."""
        merged = {**(defaults or {}), **(spec or {})}
        if "success" in merged:
            success = merged["success"]
            merged["success"] = tuple(success) if isinstance(success, list | tuple) else (success,)
        return cls(**merged)

    @property
    def sends_workflow(self) -> bool:
        """False for a prompt-only app (modal-examples' comfyapp): it runs its own workflow, not the case's."""
        return _contains(self.body, WORKFLOW)

    def fill(self, workflow: dict, prompt: str) -> Any:
        """The request body: the template with the workflow and the prompt text put in."""
        return _fill(self.body, workflow, prompt)

    def failure(self, status: int, body: Any) -> Classification | None:
        """What a decoded JSON reply says went wrong, where the mapping says failures land; None if nothing.

        Checked in order: ComfyUI's own refusal, its node_errors, its execution error, then the
        reply's status field and message. The HTTP status is the client's evidence.
        """
        verdict = self._comfyui_verdict(status, body)
        if verdict is None and self.status is not None:
            found = pluck(body, self.status)
            if found and found[0] not in self.success:
                verdict = self._opaque(f"the app reported {self.status} {found[0]!r}", body)
        if verdict is None and status >= 400 and self.message is not None and pluck(body, self.message):
            verdict = self._opaque(f"HTTP {status}", body)
        if verdict is None:
            return None
        return dataclasses.replace(verdict, evidence=dataclasses.replace(verdict.evidence, http_status=status))

    def _comfyui_verdict(self, status: int, body: Any) -> Classification | None:
        refusal = _first_mapping(body, self.comfyui_error)
        if refusal is not None and "error" in refusal:
            return classify_prompt_response(400, refusal)
        node_errors = _first_mapping(body, self.node_errors)
        if node_errors:
            said = pluck(body, self.status)[:1]
            if status >= 400 or (said and said[0] not in self.success):
                return classify_prompt_response(400, {"error": {"type": "prompt_outputs_failed_validation",
                                                                "message": "Prompt outputs failed validation"},
                                                      "node_errors": node_errors})
            # A success that carries node_errors: ComfyUI accepted the prompt in part.
            return classify_prompt_response(200, {"prompt_id": "app", "node_errors": node_errors})
        crash = _first_mapping(body, self.execution_error)
        if crash is not None:
            return classify_event(["execution_error", crash])
        return None

    def _opaque(self, what: str, body: Any) -> Classification:
        """A failure the app describes only in its own words: the reason ComfyUI gave is hidden."""
        said = pluck(body, self.message) if self.message is not None else []
        text = f"{what}: {str(said[0])[:300]}" if said else what
        return Classification(Outcome.SERVER_ERROR, False, Evidence(
            message=f"the provider hides the reason: {text} (ComfyUI's own answer is not in the reply)", hint=_HIDDEN_HINT),
            hidden=True)

    def classify(self, status: int, headers: Mapping[str, str], body: Any, text: str, doing: str) -> Classification | None:
        """The verdict on a whole reply: the HTTP status, then where the mapping says failures land;
        None for a 200 the mapping finds no failure in (then read its images)."""
        if status in (401, 403):
            return failure(Outcome.AUTH_ERROR, f"HTTP {status} from {doing}: the credentials were refused", http_status=status)
        if status == 429:
            return with_retry_after(failure(Outcome.RATE_LIMITED, f"HTTP 429 from {doing}: rate limited", http_status=status), headers)
        mapped = self.failure(status, body) if body is not None else None
        if mapped is not None:
            return mapped
        if status >= 500:
            return Classification(Outcome.SERVER_ERROR, False, Evidence(
                message=f"the provider hides the reason: HTTP {status} from {doing}: {text[:200]!r}", http_status=status,
                hint=_HIDDEN_HINT), hidden=True)
        if status != 200:
            return failure(Outcome.PROTOCOL_ERROR, f"HTTP {status} from {doing}: {text[:200]}", http_status=status)
        return None

    def image_refs(self, body: Any) -> list[Any] | None:
        """The base64 strings or URLs at ``images``; None when the reply lacks the path's first key."""
        keys = self.images.split(".")
        if not isinstance(body, Mapping) or keys[0] not in body:
            return None
        return pluck(body, self.images)


def pluck(value: Any, path: str | None) -> list[Any]:
    """The values at a dotted path; a list met on the way is walked item by item."""
    return [] if path is None else _pluck(value, path.split("."))


def _pluck(value: Any, keys: list[str]) -> list[Any]:
    if isinstance(value, list):
        return [found for item in value for found in _pluck(item, keys)]
    if not keys:
        return [value]
    if isinstance(value, Mapping) and keys[0] in value:
        return _pluck(value[keys[0]], keys[1:])
    return []


def _first_mapping(body: Any, path: str | None) -> Mapping[str, Any] | None:
    found = [v for v in pluck(body, path) if isinstance(v, Mapping)]
    return found[0] if found else None


def _contains(template: Any, marker: str) -> bool:
    if isinstance(template, str):
        return template == marker
    if isinstance(template, Mapping):
        return any(_contains(v, marker) for v in template.values())
    if isinstance(template, list):
        return any(_contains(v, marker) for v in template)
    return False


def _fill(template: Any, workflow: dict, prompt: str) -> Any:
    if template == WORKFLOW:
        return workflow
    if isinstance(template, str):
        return template.replace(PROMPT, prompt)
    if isinstance(template, Mapping):
        return {key: _fill(value, workflow, prompt) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, workflow, prompt) for value in template]
    return template


def decode_image(index: int, ref: Any, outputs_dir: Path) -> OutputImage:
    """One base64 image (or data URI) of a JSON reply, saved and proven to decode."""
    name = f"image_{index}"
    if not isinstance(ref, str):
        return OutputImage(name, "", 0, error=f"expected a base64 string, got {type(ref).__name__}")
    try:
        data = base64.b64decode(ref.split(",", 1)[1] if ref.startswith("data:") else ref, validate=True)
    except binascii.Error as exc:
        return OutputImage(name, "", 0, error=f"not valid base64: {exc}")
    outputs_dir.mkdir(parents=True, exist_ok=True)
    suffix = output_suffix(data)
    target = outputs_dir / f"{name}{suffix}"
    target.write_bytes(data)
    return inspect_image(target, target.name, data=data)
