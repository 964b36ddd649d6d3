"""The Provider protocol: one small surface that every endpoint kind implements.

A provider turns "run this API workflow on that endpoint" into a ``RunRecord``: the endpoint's own
verdict already classified into the outcome vocabulary (``None`` when it reported success), the output
images saved to disk and proven to decode, and the timings. Everything provider-specific (envelopes,
polling, flattened error strings) stays inside the provider's module; the engine, the checks and the
reports only ever see ``RunRecord``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import errno
import functools
import hashlib
import io
import re
import shlex
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from harness.comfy.catalogue import Catalogue, load_catalogue
from harness.errors import LocalResourceError
from harness.run.classify import Classification, Evidence
from harness.run.endpoints import Endpoint, Limits
from harness.providers.capped import CappedTransport, ReplyTooLarge, capped
from harness.providers.exr import BrokenEXR, read_exr
from harness.providers.videos import BrokenVideo, read_video, video_suffix
from harness.run.outcomes import Outcome

__all__ = [
    "ANSWER_HOOKS",
    "CLEANUP_S",
    "BaseProvider",
    "OutputImage",
    "RunRecord",
    "Timings",
    "TransportFailure",
    "Watch",
    "answered",
    "excerpt",
    "failure",
    "inspect_image",
    "output_suffix",
    "phase",
    "plain_client",
    "refusal",
    "safe_name",
    "save_stream",
    "ssl_context",
    "transport_failures",
    "watching",
    "with_retry_after",
]

CLEANUP_S = 0.4
"""Seconds a best-effort clean-up request (interrupt, cancel, delete) may take once a deadline passed: the
engine ends an attempt half a second after its deadline whatever it is doing."""


@dataclass(frozen=True)
class OutputImage:
    """One output file as downloaded: where it is and what it decoded to."""

    filename: str
    path: str
    bytes: int
    type: str = "output"
    """ComfyUI's folder type: ``output`` (SaveImage) or ``temp`` (previews)."""
    format: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None
    """Why it is neither an image that decodes (an EXR among them) nor a whole video, if it is not."""

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Timings:
    queue: float | None = None
    """Seconds from submission until the endpoint started the job (cold start and queueing)."""
    execution: float | None = None
    """Seconds the job ran."""
    total: float = 0.0
    """Seconds from submission until the harness had the result (outputs downloaded)."""

    def to_dict(self) -> dict:
        return {"queue": self.queue, "execution": self.execution, "total": self.total}


@dataclass(frozen=True)
class RunRecord:
    classification: Classification | None
    """The endpoint's failure, classified; None when it reported success."""
    images: tuple[OutputImage, ...] = ()
    timings: Timings = Timings()
    job_id: str | None = None
    other_outputs: int = 0
    """Outputs the endpoint reported that are not images (audio, text, 3D files): counted, not checked (a
    file among them is kept in the outputs folder where the endpoint gave one)."""
    extra: dict[str, Any] = field(default_factory=dict)
    cached_nodes: int | None = None
    """Nodes the endpoint served from its cache (ComfyUI's ``execution_cached``); None where it does not say."""
    executed_nodes: int | None = None
    """Nodes that really ran (ComfyUI's per-node ``executing`` events); None where they were not all seen."""


@dataclass
class Watch:
    """Where one attempt is, so a deadline that cuts it short can say what it was waiting for.

    Providers mark their phase (``submit``: until the endpoint has the job; ``queue``: the job waits;
    ``execution``; ``download``) and each request they make; the engine reads it when the deadline ends
    the attempt mid-await.
    """

    phase: str = "submit"
    doing: str = ""
    """The request in flight (``GET /history/<id>``)."""
    answered: bool = False
    """Whether any reply of the endpoint arrived: a submission nobody answered means unreachable."""
    on_finished: Callable[[], None] | None = None
    """Called when the attempt enters ``download``: the endpoint has finished the job, so the engine frees
    its place in the endpoint's limit for the next job while this one's outputs are fetched."""

    def overrun(self, endpoint: Endpoint, budget: float) -> Classification:
        """The verdict on an attempt the deadline ended in the middle of an await."""
        outcome = _PHASE_OUTCOMES.get(self.phase, Outcome.EXECUTION_TIMEOUT)
        if self.phase == "submit" and not self.answered:
            outcome = Outcome.UNREACHABLE
        doing = f" ({self.doing})" if self.doing else ""
        message = (f"{endpoint.public_url} answered nothing within the cell's deadline of {budget:.1f} s{doing}"
                   if outcome is Outcome.UNREACHABLE else
                   f"the cell's deadline of {budget:.1f} s passed in its {self.phase} phase{doing}: {endpoint.public_url} "
                   "did not answer in time")
        return Classification(outcome, False, Evidence(message=message, hint=outcome.info.hint, phase=self.phase))


