"""RunPod serverless running worker-comfyui (v5): submit to ``/run``, poll ``/status/{id}``, read the envelope.

The endpoint URL is the job API base, ``https://api.runpod.ai/v2/<endpoint_id>``; auth is the
endpoint's ``Authorization: Bearer ${RUNPOD_API_KEY}`` header. ``flavour: local`` talks to the runpod
SDK's local dev API instead, whose ``/status/{id}`` is a POST that runs the job inside the call.

worker-comfyui flattens everything ComfyUI said into one ``error`` string, so ``classify_error`` parses
those strings back into ComfyUI's own shapes and hands them to the native classifier: the pasted 400
body after "Raw response:", the "Workflow validation failed:" bullets of Python reprs, the "Workflow
execution error:" details of "Job processing failed", and the SDK's JSON string for an exception that
escaped the handler. Every wait is bounded: ``IN_QUEUE`` past the queue budget is cancelled as
``queue_timeout``, ``IN_PROGRESS`` past the deadline as ``execution_timeout``.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import binascii
import dataclasses
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from harness.run.classify import (
    Classification,
    Evidence,
    classify_event,
    classify_prompt_response,
)
from harness.run.outcomes import Outcome
from harness.providers.base import (
    CLEANUP_S,
    BaseProvider,
    OutputImage,
    RunRecord,
    Timings,
    TransportFailure,
    excerpt,
    failure,
    inspect_image,
    phase,
    plain_client,
    refusal,
    safe_name,
    save_stream,
    transport_failures,
    with_retry_after,
)

__all__ = ["RunPodProvider", "classify_error"]

_POLL_INTERVAL = 0.05
_POLL_INTERVAL_MAX = 1.0
_FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")
_RUNSYNC_WAIT_S = 90.0
"""How long a /runsync request is held at most (RunPod's default); past it the job is polled."""
_POLICY_MIN_MS, _POLICY_MAX_MS = 5_000, 7 * 86_400_000
"""The platform's range for ``policy.executionTimeout``."""

_RAW_RESPONSE = ". Raw response: "
_BULLET = re.compile(r"^• Node (?P<node_id>.+?) \((?P<key>[^()]+)\): (?P<value>.*)$")
_EXECUTION = re.compile(r"^Workflow execution error: Node Type: (?P<node_type>.*?), Node ID: (?P<node_id>.*?), Message: (?P<message>.*)$", re.DOTALL)
_NO_OUTPUTS = "No outputs found in history for prompt"
_HIDDEN = ('the provider hides the reason: worker-comfyui answered only "Job processing failed" (an execution error, '
           "or a run without outputs such as a prompt ComfyUI accepted only in part) and this API keeps no details")
_HIDDEN_HINT = ("Give the endpoint `object_info:` (a saved /object_info of its image) so the preflight can prove a "
                "validation failure, or replay the workflow on a plain ComfyUI to see ComfyUI's own answer.")
# Strings of worker-comfyui v5.8.5's handler.py that need no parsing, by prefix: the outcome and why.
_FIXED: tuple[tuple[str, Outcome, str], ...] = (
    ("Failed to upload one or more input images", Outcome.INVALID_INPUT, "an input image did not upload"),
    ("'images' must be a list", Outcome.INVALID_INPUT, "the input images are malformed"),
    ("Missing 'workflow' parameter", Outcome.PROTOCOL_ERROR, "the worker did not find the workflow in the job input"),
    ("Please provide input", Outcome.PROTOCOL_ERROR, "the worker received no job input"),
    ("Invalid JSON format in input", Outcome.PROTOCOL_ERROR, "the worker could not parse the job input"),
    ("Job ID not found", Outcome.PROTOCOL_ERROR, "the endpoint no longer knows the job"),
    ("Stream not supported", Outcome.PROTOCOL_ERROR, "the endpoint was asked to stream a non-streaming worker"),
    ("Error queuing workflow:", Outcome.SERVER_ERROR, "ComfyUI refused the prompt without a reason"),
)


class RunPodProvider(BaseProvider):
    kind = "runpod"

    @property
    def _local(self) -> bool:
        return self.endpoint.flavour == "local"

    def request_body(self, workflow: dict, images: Sequence[Path] = ()) -> dict:
        job_input: dict[str, Any] = {"workflow": workflow}
        if images:
            # worker-comfyui uploads these to ComfyUI's input/ under their names before queueing.
            job_input["images"] = [{"name": p.name, "image": base64.b64encode(p.read_bytes()).decode()} for p in images]
        if self._local:
            return {"input": job_input}
        # The platform ends the job itself past this (and stops billing), even if the harness is gone.
        ms = min(max(round(self.endpoint.timeouts.execution * 1000), _POLICY_MIN_MS), _POLICY_MAX_MS)
        return {"input": job_input, "policy": {"executionTimeout": ms}}

    def repro_path(self) -> str:
        # /runsync answers with the result in one request, which is what a reproduction wants.
        return "/runsync"

    async def run(self, workflow: dict, *, deadline: float, outputs_dir: Path, images: Sequence[Path] = ()) -> RunRecord:
        started = time.monotonic()
        # /runsync holds the request while the job waits and runs: once sent, the job is the endpoint's.
        phase("queue" if self.endpoint.runsync else "submit")
        job_id = ""
        try:
            answer = await self._submit(self.request_body(workflow, images), deadline)
            job_id = str(answer["id"])
            phase("queue")
            if answer.get("status") in _FINAL:  # /runsync answered with the result itself
                waited = (answer, 0.0, time.monotonic() - started)
            else:
                waited = await self._wait(job_id, started, deadline)
            if isinstance(waited, Classification):
                return RunRecord(waited, timings=Timings(total=time.monotonic() - started), job_id=job_id)
            body, queue_s, exec_s = waited
            phase("download")
            verdict, images = await self._outcome(body, outputs_dir)
            timings = Timings(queue=_seconds(body.get("delayTime"), queue_s), execution=_seconds(body.get("executionTime"), exec_s),
                              total=time.monotonic() - started)
            return RunRecord(verdict, tuple(images), timings, job_id, extra={"runpod_status": body.get("status")})
        except TransportFailure as exc:
            return RunRecord(exc.classification, timings=Timings(total=time.monotonic() - started))
        except asyncio.CancelledError:
            if job_id and not self._local:  # the platform would run (and bill) it to the end otherwise
                self.abandon(self._cancel(job_id))
            raise

    async def _submit(self, body: dict, deadline: float) -> Mapping[str, Any]:
        """POST /run (or /runsync, which holds the request until the job ends or its wait is over)."""
        path, options = "/run", {}
        if self.endpoint.runsync:
            wait_s = max(min(_RUNSYNC_WAIT_S, deadline - time.monotonic()), 1.0)
            path, options = "/runsync", {"params": {"wait": round(wait_s * 1000)}, "timeout": wait_s + 10.0}
        with transport_failures(self.endpoint, f"POST {path}"):
            response = await self.client.post(path, json=body, **options)
        answer = _json(response, f"POST {path}")
        if not isinstance(answer, Mapping) or not answer.get("id"):
            raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"POST {path} answered without a job id: {response.text[:200]}", http_status=response.status_code))
        return answer

    async def _wait(self, job_id: str, started: float, deadline: float):
        """Poll until a final status: (status body, queue s, execution s) as observed, or a timeout verdict."""
        queue_deadline = min(deadline, started + self.endpoint.timeouts.queue)
        began_at: float | None = None
        interval = _POLL_INTERVAL
        while True:
            asked = time.monotonic()
            body = await self._status(job_id, deadline)
            now = time.monotonic()
            status = body.get("status")
            if status in _FINAL:
                # The dev API has no queue: the job ran inside the /status call (seen with SDK 1.7.13).
                begun = began_at if began_at is not None else asked if self._local else now
                return body, begun - started, now - begun
            if status == "IN_PROGRESS" and began_at is None:
                began_at = now
                phase("execution")
            if status != "IN_PROGRESS" and now >= queue_deadline:
                await self._cancel(job_id)
                return failure(Outcome.QUEUE_TIMEOUT, f"job {job_id} was still {status} after {now - started:.1f} s; cancelled", phase="queue")
            if now >= deadline:
                await self._cancel(job_id)
                return failure(Outcome.EXECUTION_TIMEOUT, f"job {job_id} did not finish within {deadline - started:.1f} s; cancelled", phase="execution")
            limit = (queue_deadline if began_at is None else deadline) - now
            await asyncio.sleep(max(0.0, min(interval, limit)))
            interval = min(interval * 2, _POLL_INTERVAL_MAX)

    async def _status(self, job_id: str, deadline: float) -> Mapping[str, Any]:
        path = f"/status/{quote(job_id, safe='')}"
        with transport_failures(self.endpoint, path):
            if self._local:
                # The dev API runs the whole job inside this POST: give it the rest of the deadline.
                response = await self.client.post(path, timeout=max(deadline - time.monotonic(), 1.0))
            else:
                response = await self.client.get(path)
        body = _json(response, f"GET {path}")
        if not isinstance(body, Mapping):
            raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"{path} answered {body!r:.200}"))
        return body

    async def _cancel(self, job_id: str) -> None:
        """Best effort: the verdict does not depend on it (and the dev API has no /cancel at all)."""
        try:
            await self.client.post(f"/cancel/{quote(job_id, safe='')}", timeout=CLEANUP_S)
        except httpx.HTTPError:
            pass

    async def _outcome(self, body: Mapping[str, Any], outputs_dir: Path) -> tuple[Classification | None, list[OutputImage]]:
        status, output = body.get("status"), body.get("output")
        if status == "CANCELLED":
            return failure(Outcome.CANCELLED, f"job {body.get('id')} was cancelled"), []
        if status == "TIMED_OUT":
            # TIMED_OUT before a worker took the job is the queue's budget; after, the execution's.
            outcome = Outcome.EXECUTION_TIMEOUT if body.get("executionTime") else Outcome.QUEUE_TIMEOUT
            return failure(outcome, f"RunPod timed job {body.get('id')} out"), []
        if status == "FAILED":
            details = output.get("details") if isinstance(output, Mapping) else None
            return classify_error(str(body.get("error", "")), details), []
        if not isinstance(output, Mapping):
            return failure(Outcome.PROTOCOL_ERROR, f"COMPLETED without an output object: {output!r:.200}"), []
        refs = output.get("images") or []
        if not isinstance(refs, list):
            return failure(Outcome.PROTOCOL_ERROR, f"COMPLETED with images that are not a list: {excerpt(json.dumps(refs))}"), []
        images = [await self._save(i, ref, outputs_dir) for i, ref in enumerate(refs)]
        if output.get("status") == "success_no_images" or not images:
            return failure(Outcome.OUTPUT_INVALID, "the workflow ran but the worker returned no images (success_no_images)"), images
        errors = output.get("errors")
        if errors:
            # Images and errors: some output nodes ran, others failed. Never a pass.
            return dataclasses.replace(classify_error("Job processing failed", errors), partial=True), images
        return None, images

    async def _save(self, index: int, ref: Any, outputs_dir: Path) -> OutputImage:
        if not isinstance(ref, Mapping):
            raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"output image {index} is not an object: {excerpt(json.dumps(ref))}"))
        filename = str(ref.get("filename", f"output_{index}.png"))
        outputs_dir.mkdir(parents=True, exist_ok=True)
        # The name is the endpoint's: reduced to a safe one inside the cell's folder (the original stays in `filename`).
        target = outputs_dir / safe_name(index, Path(filename.replace("\\", "/")).name)
        kind, data = ref.get("type"), ref.get("data")
        if kind == "base64" and isinstance(data, str):
            try:
                held = base64.b64decode(data, validate=True)
            except binascii.Error as exc:
                return OutputImage(filename, str(target), 0, error=f"output is not valid base64: {exc}")
            target.write_bytes(held)
        elif kind == "s3_url" and isinstance(data, str):
            # A presigned URL: fetched without the endpoint's credentials, which are not S3's.
            with transport_failures(self.endpoint, f"GET {filename} from S3"):
                async with plain_client(self.endpoint.limits, downloads=True) as plain, plain.stream("GET", data) as response:
                    refused = refusal(response.status_code, response.headers, f"GET {filename} from S3")
                    if refused is not None:
                        raise TransportFailure(refused)
                    if response.status_code != 200:
                        return OutputImage(filename, str(target), 0, error=f"GET s3_url answered {response.status_code}")
                    held = await save_stream(target, response.aiter_bytes(1 << 20), self.endpoint.limits)
        else:
            return OutputImage(filename, str(target), 0, error=f"unknown image entry type {kind!r}")
        return inspect_image(target, filename, data=held)


