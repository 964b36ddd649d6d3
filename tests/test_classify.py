"""The classifier against every recorded ComfyUI 0.3.64 answer, and against the shapes of
/work/shared/reference that no capture holds (each says where it comes from).

The expected outcome of every capture is kept here as data; a capture added to fixtures/captures
without an expectation fails ``test_every_capture_has_an_expectation``.
"""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest

from conftest import ROOT, load_json
from harness.comfy.catalogue import load_catalogue
from harness.run.classify import (
    REASON_OUTCOMES,
    Classification,
    classify_event,
    classify_history,
    classify_prompt_response,
    missing_node,
)
from harness.run.outcomes import NODE_ERROR_PRECEDENCE, Disposition, Outcome, OutcomeInfo
from harness.comfy.validator import Flavour, validate_prompt

CAPTURES = ROOT / "fixtures" / "captures"
RES4LYF = "https://github.com/ClownsharkBatwing/RES4LYF"

M_NODE, M_MODEL, INPUT, GRAPH = Outcome.MISSING_NODE, Outcome.MISSING_MODEL, Outcome.INVALID_INPUT, Outcome.INVALID_GRAPH
EXEC, SERVER = Outcome.EXECUTION_ERROR, Outcome.SERVER_ERROR

# POST /prompt captures: the outcome of the recorded answer (None: every output queued).
PROMPT_EXPECTED: dict[str, Outcome | None] = {
    "custom/prompt_clownshark_bad_values_custom.json": M_MODEL,
    "custom/prompt_clownshark_missing_models_custom.json": M_MODEL,
    "custom/prompt_ksampler_beta57_custom.json": M_MODEL,
    "stock/prompt_a_ok.json": None,
    "stock/prompt_b2_clownshark_full_workflow_on_stock.json": M_NODE,
    "stock/prompt_b_unknown_node.json": M_NODE,
    "stock/prompt_bad_linked_input_len3.json": GRAPH,
    "stock/prompt_c_sdxl_missing_checkpoint.json": M_MODEL,
    "stock/prompt_clownshark_missing_node_stock.json": M_NODE,
    "stock/prompt_d_required_input_missing.json": INPUT,
    "stock/prompt_e_link_to_nonexistent_node.json": GRAPH,
    "stock/prompt_f2_value_below_min.json": INPUT,
    "stock/prompt_f_value_above_max.json": INPUT,
    "stock/prompt_g2_numeric_string_for_int.json": None,
    "stock/prompt_g3_float_for_int.json": None,
    "stock/prompt_g_wrong_type_string_for_int.json": INPUT,
    "stock/prompt_h2_empty_prompt.json": GRAPH,
    "stock/prompt_h_no_output_node.json": GRAPH,
    "stock/prompt_i1_body_not_json.json": SERVER,
    "stock/prompt_i1b_empty_body.json": SERVER,
    "stock/prompt_i1c_json_array_body.json": GRAPH,
    "stock/prompt_i2_body_without_prompt.json": GRAPH,
    "stock/prompt_i3_prompt_is_list.json": SERVER,
    "stock/prompt_i4_prompt_is_string.json": SERVER,
    "stock/prompt_j_exec_error_accepted.json": None,
    "stock/prompt_k1_link_string_node_id.json": None,
    "stock/prompt_k2_link_int_node_id.json": GRAPH,
    "stock/prompt_k3_non_numeric_string_node_ids.json": None,
    "stock/prompt_k4_link_slot_as_string.json": GRAPH,
    "stock/prompt_ksampler_beta57_stock.json": M_MODEL,
    "stock/prompt_link_slot_out_of_range.json": GRAPH,
    "stock/prompt_loadimage_missing_file.json": INPUT,
    "stock/prompt_missing_class_type.json": M_NODE,
    "stock/prompt_return_type_mismatch.json": GRAPH,
    "stock/prompt_value_not_in_list_sampler.json": M_MODEL,
}
NOT_A_SUBMISSION = {"stock/prompt_get_idle.json": "GET /prompt: queue information, not an answer to a submission"}

