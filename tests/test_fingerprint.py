"""Fingerprints of what endpoints serve: recorded catalogues and live reference servers over loopback."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from conftest import ROOT
from harness.comfy.catalogue import Catalogue, InputSpec, load_catalogue
from harness.report.drift import compare_fingerprints
from harness.run.endpoints import Endpoint
from harness.report.fingerprint import (
    combo_options,
    fingerprint,
    input_signature,
    load_fingerprint,
    write_fingerprint,
)
from harness.providers.comfyui import ComfyUIProvider
from harness.reference.profile import Profile

STOCK = ROOT / "fixtures/object_info/stock.json"
CUSTOM = ROOT / "fixtures/object_info/res4lyf-controlaltai.json"


def served(server) -> dict:
    """The fingerprint of a running server, fetched as the engine does: /object_info and /system_stats."""

    async def fetch():
        async with ComfyUIProvider(Endpoint(server.profile.name, server.url)) as provider:
            return await provider.catalogue(), await provider.provenance()

    catalogue, provenance = asyncio.run(fetch())
    assert catalogue is not None and provenance is not None
    return fingerprint(server.profile.name, catalogue, provenance)


@pytest.fixture(scope="module")
def stock_fp():
    return fingerprint("stock", load_catalogue(STOCK), None)


@pytest.fixture(scope="module")
def custom_fp():
    return fingerprint("custom", load_catalogue(CUSTOM), None)


def test_recorded_catalogues_fingerprint_every_class(stock_fp, custom_fp):
    assert len(stock_fp["classes"]) == 496 and len(custom_fp["classes"]) == 812
    assert stock_fp["system"] is None
    ksampler = stock_fp["classes"]["KSampler"]
    assert ksampler["seed"] == "required:INT" and ksampler["model"] == "required:MODEL"
    assert combo_options(ksampler["sampler_name"])[0] == "euler"
    assert stock_fp["classes"]["CheckpointLoaderSimple"] == {"ckpt_name": "required:COMBO<models:checkpoints>"}
    assert stock_fp["classes"]["LoadImage"]["image"] == "required:COMBO<files:input>"
    assert stock_fp["classes"]["LoadImageOutput"]["image"] == "required:COMBO<files:output>"
    assert stock_fp["classes"]["OpenAIInputFiles"]["file"] == "required:COMBO<files:input>"
    # The recording server had no model files: only VAELoader's built-in entry, which is no file.
    assert stock_fp["models"]["checkpoints"] == [] and stock_fp["models"]["vae"] == []


def test_both_combo_encodings_give_one_signature():
    v1 = InputSpec("mode", "optional", ["a", "b"], {"default": "a"})
    v3 = InputSpec("mode", "optional", "COMBO", {"options": ["a", "b"], "default": "a"})
    assert input_signature("X", v1)[0] == input_signature("X", v3)[0] == 'optional:COMBO["a","b"]'
    model_v3 = InputSpec("unet_name", "required", "COMBO", {"options": ["m.safetensors"]})
    assert input_signature("MyLoader", model_v3) == ("required:COMBO<models:diffusion_models>", "diffusion_models", ["m.safetensors"])
    # A model-ish name that is no combo keeps its type.
    assert input_signature("MyNode", InputSpec("clip_name", "required", "STRING", {}))[0] == "required:STRING"


def test_stock_to_custom_shows_the_packs_classes(stock_fp, custom_fp):
    drift = compare_fingerprints(stock_fp, custom_fp)
    assert len(drift["classes_appeared"]) == 316 and drift["classes_disappeared"] == []
    assert {"ClownsharKSampler_Beta", "FluxResolutionNode"} <= set(drift["classes_appeared"])
    assert "note" in drift  # no system in recorded catalogues
    # RES4LYF adds its samplers to the stock sampler list: KSampler's combo changed, named in details.
    ksampler = next(c for c in drift["classes_changed"] if c["class"] == "KSampler")
    assert ksampler["inputs_changed"] == ["sampler_name", "scheduler"]
    assert "res_2m" in ksampler["details"]["sampler_name"] and ksampler["inputs_added"] == []


def test_write_and_load_roundtrip(tmp_path, custom_fp):
    path = write_fingerprint(tmp_path / "fingerprints" / "custom.json", custom_fp)
    assert load_fingerprint(path) == custom_fp
    assert path.stat().st_size < 400_000
    assert load_fingerprint(tmp_path / "nope.json") is None
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert load_fingerprint(tmp_path / "bad.json") is None


def test_no_catalogue_no_provenance():
    fp = fingerprint("runpod", None, None)
    assert fp == {"endpoint": "runpod", "system": None, "classes": None, "models": None}


# ---------------------------------------------------------------------------- live reference servers


def test_served_stock_and_custom(reference_endpoint):
    stock, custom = served(reference_endpoint("stock")), served(reference_endpoint("custom"))
    assert stock["system"]["comfyui_version"] == "0.3.64" and stock["system"]["os"] == "posix"
    assert isinstance(stock["system"]["devices"], list)
    assert stock["models"]["checkpoints"] == ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly-fp16.safetensors"]
    assert stock["models"]["vae"] == ["ae.safetensors"]
    # The served model files do not enter the class signatures.
    assert stock["classes"] == fingerprint("x", load_catalogue(STOCK), None)["classes"]
    drift = compare_fingerprints(stock, custom)
    assert "ClownsharKSampler_Beta" in drift["classes_appeared"] and drift["classes_disappeared"] == []
    assert drift["models_removed"] == {} and drift["system_changed"] == {} and "note" not in drift


def test_served_class_removed(reference_endpoint):
    profile = Profile.builtin("custom")
    before = served(reference_endpoint(profile))
    after = served(reference_endpoint(profile.replace(remove_classes=("ClownsharKSampler_Beta",))))
    drift = compare_fingerprints(before, after)
    assert drift["classes_disappeared"] == ["ClownsharKSampler_Beta"]
    assert drift["classes_appeared"] == [] and drift["classes_changed"] == []


def test_served_model_removed_is_no_class_change(reference_endpoint):
    profile = Profile.builtin("stock")
    models = {folder: names for folder, names in profile.models.items() if folder != "vae"}
    models["checkpoints"] = (*profile.models["checkpoints"], "juggernaut_xl.safetensors")
    before = served(reference_endpoint(profile))
    after = served(reference_endpoint(profile.replace(models=models)))
    drift = compare_fingerprints(before, after)
    assert drift["models_removed"] == {"vae": ["ae.safetensors"]}
    assert drift["models_added"] == {"checkpoints": ["juggernaut_xl.safetensors"]}
    assert drift["classes_changed"] == [] and drift["classes_appeared"] == drift["classes_disappeared"] == []


def test_served_option_list_changed(reference_endpoint, tmp_path):
    info = json.loads(STOCK.read_text(encoding="utf-8"))
    changed = copy.deepcopy(info)
    samplers = changed["KSampler"]["input"]["required"]["sampler_name"][0]
    samplers.remove("heun")
    samplers.append("res_2m")
    changed["KSampler"]["input"]["optional"] = {"extra_steps": ["INT", {"default": 0}]}
    changed["KSampler"]["input_order"]["optional"] = ["extra_steps"]
    changed["EmptyLatentImage"]["input"]["required"]["width"][0] = "FLOAT"
    path = tmp_path / "stock-changed.json"
    path.write_text(json.dumps(changed), encoding="utf-8")
    profile = Profile.builtin("stock")
    before = served(reference_endpoint(profile))
    after = served(reference_endpoint(profile.replace(catalogue_path=path)))
    drift = compare_fingerprints(before, after)
    by_class = {c["class"]: c for c in drift["classes_changed"]}
    assert set(by_class) == {"KSampler", "EmptyLatentImage"}
    assert by_class["KSampler"]["inputs_changed"] == ["sampler_name"]
    assert by_class["KSampler"]["inputs_added"] == ["extra_steps"]
    assert by_class["KSampler"]["details"]["sampler_name"] == "options added: res_2m; options removed: heun"
    assert by_class["EmptyLatentImage"]["details"]["width"] == "required:INT → required:FLOAT"
    assert drift["models_added"] == drift["models_removed"] == {}


def test_served_system_change(reference_endpoint):
    profile = Profile.builtin("stock")
    before = served(reference_endpoint(profile))
    after = served(reference_endpoint(profile.replace(system={**profile.system, "comfyui_version": "0.3.65"})))
    assert compare_fingerprints(before, after)["system_changed"] == {"comfyui_version": ["0.3.64", "0.3.65"]}


def _write_many(path: str, doc: dict, times: int) -> int:
    for _ in range(times):
        write_fingerprint(path, doc)
    return times


def test_processes_writing_one_fingerprint_never_take_each_others_file(tmp_path, custom_fp):
    # Under xdist every worker writes every endpoint's fingerprint into the one run directory.
    import multiprocessing

    path = str(tmp_path / "fingerprints" / "custom.json")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.starmap(_write_many, [(path, custom_fp, 40)] * 2) == [40, 40]
    assert load_fingerprint(path) == custom_fp
    assert sorted(p.name for p in (tmp_path / "fingerprints").iterdir()) == ["custom.json"]
