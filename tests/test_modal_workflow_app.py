"""A team's own Modal app that takes the workflow JSON (the reference endpoint's ``/modal-app/<name>``),
reached through the modal provider's request template and response mapping: ComfyUI's answers passed
through by the app read as on ComfyUI itself, and the default run's Modal columns hold the profiles'
expectations."""

from __future__ import annotations

import functools

import pytest

from conftest import cells, load_json, matrix, outcome, run_provider
from harness.providers.mapping import RequestMapping
from harness.reference.modal import WORKFLOW_APP_REQUEST
from harness.reference.profile import FailureRule, Profile
from harness.run.outcomes import Outcome

SMOKE = load_json("workflows/smoke_invert.json")
SDXL = load_json("workflows/sdxl_baseline.json")
DENRISI = load_json("workflows/denrisi_zimage_res4lyf.json")

run = functools.partial(run_provider, "modal", request=WORKFLOW_APP_REQUEST)


def app(srv) -> str:
    return f"{srv.url}/modal-app/{srv.profile.name}"


async def test_the_workflow_runs_and_its_images_come_back_as_base64(reference_endpoint, tmp_path):
    record = await run(app(reference_endpoint("stock")), SMOKE, tmp_path)
    assert outcome(record) is Outcome.PASSED
    [image] = record.images
    assert (image.format, image.width, image.height) == ("PNG", 512, 512)


@pytest.mark.parametrize(("profile", "workflow", "expected", "partial"), [
    (Profile.builtin("stock"), DENRISI, Outcome.MISSING_NODE, False),                      # comfyui: the 400 passed through
    (Profile.builtin("stock").replace(models={}), SDXL, Outcome.MISSING_MODEL, False),
    (Profile.builtin("custom").replace(models={}), DENRISI, Outcome.MISSING_MODEL, True),  # node_errors of a 200
    (Profile.builtin("stock").replace(failures=(FailureRule("ImageInvert", "RuntimeError", "boom"),)), SMOKE,
     Outcome.EXECUTION_ERROR, False),                                                       # execution_error of a 500
])
async def test_comfyuis_answers_passed_through_by_the_app_are_classified_natively(reference_endpoint, tmp_path, profile,
                                                                                 workflow, expected, partial):
    record = await run(app(reference_endpoint(profile)), workflow, tmp_path)
    verdict = record.classification
    assert (verdict.outcome, verdict.partial, verdict.hidden) == (expected, partial, False)
    assert verdict.evidence.http_status == {Outcome.MISSING_NODE: 400, Outcome.MISSING_MODEL: 200 if partial else 400,
                                            Outcome.EXECUTION_ERROR: 500}[expected]
    if expected is Outcome.EXECUTION_ERROR:
        assert (verdict.evidence.node_type, verdict.evidence.exception_type) == ("ImageInvert", "RuntimeError")
    if partial:
        assert {m["file"] for m in verdict.evidence.missing_models} == {
            "z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"}


def test_where_failures_land_a_status_field_and_a_message():
    """A reply that says only that it failed, in its own words, hides ComfyUI's reason."""
    mapping = RequestMapping.from_spec({"status": "status", "success": "success", "message": "error", "node_errors": "details"})
    assert mapping.failure(200, {"status": "success", "image": "x"}) is None
    opaque = mapping.failure(200, {"status": "error", "error": "ComfyUI failed"})
    assert (opaque.outcome, opaque.hidden, opaque.evidence.http_status) == (Outcome.SERVER_ERROR, True, 200)
    assert opaque.evidence.message.startswith("the provider hides the reason: the app reported status 'error': ComfyUI failed")
    node_errors = {"4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list", "details": "",
                                     "extra_info": {"input_name": "ckpt_name", "received_value": "x.safetensors"}}],
                         "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}
    refused = mapping.failure(200, {"status": "error", "error": "invalid", "details": node_errors})
    assert (refused.outcome, refused.partial) == (Outcome.MISSING_MODEL, False)
    assert mapping.failure(500, {"error": "boom"}).outcome is Outcome.SERVER_ERROR


def test_the_default_run_has_a_modal_column_per_profile_with_the_profiles_expectations(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "modal and (denrisi or smoke)")
    result.assert_outcomes(passed=4)
    found = cells(matrix(project))
    assert {e for _, e in found} == {"modal-stock", "modal-custom"}
    denrisi = found[("denrisi_zimage", "modal-stock")]
    assert (denrisi["outcome"], denrisi["expected"], denrisi["predicted"]) == ("missing_node", "missing_node", "missing_node")
    assert set(denrisi["evidence"]["missing_classes"]) == {"ClownsharKSampler_Beta", "Sigmas Rescale", "FluxResolutionNode"}
    assert found[("denrisi_zimage", "modal-custom")]["outcome"] == "passed"
    assert '"workflow"' in (project.path / "reports/latest/cells/denrisi_zimage@modal-custom/request.json").read_text()
