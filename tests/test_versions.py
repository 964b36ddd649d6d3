"""Per-version behaviour beyond the captures: the preflight follows the endpoint's modelled ComfyUI release,
the matrix says which one, and the reference endpoint answers as either release."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import pytest

from conftest import ROOT, cells, matrix
from harness.comfy.catalogue import load_catalogue
from harness.comfy.validator import Flavour, validate_prompt
from harness.reference.profile import load_profile
from harness.run.outcomes import Outcome
from harness.run.preflight import preflight
from harness.errors import ConfigError

STOCK_0_33_0 = load_catalogue(ROOT / "fixtures/object_info/0.33.0/stock.json")
# ImageStitch.direction is a V3 COMBO: 0.3.64 leaves its value to execution, 0.33.0 refuses it.
STITCH_DIAGONAL = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageStitch", "inputs": {"image1": ["1", 0], "direction": "diagonal", "match_image_size": True,
                                                  "spacing_width": 0, "spacing_color": "white"}},
    "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
}


def chain(length: int) -> dict:
    """EmptyImage → ImageInvert × (length - 2) → PreviewImage: ``length`` nodes, each linked to the one before."""
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    for i in range(2, length):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt[str(length)] = {"class_type": "PreviewImage", "inputs": {"images": [str(length - 1), 0]}}
    return prompt


def test_the_preflight_applies_the_modelled_release():
    assert preflight(STITCH_DIAGONAL, STOCK_0_33_0, version="0.3.64") is None
    predicted = preflight(STITCH_DIAGONAL, STOCK_0_33_0, version="0.33.0")
    assert predicted.outcome is Outcome.INVALID_INPUT
    assert "direction: 'diagonal' not in ['right', 'down', 'left', 'up']" in predicted.evidence.message


def test_a_replaced_class_is_no_missing_node_on_0_33_0():
    # T2IAdapterLoader is gone from 0.33.0; its registered replacement ControlNetLoader takes its input.
    prompt = {
        "1": {"class_type": "T2IAdapterLoader", "inputs": {"t2i_adapter_name": "t2i.safetensors"}, "_meta": {"title": "T2I"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    assert "T2IAdapterLoader" not in STOCK_0_33_0
    predicted = preflight(prompt, STOCK_0_33_0, version="0.33.0")
    assert predicted.outcome is Outcome.MISSING_MODEL
    assert predicted.evidence.missing_models[0]["node_type"] == "ControlNetLoader"
    queued = validate_prompt(prompt, STOCK_0_33_0, {"controlnet": ["t2i.safetensors"]}, flavour=Flavour.V0_33_0).prompt
    assert queued["1"] == {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "t2i.safetensors"},
                           "_meta": {"title": "T2I"}}
    assert prompt["1"]["class_type"] == "T2IAdapterLoader"  # the caller's prompt is left alone
    assert preflight(prompt, STOCK_0_33_0, version="0.3.64").outcome is Outcome.MISSING_NODE


def test_a_null_class_type_is_node_none_on_both_releases():
    prompt = {"9": {"class_type": None, "inputs": {}}, **chain(3)}
    assert validate_prompt(prompt, STOCK_0_33_0).error["message"] == "Cannot execute because node None does not exist."
    assert validate_prompt(prompt, STOCK_0_33_0, flavour=Flavour.V0_33_0).error == {
        "type": "missing_node_type", "message": "Node 'None' not found. The custom node may not be installed.",
        "details": "Node ID '#9'", "extra_info": {"node_id": "9", "class_type": None, "node_title": None}}


def test_a_custom_combo_takes_any_choice_on_0_33_0(reference_endpoint):
    """CustomCombo's options live in the frontend (its catalogue lists none); its validate_inputs takes
    ``**kwargs`` and returns True, so ComfyUI skips the combo check: the blueprints' choices are valid."""
    from conftest import wait_history

    prompt = {
        "1": {"class_type": "CustomCombo", "inputs": {"choice": "Video Editing (Content Propagation)", "index": 1,
                                                      "option1": "Default", "option2": "Video Editing (Content Propagation)"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
    }
    assert STOCK_0_33_0["CustomCombo"].inputs["choice"].options == []
    assert validate_prompt(prompt, STOCK_0_33_0, flavour=Flavour.V0_33_0).error is None
    assert preflight(prompt, STOCK_0_33_0, version="0.33.0") is None
    server = reference_endpoint(load_profile("stock", "0.33.0"))
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/prompt", json={"prompt": prompt})
        assert answer.status_code == 200, answer.text
        entry = wait_history(client, answer.json()["prompt_id"])
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"] == {"2": {"text": ["Video Editing (Content Propagation)"]}, "3": {"text": ["1"]}}


def test_a_profile_names_the_versions_it_is_recorded_on():
    assert load_profile("stock").comfyui_version == "0.3.64"
    custom = load_profile("custom", "0.33.0")
    assert (custom.comfyui_version, custom.flavour, len(custom.catalogue())) == ("0.33.0", Flavour.V0_33_0, 1208)
    assert len(load_profile("stock", "0.33.0").catalogue()) == 887
    with pytest.raises(ConfigError, match=r"no ComfyUI 0.40.0 recording \(known: 0.3.64, 0.33.0\)"):
        load_profile("stock", "0.40.0")


def test_a_0_33_0_endpoint_is_predicted_with_0_33_0_rules_without_being_told(project, reference_endpoint):
    server = reference_endpoint(load_profile("stock", "0.33.0").replace(models={}))
    workflows = project.path / "mine"
    workflows.mkdir()
    (workflows / "stitch_diagonal.json").write_text(json.dumps(STITCH_DIAGONAL))
    project.runpytest(f"--endpoint=new={server.url}", f"--workflows={workflows}")
    data = matrix(project)
    [endpoint] = data["endpoints"]
    assert endpoint["provenance"]["comfyui_version"] == "0.33.0"
    assert endpoint["modelled"] == {"comfyui_version": "0.33.0", "frontend": "1.49.6", "reason": "ComfyUI 0.33.0 (/system_stats)"}
    [cell] = cells(data).values()
    assert cell["outcome"] == cell["predicted"] == "invalid_input"
    assert cell["evidence"]["predicted_with"] == {"comfyui_version": "0.33.0", "reason": "ComfyUI 0.33.0 (/system_stats)"}
    assert "modelled as ComfyUI 0.33.0" in (project.path / "reports/latest/matrix.md").read_text()


def test_serve_answers_as_the_chosen_release_without_models():
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve", "--profile", "custom", "--comfyui-version", "0.33.0",
         "--models", "none", "--port", "0"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()
        assert "reference endpoint 'custom' (ComfyUI 0.33.0, 1208 node classes) listening on" in line, line
        url = line.split(" listening on ")[1].split()[0]
        system = httpx.get(url + "/system_stats").json()["system"]
        assert (system["comfyui_version"], system["argv"][5]) == ("0.33.0", "8191")
        assert httpx.get(url + "/models/checkpoints").json() == []
        answer = httpx.post(url + "/prompt", json={"prompt": STITCH_DIAGONAL}).json()
        assert answer["node_errors"]["2"]["errors"][0]["type"] == "value_not_in_list"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)


@pytest.mark.parametrize("flavour", [Flavour.V0_3_64, Flavour.V0_33_0])
def test_a_chain_fails_as_deep_as_the_real_server_and_the_same_way(flavour, reference_endpoint):
    catalogue = load_catalogue(ROOT / "fixtures/object_info/0.33.0/stock.json")
    # Recorded on 0.3.64: 900 nodes accepted, 990 rejected; the limit itself is counted (validator.py).
    assert validate_prompt(chain(900), catalogue, flavour=flavour).accepted
    assert validate_prompt(chain(984), catalogue, flavour=flavour).accepted
    rejected = validate_prompt(chain(990), catalogue, flavour=flavour)
    assert rejected.error["type"] == "prompt_outputs_failed_validation"
    [(node_id, entry)] = rejected.node_errors.items()
    [reason] = entry["errors"]
    assert (node_id, entry["dependent_outputs"], reason["type"], reason["extra_info"]["exception_type"]) == (
        "11", ["990"], "exception_during_inner_validation", "RecursionError")
    assert reason["details"] == "maximum recursion depth exceeded while calling a Python object"
    assert reason["extra_info"]["linked_node"] == ["11", 0]  # quirk: filed under the upstream node
    profile = load_profile("stock", flavour.value).replace(models={})
    answer = httpx.post(reference_endpoint(profile).url + "/prompt", json={"prompt": chain(990)}, timeout=30)
    assert (answer.status_code, answer.json()["node_errors"]) == (400, rejected.node_errors)


def test_a_cycle_recurses_into_the_limit_on_0_3_64_and_is_named_on_0_33_0():
    cycle = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    [old] = validate_prompt(cycle, STOCK_0_33_0).node_errors.values()
    assert old["errors"][0]["extra_info"]["exception_type"] == "RecursionError"
    new = validate_prompt(cycle, STOCK_0_33_0, flavour=Flavour.V0_33_0).node_errors
    assert {n: e["errors"][0]["details"] for n, e in new.items()} == {
        n: "2 (ImageInvert) -> 1 (ImageInvert) -> 2 (ImageInvert)" for n in ("2", "1")}


def test_the_default_run_can_answer_as_0_33_0_and_says_so(project):
    result = project.runpytest("-p", "no:cacheprovider", "--reference-version=0.33.0", "-k", "denrisi_zimage and not modal")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*embedded reference (stock, custom) answering as ComfyUI 0.33.0*"])
    data = matrix(project)
    assert {e["name"]: e["modelled"]["comfyui_version"] for e in data["endpoints"]} == {
        name: "0.33.0" for name in ("stock", "runpod-stock", "vast-stock", "modal-stock", "custom", "runpod-custom",
                                    "vast-custom", "modal-custom")}
    denrisi = cells(data)[("denrisi_zimage", "stock")]
    assert denrisi["outcome"] == denrisi["predicted"] == "missing_node"
    assert denrisi["evidence"]["predicted_with"]["comfyui_version"] == "0.33.0"


def _execution_error(entry: dict) -> dict | str:
    """A history entry's execution_error (what a report shows of it), or its status when it has none."""
    for kind, data in entry["status"]["messages"]:
        if kind == "execution_error":
            return {k: data[k] for k in ("node_id", "node_type", "exception_type", "exception_message", "traceback")}
    return entry["status"]["status_str"]


def _output_counts(entry: dict) -> dict:
    """How many files each output node gave, by kind (images...)."""
    return {node: {kind: len(items) for kind, items in outputs.items() if isinstance(items, list)}
            for node, outputs in entry.get("outputs", {}).items()}


_NOT_REPLAYED = {
    "v3_remote_combo_loadimageoutput_valid": "names an output the recording server kept from its earlier runs",
    "v3_undeclared_link_to_missing_node": "killed the recording server's prompt worker: it has no history",
}


def _recorded_runs() -> list[tuple[str, str, str]]:
    """(profile, POST capture, its /history capture): the pairs named alike, ``v3_x`` and ``history_v3_x``,
    with the j-series pair named otherwise (ImageBatch pads a 3-channel image on 0.33.0)."""
    pairs = [("stock", "prompt_j_exec_error_accepted", "history_j_exec_error")]
    for profile in ("stock", "custom"):
        folder = ROOT / "fixtures/captures/0.33.0" / profile
        for history in sorted(folder.glob("history_v3_*.json")):
            post = history.stem.removeprefix("history_")
            if post not in _NOT_REPLAYED and (folder / f"{post}.json").is_file():
                pairs.append((profile, post, history.stem))
    return pairs


# What 0.33.0 accepts and then runs: every recorded POST with its /history (Autogrow beyond its maximum,
# DynamicCombo keys, MatchType fed or feeding any type, undeclared inputs, client prompt ids...).
@pytest.mark.parametrize("profile, post, history", _recorded_runs(), ids=lambda v: v)
def test_the_reference_runs_what_0_33_0_accepts_as_0_33_0_does(profile, post, history, reference_endpoint):
    from conftest import load_json, wait_history

    server = reference_endpoint(load_profile(profile, "0.33.0").replace(models={}))
    recorded = load_json(f"fixtures/captures/0.33.0/{profile}/{history}.json")["body"]
    with httpx.Client(base_url=server.url) as client:
        answer = client.post("/prompt", json=load_json(f"fixtures/captures/0.33.0/{profile}/{post}.json")["request"]["json"])
        entry = wait_history(client, answer.json()["prompt_id"])
    want = next(iter(recorded.values()))
    assert _execution_error(entry) == _execution_error(want)
    assert _output_counts(entry) == _output_counts(want)
