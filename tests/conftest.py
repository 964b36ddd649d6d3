"""Fixtures and helpers shared by the harness's own tests."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

import aiohttp
import httpx
import jsonschema
import pytest

from harness.reference.testing import reference_endpoint

pytest_plugins = ["pytester"]

__all__ = ["ROOT", "cells", "collect_until_done", "load_json", "matrix", "outcome", "project", "reference_endpoint",
           "run_provider", "system_tool", "wait_history"]

ROOT = Path(__file__).resolve().parents[1]


def system_tool(*names: str, package: str) -> str:
    """The path of the first of ``names`` on PATH, for tests that drive a program of the system.

    Without it the test skips with a one-line reason (``make test`` installs these only as root), unless
    COMFY_COMPAT_REQUIRE_TOOLS=1: CI (.ci/run) installs them, and a skip there would hide the test.
    """
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    reason = f"needs {' or '.join(names)} on PATH (Debian: apt-get install -y {package})"
    if os.environ.get("COMFY_COMPAT_REQUIRE_TOOLS") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def load_json(relative: str):
    return json.loads((ROOT / relative).read_text(encoding="utf-8"))


def wait_history(client: httpx.Client, prompt_id: str, timeout: float = 5.0) -> dict:
    """Poll ``/history/{id}`` until the entry appears, as wrappers do."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/history/{prompt_id}").json()
        if body:
            return body[prompt_id]
        time.sleep(0.005)
    raise AssertionError(f"prompt {prompt_id} did not finish within {timeout}s")


async def collect_until_done(ws: aiohttp.ClientWebSocketResponse, prompt_id: str, timeout: float = 5.0) -> list[dict]:
    """Websocket text messages up to the final ``executing`` with ``node: null`` of the prompt."""
    messages = []
    async with asyncio.timeout(timeout):
        async for msg in ws:
            messages.append(json.loads(msg.data))
            data = messages[-1]["data"]
            if messages[-1]["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return messages
    raise AssertionError("websocket closed before the prompt finished")


async def run_provider(kind: str, url: str, workflow, tmp_path: Path, budget: float = 10.0, **endpoint):
    """One provider run of ``workflow`` against ``url``, as the engine would make it."""
    from harness.run.endpoints import Endpoint
    from harness.run.engine import PROVIDERS

    async with PROVIDERS[kind](Endpoint(f"{kind}-test", url, kind=kind, **endpoint)) as provider:
        return await provider.run(workflow, deadline=time.monotonic() + budget, outputs_dir=tmp_path)


def outcome(record):
    """A RunRecord's outcome, ``passed`` when the endpoint reported success."""
    from harness.run.outcomes import Outcome

    return record.classification.outcome if record.classification else Outcome.PASSED


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A copy of the project's cases and workflows, run by the installed plugin."""
    shutil.copytree(ROOT / "cases", pytester.path / "cases")
    shutil.copytree(ROOT / "workflows", pytester.path / "workflows")
    shutil.copy(ROOT / "pytest.ini", pytester.path / "pytest.ini")
    return pytester


def matrix(project: pytest.Pytester, run: str = "latest") -> dict:
    """A run's matrix.json in a pytester project, checked against the schema."""
    from harness.specfiles import schema

    data = json.loads((project.path / "reports" / run / "matrix.json").read_text())
    jsonschema.validate(data, schema("matrix"))
    return data


def cells(data: dict) -> dict:
    return {(c["case"], c["endpoint"]): c for c in data["cells"]}