# /history captures: how many of the file's entries get each outcome (None: success).
HISTORY_EXPECTED: dict[str, Counter] = {
    "stock/history.json": Counter({None: 56, EXEC: 2}),
    "stock/history_a_by_id.json": Counter({None: 1}),
    "stock/history_j2_corrupt_loadimage.json": Counter({EXEC: 1}),
    "stock/history_j_exec_error.json": Counter({EXEC: 1}),
    "stock/history_k1_link_string_node_id.json": Counter({None: 1}),
    "stock/history_k3_non_numeric_string_node_ids.json": Counter({None: 1}),
    "stock/history_max_items_2.json": Counter({EXEC: 2}),
    "stock/history_unknown_id.json": Counter(),  # {}: unknown or unfinished id, nothing to classify
}

# Websocket runs: the outcome carried by the run's events (None: no failure event).
WS_EXPECTED: dict[str, Outcome | None] = {
    "stock/ws_run_a.json": None,
    "stock/ws_run_a_cached_rerun.json": None,
    "stock/ws_run_j2_corrupt_loadimage.json": EXEC,
    "stock/ws_run_j_exec_error.json": EXEC,
}

# The 200 with node_errors that ComfyUI gave the Denrisi workflow on the custom server without models,
# verbatim from /work/shared/reference/providers/runpod/_comfy_direct_d_denrisi_custom_prompt.json
# (not in fixtures/captures: its request is a placeholder, so the replay tests could not use it).
DENRISI_PARTIAL_BODY = {"prompt_id": "3e5f3690-0ba5-4498-bd6d-048e5ff81c82", "number": 105, "node_errors": {
    "2": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "clip_name: 'qwen_3_4b.safetensors' not in []",
                      "extra_info": {"input_name": "clip_name", "input_config": [[], {}], "received_value": "qwen_3_4b.safetensors"}}],
          "dependent_outputs": ["13"], "class_type": "CLIPLoader"},
    "1": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "unet_name: 'z_image_turbo_bf16.safetensors' not in []",
                      "extra_info": {"input_name": "unet_name", "input_config": [[], {}], "received_value": "z_image_turbo_bf16.safetensors"}}],
          "dependent_outputs": ["13"], "class_type": "UNETLoader"},
    "3": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "vae_name: 'ae.safetensors' not in ['pixel_space']",
                      "extra_info": {"input_name": "vae_name", "input_config": [["pixel_space"], {}], "received_value": "ae.safetensors"}}],
          "dependent_outputs": ["13"], "class_type": "VAELoader"}}}

# Every per-node reason type of endpoints.md §1.3 (0.3.64 and 2026); loop errors reuse custom_validation_failed.
REFERENCE_REASON_TYPES = {
    "required_input_missing", "bad_linked_input", "return_type_mismatch", "exception_during_inner_validation",
    "invalid_input_type", "value_smaller_than_min", "value_bigger_than_max", "value_not_in_list",
    "custom_validation_failed", "exception_during_validation", "dependency_cycle", "invalid_dynamic_input",
}


def capture(name: str) -> dict:
    return json.loads((CAPTURES / name).read_text(encoding="utf-8"))


def prompt_verdict(name: str) -> Classification | None:
    recorded = capture(name)
    return classify_prompt_response(recorded["status"], recorded["body"])


def history_verdicts(name: str) -> list[Classification | None]:
    return [classify_history(entry) for entry in capture(name)["body"].values()]


def ws_verdict(name: str) -> Classification | None:
    frames = [m["text"] for m in capture(name)["messages"] if "text" in m]
    return next((v for v in map(classify_event, frames) if v is not None), None)


def outcome_of(verdict: Classification | None) -> Outcome | None:
    return verdict.outcome if verdict is not None else None


