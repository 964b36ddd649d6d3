"""Drift between two runs: cell transitions, endpoint changes from fingerprint files, run lookup."""

from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT
from harness.comfy.catalogue import Catalogue, load_catalogue
from harness.report.drift import (
    compare_cells,
    compare_fingerprints,
    compare_runs,
    load_run,
    previous_run,
)
from harness.errors import ConfigError
from harness.report.fingerprint import fingerprint, write_fingerprint
from harness.report.matrix import MatrixWriter
from harness.run.cells import Cell
from harness.run.outcomes import Outcome

STOCK = ROOT / "fixtures/object_info/stock.json"
PROVENANCE = {"comfyui_version": "0.3.64", "python_version": "3.11.7", "pytorch_version": "2.14.1+cu130",
              "os": "posix", "embedded_python": False, "devices": ["cpu"]}


def cell(case: str, endpoint: str, outcome: str) -> dict:
    return {"case": case, "endpoint": endpoint, "outcome": outcome, "ok": outcome == "passed"}


def matrix(run_id: str, cells: list[dict], endpoints: list[dict]) -> dict:
    return {"schema_version": 1, "run": {"id": run_id}, "cases": sorted({c["case"] for c in cells}),
            "endpoints": endpoints, "cells": cells, "drift": None}


def endpoint(name: str, fingerprint_file: str | None, provenance: dict | None = PROVENANCE) -> dict:
    return {"name": name, "kind": "comfyui", "url": "http://127.0.0.1:1", "profile": None,
            "provenance": provenance, "catalogue": None, "fingerprint": fingerprint_file}


def write_run(root, run_id: str, doc: dict, fingerprints: dict[str, dict] | None = None):
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    for name, fp in (fingerprints or {}).items():
        write_fingerprint(run_dir / "fingerprints" / f"{name}.json", fp)
    (run_dir / "matrix.json").write_text(json.dumps(doc), encoding="utf-8")
    return run_dir


def test_cell_transitions():
    old = matrix("a", [cell("sdxl", "stock", "passed"), cell("denrisi", "stock", "missing_node"),
                       cell("flux", "stock", "missing_model"), cell("wan", "stock", "execution_error"),
                       cell("ok", "stock", "passed"), cell("gone", "stock", "timeout")], [])
    new = matrix("b", [cell("sdxl", "stock", "execution_error"), cell("denrisi", "stock", "missing_node"),
                       cell("flux", "stock", "invalid_input"), cell("wan", "stock", "passed"),
                       cell("ok", "stock", "passed"), cell("added", "stock", "unreachable"),
                       cell("sdxl", "custom", "passed")], [])
    drift = compare_cells(old, new)
    assert drift == {
        "new_failures": [{"case": "sdxl", "endpoint": "stock", "outcome": "execution_error", "previous": "passed"},
                         {"case": "added", "endpoint": "stock", "outcome": "unreachable", "previous": None}],
        "inherited_failures": [{"case": "denrisi", "endpoint": "stock", "outcome": "missing_node", "previous": "missing_node"}],
        "fixed": [{"case": "wan", "endpoint": "stock", "outcome": "passed", "previous": "execution_error"}],
        "changed": [{"case": "flux", "endpoint": "stock", "outcome": "invalid_input", "previous": "missing_model"}],
    }


