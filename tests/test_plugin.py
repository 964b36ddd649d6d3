"""The pytest plugin end to end with pytester: whole compatibility runs in a scratch project.

Runs are subprocesses: pytester's in-process mode drops modules imported during a run, and a fresh
httpcore under an already imported httpx no longer maps its exceptions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT, cells, matrix
from harness.report.cells_log import read_cells


def test_default_run_targets_both_reference_profiles(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=40)
    result.stdout.fnmatch_lines(["*comfy-compat: endpoints: embedded reference (stock, custom)*",
                                 "40 cells: 4 missing_node, 36 passed"])
    data = matrix(project)
    assert data["run"]["status"] == "complete"
    by = cells(data)
    assert by[("sdxl_baseline", "stock")]["outcome"] == by[("sdxl_baseline", "custom")]["outcome"] == "passed"
    assert by[("denrisi_zimage", "custom")]["outcome"] == "passed"
    denrisi = by[("denrisi_zimage", "stock")]
    assert denrisi["outcome"] == "missing_node" and denrisi["ok"] and denrisi["predicted"] == "missing_node"
    ev = denrisi["evidence"]
    assert set(ev["missing_classes"]) == {"ClownsharKSampler_Beta", "Sigmas Rescale", "FluxResolutionNode"}
    assert ev["packages"]["FluxResolutionNode"][0]["url"] == "https://github.com/gseth/ControlAltAI-Nodes"
    assert ev["packages"]["ClownsharKSampler_Beta"][0]["url"] == "https://github.com/ClownsharkBatwing/RES4LYF"
    assert denrisi["repro"].startswith("curl ")
    assert (project.path / "reports/latest" / "cells/denrisi_zimage@stock/request.json").is_file()
    md = (project.path / "reports/latest/matrix.md").read_text()
    assert ("| case | stock | runpod-stock | vast-stock | modal-stock | custom | runpod-custom | vast-custom | modal-custom |"
            in md)
    assert ("| denrisi_zimage | ❌ missing_node | ❌ missing_node | ❌ missing_node | ❌ missing_node | ✅ passed | ✅ passed "
            "| ✅ passed | ✅ passed |" in md)
    # Each provider envelope lets the same ComfyUI answer through, or its catalogue proves what it hid.
    for (case, endpoint), cell in by.items():
        if "-" in endpoint:
            assert cell["outcome"] == by[(case, endpoint.split("-", 1)[1])]["outcome"]
    hidden = by[("denrisi_zimage", "vast-stock")]["evidence"]["message"]
    assert "the provider hid ComfyUI's reason; the endpoint's catalogue proves it" in hidden
    # The UI export and the real frontend's own prompt of it read the same on every endpoint.
    for (case, endpoint), cell in by.items():
        if case == "sd15_ui":
            twin = by[("sd15_api", endpoint)]
            assert (cell["outcome"], cell["evidence"]) == (twin["outcome"], twin["evidence"]) and cell["conversion"]["frontend"] == "1.49.6"


def test_nothing_listening_ends_within_seconds_all_unreachable(project):
    started = time.monotonic()
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoint", "http://127.0.0.1:9")
    assert time.monotonic() - started < 15
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines(["*smoke_invert on 127.0.0.1:9: unreachable (expected passed)*"])
    data = matrix(project)
    assert {c["outcome"] for c in data["cells"]} == {"unreachable"}
    assert {c["disposition"] for c in data["cells"]} == {"infra"}


def test_k_selects_cases_and_named_endpoints(project):
    from harness.reference.server import ReferenceServer

    with ReferenceServer("custom") as srv:
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoint", f"gpu={srv.url}", "-k", "denrisi")
    result.assert_outcomes(passed=1)
    [cell] = matrix(project)["cells"]
    assert (cell["case"], cell["endpoint"], cell["outcome"]) == ("denrisi_zimage", "gpu", "passed")


def test_workflows_dir_replays_both_formats_and_names_a_malformed_ui_export(project):
    replay = project.mkdir("mine")
    shutil.copy(ROOT / "workflows/smoke_invert.json", replay / "smoke.json")
    shutil.copy(ROOT / "workflows/sd15_text2img.ui.json", replay / "sd15.json")
    project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows", "mine", "-k", "stock and not runpod and not vast and not modal").assert_outcomes(passed=2)
    (replay / "ui.json").write_text(json.dumps({"nodes": {}, "links": []}))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows", "mine")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["ERROR: */mine/ui.json: $.nodes: expected a list (a UI export), got dict"])


TEXT_ONLY = {  # 0.33.0 stock: a string made and previewed, no image anywhere
    "1": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a line"}},
    "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
}
PREVIEW_ONLY = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}


def test_a_workflow_run_for_text_passes_unless_its_case_asks_for_images(project):
    """Unstated, a case expects some output: the text a text workflow makes is one, a preview is not;
    ``min_images`` stated asks for saved images."""
    replay = project.mkdir("mine")
    (replay / "text.json").write_text(json.dumps(TEXT_ONLY))
    (replay / "preview.json").write_text(json.dumps(PREVIEW_ONLY))
    (project.path / "cases/images.yaml").write_text(
        "cases:\n  - id: text_as_images\n    workflow: ../mine/text.json\n    outputs: {min_images: 1}\n")
    only_stock = ["-k", "stock and not runpod and not vast and not modal"]
    project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows", "mine", *only_stock).assert_outcomes(passed=1, failed=1)
    replayed = cells(matrix(project))
    assert replayed[("text", "stock")]["outcome"] == "passed"
    assert (replayed[("preview", "stock")]["outcome"], replayed[("preview", "stock")]["evidence"]["message"]) == (
        "output_invalid", "expected at least one output (a saved image, audio, text...), the endpoint returned none")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "text_as_images and stock and not runpod and not vast and not modal"
                                 ).assert_outcomes(failed=1)
    [stated] = matrix(project)["cells"]
    assert (stated["outcome"], stated["evidence"]["message"]) == (
        "output_invalid", "expected at least 1 image(s), the endpoint returned 0")


def test_a_bad_case_file_is_one_line_naming_file_and_field(project):
    (project.path / "cases/broken.yaml").write_text("cases:\n  - id: x\n    workflow: ../workflows/smoke_invert.json\n    timeout: soon\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: */cases/broken.yaml: $.cases[[]0].timeout: 'soon' is not of type 'number'"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_an_unset_secret_stops_the_run_before_any_request(project, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_FOR_TEST", raising=False)
    (project.path / "endpoints.yaml").write_text(
        "endpoints:\n  prod:\n    url: http://127.0.0.1:9\n    headers: {Authorization: 'Bearer ${NO_SUCH_KEY_FOR_TEST}'}\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file", "endpoints.yaml")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["ERROR: endpoint 'prod': header 'Authorization' needs environment variable NO_SUCH_KEY_FOR_TEST*"])
    assert not (project.path / "reports").exists()


def test_alluredir_gives_one_allure_test_per_cell_with_the_cell_attached(project):
    project.runpytest_subprocess("-p", "no:cacheprovider", "--alluredir", "allure", "-k", "smoke").assert_outcomes(passed=8)
    results = [json.loads(p.read_text()) for p in (project.path / "allure").glob("*-result.json")]
    assert len(results) == 8
    for result in results:
        assert any(a["name"] == "cell" for a in result.get("attachments", []))
        assert {"name": "tag", "value": "passed"} in result["labels"]
    environment = (project.path / "allure/environment.properties").read_text()
    assert "endpoint.runpod-custom.kind=runpod" in environment.replace(" ", "")
    categories = json.loads((project.path / "allure/categories.json").read_text())
    assert any(c["name"].startswith("Product: missing_node") for c in categories)


def test_github_step_summary_gets_the_matrix_and_the_verdict(project, monkeypatch):
    summary = project.path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    project.runpytest_subprocess("-p", "no:cacheprovider", "--baseline=custom", "--candidate=stock")
    text = summary.read_text()
    assert text.startswith("earlier step\n")  # appended, as GitHub expects
    assert "NO-GO" in text and "| denrisi_zimage |" in text and "RES4LYF" in text
    assert "Traceback" not in text


def test_report_re_renders_a_run_from_its_matrix(project):
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "smoke").assert_outcomes(passed=8)
    run_dir = (project.path / "reports/latest").resolve()
    (run_dir / "report.html").unlink()
    result = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run_dir), "--html"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == str(run_dir / "report.html")
    assert "smoke_invert" in (run_dir / "report.html").read_text()
    missing = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(project.path)], capture_output=True, text=True)
    assert missing.returncode == 4 and missing.stderr.strip().endswith("no matrix.json here (expected a reports/<run-id> directory)")


def test_ctrl_c_mid_run_leaves_a_readable_report(project):
    import signal
    import subprocess
    import sys

    from harness.reference.profile import Profile
    from harness.reference.server import ReferenceServer

    slow = Profile.builtin("stock").replace(class_seconds={"KSampler": 30.0})
    with ReferenceServer(slow) as srv:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--endpoint", f"slow={srv.url}"],
            cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        log = project.path / "reports/latest/cells.jsonl"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            # The smoke case is done (its cell in the log at once); the SDXL case now sits in its 30 s KSampler.
            if log.exists() and any(c["case"] == "smoke_invert" for c in read_cells(log)):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    data = matrix(project)
    assert data["run"]["status"] == "interrupted"
    finished = {c["case"]: c["outcome"] for c in data["cells"]}
    assert finished["smoke_invert"] == "passed" and "sdxl_baseline" not in finished
    assert "smoke_invert" in (project.path / "reports/latest/matrix.md").read_text()


def test_case_input_images_reach_loadimage_where_the_provider_takes_them(project):
    from PIL import Image

    Image.new("RGB", (64, 48), (10, 200, 30)).save(project.path / "cases/in_64x48.png")
    (project.path / "workflows/load_invert.json").write_text(json.dumps({
        "1": {"class_type": "LoadImage", "inputs": {"image": "in_64x48.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "in"}},
    }))
    (project.path / "cases/inputs.yaml").write_text(
        "cases:\n  - id: with_input\n    workflow: ../workflows/load_invert.json\n    images: [in_64x48.png]\n"
        "    outputs: {width: 64, height: 48}\n"
        # Vast's api-wrapper takes input images only as URLs inside the workflow; the Modal app takes only the workflow.
        "    expect: {default: passed, vast-stock: invalid_input, vast-custom: invalid_input, modal-stock: invalid_input,"
        " modal-custom: invalid_input}\n")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "with_input and not vast and not modal").assert_outcomes(passed=4)
    by = cells(matrix(project))
    assert by[("with_input", "stock")]["images"][0]["width"] == 64
    assert by[("with_input", "runpod-custom")]["outcome"] == "passed"
    # Apart: the envelopes of a profile share one reference server, so a native upload would reach Vast too.
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "with_input and (vast or modal)").assert_outcomes(passed=4)
    assert "in_64x48.png" in cells(matrix(project))[("with_input", "vast-stock")]["evidence"]["message"]
    assert "in_64x48.png" in cells(matrix(project))[("with_input", "modal-stock")]["evidence"]["message"]
    assert by[("with_input", "stock")]["repro"].startswith("curl -sS -X POST http://127.0.0.1:")
    assert "/upload/image -F image=@" in by[("with_input", "stock")]["repro"]
    bad = project.path / "cases/inputs.yaml"
    bad.write_text(bad.read_text().replace("images: [in_64x48.png]", "images: [nope.png]"))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "with_input")
    result.stderr.fnmatch_lines(["*inputs.yaml: $.cases[[]0].images[[]0]: no such image file *nope.png"])