def exec_error_payload() -> dict:
    """The execution_error payload of the recorded ImageBatch failure, as ComfyUI stored it."""
    entry = capture("stock/history_j_exec_error.json")["body"]["0a9bda32-4dff-44fd-83af-33bb984276e0"]
    return copy.deepcopy(next(data for kind, data in entry["status"]["messages"] if kind == "execution_error"))


def test_every_capture_has_an_expectation():
    on_disk = {str(p.relative_to(CAPTURES)) for pattern in ("*/prompt_*.json", "*/history*.json", "*/ws_run_*.json")
               for p in CAPTURES.glob(pattern)}
    expected = set(PROMPT_EXPECTED) | set(NOT_A_SUBMISSION) | set(HISTORY_EXPECTED) | set(WS_EXPECTED)
    assert on_disk == expected


@pytest.mark.parametrize("name", sorted(PROMPT_EXPECTED))
def test_prompt_capture(name):
    verdict = prompt_verdict(name)
    assert outcome_of(verdict) is PROMPT_EXPECTED[name]
    if verdict is not None:
        assert verdict.evidence.http_status == capture(name)["status"]
        assert verdict.evidence.message and "\n" not in verdict.evidence.message
        json.dumps(verdict.evidence.to_dict())


@pytest.mark.parametrize("name", sorted(HISTORY_EXPECTED))
def test_history_capture(name):
    assert Counter(map(outcome_of, history_verdicts(name))) == HISTORY_EXPECTED[name]


@pytest.mark.parametrize("name", sorted(WS_EXPECTED))
def test_ws_capture(name):
    assert outcome_of(ws_verdict(name)) is WS_EXPECTED[name]


def test_missing_class_names_the_class_node_and_pack():
    ev = prompt_verdict("stock/prompt_clownshark_missing_node_stock.json").evidence
    assert ev.missing_classes == ("ClownsharKSampler_Beta",)
    assert (ev.node_id, ev.node_type) == ("3", "ClownsharKSampler_Beta")
    assert ev.message == "ClownsharKSampler_Beta (node 3) is not installed; provided by RES4LYF"
    assert ev.packages["ClownsharKSampler_Beta"][0]["url"] == RES4LYF
    assert "git clone https://github.com/ClownsharkBatwing/RES4LYF" in ev.hint


def test_missing_class_type_is_missing_node_and_says_why():
    verdict = prompt_verdict("stock/prompt_missing_class_type.json")
    assert verdict.evidence.node_id == "2" and verdict.evidence.missing_classes == ()
    assert "has no class_type" in verdict.evidence.message and "custom node" in verdict.evidence.message


def test_hundreds_of_untyped_nodes_are_counted_not_all_named():
    """A JSON file that is not a workflow (a node-link graph of another tool) has hundreds of typeless nodes."""
    message = missing_node([(f"n{i}", None) for i in range(300)]).evidence.message
    assert message == ("nodes n0, n1, n2, n3, n4, n5, n6, n7, n8, n9 and 290 more have no class_type "
                       "(usually a custom node missing where the workflow was exported)")


def test_2026_missing_node_type_is_missing_node():
    """The 2026 wording, produced by the validator's reproduction of ComfyUI after PR #12194."""
    denrisi = load_json("workflows/denrisi_zimage_res4lyf.json")
    body = validate_prompt(denrisi, load_catalogue(ROOT / "fixtures/object_info/stock.json"), flavour=Flavour.V2026).response_body("x", 0)
    assert body["error"]["type"] == "missing_node_type"
    verdict = classify_prompt_response(400, body)
    assert verdict.outcome is Outcome.MISSING_NODE
    # ComfyUI names only the first absent class in prompt order; the preflight names them all.
    assert verdict.evidence.missing_classes == ("FluxResolutionNode",)
    assert verdict.evidence.packages["FluxResolutionNode"][0]["url"] == "https://github.com/gseth/ControlAltAI-Nodes"