def test_compare_runs_reads_fingerprints_relative_to_each_run(tmp_path):
    catalogue = load_catalogue(STOCK)
    old_fp = fingerprint("stock", catalogue, PROVENANCE)
    new_fp = fingerprint("stock", catalogue.without("KSamplerAdvanced"), {**PROVENANCE, "comfyui_version": "0.3.65"})
    old_dir = write_run(tmp_path / "old", "20260101T000000Z-1",
                        matrix("20260101T000000Z-1", [cell("sdxl", "stock", "passed")],
                               [endpoint("stock", "fingerprints/stock.json")]), {"stock": old_fp})
    new_doc = matrix("20260102T000000Z-1", [cell("sdxl", "stock", "missing_node")],
                     [endpoint("stock", "fingerprints/stock.json")])
    new_dir = write_run(tmp_path / "new", "20260102T000000Z-1", new_doc, {"stock": new_fp})
    drift = compare_runs(old_dir, new_doc, new_dir)
    assert drift["compared_to"] == {"run": "20260101T000000Z-1", "dir": str(old_dir.resolve())}
    assert drift["cells"]["new_failures"] == [{"case": "sdxl", "endpoint": "stock", "outcome": "missing_node", "previous": "passed"}]
    stock = drift["endpoints"]["stock"]
    assert stock["classes_disappeared"] == ["KSamplerAdvanced"]
    assert stock["system_changed"] == {"comfyui_version": ["0.3.64", "0.3.65"]}
    assert "note" not in stock
    json.dumps(drift)  # the section goes into matrix.json as it is


def test_missing_fingerprint_is_a_note_not_a_crash(tmp_path):
    fp = fingerprint("stock", load_catalogue(STOCK), PROVENANCE)
    old_doc = matrix("a", [cell("sdxl", "stock", "passed")],
                     [endpoint("stock", None, {**PROVENANCE, "comfyui_version": "0.3.63"}), endpoint("runpod", "fingerprints/runpod.json"),
                      endpoint("vast", "fingerprints/vast.json"), endpoint("retired", None)])
    old_dir = write_run(tmp_path, "20260101T000000Z-1", old_doc, {"vast": fp})
    (old_dir / "fingerprints" / "vast.json").write_text("not json", encoding="utf-8")
    new_doc = matrix("b", [cell("sdxl", "stock", "passed")],
                     [endpoint("stock", "fingerprints/stock.json"),
                      {k: v for k, v in endpoint("runpod", None).items() if k != "fingerprint"},
                      endpoint("vast", "fingerprints/vast.json"), endpoint("modal", None)])
    new_dir = write_run(tmp_path, "20260102T000000Z-1", new_doc, {"stock": fp, "vast": fp})
    drift = compare_runs(old_dir, new_doc, new_dir)["endpoints"]
    assert drift["stock"]["note"] == "the compared run recorded no fingerprint: classes and models not compared"
    # Versions still compared from the matrices' provenance.
    assert drift["stock"]["system_changed"] == {"comfyui_version": ["0.3.63", "0.3.64"]}
    assert drift["runpod"]["note"] == ("the compared run fingerprint file fingerprints/runpod.json is missing; "
                                       "this run recorded no fingerprint: classes and models not compared")
    assert "not a fingerprint" in drift["vast"]["note"]
    assert drift["modal"]["note"] == "not in the compared run"
    assert drift["retired"]["note"] == "in the compared run only, not in this run"
    for entry in drift.values():
        assert entry["classes_changed"] == [] and entry["models_added"] == {}


def test_fingerprint_without_catalogue_says_so():
    with_catalogue = fingerprint("rp", Catalogue({}), PROVENANCE)
    without = fingerprint("rp", None, PROVENANCE)
    drift = compare_fingerprints(with_catalogue, without)
    assert drift["note"] == ("no node catalogue (/object_info) in this run: classes not compared; "
                             "no model lists in this run: models not compared")
    assert drift["classes_disappeared"] == [] and drift["system_changed"] == {}
    assert compare_fingerprints(None, without)["note"] == "no fingerprint in the compared run: classes and models not compared"


