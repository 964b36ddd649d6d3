"""The reference endpoint running prompts: websocket order and routing as recorded, history entries,
PNG outputs, failure rules, interrupt, uploads read by LoadImage, the output cache and the seed workflows.
"""

from __future__ import annotations

import contextlib
import io
import json
import time

import aiohttp
import pytest
from PIL import Image

from conftest import ROOT, collect_until_done, load_json
from harness.reference.cache import NodeCache
from harness.reference.failures import RUN_FRAMES
from harness.reference.profile import FailureRule, Profile, load_profile
from harness.reference.server import running_server

SMOKE = load_json("workflows/smoke_invert.json")
SDXL = load_json("workflows/sdxl_baseline.json")
DENRISI = load_json("workflows/denrisi_zimage_res4lyf.json")


def recorded(name: str) -> dict:
    return load_json(f"fixtures/captures/stock/{name}")


def texts(capture: dict) -> list[dict]:
    return [m["text"] for m in capture["messages"] if "text" in m]


def shape(messages: list[dict]) -> list:
    """Event types, with the node states of each progress_state: what must match a recording."""
    return [
        (m["type"], {k: v["state"] for k, v in m["data"]["nodes"].items()}) if m["type"] == "progress_state" else m["type"]
        for m in messages
    ]


async def run(session: aiohttp.ClientSession, url: str, prompt: dict, client_id: str = "c1") -> tuple[dict, list[dict]]:
    """POST a prompt with a websocket open for client_id; the POST body and the messages received."""
    async with session.ws_connect(f"{url}/ws?clientId={client_id}") as ws:
        async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": client_id}) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        return body, await collect_until_done(ws, body["prompt_id"])


async def history(session: aiohttp.ClientSession, url: str, prompt_id: str) -> dict:
    async with session.get(f"{url}/history/{prompt_id}") as resp:
        return (await resp.json())[prompt_id]


async def fetch_image(session: aiohttp.ClientSession, url: str, image: dict) -> Image.Image:
    async with session.get(f"{url}/view", params=image) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
        assert resp.headers["Content-Disposition"] == f'filename="{image["filename"]}"'
        return Image.open(io.BytesIO(await resp.read()))


@pytest.mark.asyncio
async def test_a_run_sends_the_recorded_events_and_saves_a_png_of_the_tracked_size():
    async with running_server("stock") as srv, aiohttp.ClientSession() as session:
        body, messages = await run(session, srv.url, SMOKE)
        assert shape(messages) == shape(texts(recorded("ws_run_a.json")))
        assert messages[0]["data"]["sid"] == "c1"
        entry = await history(session, srv.url, body["prompt_id"])
        want = recorded("history_a_by_id.json")["body"]["1c296d84-3598-4806-bf13-2c3cac2e817b"]
        assert list(entry) == list(want) and entry["meta"] == want["meta"]
        assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in want["status"]["messages"]]
        assert all(isinstance(m[1]["timestamp"], int) and m[1]["timestamp"] > 1e12 for m in entry["status"]["messages"])
        assert entry["prompt"][3:] == [{"client_id": "c1"}, ["3"]]
        image = entry["outputs"]["3"]["images"][0]
        assert image == {"filename": "smoke_invert_00001_.png", "subfolder": "", "type": "output"}
        png = await fetch_image(session, srv.url, image)
        assert png.size == (512, 512) and png.mode == "RGB" and png.getpixel((0, 0)) == (255, 255, 255)
        assert json.loads(png.text["prompt"]) == SMOKE  # ComfyUI's metadata, on by default


@pytest.mark.asyncio
async def test_an_identical_rerun_is_served_from_the_cache_like_the_recording():
    async with running_server("stock") as srv, aiohttp.ClientSession() as session:
        first, _ = await run(session, srv.url, SMOKE)
        _, messages = await run(session, srv.url, SMOKE)
        assert shape(messages) == shape(texts(recorded("ws_run_a_cached_rerun.json")))
        cached = next(m for m in messages if m["type"] == "execution_cached")
        assert cached["data"]["nodes"] == ["1", "2", "3"]
        executed = next(m for m in messages if m["type"] == "executed")
        assert executed["data"]["output"]["images"][0]["filename"] == "smoke_invert_00001_.png"
        changed = {**SMOKE, "3": {**SMOKE["3"], "inputs": {**SMOKE["3"]["inputs"], "filename_prefix": "sub/again"}}}
        body, messages = await run(session, srv.url, changed)
        assert next(m for m in messages if m["type"] == "execution_cached")["data"]["nodes"] == ["1", "2"]
        assert [m["data"]["node"] for m in messages if m["type"] == "executing"] == ["3", None]
        image = (await history(session, srv.url, body["prompt_id"]))["outputs"]["3"]["images"][0]
        assert image == {"filename": "again_00001_.png", "subfolder": "sub", "type": "output"}


