"""Endpoints under test: where they are, how to authenticate, and how long to wait for them.

Secrets never live in this object as plain text beyond ``resolved_headers()``: header values keep
their ``${VAR}`` templates, so reports and curl reproductions print ``$VAR`` and a reader can re-run
them with their own environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.errors import ConfigError, SecretMissing
from harness.specfiles import load_checked

__all__ = ["Endpoint", "Limits", "Timeouts", "VerdictSpec", "check_all_secrets", "load_endpoints_file", "load_verdict_spec",
           "parse_endpoint_option"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0
    """Seconds to open a connection before the endpoint counts as unreachable."""
    queue: float = 120.0
    """Seconds a job may wait before it starts (cold start) before ``queue_timeout``."""
    execution: float = 600.0
    """Seconds a started job may run before ``execution_timeout``; a case's timeout can lower it."""


@dataclass(frozen=True)
class Limits:
    """How much of what an endpoint sends is read: deadlines bound the time, these the bytes."""

    reply_mb: float = 128.0
    """One reply read whole: JSON (/history, /object_info, a serverless envelope with its outputs inline
    as base64), an image fetched whole (Modal's)."""
    output_mb: float = 4096.0
    """One output saved as it downloads (/view, an S3 URL)."""

    @property
    def reply_bytes(self) -> int:
        return int(self.reply_mb * (1 << 20))

    @property
    def output_bytes(self) -> int:
        return int(self.output_mb * (1 << 20))


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str = field(repr=False)
    """Where requests go, ``${VAR}`` filled in: never printed (``public_url`` is)."""
    kind: str = "comfyui"
    profile: str | None = None
    """The reference profile this endpoint is meant to match; case expectations may be keyed by it."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Header templates; ``${VAR}`` is read from the environment when a request is made."""
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    max_concurrency: int = 4
    flavour: str = "platform"
    """RunPod: ``platform`` (GET /status) or ``local``, the runpod SDK's dev API (POST /status).
    Vast: ``route`` (same as ``platform``: through the route service), ``worker`` or ``wrapper``."""
    request: Mapping[str, Any] | None = None
    """Modal: how the app's own web endpoint is called (``path``, ``body`` template, ``response``,
    ``images``); every field left out is that of modal-examples' comfyapp."""
    runsync: bool = False
    """RunPod: submit with /runsync (the result in the same request when it comes within its wait)."""
    price_per_gpu_hour: float | None = None
    """What one GPU-hour of this endpoint costs; with it, cells show cost per image."""
    object_info: Path | str | None = None
    """A saved ``/object_info`` of the endpoint's image (a file, or the URL of a ComfyUI serving the same
    image), for endpoints that do not serve one (RunPod, Vast, Modal): the preflight forecasts cells from
    it, recovers a missing class a provider hides, and UI workflows are converted with it."""
    comfyui_version: str | None = None
    """The ComfyUI version the endpoint runs, where it does not say (serverless) or says wrong."""
    frontend: str | None = None
    """The web frontend whose UI-workflow conversion to reproduce; default: the version's own."""
    cold_start_idle: float = 300.0
    """Seconds without requests after which the endpoint has scaled to zero (``--cold-start`` waits this long)."""
    url_template: str | None = None
    """The url as written when it names ``${VAR}``s: what reports show instead of the values."""

    @property
    def public_url(self) -> str:
        """The URL without credentials or query string, safe for reports."""
        if self.url_template is not None:
            # Split as text: a ${VAR} host or port is no URL to parse, and the values must not show.
            scheme, _, rest = self.url_template.partition("://")
            netloc, slash, path = rest.partition("/")
            return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path.split('?')[0]}".rstrip("/")
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))

    def resolved_headers(self) -> dict[str, str]:
        """Headers with ``${VAR}`` filled from the environment; SecretMissing names an unset one."""
        return {k: _VAR.sub(lambda m, k=k: _env(m.group(1), self.name, k), v) for k, v in self.headers.items()}

    def shell_headers(self) -> dict[str, str]:
        """Headers with ``${VAR}`` written as ``$VAR``, for curl reproductions."""
        return {k: _VAR.sub(r"$\1", v) for k, v in self.headers.items()}

    def secrets(self) -> dict[str, str]:
        """``{VAR: value}`` of every ``${VAR}`` the headers and the url name, for redaction from everything written."""
        named = [*self.headers.items(), ("url", self.url_template or "")]
        return {m.group(1): _env(m.group(1), self.name, k) for k, v in named for m in _VAR.finditer(v)}

    def missing_variables(self) -> list[str]:
        """What needs each unset ``${VAR}`` of the headers and url, one line each."""
        named = [(f"header {k!r}", v) for k, v in self.headers.items()] + [("url", self.url_template or "")]
        return [f"endpoint {self.name!r}: {where} needs environment variable {var}, which is not set"
                for where, text in named for var in _VAR.findall(text) if var not in os.environ]

    def check_secrets(self) -> None:
        """Fail before any request if a header or the url names an unset environment variable."""
        check_all_secrets([self])


