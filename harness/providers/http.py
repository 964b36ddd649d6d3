"""A plain HTTP wrapper of a team's own in front of ComfyUI: one POST, one reply, as ``request:`` says.

The same calling convention as an own Modal app (``modal.py``; redirects are followed too), without
Modal's defaults: the body is ``{"workflow": <the case's workflow>}`` and the reply JSON with base64
images at ``images`` unless the endpoint's ``request`` says otherwise (``mapping.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from harness.providers.mapping import WORKFLOW
from harness.providers.modal import ModalProvider

__all__ = ["HTTPProvider"]


class HTTPProvider(ModalProvider):
    kind = "http"
    defaults: ClassVar[Mapping[str, Any]] = {"path": "", "body": {"workflow": WORKFLOW}, "response": "json_base64", "images": "images"}
