"""``GET /api/jobs`` of ComfyUI 0.33.0: the queue and the history seen as jobs.

Shapes and errors as recorded (fixtures/captures/0.33.0/stock/v3_api_jobs_*.json and the custom one by
client id): a running or pending prompt is a job without times or outputs; a finished one has its
start and end from its history messages, its outputs counted, the first previewable one as its preview
(a saved ``output`` image before a temp one), ``failed`` or ``cancelled`` (interrupted) for an error;
one job by id adds its outputs, status and workflow. Newest first, by ``create_time``. The reference's
outputs are images, so images (and ComfyUI's video and audio) are what counts as previewable here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["STATUSES", "JobsQueryError", "job", "jobs_page"]

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
_PREVIEWABLE = frozenset({"images", "video", "audio"})
_ENDINGS = ("execution_success", "execution_error", "execution_interrupted")


class JobsQueryError(ValueError):
    """A query ComfyUI answers 400 to; the message is its ``error``."""


def _pruned(entries: Mapping[str, Any]) -> dict:
    return {k: v for k, v in entries.items() if v is not None}


def _workflow_id(extra_data: Mapping[str, Any]) -> str | None:
    """The UI workflow's id a frontend sends along in ``extra_pnginfo``."""
    return ((extra_data.get("extra_pnginfo") or {}).get("workflow") or {}).get("id")


def _from_queue(item: Sequence, status: str) -> dict:
    extra_data = item[3] if isinstance(item[3], Mapping) else {}
    return _pruned({"id": item[1], "status": status, "priority": item[0], "create_time": extra_data.get("create_time"),
                    "outputs_count": 0, "previewable_outputs_count": 0, "workflow_id": _workflow_id(extra_data)})


def _summary(outputs: Mapping[str, Any]) -> tuple[int, int, dict | None]:
    """(outputs, previewable outputs, preview): the first saved previewable output, else the first previewable."""
    count = previewable = 0
    saved = other = None
    for node_id, node_outputs in outputs.items():
        for media_type, items in (node_outputs.items() if isinstance(node_outputs, Mapping) else ()):
            if media_type == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, Mapping):
                    continue
                count += 1
                if media_type in _PREVIEWABLE:
                    previewable += 1
                    enriched = {**item, "nodeId": node_id, "mediaType": media_type}
                    if item.get("type") == "output" and saved is None:
                        saved = enriched
                    elif other is None:
                        other = enriched
    return count, previewable, saved or other


def _from_history(prompt_id: str, entry: Mapping[str, Any], whole: bool) -> dict:
    priority, _, prompt, extra_data, _ = entry["prompt"]
    status_info = entry.get("status") or {}
    started = ended = error = None
    interrupted = False
    for event, data in status_info.get("messages", ()):
        if event == "execution_start":
            started = data.get("timestamp")
        elif event in _ENDINGS:
            ended = data.get("timestamp")
            error = data if event == "execution_error" else error
            interrupted = interrupted or event == "execution_interrupted"
    status = ("cancelled" if interrupted else "failed") if status_info.get("status_str") == "error" else "completed"
    outputs = entry.get("outputs") or {}
    count, previewable, preview = _summary(outputs)
    job = _pruned({"id": prompt_id, "status": status, "priority": priority, "create_time": extra_data.get("create_time"),
                   "execution_start_time": started, "execution_end_time": ended, "execution_error": error,
                   "outputs_count": count, "previewable_outputs_count": previewable, "preview_output": preview,
                   "workflow_id": _workflow_id(extra_data)})
    if whole:
        job.update(outputs=outputs, execution_status=status_info, workflow={"prompt": prompt, "extra_data": extra_data})
    return job


def job(prompt_id: str, running: Sequence, pending: Sequence, history: Mapping[str, Any]) -> dict | None:
    """``GET /api/jobs/{id}``: the finished job with its outputs, or the queued one, or None (404)."""
    if prompt_id in history:
        return _from_history(prompt_id, history[prompt_id], whole=True)
    for items, status in ((running, "in_progress"), (pending, "pending")):
        for item in items:
            if item[1] == prompt_id:
                return _from_queue(item, status)
    return None


def jobs_page(query: Mapping[str, str], running: Sequence, pending: Sequence, history: Mapping[str, Any]) -> dict:
    """``GET /api/jobs?status=&workflow_id=&sort_by=&sort_order=&limit=&offset=``: newest first unless
    ``sort_order=asc`` (by ``create_time``, or ``sort_by=execution_duration``); JobsQueryError for a bad
    ``status``, ``limit`` or ``offset``."""
    wanted = [s.strip() for s in query["status"].split(",") if s.strip()] if "status" in query else list(STATUSES)
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise JobsQueryError(f"Invalid status value(s): {', '.join(bad)}. Valid values: {', '.join(STATUSES)}")
    limit = _count(query, "limit", minimum=1, default=None)
    offset = _count(query, "offset", minimum=0, default=0)
    found = [_from_queue(item, "in_progress") for item in running] + [_from_queue(item, "pending") for item in pending]
    found += [_from_history(prompt_id, entry, whole=False) for prompt_id, entry in history.items()]
    workflow = query.get("workflow_id")
    found = [j for j in found if j["status"] in wanted and (not workflow or j.get("workflow_id") == workflow)]
    found.sort(key=_duration if query.get("sort_by") == "execution_duration" else _created, reverse=query.get("sort_order") != "asc")
    page = found[offset:offset + limit] if limit is not None else found[offset:]
    return {"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": len(found),
                                         "has_more": offset + len(page) < len(found)}}


def _created(job: Mapping[str, Any]) -> int:
    return job.get("create_time", 0)


def _duration(job: Mapping[str, Any]) -> int:
    start, end = job.get("execution_start_time", 0), job.get("execution_end_time", 0)
    return end - start if start and end else 0


def _count(query: Mapping[str, str], name: str, *, minimum: int, default: int | None) -> int | None:
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise JobsQueryError(f"{name} must be a {'positive' if minimum else 'non-negative'} integer")
    return value
