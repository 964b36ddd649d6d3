"""Hidden is never guessed: where a provider hides ComfyUI's reason the cell is ``server_error`` saying
so, unless the endpoint's saved catalogue proves a validation outcome, which is then recovered and
marked as such. Over loopback: Denrisi on a custom-node server without its models (ComfyUI accepts it
in part: 200 with node_errors, only FluxResolutionNode runs) through the RunPod envelopes."""

from __future__ import annotations

import json

import httpx

from conftest import cells, matrix
from harness.reference.profile import FailureRule, Profile
from harness.run.outcomes import Outcome
from harness.providers.runpod import classify_error

DENRISI_MODELS = {"z_image_turbo_bf16.safetensors", "qwen_3_4b.safetensors", "ae.safetensors"}

CASES = """\
cases:
  - id: denrisi_zimage
    workflow: ../workflows/denrisi_zimage_res4lyf.json
    overrides: {seed: 42}
    expect: {default: server_error, runpod-local-cat: missing_model, runpod-platform: output_invalid,
             runpod-platform-cat: missing_model}
    outputs: {min_images: 1, width: 1024, height: 1024}
"""


def test_job_processing_failed_alone_is_hidden_not_an_execution_error():
    verdict = classify_error("Job processing failed")
    assert (verdict.outcome, verdict.hidden) == (Outcome.SERVER_ERROR, True)
    assert verdict.evidence.message.startswith("the provider hides the reason")
    no_outputs = classify_error("Job processing failed", ["No outputs found in history for prompt 1."])
    assert (no_outputs.outcome, no_outputs.hidden) == (Outcome.OUTPUT_INVALID, True)
    # With the platform's details an execution error is heard, not hidden.
    crash = classify_error("Job processing failed", ["Workflow execution error: Node Type: ImageBatch, Node ID: 4, Message: boom\n"])
    assert (crash.outcome, crash.hidden) == (Outcome.EXECUTION_ERROR, False)


def test_denrisi_through_runpod_is_hidden_without_a_catalogue_and_missing_model_with_one(project, reference_endpoint):
    server = reference_endpoint(Profile.builtin("custom").replace(models={}))
    (project.path / "object_info.json").write_text(json.dumps(httpx.get(f"{server.url}/object_info").json()))
    (project.path / "cases/seed.yaml").write_text(CASES)
    local, platform = f"{server.url}/runpod/local", f"{server.url}/runpod/v2/custom"
    (project.path / "endpoints.yaml").write_text(f"""\
endpoints:
  runpod-local: {{kind: runpod, flavour: local, url: {local}}}
  runpod-local-cat: {{kind: runpod, flavour: local, url: {local}, object_info: object_info.json}}
  runpod-platform: {{kind: runpod, url: {platform}}}
  runpod-platform-cat: {{kind: runpod, url: {platform}, object_info: object_info.json}}
""")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml")
    result.assert_outcomes(passed=4)
    found = cells(matrix(project))

    hidden = found[("denrisi_zimage", "runpod-local")]
    assert hidden["outcome"] == "server_error" and hidden["predicted"] is None
    assert hidden["evidence"]["message"].startswith("the provider hides the reason")
    assert (hidden["evidence"]["hidden"], hidden["evidence"]["recovered"]) == (True, False)

    no_outputs = found[("denrisi_zimage", "runpod-platform")]
    assert no_outputs["evidence"]["message"].startswith("the workflow ran but produced no outputs: No outputs found in history")
    assert (no_outputs["evidence"]["hidden"], no_outputs["evidence"]["recovered"]) == (True, False)

    for name in ("runpod-local-cat", "runpod-platform-cat"):
        cell = found[("denrisi_zimage", name)]
        assert (cell["outcome"], cell["predicted"], cell["partial"]) == ("missing_model", "missing_model", True), name
        evidence = cell["evidence"]
        assert {m["file"] for m in evidence["missing_models"]} == DENRISI_MODELS
        assert {m["folder"] for m in evidence["missing_models"]} == {"diffusion_models", "text_encoders", "vae"}
        assert evidence["message"].startswith("accepted in part")
        assert evidence["message"].endswith("(the provider hid ComfyUI's reason; the endpoint's catalogue proves it)")
        assert (evidence["hidden"], evidence["recovered"]) == (True, True)


def test_a_catalogue_that_proves_nothing_leaves_the_hidden_reason_hidden(project, reference_endpoint):
    """An execution error hidden by the dev API: the catalogue validates the prompt whole, so it proves nothing."""
    server = reference_endpoint(Profile.builtin("stock").replace(failures=(FailureRule("ImageInvert", "RuntimeError", "boom"),)))
    (project.path / "object_info.json").write_text(json.dumps(httpx.get(f"{server.url}/object_info").json()))
    (project.path / "endpoints.yaml").write_text(
        f"endpoints:\n  rp: {{kind: runpod, flavour: local, url: {server.url}/runpod/local, object_info: object_info.json}}\n")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "smoke", "--endpoints-file=endpoints.yaml")
    [cell] = matrix(project)["cells"]
    assert (cell["outcome"], cell["predicted"]) == ("server_error", "passed")
    assert cell["evidence"]["message"].startswith("the provider hides the reason")