def test_missing_model_names_every_file_and_folder_and_lists_all_problems():
    verdict = prompt_verdict("custom/prompt_clownshark_bad_values_custom.json")
    assert verdict.evidence.missing_models == (
        {"node_id": "4", "node_type": "CheckpointLoaderSimple", "input": "ckpt_name",
         "file": "sd_xl_base_1.0.safetensors", "folder": "checkpoints"},
    )
    kinds = [(e["node_id"], e["type"], e["input"], e["outcome"]) for e in verdict.evidence.node_errors]
    assert sorted(kinds) == [
        ("3", "value_bigger_than_max", "eta", "invalid_input"),
        ("3", "value_not_in_list", "sampler_name", "invalid_input"),
        ("4", "value_not_in_list", "ckpt_name", "missing_model"),
    ]
    assert verdict.evidence.message.endswith("(+2 other problems)")


def test_a_pack_only_option_is_invalid_input_with_the_pack_as_remedy():
    body = capture("stock/prompt_ksampler_beta57_stock.json")["body"]
    del body["node_errors"]["4"]  # the missing checkpoint, which would take precedence
    verdict = classify_prompt_response(400, body)
    assert verdict.outcome is Outcome.INVALID_INPUT
    [error] = verdict.evidence.node_errors
    assert (error["node_type"], error["input"], error["received_value"]) == ("KSampler", "scheduler", "beta57")
    assert error["pack"]["url"] == RES4LYF
    assert verdict.evidence.message == "KSampler (node 3) scheduler: 'beta57' is not an option here; RES4LYF adds it"
    assert verdict.evidence.hint.startswith("Install RES4LYF (git clone")


def test_the_pack_remedy_survives_when_a_missing_model_takes_precedence():
    verdict = prompt_verdict("stock/prompt_ksampler_beta57_stock.json")
    assert verdict.outcome is Outcome.MISSING_MODEL
    assert [e.get("pack", {}).get("title") for e in verdict.evidence.node_errors] == [None, "RES4LYF"]
    assert "Add sd_xl_base_1.0.safetensors to models/checkpoints/" in verdict.evidence.hint
    assert "Install RES4LYF" in verdict.evidence.hint


def test_an_unknown_option_has_no_pack():
    verdict = prompt_verdict("stock/prompt_value_not_in_list_sampler.json")
    sampler = next(e for e in verdict.evidence.node_errors if e["input"] == "sampler_name")
    assert sampler["received_value"] == "not_a_sampler" and "pack" not in sampler


def test_a_missing_input_file_is_invalid_input():
    verdict = prompt_verdict("stock/prompt_loadimage_missing_file.json")
    assert verdict.evidence.node_errors[0]["details"] == "image - Invalid image file: nope_missing.png"


def test_a_200_with_node_errors_is_never_passed():
    verdict = classify_prompt_response(200, DENRISI_PARTIAL_BODY)
    assert verdict.outcome is Outcome.MISSING_MODEL and verdict.partial is True
    assert {m["file"]: m["folder"] for m in verdict.evidence.missing_models} == {
        "qwen_3_4b.safetensors": "text_encoders",
        "z_image_turbo_bf16.safetensors": "diffusion_models",
        "ae.safetensors": "vae",
    }
    assert verdict.evidence.message.startswith("accepted in part")


