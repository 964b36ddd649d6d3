"""A fault-injecting server that impersonates every endpoint kind, for the fault suite (test_faults.py).

One aiohttp app on 127.0.0.1, run in a process of its own so the engine and pytest subprocesses can
reach it and its work never competes with the harness's for the interpreter. An endpoint picks its fault by URL prefix, ``/f/<fault>``, and its kind by
the paths it asks for:

- comfyui: POST /prompt (submit), /ws, GET /history/<id> and /queue (poll), GET /view (view),
  /object_info and /system_stats (intro);
- runpod: POST /run (submit), GET /status/<id> (poll), GET /s3/<name> (view: an ``s3_url`` output);
- vast (route flavour, URL ``/f/<fault>/my-comfy``): POST /route/ (poll: asking for a worker), then
  POST /generate/sync (submit, on the worker URL the route names, the same prefix);
- modal (``response: urls``): POST / (submit), GET /result (poll: where a 303 points), GET /img/<n> (view).

``FAULTS`` maps each fault to what each stage does; a stage it does not name answers as a healthy
endpoint would. Every loop here is bounded in count and time (a trickle stops after ``TRICKLE_BYTES``,
a hang after ``HANG_S``), so a harness bug cannot keep the suite running. Every request's headers are
recorded (``seen``), so a test can prove where credentials went.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import multiprocessing
import urllib.request
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from PIL import Image

__all__ = ["EVIL_NAMES", "FAULTS", "FaultServer", "png_bytes"]

TRICKLE_BYTES = 60
HUGE_BYTES = 3 << 20
"""What ``huge`` sends: past the 1 MB limits the fault suite gives its endpoints."""
TRICKLE_EVERY_S = 0.25
HANG_S = 20.0
REDIRECT_PAUSE_S = 0.1
EVIL = "../../../../tmp/x/PWNED"
EVIL_NAMES = (EVIL, "/tmp/x/PWNED-absolute.png", "nul\x00byte.png", "L" * 300 + ".png", "..", "")
"""Output names an endpoint might send: traversal, absolute, NUL, too long, a bare "..", nothing."""

FAULTS: dict[str, Mapping[str, str]] = {
    "ok": {},
    "hang_submit": {"submit": "hang"},
    "trickle_submit": {"submit": "trickle"},
    "trickle_poll": {"poll": "trickle"},
    "trickle_view": {"view": "trickle"},
    **{f"poll_{code}": {"poll": code} for code in ("500", "503", "429", "401", "403")},
    **{f"view_{code}": {"view": code} for code in ("500", "503", "429", "401", "403")},
    "poll_truncated": {"poll": "truncated"},
    "poll_html": {"poll": "html"},
    "poll_list": {"poll": "list"},
    "image_string": {"poll": "image_string"},
    "evil_names": {"poll": "evil_names"},
    "echo": {"submit": "echo", "intro": "echo"},
    "redirect_other": {"submit": "redirect_other"},
    "redirect_loop": {"submit": "redirect_loop"},
    "ws_hang": {"ws": "hang"},
    "ws_silent": {"ws": "silent"},
    "dead_worker": {"ws": "dead", "poll": "dead"},
    "trickle_intro": {"intro": "trickle"},
    "markup": {"submit": "markup", "intro": "markup"},
    "huge_poll": {"poll": "huge"},
    "huge_view": {"view": "huge"},
}

MARKUP = "<script>alert(1)</script> [click](http://127.0.0.1:9/x) | `tick` **bold**"


def png_bytes(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


class FaultServer:
    """The server in a process of its own (so its work never shares the harness's interpreter and CPU
    time): ``start()``, then endpoints under ``url(fault)``; ``seen`` while it runs; ``stop()``."""

    def __init__(self, redirect_to: FaultServer | None = None) -> None:
        self.redirect_to = redirect_to
        """Another origin for ``redirect_other`` to send clients to: it must never receive a credential."""
        self.port = 0
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> FaultServer:
        # fork: the child needs nothing but this module, already imported (spawn would cost a second each).
        context = multiprocessing.get_context("fork")
        parent, child = context.Pipe()
        other = self.redirect_to.url("ok") if self.redirect_to else None
        self._process = context.Process(target=_serve, args=(child, other), name="fault-server", daemon=True)
        self._process.start()
        if not parent.poll(10):
            raise RuntimeError("the fault server did not start")
        self.port = parent.recv()
        return self

    def url(self, fault: str) -> str:
        return f"http://127.0.0.1:{self.port}/f/{fault}"

    @property
    def seen(self) -> list[tuple[str, str, dict[str, str]]]:
        """(fault, path, headers) of every request so far."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_seen", timeout=10) as reply:
            return [tuple(row) for row in json.loads(reply.read())]

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(10)