def _seconds(ms: Any, observed: float) -> float:
    """RunPod's delayTime/executionTime (ms) where it reports them; the harness's own view otherwise."""
    return ms / 1000 if isinstance(ms, (int, float)) else observed


def _json(response: httpx.Response, doing: str) -> Any:
    """The decoded body of a 200; HTTP refusals become their outcomes."""
    status = response.status_code
    if status in (401, 403):
        raise TransportFailure(failure(Outcome.AUTH_ERROR, f"HTTP {status} from {doing}: RunPod refused the API key", http_status=status))
    if status == 429:
        raise TransportFailure(with_retry_after(failure(Outcome.RATE_LIMITED, f"HTTP 429 from {doing}: over RunPod's rate limit", http_status=status), response.headers))
    if status >= 500:
        raise TransportFailure(failure(Outcome.SERVER_ERROR, f"HTTP {status} from {doing}: {response.text[:200]}", http_status=status))
    try:
        body = response.json()
    except ValueError:
        body = None
    if status != 200 or body is None:
        raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"HTTP {status} from {doing}: {response.text[:200]}", http_status=status))
    return body


# --- worker-comfyui's flattened error strings ---------------------------------------------------------


def classify_error(error: str, details: Any = None) -> Classification:
    """The outcome of a FAILED job's ``error`` string (and ``output.details``, where the platform keeps them)."""
    if _RAW_RESPONSE in error:
        raw = error.split(_RAW_RESPONSE, 1)[1]
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, Mapping):
            # The pasted body is ComfyUI's own 400: the native classifier reads it as it is.
            return classify_prompt_response(400, body) or failure(Outcome.PROTOCOL_ERROR, error)
    bullets = _node_errors(error)
    if bullets:
        return classify_prompt_response(400, {"error": {"type": "prompt_outputs_failed_validation", "message": error.split("\n", 1)[0]}, "node_errors": bullets}) \
            or failure(Outcome.PROTOCOL_ERROR, error)
    uncaught = _uncaught(error)
    if uncaught is not None:
        return uncaught
    if "not reachable after multiple retries" in error or "ComfyUI HTTP unreachable" in error:
        return failure(Outcome.UNREACHABLE, f"the worker could not reach its ComfyUI: {error}")
    if error.startswith("Job processing failed"):
        return _processing_failed(details)
    for prefix, outcome, why in _FIXED:
        if error.startswith(prefix):
            more = f" ({'; '.join(map(str, details))})" if isinstance(details, list) and details else ""
            return failure(outcome, f"{why}: {error}{more}")
    return failure(Outcome.SERVER_ERROR, f"the RunPod job failed: {error[:300]}")