_PHASE_OUTCOMES = {"submit": Outcome.QUEUE_TIMEOUT, "queue": Outcome.QUEUE_TIMEOUT, "execution": Outcome.EXECUTION_TIMEOUT,
                   "download": Outcome.EXECUTION_TIMEOUT}
_WATCH: contextvars.ContextVar[Watch | None] = contextvars.ContextVar("comfy_compat_watch", default=None)


@contextlib.contextmanager
def watching(on_finished: Callable[[], None] | None = None) -> Iterator[Watch]:
    """A fresh ``Watch`` for the attempt run inside (each asyncio task sees its own)."""
    watch = Watch(on_finished=on_finished)
    token = _WATCH.set(watch)
    try:
        yield watch
    finally:
        _WATCH.reset(token)


def phase(name: str) -> None:
    """Mark the attempt's phase (a no-op outside ``watching``: providers run alone in tests)."""
    watch = _WATCH.get()
    if watch is not None:
        watch.phase = name
        if name == "download" and watch.on_finished is not None:
            watch.on_finished()


def answered(doing: str | None = None) -> None:
    """Note that the endpoint replied (``doing=None``) or that a request is now in flight."""
    watch = _WATCH.get()
    if watch is None:
        return
    if doing is None:
        watch.answered = True
    else:
        watch.doing = doing


def excerpt(text: str, limit: int = 120) -> str:
    """A short, one-line excerpt of an endpoint's reply for evidence."""
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def refusal(status: int, headers: Mapping[str, str], doing: str, text: str = "") -> Classification | None:
    """What any endpoint's HTTP refusal means, whichever request it answered; None for other statuses.

    401/403 are credentials, 429 is capacity (its ``Retry-After`` kept), 5xx is the server's own failure.
    """
    if status in (401, 403):
        return failure(Outcome.AUTH_ERROR, f"HTTP {status} from {doing}: the credentials were refused", http_status=status)
    if status == 429:
        return with_retry_after(failure(Outcome.RATE_LIMITED, f"HTTP 429 from {doing}: rate limited", http_status=status), headers)
    if status >= 500:
        return failure(Outcome.SERVER_ERROR, f"HTTP {status} from {doing}: {excerpt(text)}", http_status=status)
    return None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_CHARS = 80
"""Longest file name made from an endpoint's name; well under every filesystem's 255 bytes."""