def _serve(conn, other: str | None) -> None:
    asyncio.run(_Faults(other).serve(conn))


class _Faults:
    """The app: per fault and stage, what to answer."""

    def __init__(self, other: str | None) -> None:
        self.png = png_bytes()
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.other = other
        self._clients: dict[str, web.WebSocketResponse] = {}
        self._jobs = 0
        self.port = 0

    def url(self, fault: str) -> str:
        return f"http://127.0.0.1:{self.port}/f/{fault}"

    async def serve(self, conn) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/f/{fault}/{tail:.*}", self._handle)
        app.router.add_route("*", "/f/{fault}", self._handle)
        app.router.add_get("/_seen", lambda _: web.json_response(self.seen))
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        # A deep backlog: hundreds of endpoints connect at once in the many-endpoints test.
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        conn.send(self.port)
        await asyncio.Event().wait()  # until the parent terminates the process

    # --- dispatch ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        fault, tail = request.match_info["fault"], request.match_info.get("tail", "").rstrip("/")
        self.seen.append((fault, tail, dict(request.headers)))
        plan = FAULTS.get(fault, {})
        if tail == "ws":
            return await self._ws(request, plan.get("ws", "ok"))
        stage, healthy = self._route(tail, request.method)
        if healthy is None:
            return web.Response(status=404, text=f"no such path {tail}")
        action = plan.get(stage, "ok")
        if action == "ok":
            return await healthy(request, fault)
        return await self._fault(request, fault, tail, stage, action, healthy)

    def _route(self, tail: str, method: str):
        """(stage, healthy handler) of a path."""
        if tail in ("object_info", "system_stats"):
            return "intro", self._intro
        if tail == "prompt":
            return "submit", self._comfy_prompt
        if tail.startswith("history/") or tail == "queue":
            return "poll", self._comfy_poll
        if tail in ("interrupt", "upload/image") or tail.startswith("cancel/"):
            return "cleanup", self._empty
        if tail == "view":
            return "view", self._image
        if tail in ("run", "runsync"):
            return "submit", self._runpod_run
        if tail.startswith("status/"):
            return "poll", self._runpod_status
        if tail.startswith("s3/") or tail.startswith("img/"):
            return "view", self._image
        if tail == "route":
            return "poll", self._vast_route
        if tail == "generate/sync":
            return "submit", self._vast_generate
        if tail == "":  # a GET here is a redirect loop coming back
            return "submit", self._modal_post
        if tail == "result":
            return "poll", self._modal_result
        return "", None

    async def _fault(self, request: web.Request, fault: str, tail: str, stage: str, action: str, healthy) -> web.StreamResponse:
        if action == "hang":
            await asyncio.sleep(HANG_S)
            return web.Response(status=504)
        if action == "trickle":
            return await self._trickle(request)
        if action.isdigit():
            return web.Response(status=int(action), text="<html><body><h1>upstream failed</h1></body></html>",
                                content_type="text/html", headers={"Retry-After": "7"} if action == "429" else None)
        if action == "huge":
            return await self._huge(request, declared=stage == "view")
        if action == "truncated":
            return web.Response(body=b'{"id": "abc", "sta', content_type="application/json")
        if action == "html":
            return web.Response(text="<html><body>Welcome to nginx!</body></html>", content_type="text/html")
        if action == "list":
            return web.json_response([1, 2, 3])
        if action in ("echo", "markup"):
            text = _echo(request) if action == "echo" else MARKUP
            return await (self._intro(request, fault, text) if stage == "intro" else self._refuse(request, tail, text))
        if action == "redirect_other":
            assert self.other is not None
            return web.Response(status=303 if tail == "" else 307, headers={"Location": f"{self.other}/{_redirected(tail)}"})
        if action == "redirect_loop":
            await asyncio.sleep(REDIRECT_PAUSE_S)
            return web.Response(status=303 if tail == "" else 307, headers={"Location": str(request.url)})
        if action in ("image_string", "evil_names", "dead"):
            return await healthy(request, fault, action)
        raise AssertionError(f"unknown action {action!r}")

    async def _trickle(self, request: web.Request) -> web.StreamResponse:
        """Headers at once, then a byte every TRICKLE_EVERY_S: a reply that never completes in time."""
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(TRICKLE_BYTES):
            await response.write(b" ")
            await asyncio.sleep(TRICKLE_EVERY_S)
        await response.write(b"{}")
        return response

    async def _huge(self, request: web.Request, *, declared: bool) -> web.StreamResponse:
        """HUGE_BYTES at full speed: with its Content-Length (a view), or chunked with none (a poll)."""
        if declared:
            return web.Response(body=b"\x89PNG" + b"\0" * (HUGE_BYTES - 4), content_type="image/png")
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"padding": "')
        for _ in range(HUGE_BYTES >> 16):
            await response.write(b"x" * (1 << 16))
        await response.write(b'"}')
        return response

    async def _refuse(self, request: web.Request, tail: str, text: str) -> web.Response:
        """Each kind's own failure shape, carrying ``text`` (an echo of the request's headers, or markup)."""
        if tail == "prompt":
            return web.json_response({"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                                                "details": text, "extra_info": {}},
                                      "node_errors": {"3": {"class_type": "SaveImage", "dependent_outputs": ["3"], "errors": [
                                          {"type": "value_not_in_list", "message": "Value not in list", "details": text,
                                           "extra_info": {"input_name": "filename_prefix", "received_value": text}}]}}}, status=400)
        if tail in ("run", "runsync"):
            return web.json_response({"id": "job-echo", "status": "FAILED", "error": f"the handler failed: {text}"})
        if tail == "generate/sync":
            return web.json_response({"id": "x", "status": "failed", "message": f"Generation failed: {text}"}, status=500)
        return web.Response(status=500, text=f"Internal Server Error: {text}")

    # --- healthy answers, per kind ------------------------------------------------------------------

    async def _intro(self, request: web.Request, fault: str, text: str | None = None) -> web.StreamResponse:
        if request.match_info.get("tail", "").rstrip("/") == "object_info":
            return web.Response(status=404)
        system = {"comfyui_version": text or "0.33.0", "python_version": "3.11.7", "os": text or "posix"}
        return web.json_response({"system": system, "devices": [{"name": text or "cpu", "type": "cpu"}]})

    async def _empty(self, request: web.Request, fault: str) -> web.Response:
        return web.json_response({})

    async def _image(self, request: web.Request, fault: str) -> web.Response:
        return web.Response(body=self.png, content_type="image/png")

    async def _comfy_prompt(self, request: web.Request, fault: str) -> web.Response:
        body = await request.json()
        self._jobs += 1
        prompt_id = EVIL if fault == "evil_names" else f"prompt-{self._jobs}"
        ws = self._clients.get(body.get("client_id", ""))
        mode = FAULTS.get(fault, {}).get("ws", "ok")
        if ws is not None and mode in ("ok", "dead"):
            asyncio.get_running_loop().create_task(self._events(ws, prompt_id, dead=mode == "dead"))
        return web.json_response({"prompt_id": prompt_id, "number": self._jobs, "node_errors": {}})

    async def _events(self, ws: web.WebSocketResponse, prompt_id: str, *, dead: bool) -> None:
        events = [("execution_start", {}), ("execution_cached", {"nodes": []})]
        if not dead:  # a dead prompt worker sends these two and nothing else, ever
            events += [("executing", {"node": "3"}), ("executed", {"node": "3"}), ("executing", {"node": None})]
        for kind, data in events:
            await asyncio.sleep(0.01)
            await ws.send_str(json.dumps({"type": kind, "data": {**data, "prompt_id": prompt_id}}))

    async def _ws(self, request: web.Request, mode: str) -> web.StreamResponse:
        if mode == "hang":
            await asyncio.sleep(HANG_S)  # the upgrade never answered
            return web.Response(status=504)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if mode != "silent":
            self._clients[request.query.get("clientId", "")] = ws
            await ws.send_str(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}}))
        async for _ in ws:  # held open until the client closes it
            pass
        return ws

    async def _comfy_poll(self, request: web.Request, fault: str, action: str = "ok") -> web.Response:
        tail = request.match_info.get("tail", "").rstrip("/")
        prompt_id = EVIL if fault == "evil_names" else tail.removeprefix("history/")
        if tail == "queue":
            prompt_id = EVIL if fault == "evil_names" else f"prompt-{self._jobs}"
            running = [[1, prompt_id, {}, {}, ["3"]]] if action == "dead" else []
            return web.json_response({"queue_running": running, "queue_pending": []})
        if action == "dead":
            return web.json_response({})
        images: list[Any] = [{"filename": "smoke_00001_.png", "subfolder": "", "type": "output"}]
        node = "3"
        if action == "image_string":
            images = ["smoke_00001_.png"]
        elif action == "evil_names":
            node = EVIL
            images = [{"filename": name, "subfolder": EVIL, "type": "output"} for name in EVIL_NAMES]
        entry = {"prompt": [1, prompt_id, {}, {}, [node]], "outputs": {node: {"images": images}},
                 "status": {"status_str": "success", "completed": True,
                            "messages": [["execution_start", {"prompt_id": prompt_id}], ["execution_success", {"prompt_id": prompt_id}]]}}
        return web.json_response({prompt_id: entry})

    async def _runpod_run(self, request: web.Request, fault: str) -> web.Response:
        self._jobs += 1
        return web.json_response({"id": EVIL if fault == "evil_names" else f"job-{self._jobs}", "status": "IN_QUEUE"})

    async def _runpod_status(self, request: web.Request, fault: str, action: str = "ok") -> web.Response:
        job_id = EVIL if fault == "evil_names" else request.match_info.get("tail", "").removeprefix("status/")
        images = self._outputs(fault, action, kind="runpod")
        return web.json_response({"id": job_id, "status": "COMPLETED", "delayTime": 10, "executionTime": 20,
                                  "output": {"images": images}})

    def _outputs(self, fault: str, action: str, *, kind: str) -> list[Any]:
        data = base64.b64encode(self.png).decode()
        if action == "image_string":
            return ["x.png"]
        if action == "evil_names":
            names = EVIL_NAMES
        else:
            names = ("smoke_00001_.png",)
        if kind == "runpod" and "view" in FAULTS.get(fault, {}):
            return [{"filename": names[0], "type": "s3_url", "data": f"{self.url(fault)}/s3/{names[0]}"}]
        if kind == "runpod":
            return [{"filename": name, "type": "base64", "data": data} for name in names]
        return [{"filename": name, "data": data} for name in names]

    async def _vast_route(self, request: web.Request, fault: str, action: str = "ok") -> web.Response:
        return web.json_response({"url": self.url(fault), "signature": "sig", "cost": 100, "endpoint": "my-comfy",
                                  "reqnum": 1, "request_idx": 1})

    async def _vast_generate(self, request: web.Request, fault: str) -> web.Response:
        action = FAULTS.get(fault, {}).get("poll", "ok")
        outputs = self._outputs(fault, action if action in ("image_string", "evil_names") else "ok", kind="vast")
        return web.json_response({"id": EVIL if fault == "evil_names" else "vast-1", "status": "completed", "message": "",
                                  "output": outputs, "timings": {"total_ms": 20, "generation_ms": 10}})

    async def _modal_post(self, request: web.Request, fault: str, action: str = "ok") -> web.Response:
        if "poll" in FAULTS.get(fault, {}):
            return web.Response(status=303, headers={"Location": f"{self.url(fault)}/result"})
        return await self._modal_result(request, fault)

    async def _modal_result(self, request: web.Request, fault: str, action: str = "ok") -> web.Response:
        if action == "image_string":
            return web.json_response({"images": [{"x.png": "not a url"}]})
        return web.json_response({"images": [f"/f/{fault}/img/0"]})


def _echo(request: web.Request) -> str:
    """What a careless server puts in an error: the request's headers, values and all."""
    return "; ".join(f"{k}: {v}" for k, v in request.headers.items())


def _redirected(tail: str) -> str:
    """The healthy path on the other origin for a redirected submission (Modal's 303 goes to its result)."""
    return "result" if tail == "" else tail
