"""What users hand the harness: workflows, case files, endpoint options and files; bad input, one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.run.cases import cases_from_workflows, load_case_files
from harness.run.endpoints import Endpoint, load_endpoints_file, load_verdict_spec, parse_endpoint_option
from harness.run.engine import PROVIDERS
from harness.errors import ConfigError, SecretMissing, WorkflowError
from harness.run.outcomes import Outcome
from harness.comfy.workflows import load_workflow

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_the_builtin_cases_load_with_their_expectations():
    cases = {c.id: c for c in load_case_files(sorted((ROOT / "cases").glob("*.yaml"))).cases}
    assert {"smoke_invert", "sdxl_baseline", "denrisi_zimage"} <= set(cases)
    denrisi = cases["denrisi_zimage"]
    assert denrisi.expected_for(Endpoint("stock", "http://x", profile="stock")) is Outcome.MISSING_NODE
    assert denrisi.expected_for(Endpoint("custom", "http://x")) is Outcome.PASSED
    assert denrisi.workflow["11"]["inputs"]["seed"] == 42


def test_a_ui_export_loads_as_saved_and_a_malformed_one_names_the_field(tmp_path):
    ui = {"nodes": [{"id": 1, "type": "Note", "widgets_values": ["hi"]}], "links": [], "version": 0.4}
    assert load_workflow(write(tmp_path / "ui.json", json.dumps(ui))) == ui  # converted per endpoint, later
    with pytest.raises(WorkflowError, match=r"bad\.json: \$\.nodes\[0\]: expected a node object with an 'id'"):
        load_workflow(write(tmp_path / "bad.json", json.dumps({"nodes": [{"type": "Note"}], "links": []})))
    with pytest.raises(WorkflowError, match=r"list\.json: expected an API-format workflow .* or a UI export"):
        load_workflow(write(tmp_path / "list.json", "[]"))


def test_a_case_file_error_names_file_field_and_expectation(tmp_path):
    path = write(tmp_path / "bad.yaml", "cases:\n  - id: a\n    workflow: x.json\n    expect: pased\n")
    with pytest.raises(ConfigError) as info:
        load_case_files([path])
    message = str(info.value)
    assert message.startswith(f"{path}: $.cases[0].expect: ")
    assert "\n" not in message


def test_overrides_by_shorthand_node_and_class(tmp_path):
    (tmp_path / "wf.json").write_text((ROOT / "workflows/sdxl_baseline.json").read_text())
    path = write(tmp_path / "c.yaml", """
cases:
  - id: tuned
    workflow: wf.json
    overrides:
      seed: 7
      steps: 9
      prompt: a red fox
      size: [768, 512]
      inputs:
        - {node: "3", input: cfg, value: 4.5}
        - {class: CLIPTextEncode, input: text, value: same}
""")
    wf = load_case_files([path]).cases[0].workflow
    assert wf["3"]["inputs"]["seed"] == 7 and wf["3"]["inputs"]["steps"] == 9 and wf["3"]["inputs"]["cfg"] == 4.5
    assert (wf["5"]["inputs"]["width"], wf["5"]["inputs"]["height"]) == (768, 512)
    assert wf["6"]["inputs"]["text"] == "same" and wf["7"]["inputs"]["text"] == "same"


def test_an_override_that_matches_nothing_is_an_error(tmp_path):
    (tmp_path / "wf.json").write_text((ROOT / "workflows/denrisi_zimage_res4lyf.json").read_text())
    path = write(tmp_path / "c.yaml", "cases:\n  - id: a\n    workflow: wf.json\n    overrides: {size: [512, 512]}\n")
    with pytest.raises(WorkflowError, match=r"override 'size': no node"):
        load_case_files([path])


def test_workflows_dir_replays_each_json_expecting_passed(tmp_path):
    (tmp_path / "a.json").write_text((ROOT / "workflows/smoke_invert.json").read_text())
    [case] = cases_from_workflows(tmp_path).cases
    assert case.id == "a" and case.expected_for(Endpoint("e", "http://x")) is Outcome.PASSED


def test_endpoint_option_forms():
    assert parse_endpoint_option("stock=http://127.0.0.1:8188/", 0) == Endpoint("stock", "http://127.0.0.1:8188")
    assert parse_endpoint_option("http://127.0.0.1:9", 0).name == "127.0.0.1:9"
    with pytest.raises(ConfigError, match="expected URL or name=URL"):
        parse_endpoint_option("stock=ftp://x", 0)


def test_endpoints_file_secrets_come_from_env_and_never_show(tmp_path, monkeypatch):
    path = write(tmp_path / "endpoints.yaml", """