def test_a_2026_loop_error_is_invalid_graph():
    """A loop-structure reason as endpoints.md §1.3 gives it: type custom_validation_failed, loop_error_type set."""
    reason = {"type": "custom_validation_failed", "message": "End Loop has no Start Loop", "details": "End Loop has no Start Loop",
              "extra_info": {"input_name": "loop boundary", "loop_error_type": "loop_end_without_start", "node_ids": ["5"], "output_ids": ["9"]}}
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
            "node_errors": {"5": {"errors": [reason], "dependent_outputs": ["9"], "class_type": "EndLoop"}}}
    assert classify_prompt_response(400, body).outcome is Outcome.INVALID_GRAPH


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (403, "", Outcome.AUTH_ERROR),  # ComfyUI's origin check: 403 with an empty body
        (401, {"error": "Unauthorized"}, Outcome.AUTH_ERROR),
        (429, {"error": "queue_full"}, Outcome.RATE_LIMITED),
        (413, "Request Entity Too Large", Outcome.INVALID_INPUT),
        (502, "<html>Bad Gateway</html>", Outcome.SERVER_ERROR),
        (404, "404: Not Found", Outcome.PROTOCOL_ERROR),
        (400, "not json", Outcome.PROTOCOL_ERROR),
        (400, {"error": "a string, as /api/jobs answers"}, Outcome.PROTOCOL_ERROR),
        (200, {"exec_info": {"queue_remaining": 0}}, Outcome.PROTOCOL_ERROR),
        (200, "<html>hello</html>", Outcome.PROTOCOL_ERROR),
    ],
)
def test_statuses_and_odd_bodies(status, body, outcome):
    verdict = classify_prompt_response(status, body)
    assert verdict.outcome is outcome and verdict.evidence.http_status == status


@pytest.mark.parametrize(
    "node_errors",
    [["not", "an", "object"], {"4": {"errors": "nope"}}, {"4": {"errors": [{"no": "type"}]}}],
    ids=["list", "errors-not-list", "reason-without-type"],
)
def test_malformed_node_errors_are_protocol_errors(node_errors):
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "", "details": "", "extra_info": {}}, "node_errors": node_errors}
    assert classify_prompt_response(400, body).outcome is Outcome.PROTOCOL_ERROR


def test_an_execution_error_keeps_node_exception_and_two_frames_only():
    payload = exec_error_payload()
    assert payload["current_inputs"] and len(payload["traceback"]) > 2
    verdict = classify_event(["execution_error", payload])
    ev = verdict.evidence
    assert (verdict.outcome, ev.node_id, ev.node_type, ev.exception_type) == (EXEC, "4", "ImageBatch", "RuntimeError")
    assert ev.exception_message == (
        "Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for tensor number 1 in the list.")
    assert ev.traceback == tuple(payload["traceback"][-2:]) and "nodes.py\", line 1857, in batch" in ev.traceback[-1]
    dumped = json.dumps(ev.to_dict())
    assert "current_inputs" not in dumped and "line 496, in execute" not in dumped


def test_the_websocket_frame_and_the_history_message_agree():
    frame = next(m["text"] for m in capture("stock/ws_run_j2_corrupt_loadimage.json")["messages"]
                 if m.get("text", {}).get("type") == "execution_error")
    [from_history] = history_verdicts("stock/history_j2_corrupt_loadimage.json")
    assert classify_event(frame) == from_history
    assert from_history.evidence.exception_type == "PIL.UnidentifiedImageError"


@pytest.mark.parametrize(
    ("exception_type", "message"),
    [
        ("torch.OutOfMemoryError", "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.55 GiB"),
        ("RuntimeError", "MPS backend out of memory (MPS allocated: 8.00 GB)"),
    ],
)
def test_out_of_memory(exception_type, message):
    """No capture has an OOM: the recorded execution_error payload with an OOM exception and ComfyUI's
    OOM tip (endpoints.md §1.7: "<str(ex)>\\n<tips>", the tip saying "you ran out of memory on your GPU")."""
    payload = exec_error_payload()
    payload["exception_type"] = exception_type
    payload["exception_message"] = f"{message}\nThis error means you ran out of memory on your GPU.\n"
    verdict = classify_history({"status": {"status_str": "error", "completed": False, "messages": [["execution_error", payload]]}})
    assert verdict.outcome is Outcome.OUT_OF_MEMORY
    assert verdict.evidence.exception_message.startswith(message) and not verdict.evidence.exception_message.endswith("\n")