def _node_errors(error: str) -> dict[str, dict[str, Any]]:
    """The node_errors object behind "• Node <id> (<key>): <repr>" bullets, one bullet per key."""
    node_errors: dict[str, dict[str, Any]] = {}
    for line in error.split("\n"):
        bullet = _BULLET.match(line)
        if bullet is None:
            continue
        value: Any = bullet["value"]
        if bullet["key"] != "class_type":
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        node_errors.setdefault(bullet["node_id"], {})[bullet["key"]] = value
    # Only entries that carry a list of reasons are ComfyUI's shape; anything else is not a node error.
    return {k: v for k, v in node_errors.items() if isinstance(v.get("errors"), list)}


def _uncaught(error: str) -> Classification | None:
    """The runpod SDK's report of an exception that escaped the handler: a bug or gap in the worker."""
    try:
        data = json.loads(error)
    except ValueError:
        return None
    if not isinstance(data, Mapping) or "error_type" not in data:
        return None
    exception_type = re.sub(r"^<class '(.*)'>$", r"\1", str(data["error_type"]))
    message = str(data.get("error_message", ""))
    frames = str(data.get("error_traceback", "")).strip().split("\n")
    return Classification(Outcome.SERVER_ERROR, False, Evidence(
        message=f"the worker's handler raised {exception_type}: {message}",
        exception_type=exception_type, exception_message=message, traceback=tuple(frames[-3:]),
        hint=Outcome.SERVER_ERROR.info.hint))


