"""UI-format workflows in the harness: converted per endpoint with its own catalogue and frontend, what
only a UI file knows (its packs and model URLs) used in the evidence, and ``comfy-compat convert``.

The converter's own fidelity is tests/test_convert*.py; these tests check what the harness does with it,
over loopback against the reference endpoint.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cells, load_json, matrix
from harness.comfy.packs import CORE_URL, Source, attribute
from harness.comfy.versions import modelled_version
from harness.comfy.workflows import listed_models

SD15_UI = "workflows/sd15_text2img.ui.json"
SD15_API = "workflows/sd15_text2img.api.json"
"""A real UI export and the prompt the real frontends 1.27.10 and 1.49.6 made of it (../shared/corpus)."""
CHROMA_UI = "tests/data/ui/res4lyf_chroma_txt2img.json"
"""RES4LYF's own example workflow (ClownsharkBatwing/RES4LYF example_workflows/chroma_txt2img.json, via ../shared/corpus)."""
RES4LYF_VER = "5ce9b5a77c227bf864e447a1e65305bf6cada5c2"
"""The RES4LYF commit chroma_txt2img's author had, as its ClownsharKSampler_Beta node records."""
MODEL_URL = "https://huggingface.co/example/sd15/resolve/main/absent-v1.safetensors"


@pytest.mark.parametrize(("version", "source", "modelled", "frontend"), [
    ("0.3.64", "/system_stats", "0.3.64", "1.27.10"),
    ("0.3.70", "/system_stats", "0.3.64", "1.27.10"),   # newer than 0.3.64, older than 0.33.0
    ("v0.33.0", "endpoints.yaml", "0.33.0", "1.49.6"),
    ("0.34.2+cu128", "/system_stats", "0.33.0", "1.49.6"),
    ("0.2.1", "/system_stats", "0.3.64", "1.27.10"),    # older than every modelled version: the oldest
    (None, "not served", "0.33.0", "1.49.6"),           # unknown: the current version, and said so
])
def test_the_modelled_version_and_frontend_follow_the_endpoints_comfyui(version, source, modelled, frontend):
    chosen = modelled_version(version, source)
    assert (chosen.version, chosen.frontend) == (modelled, frontend)
    assert source in chosen.reason
    if version is None:
        assert "unknown" in chosen.reason
    elif modelled not in version:
        assert f"modelled as {modelled}" in chosen.reason


def test_the_frontend_a_server_requires_is_followed_and_floored_to_a_modelled_one():
    same = modelled_version("0.3.64", "/system_stats", required_frontend="1.27.10")
    assert (same.frontend, same.reason) == ("1.27.10", "ComfyUI 0.3.64 (/system_stats)")
    newer = modelled_version("0.3.64", "/system_stats", required_frontend="1.52.0")
    assert newer.frontend == "1.49.6" and "frontend 1.52.0 required by the server: modelled as 1.49.6" in newer.reason


def test_a_configured_frontend_wins_and_says_so():
    chosen = modelled_version("0.3.64", "/system_stats", frontend="1.49.6")
    assert (chosen.version, chosen.frontend) == ("0.3.64", "1.49.6") and "as configured" in chosen.reason


def test_the_pack_a_ui_node_declares_comes_before_the_maps_guess():
    declared = attribute("ClownsharKSampler_Beta", {"cnr_id": "RES4LYF", "ver": RES4LYF_VER})
    assert declared.source is Source.DECLARED
    assert (declared.pack.url, declared.pack.version) == ("https://github.com/ClownsharkBatwing/RES4LYF", RES4LYF_VER)
    assert declared.pack.install == "comfy node install RES4LYF"
    # aux_id is a GitHub repository: it is the pack even where the map knows the class under another.
    aux = attribute("FluxResolutionNode", {"aux_id": "someone/flux-fork", "ver": "abc123"})
    assert (aux.source, aux.pack.url) == (Source.DECLARED, "https://github.com/someone/flux-fork")
    assert "https://github.com/gseth/ControlAltAI-Nodes" in [c.url for c in aux.candidates[1:]]
    assert aux.pack.install == "git clone https://github.com/someone/flux-fork ComfyUI/custom_nodes/flux-fork"
    assert attribute("KSampler", {"cnr_id": "comfy-core", "ver": "0.3.29"}).pack.url == CORE_URL
    unknown = attribute("NoSuchNodeAnywhere", {"cnr_id": "some-registry-pack"})
    assert unknown.source is Source.DECLARED and unknown.pack.install == "comfy node install some-registry-pack"
    assert attribute("ClownsharKSampler_Beta", {"Node name for S&R": "x"}).source is not Source.DECLARED


