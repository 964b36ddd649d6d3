"""Modal: an app's own web endpoint, called as the endpoint's ``request`` says; by default modal-examples' comfyapp.

A Modal app defines its web endpoint itself, so this provider is configured rather than fixed
(``Endpoint.request``, every field optional: path, body template, response kind, images path and
where failures land, read by ``mapping.RequestMapping``, which every kind fronting a team's own code
shares).

The defaults are modal-examples' comfyapp (06_gpu_and_ml/comfyui, ``endpoints.md`` §4): ``{"prompt":
text}`` answered with the image's bytes. That app runs its own baked-in workflow with only the prompt
text replaced, so a case's nodes and models are never run there: a comfyapp cell can only be passed,
server_error (the app's opaque 500 when ``comfy run`` fails; ComfyUI's reason stays in the container
logs), output_invalid, a timeout, auth_error, rate_limited or unreachable.

Modal answers a request that outlives its 150 s HTTP limit with 303 to a URL that blocks until the
result is ready; those redirects are followed, whatever their number, until the cell's deadline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx

from harness.run.classify import Classification
from harness.run.outcomes import Outcome
from harness.providers.base import (
    BaseProvider,
    OutputImage,
    RunRecord,
    Timings,
    TransportFailure,
    excerpt,
    failure,
    inspect_image,
    output_suffix,
    phase,
    plain_client,
    refusal,
    transport_failures,
    with_retry_after,
)
from harness.providers.mapping import PROMPT, RequestMapping
from harness.comfy.workflows import positive_prompt

__all__ = ["COMFYAPP", "ModalProvider"]

COMFYAPP: Mapping[str, Any] = {"path": "", "body": {"prompt": PROMPT}, "response": "bytes", "images": "images"}
"""The request settings of modal-examples' comfyapp, the defaults of every ``request`` field."""
_SEE_OTHER = 303


