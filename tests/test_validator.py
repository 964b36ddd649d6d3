"""The offline validator beyond the recorded captures: partial acceptance, files, coercions, wording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.comfy.catalogue import load_catalogue
from harness.comfy.validator import Flavour, validate_prompt

ROOT = Path(__file__).resolve().parents[1]
STOCK = load_catalogue(ROOT / "fixtures/object_info/stock.json")
CUSTOM = load_catalogue(ROOT / "fixtures/object_info/res4lyf-controlaltai.json")
DENRISI = json.loads((ROOT / "workflows/denrisi_zimage_res4lyf.json").read_text())
SDXL = json.loads((ROOT / "workflows/sdxl_baseline.json").read_text())
DENRISI_FILES = {
    "diffusion_models": ["z_image_turbo_bf16.safetensors"],
    "text_encoders": ["qwen_3_4b.safetensors"],
    "vae": ["ae.safetensors"],
}


def smoke(**image_inputs):
    inputs = {"width": 64, "height": 64, "batch_size": 1, "color": 0, **image_inputs}
    return {
        "1": {"class_type": "EmptyImage", "inputs": inputs},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t"}},
    }


def test_denrisi_without_models_is_partially_accepted_on_custom():
    v = validate_prompt(DENRISI, CUSTOM, {})
    assert v.accepted and v.partial
    assert v.outputs == ["7"]  # FluxResolutionNode is an output node and needs no model
    assert set(v.node_errors) == {"1", "2", "3"}
    assert {e["errors"][0]["extra_info"]["input_name"] for e in v.node_errors.values()} == {"unet_name", "clip_name", "vae_name"}
    assert all(e["dependent_outputs"] == ["13"] for e in v.node_errors.values())


def test_denrisi_with_its_models_is_accepted_on_custom():
    v = validate_prompt(DENRISI, CUSTOM, DENRISI_FILES)
    assert v.accepted and not v.partial
    assert sorted(v.outputs) == ["13", "7"]


def test_denrisi_on_stock_names_the_first_missing_class_in_prompt_order():
    v = validate_prompt(DENRISI, STOCK, DENRISI_FILES)
    assert v.error == {
        "type": "invalid_prompt",
        "message": "Cannot execute because node FluxResolutionNode does not exist.",
        "details": "Node ID '#7'",
        "extra_info": {},
    }


def test_2026_flavour_words_a_missing_class_as_missing_node_type_with_the_title():
    v = validate_prompt(DENRISI, STOCK, DENRISI_FILES, flavour=Flavour.V2026)
    assert v.error["type"] == "missing_node_type"
    assert v.error["message"] == "Node 'Flux Resolution Calc' not found. The custom node may not be installed."
    assert v.error["extra_info"] == {"node_id": "7", "class_type": "FluxResolutionNode", "node_title": "Flux Resolution Calc"}


def test_model_files_fill_loader_options_and_fixed_entries_stay():
    files = {"checkpoints": ["sd_xl_base_1.0.safetensors"], "vae": ["ae.safetensors"]}
    assert validate_prompt(SDXL, STOCK, files).accepted
    wf = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "missing.safetensors"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }
    reason = validate_prompt(wf, STOCK, files).node_errors["1"]["errors"][0]
    assert reason["details"] == "vae_name: 'missing.safetensors' not in ['ae.safetensors', 'pixel_space']"
    assert reason["extra_info"]["input_config"][0] == ["ae.safetensors", "pixel_space"]


def test_literals_are_converted_in_the_queued_prompt_and_the_input_is_untouched():
    prompt = smoke(width="64", height=64.9)
    v = validate_prompt(prompt, STOCK)
    assert v.accepted
    assert v.prompt["1"]["inputs"]["width"] == 64 and v.prompt["1"]["inputs"]["height"] == 64
    assert prompt["1"]["inputs"]["width"] == "64"


def test_dependent_outputs_quirk_names_a_later_failing_output_on_an_earlier_bad_node():
    prompt = smoke(width=0)
    prompt["4"] = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 0, "batch_size": 1, "color": 0}}
    prompt["5"] = {"class_type": "PreviewImage", "inputs": {"images": ["4", 0]}}
    v = validate_prompt(prompt, STOCK)
    assert v.error["type"] == "prompt_outputs_failed_validation"
    # ComfyUI appends every later failing output to every node with reasons validated so far.
    assert v.node_errors["1"]["dependent_outputs"] == ["3", "5"]
    assert v.node_errors["4"]["dependent_outputs"] == ["5"]


def test_load_image_checks_the_input_folder_not_the_catalogue_list():
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    assert validate_prompt(prompt, STOCK, {"input": ["cat.png"]}).accepted
    bad = validate_prompt(prompt, STOCK, {"input": ["dog.png"]})
    assert bad.node_errors["1"]["errors"][0]["details"] == "image - Invalid image file: cat.png"


def test_partial_execution_targets_limit_the_outputs():
    prompt = smoke()
    prompt["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    assert validate_prompt(prompt, STOCK, partial_execution_targets=["4"]).outputs == ["4"]


@pytest.mark.parametrize("prompt", [[1, 2], "hello", {"1": 5}])
def test_prompts_comfyui_answers_500_to_raise(prompt):
    with pytest.raises(TypeError):
        validate_prompt(prompt, STOCK)


def test_v3_combo_values_are_not_checked_by_0_3_64():
    # ComfyUI 0.3.64 checks only V1 list combos; UpscaleModelLoader's is a V3 "COMBO".
    prompt = {
        "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "nope.pth"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "x"}},
    }
    assert validate_prompt(prompt, STOCK, {"input": ["a.png"]}).accepted


def test_a_load_image_without_its_input_fails_in_its_own_check_like_the_real_server():
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    [reason] = validate_prompt(prompt, STOCK).node_errors["1"]["errors"]  # filed upstream (quirk)
    assert reason["type"] == "exception_during_inner_validation"
    assert reason["extra_info"]["exception_type"] == "TypeError"
    assert "missing 1 required positional argument: 'image'" in reason["details"]
