"""The state behind the reference endpoint's RunPod envelope: jobs, a worker with an optional cold start,
and worker-comfyui v5.8.5's ``handler`` reproduced against the reference ComfyUI in the same process.

The handler is followed statement by statement where its strings come from, so the flattened errors a
RunPod client sees are byte for byte the recorded ones (``/work/shared/reference/providers/runpod``):
validation failures as "Workflow validation failed:" bullets of Python reprs, a 400 without node errors
as "<message>. Raw response: <body>", execution errors only as ``details`` of "Job processing failed",
and an exception escaping the handler as the runpod SDK's JSON string. HTTP lives in ``runpod.py``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any

from harness.reference.state import ServerState
from harness.comfy.validator import validate_prompt

__all__ = ["Job", "JobStatus", "RunPodJobs", "handle", "run_job"]

COMFY_HOST = "127.0.0.1:8188"
"""Where the handler believes ComfyUI is; it appears in the "Error queuing workflow" string."""
RUNPOD_VERSION = "1.12.0"
_HISTORY_POLL = 0.005


class JobStatus(str, enum.Enum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


@dataclass
class Job:
    id: str
    input: Any
    status: JobStatus = JobStatus.IN_QUEUE
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    output: Any = None
    error: str | None = None
    prompt_id: str | None = None
    """The ComfyUI prompt the handler queued, so a cancel can take it out of ComfyUI too."""
    execution_timeout: float | None = None
    """The request's ``policy.executionTimeout`` in seconds: past it the platform ends the job TIMED_OUT."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def final(self) -> bool:
        return self.status not in (JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS)


def run_job(result: dict) -> tuple[JobStatus, Any, str | None]:
    """The runpod SDK's ``run_job``: ``error`` is popped out of the handler's dict, the rest is output."""
    if "error" not in result:
        return JobStatus.COMPLETED, result, None
    rest = {k: v for k, v in result.items() if k != "error"}
    # An empty leftover output is dropped, as the worker's job-done body shows.
    return JobStatus.FAILED, rest or None, str(result["error"])


def _uncaught(exc: BaseException) -> str:
    """The SDK's error string when the handler raises: a JSON document inside the string."""
    return json.dumps({
        "error_type": str(type(exc)),
        "error_message": str(exc),
        "error_traceback": "".join(traceback.format_exception(exc)),
        "hostname": "unknown",
        "worker_id": "unknown",
        "runpod_version": RUNPOD_VERSION,
    })


class RunPodJobs:
    """Every job of one reference endpoint, and the single worker that takes them in order.

    ``cold_start`` seconds pass before the worker takes its first job: jobs stay ``IN_QUEUE`` meanwhile,
    like a RunPod endpoint scaled to zero.
    """

    def __init__(self, state: ServerState, cold_start: float = 0.0) -> None:
        self.state = state
        self.cold_start = cold_start
        self.jobs: dict[str, Job] = {}
        self._warm_at: float | None = None
        self._lock = asyncio.Semaphore(state.profile.capacity)
        """The endpoint's workers: one per unit of the profile's capacity."""
        self._tasks: dict[str, asyncio.Task] = {}

    def submit(self, job_id: str, job_input: Any, execution_timeout: float | None = None) -> Job:
        job = Job(job_id, job_input, execution_timeout=execution_timeout)
        self.jobs[job.id] = job
        if self._warm_at is None:
            self._warm_at = job.submitted + self.cold_start
        self._tasks[job.id] = asyncio.create_task(self._process(job))
        return job

    async def _process(self, job: Job) -> None:
        await asyncio.sleep(max(0.0, self._warm_at - time.monotonic()))
        # A worker takes one job at a time, as worker-comfyui's handler is synchronous; the profile's
        # capacity is the number of workers (1 by default).
        async with self._lock:
            job.status, job.started = JobStatus.IN_PROGRESS, time.monotonic()
            try:
                result = await asyncio.wait_for(handle(self.state, job), job.execution_timeout)
                job.status, job.output, job.error = run_job(result)
            except TimeoutError:
                self._stop_prompt(job)
                job.status = JobStatus.TIMED_OUT
            except Exception as exc:  # noqa: BLE001 - the SDK turns any handler exception into FAILED
                job.status, job.error = JobStatus.FAILED, _uncaught(exc)
            job.finished = time.monotonic()
            job.done.set()

    def cancel(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.final:
            return job
        self._tasks[job_id].cancel()
        self._stop_prompt(job)
        job.status, job.finished = JobStatus.CANCELLED, time.monotonic()
        job.done.set()
        return job

    def _stop_prompt(self, job: Job) -> None:
        """Take the job's prompt out of ComfyUI: the worker is stopped, its ComfyUI must stop too."""
        if job.prompt_id is not None:
            queue = self.state.queue
            if queue.is_running(job.prompt_id):
                self.state.executor.interrupt(job.prompt_id)
            queue.delete(job.prompt_id)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)


# --- worker-comfyui v5.8.5 handler.py ----------------------------------------------------------------


