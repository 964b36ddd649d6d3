"""The Provider protocol: one small surface that every endpoint kind implements.

A provider turns "run this API workflow on that endpoint" into a ``RunRecord``: the endpoint's own
verdict already classified into the outcome vocabulary (``None`` when it reported success), the output
images saved to disk and proven to decode, and the timings. Everything provider-specific (envelopes,
polling, flattened error strings) stays inside the provider's module; the engine, the checks and the
reports only ever see ``RunRecord``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
from PIL import Image, UnidentifiedImageError

from harness.comfy.catalogue import Catalogue, load_catalogue
from harness.run.classify import Classification, Evidence
from harness.run.endpoints import Endpoint
from harness.run.outcomes import Outcome

__all__ = [
    "BaseProvider",
    "OutputImage",
    "RunRecord",
    "Timings",
    "TransportFailure",
    "failure",
    "inspect_image",
    "transport_failures",
    "with_retry_after",
]


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
    """Why it did not decode as an image, if it did not."""

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
    extra: dict[str, Any] = field(default_factory=dict)
    cached_nodes: int | None = None
    """Nodes the endpoint served from its cache (ComfyUI's ``execution_cached``); None where it does not say."""
    executed_nodes: int | None = None
    """Nodes that really ran (ComfyUI's per-node ``executing`` events); None where they were not all seen."""


class TransportFailure(Exception):
    """Raised inside a provider when the endpoint could not be talked to; carries the classification."""

    def __init__(self, classification: Classification) -> None:
        super().__init__(classification.evidence.message)
        self.classification = classification


def failure(outcome: Outcome, message: str, *, http_status: int | None = None) -> Classification:
    """A classification for what happened on the wire rather than in ComfyUI."""
    return Classification(outcome, False, Evidence(message=message, http_status=http_status))


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

    where = f"{endpoint.public_url} ({doing})"
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        raise TransportFailure(failure(Outcome.UNREACHABLE, f"cannot connect to {where}: {exc}")) from exc
    except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout, TimeoutError) as exc:
        raise TransportFailure(failure(Outcome.EXECUTION_TIMEOUT, f"no answer from {where} in time")) from exc
    except (httpx.RemoteProtocolError, httpx.DecodingError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
            aiohttp.ClientResponseError) as exc:
        raise TransportFailure(failure(Outcome.PROTOCOL_ERROR, f"malformed reply from {where}: {exc}")) from exc
    except (httpx.TransportError, aiohttp.ClientError) as exc:
        raise TransportFailure(failure(Outcome.UNREACHABLE, f"transport error talking to {where}: {exc!r}")) from exc


def inspect_image(path: Path, filename: str, type_: str = "output") -> OutputImage:
    """Prove a downloaded file is an image: read its header and verify its data without keeping pixels."""
    size = path.stat().st_size
    try:
        with Image.open(path) as im:
            fmt, (width, height) = im.format, im.size
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return OutputImage(filename, str(path), size, type_, error=f"does not decode as an image: {exc}")
    return OutputImage(filename, str(path), size, type_, fmt, width, height)


class BaseProvider:
    """Shared plumbing: an httpx client with the endpoint's headers and timeouts, and curl repros."""

    kind: ClassVar[str]

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    @functools.cached_property
    def client(self) -> httpx.AsyncClient:
        """Made on first use: the native provider talks aiohttp and never needs one."""
        return httpx.AsyncClient(
            base_url=self.endpoint.url,
            headers=self.endpoint.resolved_headers(),
            timeout=httpx.Timeout(30.0, connect=self.endpoint.timeouts.connect),
            # Few idle connections kept: httpcore checks every idle one on each request (~0.06 ms apiece).
            limits=httpx.Limits(max_connections=max(self.endpoint.max_concurrency * 2, 4), max_keepalive_connections=8),
        )

    async def run(self, workflow: dict, *, deadline: float, outputs_dir: Path, images: Sequence[Path] = ()) -> RunRecord:
        """Submit the workflow (with the input ``images`` its LoadImage nodes name, where the endpoint
        takes them) and wait until the endpoint is done or the monotonic ``deadline`` passes."""
        raise NotImplementedError("run")

    async def catalogue(self) -> Catalogue | None:
        """The endpoint's node catalogue for the preflight: the saved ``object_info`` file, if configured."""
        return load_catalogue(self.endpoint.object_info) if self.endpoint.object_info else None

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

    async def aclose(self) -> None:
        if "client" in self.__dict__:  # made, so open
            await self.client.aclose()

    async def __aenter__(self) -> BaseProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
