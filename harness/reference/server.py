"""The embedded reference endpoint: an aiohttp server that answers like ComfyUI 0.3.64 for a profile.

Three ways to run it: ``create_app(profile)`` for an aiohttp runner of your own, ``async with
running_server(profile) as srv`` inside an event loop, and ``with ReferenceServer(profile) as srv`` (or
``start()``/``stop()``) from synchronous code, which runs it on its own loop in a background thread.
All bind 127.0.0.1 on an ephemeral port unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from harness.reference.fileroutes import file_routes
from harness.reference.modal import add_modal_routes
from harness.reference.profile import Profile, load_profile
from harness.reference.routes import routes
from harness.reference.runpod import add_runpod_routes
from harness.reference.state import STATE, ServerState
from harness.reference.vast import add_vast_routes

__all__ = ["ReferenceServer", "RunningServer", "create_app", "running_server"]

# ComfyUI's default --max-upload-size, applied to every request body.
MAX_BODY_BYTES = 100 * 1024 * 1024


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@web.middleware
async def origin_only(request: web.Request, handler) -> web.StreamResponse:
    """ComfyUI's default ``create_origin_only_middleware``: a cross-origin request to loopback gets 403."""
    host = request.headers.get("Host")
    origin = request.headers.get("Origin")
    if host is not None and origin is not None:
        host_domain = host.lower()
        origin_domain = urllib.parse.urlparse(origin).netloc.lower()
        if _is_loopback(urllib.parse.urlsplit("//" + host_domain).hostname) and host_domain != origin_domain:
            return web.Response(status=403)
    return await handler(request)


def create_app(profile: Profile | str | Path) -> web.Application:
    """The aiohttp application; its state (queue worker, websocket hub, files) lives with the app."""
    profile = load_profile(profile)
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[origin_only])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[STATE] = ServerState(profile)
        yield
        await app[STATE].close()

    app.cleanup_ctx.append(lifecycle)

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        return await request.app[STATE].hub.handle(request)

    table = [*routes, *file_routes, web.get("/ws", websocket)]
    # Every route is registered twice, as ComfyUI's add_routes does: as is and under /api.
    for route in table:
        app.router.add_route(route.method, route.path, route.handler)
        app.router.add_route(route.method, "/api" + route.path, route.handler)
    add_runpod_routes(app)
    add_vast_routes(app)
    add_modal_routes(app)
    return app


@dataclass
class RunningServer:
    url: str
    app: web.Application


@contextlib.asynccontextmanager
async def running_server(profile: Profile | str | Path, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RunningServer]:
    """Serve a profile on the running loop until the block exits."""
    app = create_app(profile)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        yield RunningServer(f"http://{host}:{bound}", app)
    finally:
        await runner.cleanup()


class ReferenceServer:
    """A reference endpoint on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(self, profile: Profile | str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.profile = load_profile(profile)
        self.host = host
        self.port = port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> ReferenceServer:
        started = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                async with running_server(self.profile, self.host, self.port) as server:
                    self.url = server.url
                    started.set()
                    await self._stop.wait()
            except BaseException as exc:
                failure.append(exc)
                started.set()

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(serve(),), daemon=True, name=f"reference-{self.profile.name}")
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join()
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