@pytest.mark.asyncio
async def test_per_prompt_events_reach_only_the_prompts_client():
    async with running_server("stock") as srv, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{srv.url}/ws?clientId=other") as other:
            _, mine = await run(session, srv.url, SMOKE, client_id="mine")
            seen = []
            with contextlib.suppress(TimeoutError):
                while True:
                    seen.append(json.loads((await other.receive(timeout=0.2)).data)["type"])
    assert {"execution_start", "executing", "executed", "execution_success"} <= {m["type"] for m in mine}
    # status and progress_state are broadcast (sid None in ComfyUI); the rest is the prompt's own.
    assert set(seen) == {"status", "progress_state"}


@pytest.mark.asyncio
async def test_the_recorded_channel_mismatch_fails_like_comfyui():
    capture = recorded("ws_run_j_exec_error.json")
    async with running_server("stock") as srv, aiohttp.ClientSession() as session:
        body, messages = await run(session, srv.url, capture["workflow"])
        assert shape(messages) == shape(texts(capture))
        error = next(m for m in messages if m["type"] == "execution_error")["data"]
        want = next(m for m in texts(capture) if m["type"] == "execution_error")["data"]
        for key in ("node_id", "node_type", "exception_message", "exception_type", "traceback"):
            assert error[key] == want[key], key
        assert sorted(error["executed"]) == sorted(want["executed"])
        assert sorted(error["current_outputs"]) == sorted(want["current_outputs"])
        assert list(error) == list(want) and list(error["current_inputs"]) == ["image1", "image2"]
        entry = await history(session, srv.url, body["prompt_id"])
        assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
        assert entry["status"]["messages"][-1] == ["execution_error", error]
        assert entry["outputs"] == {} and entry["meta"] == {}


@pytest.mark.asyncio
async def test_a_profile_failure_rule_fails_that_class_at_execution():
    profile = Profile.builtin("stock").replace(
        failures=(FailureRule("ImageInvert", "torch.OutOfMemoryError", "CUDA out of memory"),)
    )
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        body, messages = await run(session, srv.url, SMOKE)
        error = next(m for m in messages if m["type"] == "execution_error")["data"]
        assert error["node_id"] == "2" and error["node_type"] == "ImageInvert" and error["executed"] == ["1"]
        assert error["exception_type"] == "torch.OutOfMemoryError"
        assert error["exception_message"] == "CUDA out of memory\n"
        assert error["traceback"] == list(RUN_FRAMES)
        assert list(error["current_inputs"]) == ["image"]
        entry = await history(session, srv.url, body["prompt_id"])
        assert entry["status"]["messages"][-1][0] == "execution_error"


@pytest.mark.asyncio
async def test_saving_outside_the_output_folder_fails_like_comfyui():
    """Seen on a real ComfyUI 0.3.64: filename_prefix "../outside/x" raises in get_save_image_path."""
    prompt = json.loads(json.dumps(SMOKE))
    save = next(node for node in prompt.values() if node["class_type"] == "SaveImage")
    save["inputs"]["filename_prefix"] = "../outside/x"
    async with running_server("stock") as srv, aiohttp.ClientSession() as session:
        _, messages = await run(session, srv.url, prompt)
        error = next(m for m in messages if m["type"] == "execution_error")["data"]
        assert (error["node_type"], error["exception_type"]) == ("SaveImage", "Exception")
        assert error["exception_message"] == ("**** ERROR: Saving image outside the output folder is not allowed.\n"
                                              " full_output_folder: /opt/ComfyUI/outside\n         output_dir: /opt/ComfyUI/output\n"
                                              "         commonpath: /opt/ComfyUI\n")
        assert error["traceback"][-1] == '  File "/opt/ComfyUI/folder_paths.py", line 397, in get_save_image_path\n    raise Exception(err)\n'


