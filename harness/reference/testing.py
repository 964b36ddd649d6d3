"""The ``reference_endpoint`` pytest fixture: start reference endpoints by profile, closed after the test.

Usage: ``srv = reference_endpoint("custom")`` or ``reference_endpoint(profile.replace(models={}))``;
each call starts a new server (a ``ReferenceServer``) and returns it, running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.reference.profile import Profile
from harness.reference.server import ReferenceServer

__all__ = ["reference_endpoint"]


@pytest.fixture
def reference_endpoint() -> Iterator[Callable[[Profile | str | Path], ReferenceServer]]:
    started: list[ReferenceServer] = []

    def start(profile: Profile | str | Path = "stock") -> ReferenceServer:
        server = ReferenceServer(profile).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
