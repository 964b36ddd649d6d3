"""The secrets a run resolved from ``${VAR}``, and their removal from everything it writes or prints.

Header templates keep ``$VAR`` in reports and repros, but an endpoint can still send a value back: a
server that echoes the request's headers, an error message quoting the key, a traceback with the
request in it. So every value resolved for a run is remembered here, and every text the harness writes
(matrix.json, matrix.md, report.html, request files, fingerprints) or hands to pytest (cells, hence
JUnit, Allure and the terminal) goes through ``redact``: each value, also URL-quoted or JSON-escaped,
becomes ``$VAR``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from harness.run.endpoints import Endpoint

__all__ = ["MIN_SECRET_CHARS", "redact", "remember", "scrub"]

MIN_SECRET_CHARS = 4
"""Shorter values are not redacted: replacing every "ab" in a report would destroy it, and such a value
protects nothing."""

_KNOWN: dict[str, str] = {}
"""Every form of every secret value → ``$VAR``; longest first when applied."""
_ORDER: list[str] = []
_LOCK = threading.Lock()
T = TypeVar("T")


def remember(endpoints: Iterable[Endpoint]) -> None:
    """Note the values of every ``${VAR}`` the endpoints' headers name (the process's lifetime)."""
    with _LOCK:
        for endpoint in endpoints:
            for var, value in endpoint.secrets().items():
                if len(value) < MIN_SECRET_CHARS:
                    continue
                for form in {value, quote(value, safe=""), json.dumps(value)[1:-1]}:
                    _KNOWN[form] = f"${var}"
        _ORDER[:] = sorted(_KNOWN, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every remembered secret replaced by its ``$VAR``."""
    for value in _ORDER:
        if value in text:
            text = text.replace(value, _KNOWN[value])
    return text


def scrub(value: T) -> T:
    """A copy of ``value`` (strings, mappings, sequences, frozen dataclasses of them) with secrets redacted."""
    if not _ORDER:
        return value
    return _scrub(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, enum.Enum) or value is None or isinstance(value, (int, float, bool, bytes)):
        return value
    if isinstance(value, Mapping):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _scrub(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init})
    return value
