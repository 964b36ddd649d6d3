"""Allure environment.properties and categories.json, and Allure's own way of matching a category."""

from __future__ import annotations

import json
import re

import pytest

from harness.run.cells import Cell
from harness.run.outcomes import Outcome
from harness.report.allure_meta import write_allure_metadata
from test_report_html import enrich, run_seed


@pytest.fixture(scope="module")
def seed_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_seed(tmp_path_factory.mktemp("seed-run"))


def _unescape(text: str) -> str:
    """java.util.Properties unescaping: \\uXXXX, \\n and friends, any other \\X is X."""
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 5
                  else {"n": "\n", "r": "\r", "t": "\t", "f": "\f"}.get(m[1], m[1]), text)


def read_properties(text: str) -> dict[str, str]:
    """What Allure's Properties.load would read from the lines the writer emits."""
    found = {}
    for line in text.splitlines():
        key, value = re.split(r"(?<!\\)=", line, maxsplit=1)
        found[_unescape(key)] = _unescape(value)
    return found


def test_environment_properties(seed_matrix, tmp_path):
    written = write_allure_metadata(seed_matrix, tmp_path / "allure")
    assert [p.name for p in written] == ["environment.properties", "categories.json"]
    text = (tmp_path / "allure/environment.properties").read_text(encoding="utf-8")
    text.encode("latin-1")  # Allure reads it as ISO-8859-1
    props = read_properties(text)
    assert props["run.id"] == seed_matrix["run"]["id"]
    assert props["harness.version"] == seed_matrix["run"]["harness_version"]
    for endpoint in seed_matrix["endpoints"]:
        assert props[f"endpoint.{endpoint['name']}.kind"] == endpoint["kind"]
        assert props[f"endpoint.{endpoint['name']}.url"] == endpoint["url"]
        assert props[f"endpoint.{endpoint['name']}.profile"] == endpoint["profile"]
    assert props["endpoint.stock.comfyui_version"] == "0.33.0"  # the default run answers as the current release
    assert "endpoint.runpod-stock.comfyui_version" not in props  # no provenance through the envelope
    assert "url=http\\://127.0.0.1" in text  # ':' escaped as Properties wants


def test_environment_escapes_odd_names_and_verdict(seed_matrix, tmp_path):
    m = enrich(seed_matrix)
    m["endpoints"][0]["name"] = "prod eu=1"
    m["endpoints"][0]["url"] = "https://comfy.example.com/é"
    write_allure_metadata(m, tmp_path)
    text = (tmp_path / "environment.properties").read_text(encoding="utf-8")
    assert "endpoint.prod\\ eu\\=1.kind=comfyui" in text
    assert "https\\://comfy.example.com/\\u00e9" in text
    assert read_properties(text)["endpoint.prod eu=1.url"] == "https://comfy.example.com/é"
    assert "verdict=NO-GO (stock vs custom)" in text
    assert "run.repeat=5" in text


def test_one_category_per_outcome_matching_cell_summaries(seed_matrix, tmp_path):
    write_allure_metadata(seed_matrix, tmp_path)
    cats = json.loads((tmp_path / "categories.json").read_text(encoding="utf-8"))
    assert len(cats) == len(seed_matrix["outcomes"]) == len(Outcome)
    by_name = {c["name"].split(" — ")[0]: c for c in cats}
    assert by_name["Product: missing_node"]["name"] == (
        "Product: missing_node — A node class of the workflow is not installed on the endpoint")
    assert "Infra: server_error" in by_name and "Infra: unreachable" in by_name
    assert all(c["matchedStatuses"] == ["failed", "broken"] for c in cats)
    # Allure full-matches messageRegex against the failure message (java.util.regex, DOTALL via (?s)).
    for outcome in Outcome:
        cell = Cell("denrisi_zimage", "stock", outcome, Outcome.PASSED if outcome is not Outcome.PASSED else Outcome.MISSING_NODE,
                    evidence={"message": "line one\nline two (expected nothing)"})
        message = f"AssertionError: {cell.summary()}\nassert False\n +  where False = <Cell>.ok"
        matching = [c["name"] for c in cats if re.fullmatch(c["messageRegex"], message)]
        assert len(matching) == 1 and f": {outcome.value}" in matching[0], (outcome, matching)