@pytest.mark.asyncio
async def test_an_uploaded_image_feeds_loadimage_and_a_corrupt_one_fails_as_recorded():
    capture = recorded("ws_run_j2_corrupt_loadimage.json")
    async with running_server("stock") as srv, aiohttp.ClientSession() as session:
        png = io.BytesIO()
        Image.new("RGB", (320, 200), (1, 2, 3)).save(png, format="PNG")
        for name, data in (("photo.png", png.getvalue()), ("peer_corrupt.png", b"this is not a png at all\x00\x01\x02")):
            form = aiohttp.FormData()
            form.add_field("image", data, filename=name, content_type="image/png")
            async with session.post(f"{srv.url}/upload/image", data=form) as resp:
                assert (await resp.json())["name"] == name
        preview = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
                   "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        body, _ = await run(session, srv.url, preview)
        image = (await history(session, srv.url, body["prompt_id"]))["outputs"]["2"]["images"][0]
        assert image["type"] == "temp" and image["filename"].startswith("ComfyUI_temp_")
        assert (await fetch_image(session, srv.url, image)).size == (320, 200)
        body, messages = await run(session, srv.url, capture["workflow"])
        assert shape(messages) == shape(texts(capture))
        error = next(m for m in messages if m["type"] == "execution_error")["data"]
        want = next(m for m in texts(capture) if m["type"] == "execution_error")["data"]
        for key in ("node_id", "node_type", "executed", "exception_message", "exception_type", "traceback", "current_inputs"):
            assert error[key] == want[key], key


@pytest.mark.asyncio
async def test_interrupt_stops_only_the_named_running_prompt():
    profile = Profile.builtin("stock").replace(class_seconds={"ImageInvert": 3.0})
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{srv.url}/ws?clientId=c1") as ws:
            async with session.post(f"{srv.url}/prompt", json={"prompt": SMOKE, "client_id": "c1"}) as resp:
                prompt_id = (await resp.json())["prompt_id"]
            async for msg in ws:
                if json.loads(msg.data) == {"type": "executing", "data": {"node": "2", "display_node": "2", "prompt_id": prompt_id}}:
                    break
            async with session.post(f"{srv.url}/interrupt", json={"prompt_id": "not-running"}) as resp:
                assert resp.status == 200
            async with session.get(f"{srv.url}/history/{prompt_id}") as resp:
                assert await resp.json() == {}
            async with session.post(f"{srv.url}/api/interrupt", json={"prompt_id": prompt_id}) as resp:
                assert resp.status == 200 and await resp.read() == b""
            messages = await collect_until_done(ws, prompt_id)
        assert [m["type"] for m in messages] == ["execution_interrupted", "status", "executing"]
        assert messages[0]["data"] | {"timestamp": 0} == {
            "prompt_id": prompt_id, "node_id": "2", "node_type": "ImageInvert", "executed": ["1"], "timestamp": 0,
        }
        entry = await history(session, srv.url, prompt_id)
        assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False


@pytest.mark.asyncio
@pytest.mark.parametrize("profile", ["stock", "custom"])
async def test_the_sdxl_baseline_runs_to_a_1024_image_on_both_profiles(profile):
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        body, messages = await run(session, srv.url, SDXL)
        assert body["node_errors"] == {} and messages[-3]["type"] == "execution_success"
        image = (await history(session, srv.url, body["prompt_id"]))["outputs"]["9"]["images"][0]
        assert (await fetch_image(session, srv.url, image)).size == (1024, 1024)


