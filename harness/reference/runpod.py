"""A RunPod serverless envelope on the reference endpoint: worker-comfyui v5.8.5 behind RunPod's queue API.

``add_runpod_routes(app)`` adds, next to the ComfyUI routes of the same app and over the same queue,
validator and executor:

- ``/runpod/v2/{endpoint_id}/…``, the platform's queue-based API: ``POST run`` (``IN_QUEUE``), ``GET
  status/{id}`` with ``delayTime``/``executionTime`` in ms, ``POST cancel/{id}``, ``POST runsync``;
- ``/runpod/local/…``, the runpod SDK's local dev API (``--rp_serve_api``): ``POST run`` answers
  ``IN_PROGRESS`` and runs nothing, ``POST status/{id}`` runs the job inside the call and forgets it,
  and a failure keeps only ``error`` (``details`` are dropped), as recorded.

Two settings come from the environment when the app is created: ``COMFY_REFERENCE_RUNPOD_API_KEY`` (when
set, platform requests need ``Authorization: Bearer <key>`` or the bare key, else 401) and
``COMFY_REFERENCE_RUNPOD_COLD_START`` (seconds the first job stays ``IN_QUEUE``). Job state and the
handler live in ``runpod_worker.py``; this module only speaks HTTP.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from harness.reference.runpod_worker import Job, RunPodJobs
from harness.reference.state import STATE

__all__ = ["JOBS", "RunPodSettings", "add_runpod_routes"]

PLATFORM_PREFIX = "/runpod/v2/{endpoint_id}"
LOCAL_PREFIX = "/runpod/local"
_RUNSYNC_WAIT_MS = 90_000
"""The platform's default wait of /runsync before it answers with a non-final status."""


@dataclass(frozen=True)
class RunPodSettings:
    api_key: str | None = None
    cold_start: float = 0.0

    @classmethod
    def from_env(cls) -> RunPodSettings:
        return cls(os.environ.get("COMFY_REFERENCE_RUNPOD_API_KEY") or None,
                   float(os.environ.get("COMFY_REFERENCE_RUNPOD_COLD_START", "0")))


SETTINGS = web.AppKey("runpod_settings", RunPodSettings)
JOBS = web.AppKey("runpod_jobs", RunPodJobs)
_LOCAL_PENDING = web.AppKey("runpod_local_pending", dict)
"""Dev-API jobs submitted by /run and not yet run: id → input."""


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def platform_body(job: Job) -> dict:
    """``/status`` as the platform answers: times appear once the job has started and finished.

    A failure keeps the handler's leftover output (``details``), as the worker sends it to the platform;
    whether the platform's own /status shows it is not verified (endpoints.md §2.5).
    """
    body: dict = {"id": job.id, "status": job.status.value}
    if job.started is not None:
        body["delayTime"] = _ms(job.started - job.submitted)
        body["workerId"] = "reference"
    if job.finished is not None and job.started is not None:
        body["executionTime"] = _ms(job.finished - job.started)
    if job.output is not None:
        body["output"] = job.output
    if job.error is not None:
        body["error"] = job.error
    return body


def local_body(job: Job) -> dict:
    """The dev API's reply: on failure only ``error`` survives, and there are no times."""
    if job.error is not None:
        return {"id": job.id, "status": job.status.value, "error": job.error}
    return {"id": job.id, "status": job.status.value, "output": job.output}


def _refused(request: web.Request) -> web.Response | None:
    key = request.app[SETTINGS].api_key
    if key is None or request.headers.get("Authorization") in (f"Bearer {key}", key):
        return None
    return web.json_response({"error": "Unauthorized"}, status=401)


async def _submission(request: web.Request) -> tuple[dict, web.Response | None]:
    """A submission's body, or the 400 the platform gives a body without ``input``."""
    try:
        body = await request.json()
    except ValueError:
        return {}, web.json_response({"error": "request body is not valid JSON"}, status=400)
    if not isinstance(body, dict) or "input" not in body:
        return {}, web.json_response({"error": "request body needs an 'input' field"}, status=400)
    return body, None


def _execution_timeout(body: dict) -> float | None:
    """``policy.executionTimeout`` (ms, 5 s to 7 d) in seconds; the platform's default is 600 s."""
    policy = body.get("policy") if isinstance(body.get("policy"), dict) else {}
    ms = policy.get("executionTimeout", 600_000)
    return min(max(ms, 5_000), 7 * 86_400_000) / 1000 if isinstance(ms, (int, float)) else 600.0


