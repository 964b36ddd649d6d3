"""Replay fidelity: every recorded ``POST /prompt`` must get the recorded answer, from the validator
alone and from the reference endpoint over HTTP, both on a server set up like the recording one
(the profile's catalogue, no model files, input/ holding only example.png), for each modelled ComfyUI
version: 0.3.64's captures (fixtures/captures/{stock,custom}) and 0.33.0's (fixtures/captures/0.33.0/),
the latter including the v3_* cases recorded only there.

Answers are compared by status and error structure: top-level error, node_errors ids, class_type and
dependent_outputs, and each node's reasons order-insensitively (ComfyUI walks a set there).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from conftest import ROOT
from harness.comfy.modelfiles import INPUT_FOLDER
from harness.reference.profile import InputImage, Profile, load_profile
from harness.reference.server import ReferenceServer
from harness.comfy.validator import prompt_id_error, validate_prompt


def _posts(root: Path, pattern: str) -> list[Path]:
    posts = []
    for path in sorted(root.glob(pattern)):
        request = json.loads(path.read_text()).get("request", {})
        if request.get("method") == "POST" and request.get("path") == "/prompt":
            posts.append(path)
    return posts


CAPTURES = _posts(ROOT / "fixtures/captures", "*/prompt_*.json")
CAPTURES_0_33_0 = _posts(ROOT / "fixtures/captures/0.33.0", "*/*.json")
# Files the recording server's output/ held from its earlier runs, which a capture names.
_EARLIER_OUTPUTS = {"v3_remote_combo_loadimageoutput_valid": "cap33_a_uncached_00001_.png"}
_NO_PROMPT = {"type": "no_prompt", "message": "No prompt provided", "details": "No prompt provided", "extra_info": {}}
_SERVER_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"


def recording_profile(name: str, version: str = "0.3.64") -> Profile:
    """The built-in profile as the recording server was: no model files, only example.png as input."""
    return load_profile(name, version).replace(models={}, inputs=(InputImage("example.png"),))


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


def validator_answer(request: dict, profile: Profile, outputs: tuple[str, ...] = ()) -> tuple[int, object]:
    """What ``post_prompt`` answers when only the validator decides (no server involved)."""
    try:
        data = json.loads(request_body(request))
        if "prompt" not in data:
            return 400, {"error": _NO_PROMPT, "node_errors": {}}
        refused = prompt_id_error(data, profile.flavour)
        if refused is not None:
            return 400, {"error": refused, "node_errors": {}}
        files = {INPUT_FOLDER: [image.name for image in profile.inputs], "output": list(outputs)}
        valid = validate_prompt(data["prompt"], profile.catalogue(), files, flavour=profile.flavour,
                                partial_execution_targets=data.get("partial_execution_targets"))
    except Exception:
        return 500, _SERVER_ERROR
    return (200 if valid.accepted else 400), valid.response_body("x", 0)


@pytest.fixture(scope="module")
def servers():
    started = {(name, version): ReferenceServer(recording_profile(name, version)).start()
               for name in ("stock", "custom") for version in ("0.3.64", "0.33.0")}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture(scope="session")
def tally(request):
    counts: dict[str, list[bool]] = {"validator": [], "endpoint": [], "0.33.0": [], "0.33.0, endpoint": []}
    yield counts
    # Teardown output is captured like a test's; the summary must reach the terminal.
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        for how, results in counts.items():
            if results:
                print(f"\nfidelity: {sum(results)}/{len(results)} captures reproduced ({how})")


def _capture(path: Path) -> tuple[str, dict]:
    return path.parent.name, json.loads(path.read_text())


_REPLAYS = [("0.3.64", path) for path in CAPTURES] + [("0.33.0", path) for path in CAPTURES_0_33_0]


def _replay_id(replay: tuple[str, Path]) -> str:
    version, path = replay
    return f"{version}/{path.parent.name}/{path.stem}"


def _tally_key(version: str, how: str) -> str:
    return how if version == "0.3.64" else ("0.33.0" if how == "validator" else "0.33.0, endpoint")


@pytest.mark.parametrize("replay", _REPLAYS, ids=_replay_id)
def test_the_validator_reproduces_the_capture(replay, tally):
    version, path = replay
    profile_name, recorded = _capture(path)
    earlier = (_EARLIER_OUTPUTS[path.stem],) if path.stem in _EARLIER_OUTPUTS else ()
    status, body = validator_answer(recorded["request"], recording_profile(profile_name, version), earlier)
    results = tally[_tally_key(version, "validator")]
    results.append(same_answer(recorded, status, body))
    assert results[-1], (status, body)


# The replay that killed the recording server's prompt worker is accepted (200) here too, then fails at
# execution instead of hanging the queue; its POST answer is what this suite compares.
@pytest.mark.parametrize("replay", _REPLAYS, ids=_replay_id)
def test_the_endpoint_reproduces_the_capture(replay, servers, tally):
    version, path = replay
    profile_name, recorded = _capture(path)
    request = recorded["request"]
    server = servers[profile_name, version]
    if path.stem in _EARLIER_OUTPUTS:
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, format="PNG")
        files = {"image": (_EARLIER_OUTPUTS[path.stem], png.getvalue())}
        httpx.post(server.url + "/upload/image", files=files, data={"type": "output"}).raise_for_status()
    content_type = request.get("content_type", "application/json")
    response = httpx.post(
        servers[profile_name, version].url + request["path"], content=request_body(request),
        headers={"Content-Type": content_type},
    )
    body = response.text if response.status_code == 500 else response.json()
    results = tally[_tally_key(version, "endpoint")]
    results.append(same_answer(recorded, response.status_code, body))
    assert results[-1], (response.status_code, body)


def test_every_capture_was_replayed():
    assert len(CAPTURES) >= 35
    assert len(CAPTURES_0_33_0) >= 90