def safe_name(*parts: object, fallback: str = "output") -> str:
    """One file name from names an endpoint chose (node id, filename, subfolder): no separators, no
    NUL, no leading dot, at most ``_NAME_CHARS`` characters. A name that had to change keeps a short
    hash of the original, so two different originals never meet in one file."""
    original = "_".join(str(p) for p in parts if str(p))
    name = _UNSAFE.sub("_", original).strip("._") or fallback
    if name != original or len(name) > _NAME_CHARS:
        digest = hashlib.sha1(original.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        stem, dot, suffix = name.rpartition(".")
        suffix = f".{suffix}" if dot and stem and len(suffix) <= 5 else ""
        name = f"{name[: _NAME_CHARS - len(suffix) - 9].rstrip('._') or fallback}-{digest}{suffix}"
    return name


async def _answered_hook(_: httpx.Response) -> None:
    answered()  # called when the headers are in, before the body is read


ANSWER_HOOKS = {"response": [_answered_hook]}
"""httpx event hooks that tell the attempt's ``Watch`` a reply arrived; for every client a provider makes."""


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context for every httpx client of the run: each new one reads the CA bundle (~0.1 s of
    CPU), which made 300 endpoints' start-up take half a minute."""
    return ssl.create_default_context()


def plain_client(limits: Limits, timeout: float | httpx.Timeout = 60.0, *, downloads: bool = False) -> httpx.AsyncClient:
    """A client without any endpoint's credentials, for other hosts (a bucket, a CDN, another origin);
    each reply bounded by the endpoint's ``limits``: ``output_mb`` for ``downloads``, else ``reply_mb``."""
    limit, setting = (limits.output_bytes, "output_mb") if downloads else (limits.reply_bytes, "reply_mb")
    return httpx.AsyncClient(timeout=timeout, event_hooks=ANSWER_HOOKS,
                             transport=CappedTransport(limit, setting, verify=ssl_context()))


_LOCAL_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ENOSPC}


