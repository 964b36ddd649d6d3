"""README's examples, run as written: its "Pointing it at real endpoints" and go/no-go commands (the
reference endpoint standing in for the hosts they name, a home folder of workflows), and its
endpoints.yaml and case file, loaded under the strict schemas.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, matrix
from harness.reference.server import ReferenceServer


def commands(section: str) -> list[str]:
    """The command lines of the first ``sh`` block under ``section`` (a heading), comments dropped."""
    text = (ROOT / "README.md").read_text().split(f"\n{section}\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", text, flags=re.S)[1]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture
def servers():
    with ReferenceServer("stock") as stock, ReferenceServer("custom") as custom:
        yield stock, custom


def test_the_endpoint_examples_run_the_cases(project, servers, tmp_path, monkeypatch):
    stock, custom = servers
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "our-workflows").mkdir()
    shutil.copy(ROOT / "workflows/smoke_invert.json", tmp_path / "our-workflows/smoke.json")
    (project.path / "endpoints.yaml").write_text(f"endpoints:\n  prod: {{url: '{custom.url}', profile: custom}}\n")
    (project.path / "tests").mkdir()  # what a misread path option would run instead
    (project.path / "tests/test_not_a_case.py").write_text("def test_not_a_case():\n    pass\n")
    hosts = {"http://127.0.0.1:8188": custom.url, "http://gpu-a:8188": custom.url, "http://gpu-b:8188": custom.url}
    lines = commands("## Pointing it at real endpoints")
    assert len(lines) == 5 and all(line.startswith("pytest ") for line in lines)
    for line in lines:
        for host, url in hosts.items():
            line = line.replace(host, url)
        # The default run (no endpoint) for the last one; stock names the stock reference.
        line = line.replace(f"stock={custom.url}", f"stock={stock.url}")
        result = project.runpytest_subprocess("-p", "no:cacheprovider", *shlex.split(line)[1:])
        assert result.ret == 0, (line, result.stdout.str()[-3000:], result.stderr.str()[-2000:])
        assert "test_not_a_case" not in result.stdout.str()
        assert "cases/test_compat.py" in result.stdout.str()
    assert (project.path / "out/latest/matrix.json").is_file()  # --report-dir=out/


def test_the_go_no_go_example_exits_as_its_comment_says(project, servers):
    stock, custom = servers
    (project.path / "endpoints.yaml").write_text(
        f"endpoints:\n  prod: {{url: '{custom.url}', profile: custom}}\n"
        f"  runpod: {{kind: runpod, url: '{stock.url}/runpod/v2/stock', profile: stock}}\n")
    run, echo, verdict = commands("## Go/no-go before a migration")
    assert echo == "echo $?"
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *shlex.split(run)[1:])
    assert result.ret == 10  # NO-GO: Denrisi needs RES4LYF and ControlAltAI-Nodes on the stock worker
    again = subprocess.run([sys.executable, "-m", "harness.cli", *shlex.split(verdict)[1:]], cwd=project.path,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 10 and "NO-GO for moving from prod to runpod" in again.stdout


def yaml_block(top: str) -> str:
    """The first ``yaml`` block of README whose text starts with the key ``top``."""
    return next(b for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S) if b.startswith(f"{top}:"))


def test_the_endpoints_and_case_file_examples_are_valid_as_written(tmp_path, monkeypatch):
    from harness.run.cases import load_case_files
    from harness.run.endpoints import load_endpoints_file

    endpoints, case_file = yaml_block("endpoints"), yaml_block("cases")
    for var in set(re.findall(r"\$\{(\w+)\}", endpoints)):
        monkeypatch.setenv(var, "set-for-test")
    (tmp_path / "endpoints.yaml").write_text(endpoints)
    (tmp_path / "runpod-object_info.json").write_text("{}")
    assert len(load_endpoints_file(tmp_path / "endpoints.yaml")) == len(yaml.safe_load(endpoints)["endpoints"])
    cases = tmp_path / "cases"
    (cases / "inputs").mkdir(parents=True)
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    (cases / "inputs/portrait.png").write_bytes(b"")  # only its existence is checked when loading
    (cases / "seed.yaml").write_text(case_file)
    [case] = load_case_files([cases / "seed.yaml"]).cases
    assert case.id == "denrisi_zimage" and case.repeat == 20


def test_the_reliability_examples_run_as_written(project, servers):
    """README's "Reliability, latency and cost" commands: 100 attempts that each really execute, a cold
    request after the idle period, an xdist run merged into one matrix, and two shards merged into one run."""
    _, custom = servers
    (project.path / "endpoints.yaml").write_text(
        f"endpoints:\n  prod: {{url: '{custom.url}', profile: custom, cold_start: {{idle: 0.5}}}}\n")
    repeat, cold, xdist, shard, merge = commands("## Reliability, latency and cost")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *shlex.split(repeat)[1:])
    assert result.ret == 0, result.stdout.str()[-2000:]
    [cell] = matrix(project)["cells"]
    assert cell["case"] == "sdxl_baseline" and len(cell["attempts"]) == 100
    assert cell["stats"]["passed"] == 100 and cell["stats"]["wholly_cached"] == 0
    assert len({a["seeds"]["3.seed"] for a in cell["attempts"]}) == 100  # every attempt its own generation
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *shlex.split(cold)[1:])
    assert result.ret == 0, result.stdout.str()[-2000:]
    [cell] = matrix(project)["cells"]
    assert cell["case"] == "smoke_invert" and cell["attempts"][0]["cold"] is True
    result = project.runpytest_subprocess("-p", "no:cacheprovider", *shlex.split(xdist)[1:])
    assert result.ret == 0, result.stdout.str()[-2000:]
    merged = matrix(project)
    assert merged["run"]["status"] == "complete"
    assert len(merged["cells"]) == len(merged["cases"]) * len(merged["endpoints"]) == 40
    for line in (shard, shard.replace("1/2", "2/2").replace("shards/1", "shards/2")):  # job 2, as its comment says
        result = project.runpytest_subprocess("-p", "no:cacheprovider", *shlex.split(line)[1:])
        assert result.ret == 0, result.stdout.str()[-2000:]
    done = subprocess.run([sys.executable, "-m", "harness.cli", *shlex.split(merge)[1:]], cwd=project.path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # GO: every case that runs on stock runs on custom
    one = matrix(project)
    assert one["run"]["selection"] is None and len(one["cells"]) == 40 and one["verdict"]["decision"] == "GO"