@pytest.mark.asyncio
async def test_denrisi_runs_on_custom_and_is_a_missing_node_on_stock():
    async with running_server("custom") as srv, aiohttp.ClientSession() as session:
        body, messages = await run(session, srv.url, DENRISI)
        assert body["node_errors"] == {} and messages[-3]["type"] == "execution_success"
        image = (await history(session, srv.url, body["prompt_id"]))["outputs"]["13"]["images"][0]
        assert (await fetch_image(session, srv.url, image)).size == (1024, 1024)
    async with running_server("stock") as srv, aiohttp.ClientSession() as session:
        async with session.post(f"{srv.url}/prompt", json={"prompt": DENRISI}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == {
                "type": "invalid_prompt",
                "message": "Cannot execute because node FluxResolutionNode does not exist.",
                "details": "Node ID '#7'",
                "extra_info": {},
            }


@pytest.mark.asyncio
async def test_partial_acceptance_runs_only_the_outputs_that_validated():
    async with running_server(Profile.builtin("custom").replace(models={})) as srv, aiohttp.ClientSession() as session:
        body, messages = await run(session, srv.url, DENRISI)
        assert set(body["node_errors"]) == {"1", "2", "3"}
        assert all(e["dependent_outputs"] == ["13"] for e in body["node_errors"].values())
        entry = await history(session, srv.url, body["prompt_id"])
        assert entry["prompt"][4] == ["7"] and entry["status"]["status_str"] == "success"
        assert [m["data"]["node"] for m in messages if m["type"] == "executing"] == ["7", None]
        two_outputs = {
            **SMOKE,
            "4": {"class_type": "EmptyImage", "inputs": {"width": 99999, "height": 8, "batch_size": 1, "color": 0}},
            "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "bad"}},
        }
        body, _ = await run(session, srv.url, two_outputs)
        assert list(body["node_errors"]) == ["4"] and body["node_errors"]["4"]["dependent_outputs"] == ["5"]
        entry = await history(session, srv.url, body["prompt_id"])
        assert entry["prompt"][4] == ["3"] and list(entry["outputs"]) == ["3"]


def test_a_long_chain_runs_with_cache_keys_of_constant_size(reference_endpoint):
    """900 EmptyImage → ImageInvert nodes (real 0.3.64 accepts 900): accepted, run and answered; the
    cache keys a node by its upstream node's key as a digest, so no key grows with the chain (nested as
    text they doubled per node and froze the server at a 100-node chain)."""
    import httpx

    from conftest import wait_history

    chain = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    for i in range(2, 901):
        chain[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    chain["901"] = {"class_type": "SaveImage", "inputs": {"images": ["900", 0], "filename_prefix": "chain"}}
    srv = reference_endpoint("stock")
    with httpx.Client(base_url=srv.url, timeout=60) as client:
        reply = client.post("/prompt", json={"prompt": chain})
        assert reply.status_code == 200, reply.text
        entry = wait_history(client, reply.json()["prompt_id"], timeout=60)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["901"]["images"][0]["filename"].startswith("chain")
    cache = NodeCache()
    cache.set_prompt(chain, _NoFiles())
    assert len(cache._signatures) == 901 and {len(k) for k in cache._signatures.values()} == {64}
    # The same chain under other node ids is the same work: the last node's key does not name ids.
    shifted = {str(int(k) + 5000): {**n, "inputs": {name: [str(int(v[0]) + 5000), v[1]] if isinstance(v, list) else v
                                                     for name, v in n["inputs"].items()}} for k, n in chain.items()}
    other = NodeCache()
    other.set_prompt(shifted, _NoFiles())
    assert other._signatures["5901"] == cache._signatures["901"]


class _NoFiles:
    """Storage for a prompt that loads no file (its LoadImage inputs would be hashed)."""

    def annotated_path(self, name: str):
        raise AssertionError(f"the chain reads no file, yet {name!r} was asked for")


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["0.3.64", "0.33.0"])
async def test_the_queued_prompts_extra_data_is_each_releases(version):
    """0.33.0 adds the job's ``create_time`` (ms) to its extra_data, after the client_id; 0.3.64 does not."""
    folder = "fixtures/captures/0.33.0/stock" if version == "0.33.0" else "fixtures/captures/stock"
    want = next(iter(json.loads((ROOT / folder / "history_a_by_id.json").read_text())["body"].values()))["prompt"][3]
    async with running_server(load_profile("stock", version)) as srv, aiohttp.ClientSession() as session:
        body, _ = await run(session, srv.url, SMOKE)
        extra = (await history(session, srv.url, body["prompt_id"]))["prompt"][3]
    assert list(extra) == list(want)
    assert version == "0.3.64" or abs(extra["create_time"] - time.time() * 1000) < 60_000


def _advanced(color: int) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 32, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImageAdvanced", "inputs": {"images": ["1", 0], "filename_prefix": "adv", "format": "png",
                                                            "format.bit_depth": "8-bit", "format.input_color_space": "sRGB"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "after"}},
    }


@pytest.mark.asyncio
async def test_save_image_advanced_writes_png_passes_its_images_on_and_rewrites_its_first_name():
    """0.33.0's SaveImageAdvanced names files ``<prefix>_<counter>.png``; with no ``_`` after the counter
    the next save counts none of them and writes ``adv_00001.png`` again, as the real node does."""
    async with running_server(load_profile("stock", "0.33.0")) as srv, aiohttp.ClientSession() as session:
        for color in (0xFF0000, 0x0000FF):
            body, _ = await run(session, srv.url, _advanced(color))
            outputs = (await history(session, srv.url, body["prompt_id"]))["outputs"]
            assert outputs["2"] == {"images": [{"filename": "adv_00001.png", "subfolder": "", "type": "output"}]}
            saved = await fetch_image(session, srv.url, outputs["2"]["images"][0])
            assert saved.size == (64, 32) and saved.getpixel((0, 0)) == ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
            after = await fetch_image(session, srv.url, outputs["3"]["images"][0])
            assert after.size == (64, 32)


