"""Which ComfyUI an endpoint runs, and which modelled version (and web frontend) answers for it.

The harness models ComfyUI versions it has recordings of. An endpoint's own version comes from its
``/system_stats`` (``system.comfyui_version``) or from ``comfyui_version:`` in endpoints.yaml (serverless
endpoints serve no ``/system_stats``); an unmodelled version is answered by the newest modelled version
not newer than it (behaviour changes land in releases, so an endpoint behaves like the last modelled
release it already has), and a version older than all of them by the oldest. Without any version the
current one is assumed, and every cell says which one its conversion modelled and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CURRENT", "FRONTEND_OF", "MODELLED", "Modelled", "modelled_version", "parse_version"]

FRONTEND_OF: dict[str, str] = {"0.3.64": "1.27.10", "0.33.0": "1.49.6"}
"""Modelled ComfyUI version → the web frontend package it pins (``comfyui-frontend-package`` in its
requirements.txt), whose ``graphToPrompt`` turns a UI workflow into the prompt it submits."""

MODELLED: tuple[str, ...] = tuple(FRONTEND_OF)
"""Oldest first."""

CURRENT = MODELLED[-1]


def parse_version(text: str) -> tuple[int, ...] | None:
    """``"0.3.64"``, ``"v0.33.0"``, ``"0.33.0+cu128"`` → a tuple to compare; None if it is no version."""
    match = re.match(r"^v?(\d+(?:\.\d+)*)", text.strip()) if isinstance(text, str) else None
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


@dataclass(frozen=True)
class Modelled:
    """The modelled version answering for an endpoint, and where the endpoint's own version came from."""

    version: str
    frontend: str
    reason: str
    """For the cell's evidence: e.g. ``ComfyUI 0.3.70 (/system_stats): modelled as 0.3.64``."""

    def to_dict(self) -> dict[str, str]:
        return {"comfyui_version": self.version, "frontend": self.frontend, "reason": self.reason}


def modelled_version(version: str | None, source: str, *, frontend: str | None = None,
                     required_frontend: str | None = None) -> Modelled:
    """The modelled version for an endpoint that runs ``version`` (as told by ``source``).

    ``frontend`` set by the user wins over everything (a server started with ``--front-end-version``,
    say); then the frontend the server's /system_stats says it requires (``required_frontend_version``),
    floored to a modelled one like a version; then the one the version pins.
    """
    parsed = parse_version(version) if version else None
    if parsed is None:
        chosen, reason = CURRENT, f"ComfyUI version unknown ({source}): the current {CURRENT} assumed"
    else:
        chosen = _floor(MODELLED, parsed)
        reason = f"ComfyUI {version} ({source})" + ("" if chosen == version else f": modelled as {chosen}")
    if frontend is not None:
        return Modelled(chosen, frontend, f"{reason}; frontend {frontend} as configured")
    required = parse_version(required_frontend) if required_frontend else None
    if required is not None:
        served = _floor(tuple(FRONTEND_OF.values()), required)
        if served != FRONTEND_OF[chosen] or served != required_frontend:
            reason += f"; frontend {required_frontend} required by the server" + ("" if served == required_frontend else f": modelled as {served}")
        return Modelled(chosen, served, reason)
    return Modelled(chosen, FRONTEND_OF[chosen], reason)


def _floor(modelled: tuple[str, ...], parsed: tuple[int, ...]) -> str:
    """The newest of ``modelled`` (oldest first) not newer than ``parsed``; the oldest if all are."""
    older = [m for m in modelled if parse_version(m) <= parsed]
    return older[-1] if older else modelled[0]