endpoints:
  prod:
    url: https://user:pw@example.invalid/api?token=abc
    headers: {Authorization: "Bearer ${COMFY_TEST_KEY}"}
    timeouts: {queue: 30}
""")
    [endpoint] = load_endpoints_file(path)
    assert endpoint.public_url == "https://example.invalid/api"
    assert endpoint.timeouts.queue == 30
    monkeypatch.delenv("COMFY_TEST_KEY", raising=False)
    with pytest.raises(SecretMissing, match="needs environment variable COMFY_TEST_KEY"):
        endpoint.check_secrets()
    monkeypatch.setenv("COMFY_TEST_KEY", "s3cret")
    assert endpoint.resolved_headers() == {"Authorization": "Bearer s3cret"}
    assert endpoint.shell_headers() == {"Authorization": "Bearer $COMFY_TEST_KEY"}


def test_the_example_endpoints_file_covers_every_kind_and_a_verdict():
    path = ROOT / "examples/endpoints.yaml"
    endpoints = {e.name: e for e in load_endpoints_file(path)}
    assert {e.kind for e in endpoints.values()} == set(PROVIDERS)
    assert endpoints["runpod"].price_per_gpu_hour == 2.72 and endpoints["runpod"].cold_start_idle == 330
    spec = load_verdict_spec(path)
    assert (spec.baseline, spec.candidate, spec.budgets["success_rate"]) == ("prod", "runpod", 0.98)


def test_a_verdict_naming_an_unknown_endpoint_is_one_line(tmp_path):
    path = write(tmp_path / "endpoints.yaml", "endpoints:\n  a: {url: 'http://a'}\nverdict: {baseline: a, candidate: b}\n")
    with pytest.raises(ConfigError, match=r"endpoints\.yaml: \$\.verdict\.candidate: 'b' is not one of the endpoints \(a\)"):
        load_verdict_spec(path)


def test_a_waiver_without_a_date_or_for_an_unknown_case_is_one_line(tmp_path):
    case = "cases:\n  - {id: smoke, workflow: %s}\n" % (ROOT / "workflows/smoke_invert.json")
    path = write(tmp_path / "c.yaml", case + "waivers:\n  - {case: smoke, endpoint: x, reason: r, expires: soon}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: \$\.waivers\[0\]\.expires: expected a date YYYY-MM-DD, got 'soon'"):
        load_case_files([path])
    path = write(tmp_path / "c.yaml", case + "waivers:\n  - {case: smokey, endpoint: x, reason: r, expires: 2026-12-01}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: \$\.waivers\[0\]\.case: no case 'smokey'"):
        load_case_files([path])
    path = write(tmp_path / "c.yaml", case + "waivers:\n  - {case: smoke, endpoint: x, reason: r, expires: 2026-12-01}\n")
    [waiver] = load_case_files([path]).waivers
    assert waiver.expires.isoformat() == "2026-12-01"


def test_endpoints_file_errors_are_one_line(tmp_path):
    path = write(tmp_path / "endpoints.yaml", "endpoints:\n  a: {url: 'localhost:8188'}\n")
    with pytest.raises(ConfigError, match=r"endpoints\.yaml: \$\.endpoints\.a\.url: 'localhost:8188' does not match"):
        load_endpoints_file(path)
