"""Every HTTP route of the reference endpoint over loopback, against the recorded answers of ComfyUI 0.3.64."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import httpx
import pytest
from PIL import Image

from conftest import ROOT, load_json, wait_history
from harness.errors import ConfigError
from harness.reference.profile import Profile, load_profile

SMOKE = load_json("workflows/smoke_invert.json")


@pytest.fixture
def stock(reference_endpoint):
    with httpx.Client(base_url=reference_endpoint("stock").url, timeout=5) as client:
        yield client


@pytest.fixture
def slow(reference_endpoint):
    """A server whose EmptyImage takes a second, so queued prompts stay pending."""
    server = reference_endpoint(Profile.builtin("stock").replace(class_seconds={"EmptyImage": 1.0}))
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def png_bytes(size=(8, 8), colour=(0, 0, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def upload(client: httpx.Client, name: str, data: bytes, **fields) -> httpx.Response:
    return client.post("/upload/image", files={"image": (name, data, "image/png")}, data=fields)


@pytest.mark.parametrize("capture", ["prompt_i1_body_not_json.json", "prompt_i1b_empty_body.json", "prompt_i3_prompt_is_list.json"])
def test_a_body_comfyui_chokes_on_is_the_recorded_500_text(stock, capture):
    recorded = load_json(f"fixtures/captures/stock/{capture}")
    request = recorded["request"]
    body = request["raw_body"].encode() if "raw_body" in request else json.dumps(request["json"]).encode()
    r = stock.post("/prompt", content=body, headers={"Content-Type": "application/json"})
    assert (r.status_code, r.text) == (500, recorded["body"])
    assert r.headers["Content-Type"] == recorded["headers"]["Content-Type"]
    assert r.headers["Content-Length"] == recorded["headers"]["Content-Length"]


def test_post_prompt_numbers_ids_and_client_ids_like_comfyui(slow):
    assert slow.post("/prompt", json={"no": "prompt"}).json()["error"]["type"] == "no_prompt"
    first = slow.post("/prompt", json={"prompt": SMOKE, "client_id": "c", "extra_data": {"k": 1}}).json()
    assert first["number"] == 1 and first["node_errors"] == {}  # the failed POST above took number 0
    assert slow.post("/prompt", json={"prompt": SMOKE, "front": True}).json()["number"] == -2
    assert slow.post("/prompt", json={"prompt": SMOKE, "number": "7"}).json()["number"] == 7.0
    assert slow.post("/prompt", json={"prompt": SMOKE, "prompt_id": None}).json()["prompt_id"] == "None"
    assert slow.post("/prompt", json={"prompt": SMOKE}).json()["number"] == 4  # a given number takes none
    assert slow.get("/prompt").json() == {"exec_info": {"queue_remaining": 5}}
    queue = slow.get("/api/queue").json()
    assert [item[0] for item in queue["queue_running"]] == [1]
    assert queue["queue_running"][0][3] == {"k": 1, "client_id": "c"}
    assert sorted(item[0] for item in queue["queue_pending"]) == [-2, 3, 4, 7.0]
    assert slow.post("/queue", json={"delete": ["None"]}).status_code == 200
    assert len(slow.get("/queue").json()["queue_pending"]) == 3
    r = slow.post("/queue", json={"clear": True})
    assert (r.status_code, r.content) == (200, b"")
    assert slow.get("/queue").json()["queue_pending"] == []
    r = slow.post("/interrupt")
    assert (r.status_code, r.content) == (200, b"")
    entry = wait_history(slow, first["prompt_id"])
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


def test_history_lists_pages_deletes_and_clears(stock):
    ids = [stock.post("/prompt", json={"prompt": SMOKE}).json()["prompt_id"] for _ in range(3)]
    for prompt_id in ids:
        wait_history(stock, prompt_id)
    assert list(stock.get("/history").json()) == ids
    assert list(stock.get("/history", params={"max_items": 2}).json()) == ids[1:]
    assert list(stock.get("/history", params={"max_items": 1, "offset": 0}).json()) == ids[:1]
    assert stock.get("/history/00000000-0000-0000-0000-000000000000").json() == {}
    assert stock.post("/history", json={"delete": [ids[0]]}).status_code == 200
    assert list(stock.get("/api/history").json()) == ids[1:]
    stock.post("/history", json={"clear": True})
    assert stock.get("/history").json() == {}


def test_view_answers_400_403_404_like_comfyui(stock):
    wait_history(stock, stock.post("/prompt", json={"prompt": SMOKE}).json()["prompt_id"])
    ok = stock.get("/view", params={"filename": "smoke_invert_00001_.png", "subfolder": "", "type": "output"})
    assert ok.status_code == 200 and Image.open(io.BytesIO(ok.content)).size == (512, 512)
    assert stock.get("/view", params={"filename": "smoke_invert_00001_.png [output]"}).status_code == 200
    assert stock.get("/view", params={"filename": "example.png", "type": "input", "channel": "rgb"}).headers["Content-Type"] == "image/png"
    preview = stock.get("/view", params={"filename": "example.png", "type": "input", "preview": "jpeg;50"})
    assert preview.headers["Content-Type"] == "image/jpeg"
    assert stock.get("/view", params={"filename": "does_not_exist.png", "type": "output"}).status_code == 404
    assert stock.get("/view").status_code == 404
    assert stock.get("/view", params={"filename": ""}).status_code == 400
    assert stock.get("/view", params={"filename": "../x.png"}).status_code == 400
    assert stock.get("/view", params={"filename": "x.png", "type": "nope"}).status_code == 400
    assert stock.get("/view", params={"filename": "x.png", "subfolder": "../../etc"}).status_code == 403


def test_uploads_rename_dedupe_overwrite_and_feed_validation(stock):
    assert upload(stock, "cat.png", png_bytes()).json() == {"name": "cat.png", "subfolder": "", "type": "input"}
    assert upload(stock, "cat.png", png_bytes()).json()["name"] == "cat.png"  # same bytes: reused
    assert upload(stock, "cat.png", png_bytes(colour=(9, 9, 9))).json()["name"] == "cat (1).png"
    assert upload(stock, "cat.png", png_bytes(colour=(7, 7, 7)), overwrite="true").json()["name"] == "cat.png"
    assert upload(stock, "dog.png", png_bytes(), subfolder="pets", type="input").json() == {"name": "dog.png", "subfolder": "pets", "type": "input"}
    assert upload(stock, "x.png", png_bytes(), subfolder="../..").status_code == 400
    assert stock.post("/upload/image", data={"type": "input"}).status_code == 400
    assert stock.get("/object_info/LoadImage").json()["LoadImage"]["input"]["required"]["image"][0] == ["cat (1).png", "cat.png", "example.png"]
    load = {"1": {"class_type": "LoadImage", "inputs": {"image": "pets/dog.png"}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    assert stock.post("/prompt", json={"prompt": load}).status_code == 200
    load["1"]["inputs"]["image"] = "missing.png"
    reason = stock.post("/prompt", json={"prompt": load}).json()["node_errors"]["1"]["errors"][0]
    assert reason["details"] == "image - Invalid image file: missing.png"


def test_descriptions_match_the_recorded_server(stock):
    info = stock.get("/object_info").json()
    assert len(info) == 496
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly-fp16.safetensors"]
    assert stock.get("/api/object_info/KSampler").json() == load_json("fixtures/captures/stock/object_info_KSampler.json")["body"]
    assert stock.get("/object_info/ClownsharKSampler_Beta").json() == {}
    for route, capture in (("/system_stats", "system_stats"), ("/features", "features"), ("/models", "models_list")):
        assert stock.get(route).json() == load_json(f"fixtures/captures/stock/{capture}.json")["body"], route
    assert stock.get("/models/checkpoints").json() == ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly-fp16.safetensors"]
    assert stock.get("/models/nope").status_code == 404
    assert stock.get("/embeddings").json() == []


def test_a_cross_origin_request_to_loopback_is_refused(stock):
    r = stock.get("/prompt", headers={"Origin": "http://evil.example"})
    assert (r.status_code, r.content) == (403, b"")
    assert stock.get("/prompt", headers={"Origin": str(stock.base_url).rstrip("/")}).status_code == 200


def test_a_bad_profile_is_one_line_naming_file_and_field(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ncatalogue: ../object_info/stock.json\nexecution: {node_seconds: -1}\n")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path}: $.execution.node_seconds: ") and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="no such built-in profile"):
        load_profile("nope")
    assert load_profile(ROOT / "fixtures/profiles/custom.yaml").catalogue_path.name == "res4lyf-controlaltai.json"


def test_the_serve_cli_prints_its_url_serves_and_stops_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve", "--profile", "custom", "--port", "0"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" listening on ")[1].split()[0]
        assert httpx.get(f"{url}/system_stats").json()["system"]["argv"][5] == "8189"
    finally:
        proc.send_signal(subprocess.signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped" in out


def test_node_replacements_is_served_as_0_33_0_serves_it(reference_endpoint):
    """A route 0.33.0 added (core's registry of replaced node classes); 0.3.64 has none."""
    recorded = load_json("fixtures/captures/0.33.0/stock/v3_node_replacements.json")["body"]
    for profile in ("stock", "custom"):
        answer = httpx.get(reference_endpoint(load_profile(profile, "0.33.0")).url + "/node_replacements", timeout=5)
        assert answer.status_code == 200 and answer.json() == recorded, profile
    assert httpx.get(reference_endpoint("stock").url + "/node_replacements", timeout=5).status_code == 404


def test_jobs_are_served_as_0_33_0_serves_them(reference_endpoint):
    """GET /api/jobs (a route 0.33.0 added): a finished job as recorded field for field, a running one
    without times, the list newest first with its pagination, and the recorded 400s and 404."""
    server = reference_endpoint(load_profile("stock", "0.33.0").replace(class_seconds={"EmptyImage": 1.0}))
    recorded = {name: load_json(f"fixtures/captures/0.33.0/stock/v3_api_jobs_{name}.json")
                for name in ("by_id", "list_limit2", "unknown", "bad_limit", "bad_status")}
    workflow = recorded["by_id"]["body"]["workflow"]["prompt"]
    with httpx.Client(base_url=server.url, timeout=10) as client:
        done = client.post("/prompt", json={"prompt": workflow}).json()["prompt_id"]
        wait_history(client, done, timeout=10)
        running = client.post("/prompt", json={"prompt": SMOKE}).json()["prompt_id"]
        finished = client.get(f"/api/jobs/{done}").json()
        page = client.get("/api/jobs?limit=2").json()
        errors = {name: client.get(recorded[name]["request"]["path"]) for name in ("unknown", "bad_limit", "bad_status")}
        only_done = client.get("/api/jobs?status=completed").json()
        oldest_first = client.get("/api/jobs?sort_order=asc").json()
    want = recorded["by_id"]["body"]
    assert list(finished) == list(want) and finished["status"] == "completed"
    assert (finished["outputs_count"], finished["previewable_outputs_count"]) == (want["outputs_count"], want["previewable_outputs_count"])
    assert finished["preview_output"].keys() == want["preview_output"].keys() and finished["workflow"]["prompt"] == workflow
    assert finished["execution_start_time"] <= finished["execution_end_time"]
    assert [j["id"] for j in page["jobs"]] == [running, done]
    assert list(page["jobs"][0]) == list(recorded["list_limit2"]["body"]["jobs"][0])  # in progress: no times, no outputs
    assert page["jobs"][0]["status"] == "in_progress" and list(page["jobs"][1]) == list(recorded["list_limit2"]["body"]["jobs"][1])
    assert page["pagination"] == {"offset": 0, "limit": 2, "total": 2, "has_more": False}
    assert [j["id"] for j in only_done["jobs"]] == [done]
    assert [j["id"] for j in oldest_first["jobs"]] == [done, running]
    for name, answer in errors.items():
        assert (answer.status_code, answer.json()) == (recorded[name]["status"], recorded[name]["body"]), name
    assert httpx.get(reference_endpoint("stock").url + "/api/jobs", timeout=5).status_code == 404
