"""The offline preflight: every missing class named, and the same outcome ComfyUI's answer gets."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, load_json
from harness.comfy.catalogue import load_catalogue
from harness.run.classify import classify_prompt_response
from harness.comfy.modelfiles import INPUT_FOLDER
from harness.run.outcomes import Outcome
from harness.run.preflight import missing_classes_in, preflight
from harness.comfy.validator import validate_prompt

STOCK = load_catalogue(ROOT / "fixtures/object_info/stock.json")
CUSTOM = load_catalogue(ROOT / "fixtures/object_info/res4lyf-controlaltai.json")
DENRISI = load_json("workflows/denrisi_zimage_res4lyf.json")
SDXL = load_json("workflows/sdxl_baseline.json")
# As the recording servers were: no model files, only example.png in input/.
RECORDING_FILES = {INPUT_FOLDER: ["example.png"]}


def test_denrisi_on_stock_names_every_missing_class_and_its_pack():
    assert missing_classes_in(DENRISI, STOCK) == [
        ("7", "FluxResolutionNode"), ("10", "Sigmas Rescale"), ("11", "ClownsharKSampler_Beta")]
    predicted = preflight(DENRISI, STOCK)
    assert predicted.outcome is Outcome.MISSING_NODE and predicted.partial is False
    ev = predicted.evidence
    assert ev.missing_classes == ("FluxResolutionNode", "Sigmas Rescale", "ClownsharKSampler_Beta")
    assert {c: p[0]["url"].rsplit("/", 1)[1] for c, p in ev.packages.items()} == {
        "FluxResolutionNode": "ControlAltAI-Nodes", "Sigmas Rescale": "RES4LYF", "ClownsharKSampler_Beta": "RES4LYF"}
    assert ev.message.startswith("3 node classes are not installed: FluxResolutionNode (node 7), provided by ControlAltAI Nodes")
    assert ev.hint == ("Install ControlAltAI Nodes (comfy node install controlaltai-nodes); "
                       "Install RES4LYF (git clone https://github.com/ClownsharkBatwing/RES4LYF ComfyUI/custom_nodes/RES4LYF)")
    assert ev.http_status is None  # predicted, nothing was sent


def test_the_first_missing_class_is_the_one_comfyui_names():
    error = validate_prompt(DENRISI, STOCK).error
    assert error["message"] == f"Cannot execute because node {missing_classes_in(DENRISI, STOCK)[0][1]} does not exist."


def test_denrisi_on_custom_without_models_is_partial_missing_model():
    """The reference README: ComfyUI answers 200 with node_errors; only FluxResolutionNode runs."""
    predicted = preflight(DENRISI, CUSTOM, {})
    assert predicted.outcome is Outcome.MISSING_MODEL and predicted.partial is True
    assert sorted(m["file"] for m in predicted.evidence.missing_models) == [
        "ae.safetensors", "qwen_3_4b.safetensors", "z_image_turbo_bf16.safetensors"]


def test_a_node_without_class_type_is_listed():
    workflow = {"1": {"inputs": {}}, "2": {"class_type": "SaveImage", "inputs": {}}}
    assert missing_classes_in(workflow, STOCK) == [("1", None)]
    assert preflight(workflow, STOCK).outcome is Outcome.MISSING_NODE


def test_a_workflow_that_runs_whole_predicts_nothing():
    assert preflight(SDXL, STOCK, {"checkpoints": ["sd_xl_base_1.0.safetensors"]}) is None


def test_a_prompt_comfyui_cannot_read_predicts_its_500():
    predicted = preflight(["not", "a", "prompt"], STOCK)
    assert predicted.outcome is Outcome.SERVER_ERROR and predicted.evidence.http_status == 500


CAPTURES = sorted(
    path for path in (ROOT / "fixtures/captures").glob("*/prompt_*.json")
    if isinstance(body := json.loads(path.read_text())["request"].get("json"), dict) and "prompt" in body
)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_prediction_agrees_with_every_recorded_answer(path):
    recorded = json.loads(path.read_text())
    catalogue = CUSTOM if path.parent.name == "custom" else STOCK
    predicted = preflight(recorded["request"]["json"]["prompt"], catalogue, RECORDING_FILES)
    observed = classify_prompt_response(recorded["status"], recorded["body"])
    assert (predicted.outcome if predicted else None) is (observed.outcome if observed else None)
    if observed is not None:
        # ComfyUI walks a node's inputs as a set: the order of reasons may differ, not the reasons.
        assert _sorted(predicted.evidence.node_errors) == _sorted(observed.evidence.node_errors)
        assert predicted.evidence.missing_models == observed.evidence.missing_models


def _sorted(items) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True) for item in items)