def test_load_run_errors(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_run(tmp_path)
    assert str(err.value) == f"{tmp_path}: no matrix.json here (expected a reports/<run-id> directory)"
    with pytest.raises(ConfigError, match="no matrix.json here"):
        load_run(tmp_path / "does-not-exist")
    (tmp_path / "matrix.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"matrix.json: not JSON"):
        load_run(tmp_path)
    (tmp_path / "matrix.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a comfy-compat matrix"):
        load_run(tmp_path)


def test_load_run_through_latest_and_previous_run(tmp_path):
    older = write_run(tmp_path, "20260101T235959Z-999", matrix("20260101T235959Z-999", [], []))
    newer = write_run(tmp_path, "20260102T000000Z-1000", matrix("20260102T000000Z-1000", [], []))
    write_run(tmp_path, "20260102T000000Z-20", matrix("20260102T000000Z-20", [], []))
    (tmp_path / "20260102T010000Z-5").mkdir()  # a run that crashed before writing matrix.json
    (tmp_path / "notes").mkdir()
    os.symlink(newer.name, tmp_path / "latest", target_is_directory=True)
    assert load_run(tmp_path / "latest")["run"]["id"] == "20260102T000000Z-1000"
    current = "20260102T020000Z-7"
    (tmp_path / current).mkdir()
    assert previous_run(tmp_path, current) == newer  # same second: ties go by pid, numerically
    assert previous_run(tmp_path, "20260102T000000Z-20") == older
    assert previous_run(tmp_path, "20260101T235959Z-999") is None
    assert previous_run(tmp_path / "missing", current) is None
    drift = compare_runs(tmp_path / "latest", matrix(current, [], []), tmp_path / current)
    assert drift["compared_to"] == {"run": "20260102T000000Z-1000", "dir": str(newer.resolve())}
    (tmp_path / "latest").unlink()
    os.symlink(current, tmp_path / "latest", target_is_directory=True)  # as once the current run starts
    with pytest.raises(ConfigError, match="this run's own directory"):
        compare_runs(tmp_path / "latest", matrix(current, [], []), tmp_path / current)


def test_change_lines_read_in_order_with_details_and_notes():
    from harness.report.drift import endpoint_change_lines

    changes = {"classes_appeared": ["A"], "classes_disappeared": [], "models_removed": {"vae": ["ae.safetensors"]},
               "classes_changed": [{"class": "KSampler", "inputs_added": ["x"], "inputs_removed": ["y"], "inputs_changed": ["sampler_name"],
                                    "details": {"sampler_name": "options added: res_2m"}}],
               "system_changed": {"comfyui_version": ["0.3.63", "0.3.64"]}, "note": "no system_stats in this run"}
    assert endpoint_change_lines(changes) == [
        ("classes appeared", ["A"]),
        ("class KSampler changed", ["+x", "-y", "sampler_name: options added: res_2m"]),
        ("models removed from vae", ["ae.safetensors"]),
        ("comfyui_version", ["0.3.63 → 0.3.64"]),
        ("note", ["no system_stats in this run"]),
    ]


def test_an_earlier_run_is_read_lean_in_either_layout(tmp_path):
    """Drift reads an earlier run's cells as case, endpoint and outcome, a line at a time where matrix.json
    has a cell a line (this harness's), whole where it is indented otherwise (runs of older versions)."""
    writer = MatrixWriter(tmp_path, "20260101T000000Z-1")
    writer.add_cell(Cell("a", "e", Outcome.MISSING_NODE, Outcome.PASSED, evidence={"message": "Nope\n  ]"}))
    writer.add_cell(Cell("b", "e", Outcome.PASSED, Outcome.PASSED))
    writer.finish()
    lean = load_run(writer.dir, lean=True)
    assert lean["cells"] == [{"case": "a", "endpoint": "e", "outcome": "missing_node"},
                             {"case": "b", "endpoint": "e", "outcome": "passed"}]
    assert lean["outcomes"] == load_run(writer.dir)["outcomes"]
    old = json.loads((writer.dir / "matrix.json").read_text())
    old["cells"][1]["stats"] = {"success_rate": float("nan")}  # Python's json wrote NaN
    (writer.dir / "matrix.json").write_text(json.dumps(old, indent=2))
    assert load_run(writer.dir, lean=True)["cells"] == lean["cells"]