def test_models_a_ui_file_lists_are_found_on_nodes_subgraphs_and_the_top_level():
    ui = {"nodes": [{"id": 1, "properties": {"models": [{"name": "a.safetensors", "url": "https://x/a", "directory": "vae"}]}}],
          "links": [], "models": [{"name": "b.gguf", "url": "https://x/b", "directory": "unet"}],
          "definitions": {"subgraphs": [{"nodes": [{"id": 2, "properties": {"models": [{"name": "c.pt", "url": "https://x/c"}]}}]}]}}
    assert listed_models(ui) == {"a.safetensors": {"url": "https://x/a", "directory": "vae"},
                                 "b.gguf": {"url": "https://x/b", "directory": "unet"}, "c.pt": {"url": "https://x/c"}}


def _ui_with_an_absent_model() -> dict:
    ui = copy.deepcopy(load_json(SD15_UI))
    loader = next(n for n in ui["nodes"] if n["type"] == "CheckpointLoaderSimple")
    loader["widgets_values"] = ["absent-v1.safetensors"]
    loader.setdefault("properties", {})["models"] = [{"name": "absent-v1.safetensors", "url": MODEL_URL, "directory": "checkpoints"}]
    return ui


def test_a_folder_of_ui_exports_gives_each_endpoint_its_own_conversion(project):
    """``--workflows DIR`` of UI exports against two live ComfyUIs: what each really does with the
    prompt its frontend would send, and what only the UI file knows in the evidence."""
    from harness.reference.server import ReferenceServer

    mine = project.mkdir("mine")
    (mine / "sd15.json").write_text((ROOT / SD15_UI).read_text())
    (mine / "chroma.json").write_text((ROOT / CHROMA_UI).read_text())
    (mine / "absent_model.json").write_text(json.dumps(_ui_with_an_absent_model()))
    with ReferenceServer("stock") as stock, ReferenceServer("custom") as custom:
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows=mine",
                                              "--endpoint", f"stock={stock.url}", "--endpoint", f"custom={custom.url}")
    by = cells(matrix(project))
    assert len(by) == 6
    for endpoint in ("stock", "custom"):
        sd15 = by[("sd15", endpoint)]
        assert sd15["outcome"] == "passed", sd15["evidence"]
        assert sd15["conversion"] == {"format": "ui", "comfyui_version": "0.3.64", "frontend": "1.27.10",
                                      "reason": "ComfyUI 0.3.64 (/system_stats)",
                                      "catalogue": f"{(stock if endpoint == 'stock' else custom).url}/object_info"}
        # What was submitted is what the real frontend 1.27.10 made of the same file, to the byte.
        sent = json.loads((project.path / f"reports/latest/cells/sd15@{endpoint}/request.json").read_text())
        assert sent == {"prompt": load_json(SD15_API)}
    chroma = by[("chroma", "stock")]
    assert chroma["outcome"] == "missing_node" and chroma["predicted"] == "missing_node"
    assert "ClownsharKSampler_Beta" in chroma["evidence"]["missing_classes"]
    res4lyf = chroma["evidence"]["packages"]["ClownsharKSampler_Beta"][0]
    assert (res4lyf["source"], res4lyf["url"], res4lyf["version"]) == ("declared", "https://github.com/ClownsharkBatwing/RES4LYF", RES4LYF_VER)
    assert "as the workflow file says" in chroma["evidence"]["message"] and "nothing was submitted" in chroma["evidence"]["message"]
    # On the custom server every class is there: the cell is what ComfyUI says of the converted prompt.
    assert by[("chroma", "custom")]["outcome"] not in ("missing_node", "no_catalogue")
    assert by[("chroma", "custom")]["predicted"] == by[("chroma", "custom")]["outcome"]
    absent = by[("absent_model", "stock")]
    assert absent["outcome"] == "missing_model"
    [model] = absent["evidence"]["missing_models"]
    assert (model["file"], model["folder"], model["url"]) == ("absent-v1.safetensors", "checkpoints", MODEL_URL)
    result.stdout.fnmatch_lines(["*absent_model on stock: missing_model (expected passed)*"])