async def handle(state: ServerState, job: Job) -> dict:
    """``handler(job)``: validate, upload, queue, wait, collect; returns the handler's dict."""
    validated, error_message = _validate_input(job.input)
    if error_message:
        return {"error": error_message}
    workflow, images = validated["workflow"], validated["images"]
    if images:
        upload = _upload_images(state, images)
        if upload["status"] == "error":
            return {"error": "Failed to upload one or more input images", "details": upload["details"]}
    queued = _queue_workflow(state, workflow)
    if "error" in queued:
        return queued
    job.prompt_id = prompt_id = queued["prompt_id"]
    while prompt_id not in state.queue.history:
        await asyncio.sleep(_HISTORY_POLL)
    return _collect(state, prompt_id, state.queue.history[prompt_id])


def _validate_input(job_input: Any) -> tuple[dict | None, str | None]:
    if job_input is None:
        return None, "Please provide input"
    if isinstance(job_input, str):
        try:
            job_input = json.loads(job_input)
        except json.JSONDecodeError:
            return None, "Invalid JSON format in input"
    # A list input raises AttributeError here, as upstream: the SDK reports it as an uncaught exception.
    workflow = job_input.get("workflow")
    if workflow is None:
        return None, "Missing 'workflow' parameter"
    images = job_input.get("images")
    # ``"name" in image`` is a substring test on a string entry; upstream lets those through, then crashes.
    if images is not None and (not isinstance(images, list) or not all("name" in image and "image" in image for image in images)):
        return None, "'images' must be a list of objects with 'name' and 'image' keys"
    return {"workflow": workflow, "images": images}, None


def _upload_images(state: ServerState, images: list) -> dict:
    details = []
    for image in images:
        try:
            name = image["name"]
            data_uri = image["image"]
            blob = base64.b64decode(data_uri.split(",", 1)[1] if "," in data_uri else data_uri)
            state.storage.save_upload("input", "", name, blob, overwrite=True)
        except binascii.Error as e:
            details.append(f"Error decoding base64 for {name}: {e}")
        except Exception as e:  # noqa: BLE001 - upstream's catch-all, whose own .get() raises on a str entry
            details.append(f"Unexpected error uploading {image.get('name', 'unknown')}: {e}")
    return {"status": "error" if details else "success", "details": details}


def _queue_workflow(state: ServerState, workflow: Any) -> dict:
    """POST /prompt as the handler does, with its ``raise_for_status`` and 400 flattening."""
    if not isinstance(workflow, dict):
        # ComfyUI answers 500 to a prompt that is not an object; requests words it like this.
        return {"error": f"Error queuing workflow: 500 Server Error: Internal Server Error for url: http://{COMFY_HOST}/prompt"}
    prompt_id, number = str(uuid.uuid4()), state.number
    state.number += 1
    valid = validate_prompt(workflow, state.catalogue, state.files(), flavour=state.profile.flavour)
    body = valid.response_body(prompt_id, number)
    if not valid.accepted:
        return {"error": _validation_message(state, body)}
    # A 200 with node_errors is taken as success: the handler never looks at them.
    client_id = uuid.uuid4().hex
    state.storage.without_metadata.add(client_id)
    state.queue.put((number, prompt_id, valid.prompt, {"client_id": client_id}, valid.outputs))
    return {"prompt_id": prompt_id}


def _validation_message(state: ServerState, body: dict) -> str:
    error, node_errors = body.get("error") or {}, body.get("node_errors") or {}
    if not node_errors:
        # ComfyUI's message ends with a period already: hence the recorded double period.
        return f"{error.get('message')}. Raw response: {json.dumps(body)}"
    head = "Workflow validation failed:" if error.get("type") == "prompt_outputs_failed_validation" else error.get("message")
    lines = [f"Node {node_id} ({key}): {value}" for node_id, entry in node_errors.items() for key, value in entry.items()]
    message = head + "\n" + "\n".join(f"• {line}" for line in lines)
    if any("not in list" in line and "ckpt_name" in line for line in lines):
        ckpts = state.object_info().get("CheckpointLoaderSimple", {}).get("input", {}).get("required", {}).get("ckpt_name", [[]])[0]
        message += (f"\n\nAvailable checkpoint models: {', '.join(ckpts)}" if ckpts
                    else "\n\nNo checkpoint models appear to be available. Please check your model installation.")
    return message


def _collect(state: ServerState, prompt_id: str, entry: dict) -> dict:
    errors = [
        f"Workflow execution error: Node Type: {data.get('node_type')}, Node ID: {data.get('node_id')}, Message: {data.get('exception_message')}"
        for kind, data in entry["status"]["messages"] if kind == "execution_error"
    ]
    outputs = entry.get("outputs") or {}
    if not outputs and not errors:
        errors.append(f"No outputs found in history for prompt {prompt_id}.")
    images = []
    for node_output in outputs.values():
        for ref in node_output.get("images", []):
            if ref.get("type") == "temp":
                continue
            path = state.storage.view_path(ref["filename"], ref.get("type", "output"), ref.get("subfolder"))
            if isinstance(path, int):
                errors.append(f"Failed to fetch image data for {ref['filename']} from /view endpoint.")
                continue
            images.append({"filename": ref["filename"], "type": "base64", "data": base64.b64encode(path.read_bytes()).decode()})
    if not images and errors:
        return {"error": "Job processing failed", "details": errors}
    result: dict = {"images": images} if images else {"status": "success_no_images", "images": []}
    if errors:
        result["errors"] = errors
    return result