def _local_cause(exc: BaseException) -> OSError | None:
    """The OSError behind a library's exception when it is a local limit, however deeply it is wrapped."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _LOCAL_ERRNOS:
            return exc
        exc = getattr(exc, "os_error", None) or exc.__cause__ or exc.__context__
    return None


class TransportFailure(Exception):
    """Raised inside a provider when the endpoint could not be talked to; carries the classification."""

    def __init__(self, classification: Classification) -> None:
        super().__init__(classification.evidence.message)
        self.classification = classification


def failure(outcome: Outcome, message: str, *, http_status: int | None = None, phase: str | None = None) -> Classification:
    """A classification for what happened on the wire rather than in ComfyUI (``phase``: of a deadline that ran out)."""
    return Classification(outcome, False, Evidence(message=message, http_status=http_status, phase=phase))


def with_retry_after(verdict: Classification | None, headers: Mapping[str, str]) -> Classification | None:
    """A ``rate_limited`` verdict with the reply's ``Retry-After`` header, which every provider's 429 may carry."""
    value = headers.get("Retry-After")
    if verdict is None or verdict.outcome is not Outcome.RATE_LIMITED or not value:
        return verdict
    evidence = dataclasses.replace(verdict.evidence, message=f"{verdict.evidence.message} (Retry-After: {value})", retry_after=value)
    return dataclasses.replace(verdict, evidence=evidence)


@contextlib.contextmanager
def transport_failures(endpoint: Endpoint, doing: str) -> Iterator[None]:
    """Translate httpx and aiohttp errors into TransportFailure, in exactly one place.

    Connection-level failures are ``unreachable``; a read that outlives its timeout means the endpoint
    accepted the connection but did not answer in time; a malformed reply is a protocol error.
    """
    import aiohttp  # only the native provider talks aiohttp (its HTTP and websocket)

    def where() -> str:  # only once something failed: the public URL is parsed (~0.05 ms) for every request
        return f"{endpoint.public_url} ({doing})"

    answered(doing)
    try:
        try:
            yield
        except (OSError, httpx.TransportError, aiohttp.ClientError) as exc:
            local = _local_cause(exc)
            if local is not None:
                # EMFILE and friends surface as "cannot connect": they are this machine's limit, not the endpoint's.
                raise LocalResourceError(f"{where()}: {local.strerror or local}") from exc
            raise
    except (httpx.ConnectError, httpx.ConnectTimeout, aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise TransportFailure(failure(Outcome.UNREACHABLE, f"cannot connect to {where()}: {exc}")) from exc
    except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout, TimeoutError) as exc:
        watch = _WATCH.get()
        at = watch.phase if watch is not None else None
        raise TransportFailure(failure(_PHASE_OUTCOMES.get(at, Outcome.EXECUTION_TIMEOUT), f"no answer from {where()} in time",
                                       phase=at)) from exc
    except ReplyTooLarge as exc:
        raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"the reply from {where()} is {exc}")) from exc
    except (httpx.RemoteProtocolError, httpx.DecodingError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
            aiohttp.ClientResponseError) as exc:
        raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"malformed reply from {where()}: {exc}")) from exc
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        raise TransportFailure(failure(Outcome.UNREACHABLE, f"transport error talking to {where()}: {exc!r}")) from exc


_HELD_BYTES = 8 << 20
"""A download up to this size is kept in memory as it is written, for inspect_image."""


async def save_stream(target: Path, chunks: AsyncIterator[bytes], limits: Limits, declared: int | None = None) -> bytes | None:
    """Write a download to ``target`` as it arrives, so a large output never sits in memory whole; its
    bytes when there are few enough to keep (8 MB), for inspect_image, else None. Past ``limits.output_mb``
    (at once when its Content-Length, ``declared``, says so) it stops: ReplyTooLarge, the file removed."""
    held: list[bytes] | None = []
    size = 0
    with target.open("wb") as fh:
        try:
            async for chunk in capped(chunks, limits.output_bytes, "output_mb", declared):
                fh.write(chunk)
                size += len(chunk)
                if held is not None:
                    held.append(chunk)
                    if size > _HELD_BYTES:
                        held = None
        except ReplyTooLarge:
            fh.close()
            target.unlink(missing_ok=True)
            raise
    return None if held is None else b"".join(held)


def inspect_image(path: Path, filename: str, type_: str = "output", data: bytes | None = None) -> OutputImage:
    """Prove a downloaded file is an image or a video: read its header and verify its data without keeping
    pixels (a video's container is walked through to its end, see ``videos``; an EXR image, ``exr``).

    ``data`` is the file's bytes when the caller still holds them: read from memory, not opened again
    (55 against 78 µs for a 512×512 PNG here)."""
    size = len(data) if data is not None else path.stat().st_size
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as im:
            fmt, (width, height) = im.format, im.size
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return _inspect_beyond_pillow(path, filename, type_, data, size, f"does not decode as an image: {exc}")
    return OutputImage(filename, str(path), size, type_, fmt, width, height)


_IMAGE_MAGIC = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"RIFF", ".webp"), (b"GIF8", ".gif"), (b"\x76\x2f\x31\x01", ".exr"))


def output_suffix(data: bytes) -> str:
    """A file name's suffix for an output's bytes, from its magic number: an app's own labels are not trusted."""
    return next((s for magic, s in _IMAGE_MAGIC if data.startswith(magic)), None) or video_suffix(data) or ".bin"


def _inspect_beyond_pillow(path: Path, filename: str, type_: str, data: bytes | None, size: int, not_image: str) -> OutputImage:
    """A file Pillow cannot open: a video (ComfyUI lists SaveVideo's among the images) or an OpenEXR
    image (SaveImageAdvanced's), else ``not_image``."""
    try:
        with io.BytesIO(data) if data is not None else path.open("rb") as fh:
            video = read_video(fh, size)
            exr = read_exr(fh, size) if video is None else None
    except BrokenVideo as exc:
        return OutputImage(filename, str(path), size, type_, error=f"is not a whole video: {exc}")
    except BrokenEXR as exc:
        return OutputImage(filename, str(path), size, type_, error=f"is not a whole image: {exc}")
    if video is not None:
        return OutputImage(filename, str(path), size, type_, video.format, video.width, video.height)
    if exr is not None:
        return OutputImage(filename, str(path), size, type_, "EXR", *exr)
    return OutputImage(filename, str(path), size, type_, error=not_image)


class BaseProvider:
    """Shared plumbing: an httpx client with the endpoint's headers and timeouts, and curl repros."""

    kind: ClassVar[str]

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.catalogue_failure: Classification | None = None
        """Why ``catalogue()`` found none where the endpoint should serve one (unreachable, say)."""
        self._abandoned: set[asyncio.Task] = set()
        """Clean-ups of cancelled attempts still under way; ``aclose`` lets them finish first."""

    def abandon(self, cleanup: Coroutine[Any, Any, None]) -> None:
        """Run ``cleanup`` (interrupt, cancel: each bounded by CLEANUP_S) for an attempt that is being
        cancelled (-x, Ctrl-C, the engine's deadline guard), without holding up the cancellation: a job
        nobody waits for any more must not run on, or bill, on the endpoint."""
        task = asyncio.ensure_future(cleanup)
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    @functools.cached_property
    def client(self) -> httpx.AsyncClient:
        """Made on first use: the native provider talks aiohttp and never needs one."""
        # Few idle connections kept: httpcore checks every idle one on each request (~0.06 ms apiece).
        limits = httpx.Limits(max_connections=max(self.endpoint.max_concurrency * 2, 4), max_keepalive_connections=8)
        return httpx.AsyncClient(
            base_url=self.endpoint.url,
            headers=self.endpoint.resolved_headers(),
            timeout=httpx.Timeout(30.0, connect=self.endpoint.timeouts.connect),
            event_hooks=ANSWER_HOOKS,
            transport=CappedTransport(self.endpoint.limits.reply_bytes, verify=ssl_context(), limits=limits),
        )

    async def run(self, workflow: dict, *, deadline: float, outputs_dir: Path, images: Sequence[Path] = ()) -> RunRecord:
        """Submit the workflow (with the input ``images`` its LoadImage nodes name, where the endpoint
        takes them) and wait until the endpoint is done or the monotonic ``deadline`` passes."""
        raise NotImplementedError("run")

    async def catalogue(self) -> Catalogue | None:
        """The endpoint's node catalogue for the preflight and UI conversion: the configured ``object_info``
        (a saved file, or the URL of a ComfyUI serving the same image), if any."""
        source = self.endpoint.object_info
        if source is None:
            return None
        if isinstance(source, Path):
            return load_catalogue(source)
        # Credentials are the endpoint's: they go with the request only to the endpoint's own origin.
        same_origin = urlsplit(source)[:2] == urlsplit(self.endpoint.url)[:2]
        try:
            async with httpx.AsyncClient(headers=self.endpoint.resolved_headers() if same_origin else {},
                                         timeout=httpx.Timeout(60.0, connect=self.endpoint.timeouts.connect),
                                         transport=CappedTransport(self.endpoint.limits.reply_bytes, verify=ssl_context())) as client:
                response = await client.get(source)
            info = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, ReplyTooLarge):
            return None
        return Catalogue(info, source) if isinstance(info, dict) else None

    async def provenance(self) -> dict | None:
        """What the endpoint says about itself (versions, devices), where it says anything."""
        return None

    def request_body(self, workflow: dict, images: Sequence[Path] = ()) -> dict:
        """The JSON body that submits ``workflow``; written next to the cell for its repro."""
        raise NotImplementedError("request_body")

    def repro_path(self) -> str:
        """The path, relative to the endpoint URL, that ``request_body`` is POSTed to."""
        raise NotImplementedError("repro_path")

    def repro(self, body_file: str, images: Sequence[Path] = ()) -> str:
        """A curl command that re-submits the cell's request; secrets appear as ``$VAR``."""
        return self.curl("POST", self.repro_path(), ["-H", "Content-Type: application/json", "--data-binary", f"@{body_file}"])

    def curl(self, method: str, path: str, arguments: Sequence[str]) -> str:
        """``curl`` to the endpoint with its headers (``$VAR`` left for the shell) and these arguments."""
        parts = ["curl", "-sS", "-X", method, f"{self.endpoint.public_url}{path}"]
        for name, value in self.endpoint.shell_headers().items():
            parts += ["-H", f"{name}: {value}"]
        parts += arguments
        # Header values keep "$VAR" for the shell to expand, so they are double-quoted, not shlex-quoted.
        return " ".join(f'"{p}"' if "$" in p else shlex.quote(p) for p in parts)

    async def settle(self) -> None:
        """Wait for the clean-ups of cancelled attempts (each bounded), before the connections close."""
        if self._abandoned:
            await asyncio.wait(self._abandoned, timeout=CLEANUP_S + 1.0)

    async def aclose(self) -> None:
        await self.settle()
        if "client" in self.__dict__:  # made, so open
            await self.client.aclose()

    async def __aenter__(self) -> BaseProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