def test_a_serverless_endpoint_converts_with_its_configured_catalogue_or_says_it_has_none(project):
    from harness.reference.server import ReferenceServer

    mine = project.mkdir("mine")
    (mine / "sd15.json").write_text((ROOT / SD15_UI).read_text())
    with ReferenceServer("stock") as srv:
        (project.path / "endpoints.yaml").write_text(
            "endpoints:\n"
            f"  bare:\n    kind: runpod\n    url: {srv.url}/runpod/v2/stock\n"
            f"  configured:\n    kind: runpod\n    url: {srv.url}/runpod/v2/stock\n    object_info: {srv.url}/object_info\n"
            "    comfyui_version: 0.33.0\n    frontend: 1.27.10\n")
        project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows=mine", "--endpoints-file=endpoints.yaml")
    by = cells(matrix(project))
    bare = by[("sd15", "bare")]
    assert (bare["outcome"], bare["disposition"]) == ("no_catalogue", "infra")
    assert "object_info:" in bare["evidence"]["message"] and bare["repro"] == ""
    configured = by[("sd15", "configured")]
    assert configured["outcome"] == "passed"
    assert configured["conversion"]["frontend"] == "1.27.10" and "as configured" in configured["conversion"]["reason"]
    assert configured["conversion"]["comfyui_version"] == "0.33.0"


def test_an_override_that_misses_the_converted_prompt_is_a_case_error_cell(project):
    """A UI case's overrides apply to the prompt converted with each endpoint's catalogue, so one that names
    no node is found only then: the cell says so (``case_error``, infra, nothing submitted) and is in
    the matrix like any other, where the run's other cells go on; an override that hits is applied."""
    from harness.reference.server import ReferenceServer

    mine = project.mkdir("mine")
    (mine / "sd15.json").write_text((ROOT / SD15_UI).read_text())
    (mine / "cases.yaml").write_text(
        "cases:\n"
        "  - {id: misses, workflow: sd15.json, overrides: {inputs: [{node: '999', input: seed, value: 1}]}}\n"
        "  - {id: hits, workflow: sd15.json, overrides: {steps: 3}}\n")
    with ReferenceServer("stock") as stock:
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "-o", "comfy_cases=mine/cases.yaml",
                                              "--endpoint", f"stock={stock.url}")
    by = cells(matrix(project))
    misses = by[("misses", "stock")]
    assert (misses["outcome"], misses["disposition"], misses["ok"]) == ("case_error", "infra", False)
    assert "override of 'seed': the workflow has no node '999'" in misses["evidence"]["message"]
    assert "mine/cases.yaml: $.cases[0].overrides" in misses["evidence"]["message"]
    assert not (project.path / "reports/latest/cells/misses@stock/request.json").exists()
    assert by[("hits", "stock")]["outcome"] == "passed"
    sent = json.loads((project.path / "reports/latest/cells/hits@stock/request.json").read_text())["prompt"]
    assert [node["inputs"]["steps"] for node in sent.values() if "steps" in node["inputs"]] == [3]
    result.stdout.fnmatch_lines(["*misses on stock: case_error (expected passed)*", "*2 cells: 1 case_error, 1 passed*"])
    assert result.ret == 1


def test_a_dynamic_prompt_is_picked_once_per_case_for_every_endpoint():
    """``{a|b}`` in a prompt: the frontend picks at random on each queue; a case picks the same way on
    every endpoint, frontend and night (by its id), so its cells compare; another case may pick another."""
    from harness.comfy.catalogue import load_catalogue
    from harness.run.cases import Case

    ui = load_json(SD15_UI)
    [text_node] = [n for n in ui["nodes"] if n["type"] == "CLIPTextEncode" and "beautiful" in n["widgets_values"][0]]
    options = ["red", "green", "blue", "black", "white"]
    text_node["widgets_values"][0] = "a {red|green|blue|black|white} fox"
    catalogue = load_catalogue(ROOT / "fixtures/object_info/stock.json")

    def texts(case_id: str) -> set[str]:
        case = Case(id=case_id, workflow=ui, workflow_path=ROOT / SD15_UI)
        return {case.prompt_for(catalogue, frontend)[str(text_node["id"])]["inputs"]["text"]
                for frontend in ("1.27.10", "1.49.6") for _ in range(3)}

    [picked] = texts("fox")
    assert picked in {f"a {colour} fox" for colour in options}
    assert len({next(iter(texts(f"fox-{i}"))) for i in range(20)}) > 1