def _processing_failed(details: Any) -> Classification:
    """"Job processing failed": the cause is only in ``details``, which the dev API drops.

    worker-comfyui says this for an execution error and for a run without outputs alike; a prompt
    ComfyUI accepted only in part (200 with node_errors, which the handler ignores) is the latter. So
    without details the reason is hidden, and with "No outputs found" why there were none is: both
    stay ``hidden`` for the engine to recover from the endpoint's catalogue, where it proves one.
    """
    details = [str(d) for d in details] if isinstance(details, list) else []
    for detail in details:
        found = _EXECUTION.match(detail)
        if found:
            # The handler keeps node type, id and message only; the native classifier still spots OOM.
            verdict = classify_event(["execution_error", {"node_id": found["node_id"], "node_type": found["node_type"],
                                                          "exception_message": found["message"]}])
            first_line = found["message"].split("\n", 1)[0]
            message = f"{found['node_type']} (node {found['node_id']}) failed: {first_line}"
            return dataclasses.replace(verdict, evidence=dataclasses.replace(verdict.evidence, message=message))
    if any(d.startswith(_NO_OUTPUTS) for d in details):
        return Classification(Outcome.OUTPUT_INVALID, False, Evidence(
            message=f"the workflow ran but produced no outputs: {details[0]} The provider hides why: worker-comfyui "
                    "ignores the node_errors of a prompt ComfyUI accepted only in part",
            hint=_HIDDEN_HINT), hidden=True)
    if details:
        return failure(Outcome.EXECUTION_ERROR, f"Job processing failed: {'; '.join(details)}")
    return Classification(Outcome.SERVER_ERROR, False, Evidence(message=_HIDDEN, hint=_HIDDEN_HINT), hidden=True)