async def _platform_submit(request: web.Request, job_id: str) -> tuple[Job | None, web.Response | None]:
    """Checks shared by /run and /runsync (body, key, rate limit), then the job."""
    body, bad = await _submission(request)
    if bad is not None or (bad := _refused(request)) is not None:
        return None, bad
    if request.app[STATE].rate_limited():
        return None, request.app[STATE].too_many_requests()  # the platform's rate limit (profile inject)
    return request.app[JOBS].submit(job_id, body["input"], _execution_timeout(body)), None


async def platform_run(request: web.Request) -> web.Response:
    job, bad = await _platform_submit(request, str(uuid.uuid4()))
    if bad is not None:
        return bad
    return web.json_response({"id": job.id, "status": job.status.value})


async def platform_runsync(request: web.Request) -> web.Response:
    job, bad = await _platform_submit(request, f"sync-{uuid.uuid4()}")
    if bad is not None:
        return bad
    wait_ms = int(request.query.get("wait", _RUNSYNC_WAIT_MS))
    # Not done in time: the platform answers the non-final status and the client polls /status.
    try:
        await asyncio.wait_for(job.done.wait(), wait_ms / 1000)
    except TimeoutError:
        pass
    return web.json_response(platform_body(job))


async def platform_status(request: web.Request) -> web.Response:
    if (bad := _refused(request)) is not None:
        return bad
    job = request.app[JOBS].jobs.get(request.match_info["job_id"])
    if job is None:
        return web.json_response({"error": "job not found"}, status=404)
    return web.json_response(platform_body(job))


async def platform_cancel(request: web.Request) -> web.Response:
    if (bad := _refused(request)) is not None:
        return bad
    job = request.app[JOBS].cancel(request.match_info["job_id"])
    if job is None:
        return web.json_response({"error": "job not found"}, status=404)
    return web.json_response({"id": job.id, "status": job.status.value})


async def local_run(request: web.Request) -> web.Response:
    body, bad = await _submission(request)
    if bad is not None:
        return bad
    job_id = f"test-{uuid.uuid4()}"
    request.app[_LOCAL_PENDING][job_id] = body["input"]
    return web.json_response({"id": job_id, "status": "IN_PROGRESS"})


async def local_status(request: web.Request) -> web.Response:
    job_id = request.match_info["job_id"]
    pending = request.app[_LOCAL_PENDING]
    if job_id not in pending:
        return web.json_response({"id": job_id, "status": "FAILED", "error": "Job ID not found"})
    jobs = request.app[JOBS]
    # The dev API runs the job inside this call, then forgets it: a second call finds nothing.
    job = jobs.submit(job_id, pending.pop(job_id))
    await job.done.wait()
    jobs.jobs.pop(job_id, None)
    return web.json_response(local_body(job))


async def local_runsync(request: web.Request) -> web.Response:
    body, bad = await _submission(request)
    if bad is not None:
        return bad
    job = request.app[JOBS].submit(f"test-{uuid.uuid4()}", body["input"])
    await job.done.wait()
    return web.json_response(local_body(job))


def add_runpod_routes(app: web.Application, settings: RunPodSettings | None = None) -> None:
    """Register both RunPod envelopes on a reference app; its ServerState must be set up before."""
    app[SETTINGS] = settings or RunPodSettings.from_env()
    app[_LOCAL_PENDING] = {}

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[JOBS] = RunPodJobs(app[STATE], app[SETTINGS].cold_start)
        yield
        await app[JOBS].close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post(f"{PLATFORM_PREFIX}/run", platform_run)
    app.router.add_post(f"{PLATFORM_PREFIX}/runsync", platform_runsync)
    app.router.add_get(f"{PLATFORM_PREFIX}/status/{{job_id}}", platform_status)
    app.router.add_post(f"{PLATFORM_PREFIX}/cancel/{{job_id}}", platform_cancel)
    app.router.add_post(f"{LOCAL_PREFIX}/run", local_run)
    app.router.add_post(f"{LOCAL_PREFIX}/runsync", local_runsync)
    app.router.add_post(f"{LOCAL_PREFIX}/status/{{job_id}}", local_status)