def _convert(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "convert", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_convert_one_file_to_stdout_as_the_live_endpoints_frontend(reference_endpoint):
    srv = reference_endpoint("stock")
    done = _convert(SD15_UI, "--object-info", srv.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == load_json(SD15_API)
    assert "frontend 1.27.10 (ComfyUI 0.3.64 (/system_stats))" in done.stderr


def test_convert_a_folder_writes_every_file_it_can_and_fails_the_rest_in_one_line(tmp_path):
    flows, out = tmp_path / "flows", tmp_path / "out"
    flows.mkdir()
    (flows / "sd15.json").write_text((ROOT / SD15_UI).read_text())
    (flows / "smoke.json").write_text((ROOT / "workflows/smoke_invert.json").read_text())  # API already: kept as is
    foreign = copy.deepcopy(load_json(SD15_UI))
    foreign["nodes"][0]["type"] = "NoSuchClassAnywhere"
    (flows / "foreign.json").write_text(json.dumps(foreign))
    (flows / "broken.json").write_text("{not json")
    done = _convert(str(flows), "--object-info", str(ROOT / "fixtures/object_info/stock.json"), "--out", str(out))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "foreign.json" in line or "broken.json" in line]
    assert len(errors) == 2 and any("NoSuchClassAnywhere" in line for line in errors), done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["sd15.json", "smoke.json"]
    assert json.loads((out / "smoke.json").read_text()) == load_json("workflows/smoke_invert.json")
    # A saved catalogue tells no version: the current frontend unless one is given.
    assert "frontend 1.49.6" in done.stderr


def test_readmes_convert_commands_run_as_written(reference_endpoint, tmp_path):
    """README's "UI workflows" commands through a shell: the first from the project root, the second with a
    home folder of UI exports and the reference endpoint standing in for the ComfyUI it names."""
    text = (ROOT / "README.md").read_text().split("\n## UI workflows\n", 1)[1]
    lines = [line.split("  #")[0].strip() for line in re.search(r"```sh\n(.*?)```", text, flags=re.S)[1].splitlines()]
    assert len(lines) == 2 and all(line.startswith("comfy-compat convert ") for line in lines)
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.run(["bash", "-c", lines[0]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "frontend 1.27.10" in first.stderr, first.stderr
    assert json.loads(first.stdout) == load_json(SD15_API)
    (tmp_path / "our-workflows").mkdir()
    (tmp_path / "our-workflows/sd15.json").write_text((ROOT / SD15_UI).read_text())
    srv = reference_endpoint("stock")
    second = lines[1].replace("http://127.0.0.1:8188", srv.url)
    done = subprocess.run(["bash", "-c", second], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "(ComfyUI 0.3.64 (/system_stats))" in done.stderr, done.stderr
    assert json.loads((tmp_path / "api/sd15.json").read_text()) == load_json(SD15_API)


def test_convert_refuses_several_files_without_out_and_a_missing_catalogue(tmp_path):
    many = _convert(SD15_UI, SD15_UI, "--object-info", str(ROOT / "fixtures/object_info/stock.json"))
    assert many.returncode != 0 and "--out DIR" in many.stderr and "Traceback" not in many.stderr
    missing = _convert(SD15_UI, "--object-info", str(tmp_path / "nope.json"))
    assert missing.returncode != 0 and "no such file" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_convert_refuses_unknown_nodes_or_sends_them_as_the_frontend_does():
    """RES4LYF's example against a stock catalogue: refused by default (one line, exit 1); with
    ``--unknown-nodes=send`` written as the frontend sends it, the missing classes named."""
    stock = str(ROOT / "fixtures/object_info/stock.json")
    refused = _convert(CHROMA_UI, "--object-info", stock, "--comfyui-version", "0.3.64")
    assert refused.returncode == 1 and refused.stdout == "" and "ClownsharKSampler_Beta" in refused.stderr
    sent = _convert(CHROMA_UI, "--object-info", stock, "--comfyui-version", "0.3.64", "--unknown-nodes=send")
    assert sent.returncode == 0, sent.stderr
    prompt = json.loads(sent.stdout)
    unknown = [node for node in prompt.values() if "class_type" not in node]
    assert unknown and all(set(node) == {"inputs", "_meta"} for node in unknown)
    assert any(name.startswith("UNKNOWN") for node in unknown for name in node["inputs"])
    assert "ClownsharKSampler_Beta" in sent.stderr and "ComfyUI will refuse the prompt" in sent.stderr


@pytest.mark.parametrize(("version", "frontend"), [("0.3.64", "1.27.10"), ("0.33.0", "1.49.6")])
def test_corpus_ui_exports_get_the_outcome_the_frontends_own_prompt_gets(project, version, frontend):
    """Every full-fidelity corpus UI file and the prompt the real frontend made of it, side by side on one
    live custom-node reference of the ComfyUI that pins that frontend: each UI cell must read exactly as
    its twin's, and send the very same prompt."""
    from harness.reference.profile import load_profile
    from harness.reference.server import ReferenceServer

    corpus = ROOT.parent / "shared/corpus"
    if not (corpus / "index.json").is_file():
        pytest.skip(f"../shared/corpus is not here ({corpus}): the UI files and the frontend's prompts come from it")
    index = json.loads((corpus / "index.json").read_text())["ui"]
    names = sorted(n for n, v in index.items() if v[f"frontend-{frontend}"]["full_fidelity"])
    mine = project.mkdir("mine")
    for i, name in enumerate(names):
        (mine / f"f{i:03d}_ui.json").write_text((corpus / "ui" / name).read_text())
        (mine / f"f{i:03d}_api.json").write_text((corpus / f"frontend-{frontend}" / name).read_text())
    with ReferenceServer(load_profile("custom", version)) as srv:
        project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows=mine", "--endpoint", f"custom={srv.url}")
    by = cells(matrix(project))
    assert len(by) == 2 * len(names)
    differ = []
    for i, name in enumerate(names):
        ui, api = by[(f"f{i:03d}_ui", "custom")], by[(f"f{i:03d}_api", "custom")]
        sent = [json.loads((project.path / f"reports/latest/cells/{case}@custom/request.json").read_text())
                for case in (f"f{i:03d}_ui", f"f{i:03d}_api")]
        if (ui["outcome"], ui["evidence"].get("message"), sent[0]) != (api["outcome"], api["evidence"].get("message"), sent[1]):
            differ.append(f"{name}: ui {ui['outcome']} {ui['evidence'].get('message')!r} / api {api['outcome']} {api['evidence'].get('message')!r} same prompt: {sent[0] == sent[1]}")
    print(f"ui cells as their frontend {frontend} twins on ComfyUI {version}: {len(names) - len(differ)}/{len(names)}")
    assert not differ, differ


async def test_endpoints_naming_one_catalogue_read_it_once_and_a_late_one_says_so(tmp_path):
    """The default run's envelopes share their server's /object_info: one read of those megabytes, not
    one per column; an endpoint whose catalogue comes too late has a cell that says exactly that."""
    from aiohttp import web

    from harness.report.matrix import MatrixWriter
    from harness.run.cases import cases_from_workflows
    from harness.run.endpoints import Endpoint, Timeouts
    from harness.run.engine import Engine

    reads: list[str] = []
    info = load_json("fixtures/object_info/stock.json")
    never = asyncio.Event()

    async def object_info(request: web.Request) -> web.Response:
        reads.append(request.path)
        return web.json_response(info)

    async def stalled(request: web.Request) -> web.Response:
        await never.wait()
        return web.json_response(info)

    app = web.Application()
    app.router.add_get("/object_info", object_info)
    app.router.add_get("/slow/object_info", stalled)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "sd15.json").write_text((ROOT / SD15_UI).read_text())
    [case] = cases_from_workflows(flows).cases
    shared = [Endpoint(f"e{i}", f"http://127.0.0.1:9/runpod/v2/x{i}", kind="runpod", object_info=f"{url}/object_info")
              for i in range(3)]
    # connect 0.1 s: the introduction may take 5.1 s, and this catalogue never comes.
    late = Endpoint("late", "http://127.0.0.1:9/runpod/v2/late", kind="runpod", object_info=f"{url}/slow/object_info",
                    timeouts=Timeouts(connect=0.1, queue=1, execution=1))
    engine = Engine([*shared, late], MatrixWriter(tmp_path / "reports", "r1"))
    try:
        await engine.start()
        await engine.run_cell(case, "e1")
        assert reads == ["/object_info"]
        assert engine.catalogues["e0"] is engine.catalogues["e1"] is engine.catalogues["e2"] is not None
        cell = await engine.run_cell(case, "late")
        assert cell.outcome.value == "no_catalogue"
        assert "did not give its catalogue within 5.1 s" in cell.evidence["message"]
    finally:
        never.set()
        await engine.close()
        await runner.cleanup()