def check_all_secrets(endpoints: list[Endpoint]) -> None:
    """SecretMissing naming every unset variable of every endpoint at once, so one run finds them all."""
    missing = [line for endpoint in endpoints for line in endpoint.missing_variables()]
    if missing:
        raise SecretMissing("; ".join(missing))


def _env(var: str, endpoint: str, header: str) -> str:
    value = os.environ.get(var)
    if value is None:
        raise SecretMissing(f"endpoint {endpoint!r}: header {header!r} needs environment variable {var}, which is not set")
    return value


def parse_endpoint_option(value: str, index: int) -> Endpoint:
    """``--endpoint URL`` or ``--endpoint name=URL``; unnamed endpoints are named by host and port."""
    name, sep, url = value.partition("=")
    if not sep or "://" in name:
        name, url = "", value
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"--endpoint {value!r}: expected URL or name=URL with an http(s) URL")
    if not name:
        parts = urlsplit(url)
        name = f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or f"endpoint{index}")
    return Endpoint(name=name, url=url.rstrip("/"))


def load_endpoints_file(path: str | Path) -> list[Endpoint]:
    """Read ``endpoints.yaml``: ``endpoints: {name: {kind, url, headers, timeouts, limits, max_concurrency, ...}}``."""
    data = load_checked(path, "endpoints")
    return [
        Endpoint(
            name=name,
            url=_url(path, name, spec["url"]),
            url_template=spec["url"].rstrip("/") if _VAR.search(spec["url"]) else None,
            kind=spec.get("kind", "comfyui"),
            profile=spec.get("profile"),
            headers=spec.get("headers", {}),
            timeouts=Timeouts(**spec.get("timeouts", {})),
            limits=Limits(**spec.get("limits", {})),
            max_concurrency=spec.get("max_concurrency", 4),
            flavour=spec.get("flavour", "platform"),
            request=spec.get("request"),
            price_per_gpu_hour=spec.get("price_per_gpu_hour"),
            runsync=spec.get("runsync", False),
            object_info=_object_info(path, spec.get("object_info")),
            comfyui_version=spec.get("comfyui_version"),
            frontend=spec.get("frontend"),
            cold_start_idle=spec.get("cold_start", {}).get("idle", Endpoint.cold_start_idle),
        )
        for name, spec in data["endpoints"].items()
    ]


def _object_info(endpoints_file: str | Path, value: str | None) -> Path | str | None:
    if value is None or re.match(r"^https?://", value):
        return value
    path = Path(endpoints_file).parent / value
    if not path.is_file():
        raise ConfigError(f"{endpoints_file}: object_info: no such file {path}")
    return path


def _url(endpoints_file: str | Path, name: str, written: str) -> str:
    """The url with its ``${VAR}``s filled in; an unset one stays, for check_all_secrets to name."""
    url = _VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), written).rstrip("/")
    if not _VAR.search(url) and not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{endpoints_file}: $.endpoints.{name}.url: {written!r} does not give an http(s) URL "
                          "once its variables are filled in")
    return url


@dataclass(frozen=True)
class VerdictSpec:
    """The endpoints file's ``verdict:``: which migration to decide, and the budgets the candidate must meet."""

    baseline: str | None = None
    candidate: str | None = None
    budgets: Mapping[str, float] = field(default_factory=dict)


def load_verdict_spec(path: str | Path) -> VerdictSpec | None:
    """The ``verdict:`` section of an endpoints file, if it has one."""
    data = load_checked(path, "endpoints")
    spec = data.get("verdict")
    if spec is None:
        return None
    names = set(data["endpoints"])
    for role in ("baseline", "candidate"):
        if spec.get(role) is not None and spec[role] not in names:
            raise ConfigError(f"{path}: $.verdict.{role}: {spec[role]!r} is not one of the endpoints ({', '.join(sorted(names))})")
    return VerdictSpec(spec.get("baseline"), spec.get("candidate"), dict(spec.get("budgets", {})))