def _frames_saved(saver: str, **inputs) -> dict:
    """Four 80×48 frames into ``saver``, SaveVideo through CreateVideo."""
    frames = {"class_type": "EmptyImage", "inputs": {"width": 80, "height": 48, "batch_size": 4, "color": 0}}
    if saver == "SaveVideo":
        return {"1": frames, "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
                "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "video/clip", **inputs}}}
    return {"1": frames, "3": {"class_type": saver, "inputs": {"images": ["1", 0], "filename_prefix": "clip", "fps": 8.0, **inputs}}}


_WEBM = {"codec": "vp9", "crf": 32.0}
_WEBP = {"lossless": False, "quality": 80, "method": "default"}


@pytest.mark.asyncio
@pytest.mark.parametrize("version, saver, inputs, saved, fmt", [
    ("0.3.64", "SaveVideo", {"format": "auto", "codec": "auto"}, ("clip_00001_.mp4", "video"), "MP4"),
    ("0.33.0", "SaveVideo", {"format": "auto", "format.codec": "auto", "codec": "auto"}, ("clip_00001_.mp4", "video"), "MP4"),
    ("0.33.0", "SaveVideo", {"format": "mkv", "format.codec": "h264", "codec": "auto"}, ("clip_00001_.mkv", "video"), "MKV"),
    ("0.33.0", "SaveVideo", {"format": "auto", "format.codec": "av1", "codec": "auto"}, ("clip_00001_.webm", "video"), "WEBM"),
    ("0.3.64", "SaveWEBM", _WEBM, ("clip_00001_.webm", ""), "WEBM"),
    ("0.3.64", "SaveAnimatedWEBP", _WEBP, ("clip_00001_.webp", ""), "WEBP"),
    ("0.33.0", "SaveAnimatedPNG", {"compress_level": 4}, ("clip_00001_.png", ""), "PNG"),
])
async def test_video_and_animation_savers_list_one_file_among_the_images_beside_animated(version, saver, inputs, saved, fmt, tmp_path):
    """comfy_api's PreviewVideo: ``{"images": [the file], "animated": [true]}``; SaveAnimatedWEBP/PNG alike,
    one file of all the frames. The harness downloads it and reads the container and frame size."""
    from conftest import run_provider

    profile = "stock" if version == "0.3.64" else load_profile("stock", "0.33.0")
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        body, _ = await run(session, srv.url, _frames_saved(saver, **inputs))
        outputs = (await history(session, srv.url, body["prompt_id"]))["outputs"]
        assert outputs == {"3": {"images": [{"filename": saved[0], "subfolder": saved[1], "type": "output"}], "animated": [True]}}
        record = await run_provider("comfyui", srv.url, _frames_saved(saver, **inputs), tmp_path)
    [output] = record.images
    assert (record.classification, output.format, output.width, output.height, output.error) == (None, fmt, 80, 48, None)
    assert output.filename == saved[0]  # the same prompt again: its output node is cached, as ComfyUI's is


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["0.3.64", "0.33.0"])
async def test_save_audio_lists_its_flac_under_audio_and_the_run_has_an_output(version, tmp_path):
    """SaveAudio's UI is ``{"audio": [the file]}``: not an image, an output all the same (a FLAC of no samples)."""
    from conftest import run_provider

    workflow = {"1": {"class_type": "EmptyAudio", "inputs": {"duration": 1.0, "sample_rate": 44100, "channels": 1}},
                "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": "audio/clip"}}}
    profile = "stock" if version == "0.3.64" else load_profile("stock", "0.33.0")
    async with running_server(profile) as srv, aiohttp.ClientSession() as session:
        body, _ = await run(session, srv.url, workflow)
        outputs = (await history(session, srv.url, body["prompt_id"]))["outputs"]
        saved = {"filename": "clip_00001_.flac", "subfolder": "audio", "type": "output"}
        assert outputs == {"2": {"audio": [saved]}}
        async with session.get(f"{srv.url}/view", params=saved) as resp:
            assert resp.status == 200 and (await resp.read())[:4] == b"fLaC"
        record = await run_provider("comfyui", srv.url, workflow, tmp_path)
    assert (record.classification, record.images, record.other_outputs) == (None, (), 1)