class ModalProvider(BaseProvider):
    kind = "modal"
    defaults: ClassVar[Mapping[str, Any]] = COMFYAPP
    """What an endpoint's ``request`` leaves out."""

    def __init__(self, endpoint) -> None:
        super().__init__(endpoint)
        self.mapping = RequestMapping.from_spec(endpoint.request, self.defaults)
        self.sends_workflow = self.mapping.sends_workflow
        """False for a prompt-only app such as comfyapp: it runs its own baked-in workflow, not the case's."""

    def request_body(self, workflow: dict, images: Sequence[Path] = ()) -> Any:
        # A workflow without a positive prompt still runs on a prompt-only app: its own workflow does.
        # Input images have no place in an app-defined body.
        return self.mapping.fill(workflow, positive_prompt(workflow) or "")

    def repro_path(self) -> str:
        return self.mapping.path

    def repro(self, body_file: str, images: Sequence[Path] = ()) -> str:
        # -L follows Modal's 303s past 150 s; an image reply goes to a file, not the terminal.
        output = " -o modal-output" if self.mapping.response == "bytes" else ""
        return super().repro(body_file).replace("curl -sS", f"curl -sS -L{output}", 1)

    async def run(self, workflow: dict, *, deadline: float, outputs_dir: Path, images: Sequence[Path] = ()) -> RunRecord:
        started = time.monotonic()
        redirects: list[str] = []
        # The app's own endpoint queues and runs inside the request: once sent, the job is the app's.
        phase("execution")
        try:
            async with asyncio.timeout(max(deadline - started, 0.0)):
                response = await self._call(self.request_body(workflow), deadline, redirects)
                verdict, images = await self._outcome(response, outputs_dir)
        except TimeoutError:
            verdict, images = failure(Outcome.EXECUTION_TIMEOUT, f"no result from {self.endpoint.public_url} within "
                                      f"{deadline - started:.1f} s ({len(redirects)} redirects followed)", phase="execution"), []
        except TransportFailure as exc:
            verdict, images = exc.classification, []
        return RunRecord(verdict, tuple(images), Timings(total=time.monotonic() - started), extra={"redirects": len(redirects)})

    async def _call(self, body: Any, deadline: float, redirects: list[str]) -> httpx.Response:
        """POST the request, then GET every 303's Location until an answer that is not a redirect."""
        path = self.mapping.path
        with transport_failures(self.endpoint, f"POST {path or '/'}"):
            response = await self.client.post(path, json=body, timeout=self._timeout(deadline))
        while response.status_code == _SEE_OTHER and "location" in response.headers:
            location = response.url.join(response.headers["location"])
            redirects.append(str(location))
            with transport_failures(self.endpoint, f"GET {location.path} (redirect {len(redirects)})"):
                if _same_origin(location, self.endpoint.url):
                    response = await self.client.get(location, timeout=self._timeout(deadline))
                else:
                    # Modal's result URL is on the app's own host; anywhere else gets none of its credentials.
                    async with plain_client(self.endpoint.limits) as plain:
                        response = await plain.get(location, timeout=self._timeout(deadline))
                        await response.aread()
        return response

    def _timeout(self, deadline: float) -> httpx.Timeout:
        # Modal holds each request up to 150 s: a read may take the rest of the deadline, not the default 30 s.
        return httpx.Timeout(max(deadline - time.monotonic(), 0.1), connect=self.endpoint.timeouts.connect)

    async def _outcome(self, response: httpx.Response, outputs_dir: Path) -> tuple[Classification | None, list[OutputImage]]:
        status, doing = response.status_code, f"{response.request.method} {response.url.path}"
        if status in (401, 403):
            return failure(Outcome.AUTH_ERROR, f"HTTP {status} from {doing}: the credentials were refused", http_status=status), []
        if status == 429:
            return with_retry_after(failure(Outcome.RATE_LIMITED, f"HTTP 429 from {doing}: rate limited", http_status=status), response.headers), []
        body = _json_or_none(response)
        mapped = self.mapping.failure(status, body) if body is not None else None
        if mapped is not None:
            return mapped, []
        if status >= 500:
            ran = "" if self.sends_workflow else "; the app ran its own baked-in workflow with the case's prompt text, not the case's workflow"
            logs = " (comfyapp keeps ComfyUI's reason in its container logs)" if self.kind == "modal" and not self.sends_workflow else ""
            return failure(Outcome.SERVER_ERROR, f"HTTP {status} from {doing}: {response.text[:200]!r}: the app does not say why"
                           f"{logs}{ran}", http_status=status), []
        if status != 200:
            return failure(Outcome.PROTOCOL_ERROR, f"HTTP {status} from {doing}: {response.text[:200]}", http_status=status), []
        if self.mapping.response == "bytes":
            if not response.content:
                # comfyapp's infer() returns None when it finds no output file: 200 with an empty body.
                return failure(Outcome.OUTPUT_INVALID, f"HTTP 200 with an empty body from {doing}: the app found no output image"), []
            return None, [_save(0, response.content, outputs_dir)]
        if body is None:
            return failure(Outcome.PROTOCOL_ERROR, f"HTTP 200 from {doing} is not JSON: {response.text[:200]}"), []
        refs = self.mapping.image_refs(body)
        if refs is None:
            # Not the reply the configured mapping describes (another app, or a wrong `images` path);
            # an app that ran and made nothing still answers the key, with nothing under it.
            first = self.mapping.images.split(".")[0]
            return failure(Outcome.PROTOCOL_ERROR, f"HTTP 200 from {doing} is not an object with {first!r}: {response.text[:200]}"), []
        if not refs:
            return failure(Outcome.OUTPUT_INVALID, f"the reply of {doing} has no images at {self.mapping.images!r}: {response.text[:200]}"), []
        return None, [await self._image(i, ref, outputs_dir) for i, ref in enumerate(refs)]

    async def _image(self, index: int, ref: Any, outputs_dir: Path) -> OutputImage:
        """One image of a JSON reply: decoded from base64, or downloaded from its URL."""
        if not isinstance(ref, str):
            raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"image {index} of the reply is not a string: {excerpt(json.dumps(ref))}"))
        if self.mapping.response == "json_base64":
            try:
                data = base64.b64decode(ref.split(",", 1)[1] if ref.startswith("data:") else ref, validate=True)
            except binascii.Error as exc:
                return OutputImage(f"image_{index}", "", 0, error=f"not valid base64: {exc}")
            return _save(index, data, outputs_dir)
        url = httpx.URL(self.endpoint.url).join(ref)
        with transport_failures(self.endpoint, f"GET image {index}"):
            if _same_origin(url, self.endpoint.url):
                response = await self.client.get(url)
            else:
                # Another host (a bucket, a CDN) gets no credentials of the app's.
                async with plain_client(self.endpoint.limits) as plain:
                    response = await plain.get(url)
        refused = refusal(response.status_code, response.headers, f"GET image {index}")
        if refused is not None:
            raise TransportFailure(refused)
        if response.status_code != 200:
            return OutputImage(f"image_{index}", "", 0, error=f"GET {url} answered {response.status_code}")
        return _save(index, response.content, outputs_dir)


def _same_origin(url: httpx.URL, endpoint_url: str) -> bool:
    """Whether ``url`` is on the endpoint's own origin (scheme, host, port), the only one its credentials go to."""
    own = httpx.URL(endpoint_url)
    return (url.scheme, url.host, url.port) == (own.scheme, own.host, own.port)


def _json_or_none(response: httpx.Response) -> Any:
    """The decoded JSON body, or None for bytes, text and empty replies."""
    try:
        return response.json()
    except ValueError:
        return None


def _save(index: int, data: bytes, outputs_dir: Path) -> OutputImage:
    suffix = output_suffix(data)  # comfyapp labels its PNG bytes image/jpeg: its Content-Type is not trusted
    outputs_dir.mkdir(parents=True, exist_ok=True)
    target = outputs_dir / f"image_{index}{suffix}"
    target.write_bytes(data)
    return inspect_image(target, target.name, data=data)
