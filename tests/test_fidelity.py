"""Replay fidelity: every recorded ``POST /prompt`` must get the recorded answer, from the validator
alone and from the reference endpoint over HTTP, both on a server set up like the recording one
(the profile's catalogue, no model files, input/ holding only example.png).

Answers are compared by status and error structure: top-level error, node_errors ids, class_type and
dependent_outputs, and each node's reasons order-insensitively (ComfyUI walks a set there).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conftest import ROOT
from harness.comfy.modelfiles import INPUT_FOLDER
from harness.reference.profile import InputImage, Profile
from harness.reference.server import ReferenceServer
from harness.comfy.validator import validate_prompt

CAPTURES = [
    path for path in sorted((ROOT / "fixtures/captures").glob("*/prompt_*.json"))
    if json.loads(path.read_text())["request"]["method"] == "POST"
]
_NO_PROMPT = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}
_SERVER_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"


def recording_profile(name: str) -> Profile:
    """The built-in profile as the recording server was: no model files, only example.png as input."""
    return Profile.builtin(name).replace(models={}, inputs=(InputImage("example.png"),))


def request_body(request: dict) -> bytes:
    return request["raw_body"].encode() if "raw_body" in request else json.dumps(request["json"]).encode()


def _reasons(node_errors: dict) -> dict:
    def key(reason: dict) -> str:
        return json.dumps(reason, sort_keys=True)

    return {
        node_id: {**entry, "errors": sorted(entry["errors"], key=key)}
        for node_id, entry in node_errors.items()
    }


def same_answer(recorded: dict, status: int, body) -> bool:
    """Whether an answer reproduces a recorded one (ids and numbers aside)."""
    if status != recorded["status"]:
        return False
    expected = recorded["body"]
    if status == 500:
        return body == expected
    if status == 400 and body["error"] != expected["error"]:
        return False
    return _reasons(body["node_errors"]) == _reasons(expected["node_errors"])


def validator_answer(request: dict, profile: Profile) -> tuple[int, object]:
    """What ``post_prompt`` answers when only the validator decides (no server involved)."""
    try:
        data = json.loads(request_body(request))
        if "prompt" not in data:
            return 400, {"error": _NO_PROMPT, "node_errors": {}}
        files = {INPUT_FOLDER: [image.name for image in profile.inputs]}
        valid = validate_prompt(data["prompt"], profile.catalogue(), files, flavour=profile.flavour)
    except Exception:
        return 500, _SERVER_ERROR
    return (200 if valid.accepted else 400), valid.response_body("x", 0)


@pytest.fixture(scope="module")
def servers():
    started = {name: ReferenceServer(recording_profile(name)).start() for name in ("stock", "custom")}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="session")
def tally(request):
    counts: dict[str, list[bool]] = {"validator": [], "endpoint": []}
    yield counts
    # Teardown output is captured like a test's; the summary must reach the terminal.
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        for how, results in counts.items():
            if results:
                print(f"\nfidelity: {sum(results)}/{len(results)} captures reproduced ({how})")


def _capture(path: Path) -> tuple[str, dict]:
    return path.parent.name, json.loads(path.read_text())


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_validator_reproduces_the_capture(path, tally):
    profile_name, recorded = _capture(path)
    status, body = validator_answer(recorded["request"], recording_profile(profile_name))
    tally["validator"].append(same_answer(recorded, status, body))
    assert tally["validator"][-1], (status, body)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_endpoint_reproduces_the_capture(path, servers, tally):
    profile_name, recorded = _capture(path)
    request = recorded["request"]
    content_type = request.get("content_type", "application/json")
    response = httpx.post(
        servers[profile_name].url + request["path"], content=request_body(request), headers={"Content-Type": content_type}
    )
    body = response.text if response.status_code == 500 else response.json()
    tally["endpoint"].append(same_answer(recorded, response.status_code, body))
    assert tally["endpoint"][-1], (response.status_code, body)


def test_every_capture_was_replayed():
    assert len(CAPTURES) >= 35
