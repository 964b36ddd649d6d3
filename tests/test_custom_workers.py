"""Team-owned code in front of ComfyUI, described by one ``request:`` mapping whatever the kind: an own
Vast PyWorker (the seed guide's ``{"workflow", "output_format"}`` → ``{"status", "image", "metadata"}``)
reached through the reference's route service, and a plain HTTP wrapper (``kind: http``). Where a
failure lands (HTTP status, status field, message, ComfyUI's node_errors or execution error) decides
how it is classified."""

from __future__ import annotations

import functools
import json

import httpx
import pytest

from conftest import cells, load_json, matrix, outcome, run_provider
from harness.reference.modal import WORKFLOW_APP_REQUEST
from harness.reference.profile import FailureRule, Profile
from harness.errors import ConfigError
from harness.reference.vast import OWN_WORKER_REQUEST
from harness.run.endpoints import load_endpoints_file
from harness.run.outcomes import Outcome

SMOKE = load_json("workflows/smoke_invert.json")
SDXL = load_json("workflows/sdxl_baseline.json")
DENRISI = load_json("workflows/denrisi_zimage_res4lyf.json")

own_worker = functools.partial(run_provider, "vast", request=OWN_WORKER_REQUEST)


def route(srv, name: str = "own-stock") -> str:
    return f"{srv.url}/vast/{name}"


async def test_an_own_pyworker_runs_the_workflow_through_the_route_service(reference_endpoint, tmp_path):
    record = await own_worker(route(reference_endpoint("stock")), SMOKE, tmp_path)
    assert outcome(record) is Outcome.PASSED
    [image] = record.images
    assert (image.format, image.width, image.height) == ("PNG", 512, 512)


async def test_the_comfyui_json_payload_is_not_what_an_own_worker_takes(reference_endpoint, tmp_path):
    """Without ``request`` the provider sends the api-wrapper's payload, which the own worker refuses:
    proof that the mapping's template is what travels."""
    record = await run_provider("vast", route(reference_endpoint("stock")), SMOKE, tmp_path)
    assert outcome(record) is not Outcome.PASSED


@pytest.mark.parametrize(("profile", "workflow", "expected", "hidden"), [
    # A missing class: the worker keeps ComfyUI's message only (node_errors is {}): the reason is hidden.
    (Profile.builtin("stock"), DENRISI, Outcome.SERVER_ERROR, True),
    (Profile.builtin("stock").replace(models={}), SDXL, Outcome.MISSING_MODEL, False),   # node_errors under a status "error"
    (Profile.builtin("stock").replace(failures=(FailureRule("ImageInvert", "RuntimeError", "boom"),)), SMOKE,
     Outcome.EXECUTION_ERROR, False),                                                    # execution_error
])
async def test_failures_are_read_where_the_mapping_says_they_land(reference_endpoint, tmp_path, profile, workflow, expected, hidden):
    record = await own_worker(route(reference_endpoint(profile)), workflow, tmp_path)
    verdict = record.classification
    assert (verdict.outcome, verdict.hidden, verdict.evidence.http_status) == (expected, hidden, 200)
    if hidden:
        assert verdict.evidence.message == ("the provider hides the reason: the app reported status 'error': Cannot execute because "
                                            "node FluxResolutionNode does not exist. (ComfyUI's own answer is not in the reply)")


async def test_the_route_services_auth_still_holds_for_an_own_worker(reference_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFY_REFERENCE_VAST_API_KEY", "right")
    srv = reference_endpoint("stock")
    refused = await own_worker(route(srv), SMOKE, tmp_path, headers={"Authorization": "Bearer wrong"})
    assert outcome(refused) is Outcome.AUTH_ERROR
    served = await own_worker(route(srv), SMOKE, tmp_path, headers={"Authorization": "Bearer right"})
    assert outcome(served) is Outcome.PASSED


def test_a_catalogue_recovers_what_an_own_worker_hides_and_http_reads_the_same_mapping(project, reference_endpoint):
    srv = reference_endpoint("stock")
    (project.path / "object_info.json").write_text(json.dumps(httpx.get(f"{srv.url}/object_info").json()))
    own = json.dumps(OWN_WORKER_REQUEST)
    app = json.dumps(WORKFLOW_APP_REQUEST)
    (project.path / "endpoints.yaml").write_text(f"""\
endpoints:
  own: {{kind: vast, url: {route(srv)}, request: {own}}}
  own-cat: {{kind: vast, url: {route(srv, "own-stock-cat")}, request: {own}, object_info: object_info.json, profile: stock}}
  http: {{kind: http, url: {srv.url}/modal-app/stock, request: {app}, profile: stock}}
""")
    (project.path / "cases/seed.yaml").write_text(project.path.joinpath("cases/seed.yaml").read_text().replace(
        "expect: {default: passed, stock: missing_node}", "expect: {default: passed, stock: missing_node, own: server_error}"))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml", "-k", "denrisi or smoke")
    result.assert_outcomes(passed=6)
    found = cells(matrix(project))
    recovered = found[("denrisi_zimage", "own-cat")]
    assert (recovered["outcome"], recovered["evidence"]["hidden"], recovered["evidence"]["recovered"]) == ("missing_node", True, True)
    assert set(recovered["evidence"]["missing_classes"]) == {"ClownsharKSampler_Beta", "Sigmas Rescale", "FluxResolutionNode"}
    assert found[("denrisi_zimage", "http")]["evidence"]["http_status"] == 400  # ComfyUI's refusal, passed through
    assert found[("smoke_invert", "own")]["images"][0]["width"] == 512


def test_a_status_field_needs_its_success_values(tmp_path):
    """Without them every status would read as a failure: refused when the file is read."""
    path = tmp_path / "endpoints.yaml"
    path.write_text("endpoints:\n  own: {kind: vast, url: 'http://x/vast/own', request: {status: status}}\n")
    with pytest.raises(ConfigError, match="success"):
        load_endpoints_file(path)
    path.write_text("endpoints:\n  own: {kind: comfyui, url: 'http://x', request: {path: /run}}\n")
    with pytest.raises(ConfigError, match="kind"):
        load_endpoints_file(path)