def test_interrupted_is_cancelled():
    """execution_interrupted as endpoints.md §1.6/§1.7 give it: status_str error, {prompt_id, node_id,
    node_type, executed, timestamp}; no capture has one."""
    interrupted = {"prompt_id": "p", "node_id": "2", "node_type": "ImageInvert", "executed": ["1"], "timestamp": 1795720526972}
    entry = {"status": {"status_str": "error", "completed": False,
                        "messages": [["execution_start", {"prompt_id": "p", "timestamp": 1}], ["execution_interrupted", interrupted]]}}
    verdict = classify_history(entry)
    assert verdict.outcome is Outcome.CANCELLED and (verdict.evidence.node_id, verdict.evidence.node_type) == ("2", "ImageInvert")
    assert classify_event({"type": "execution_interrupted", "data": interrupted}) == verdict


@pytest.mark.parametrize(
    "entry",
    [{}, {"status": None}, {"status": {"status_str": "error", "messages": []}}, {"status": {"messages": "x"}}, []],
    ids=["empty", "status-null", "error-without-message", "messages-not-list", "not-object"],
)
def test_odd_history_entries_are_protocol_errors(entry):
    assert classify_history(entry).outcome is Outcome.PROTOCOL_ERROR


def test_evidence_keys_are_the_public_contract():
    contract = {"missing_classes", "packages", "missing_models", "node_errors", "node_id", "node_type",
                "exception_type", "exception_message", "http_status"}
    for name in PROMPT_EXPECTED:
        verdict = prompt_verdict(name)
        if verdict is not None:
            assert contract <= set(verdict.evidence.to_dict())
    assert list(classify_prompt_response(403, "").evidence.to_dict()) == list(prompt_verdict(
        "stock/prompt_b_unknown_node.json").evidence.to_dict())


def test_one_failure_on_other_nodes_and_paths_groups_together():
    payload = exec_error_payload()
    other = {**payload, "node_id": "17", "prompt_id": "0b1c2d3e-0000-4000-8000-123456789abc",
             "exception_message": payload["exception_message"].replace("size 4", "size 8")}
    a, b = classify_event(["execution_error", payload]), classify_event(["execution_error", other])
    assert a.evidence.message != b.evidence.message
    canonical = ("ImageBatch (node <id>) raised RuntimeError: Sizes of tensors must match except in "
                 "dimension <n>. Expected size <n> but got size <n> for tensor number <n> in the list.")
    assert a.group_key() == b.group_key() == ("execution_error", "ImageBatch", canonical)
    [corrupt] = history_verdicts("stock/history_j2_corrupt_loadimage.json")
    assert corrupt.evidence.canonical_message() == "LoadImage (node <id>) raised PIL.UnidentifiedImageError: cannot identify image file '<path>'"


# --- completeness, both ways ------------------------------------------------------------------------


def test_every_outcome_has_its_info():
    for outcome in Outcome:
        assert isinstance(outcome.info, OutcomeInfo) and outcome.info.meaning
        assert outcome.disposition in Disposition


def test_reason_types_are_exactly_the_reference_catalogue():
    assert set(REASON_OUTCOMES) == REFERENCE_REASON_TYPES
    assert set(REASON_OUTCOMES.values()) <= set(NODE_ERROR_PRECEDENCE)


def test_every_product_outcome_of_comfyui_shapes_is_produced_by_a_real_shape():
    """passed is the absence of a verdict and output_invalid is judged on downloaded images (engine),
    so the classifier yields the other product outcomes; each must come out of a capture or a shape above."""
    produced = {outcome_of(prompt_verdict(n)) for n in PROMPT_EXPECTED}
    produced |= {outcome_of(v) for n in HISTORY_EXPECTED for v in history_verdicts(n)}
    produced |= {outcome_of(ws_verdict(n)) for n in WS_EXPECTED}
    produced.add(classify_prompt_response(200, DENRISI_PARTIAL_BODY).outcome)
    oom = exec_error_payload() | {"exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory.\n"}
    produced.add(classify_event(["execution_error", oom]).outcome)
    product = {o for o in Outcome if o.disposition is Disposition.PRODUCT} - {Outcome.PASSED, Outcome.OUTPUT_INVALID}
    assert product <= produced
