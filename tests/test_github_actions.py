"""The GitHub Actions jobs users copy, run as written: README's sharded nightly (a matrix of four shard jobs,
then a merge job) and examples/github-actions-nightly.yml (two nights, the second comparing with the
first through the cache).

A small stand-in for the runner plays each job in a fresh checkout of the project: its ``run:`` steps in
bash with the job's ``${{ ... }}`` expressions filled in, and the few actions the jobs use (checkout,
setup-python, upload/download-artifact, cache restore/save) as the file copies they amount to. Installing
(``pip install -e .``) is the one thing skipped: the harness is installed in this environment already.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from harness.reference.server import ReferenceServer

_INSTALL = re.compile(r"^(python -m )?pip install -e \. && |^(python -m )?pip install -e \.$")
_EXPRESSION = re.compile(r"\$\{\{\s*([\w.]+)\s*\}\}")


class Runner:
    """One run of a workflow file, number ``run``: its jobs' checkouts and artefacts under ``root``, and the
    cache, which outlives the run (``root/cache``)."""

    def __init__(self, root: Path, project: Path, run: int = 1) -> None:
        self.root, self.project, self.run = root / f"run-{run}", project, run
        self.artifacts, self.cache = self.root / "artifacts", root / "cache"
        self.env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        self.env.pop("GITHUB_STEP_SUMMARY", None)
        self.output: dict[tuple[str, ...], str] = {}
        """The last run step's stdout and stderr, by job and matrix values."""

    def job(self, name: str, job: dict, values: dict[str, str]) -> tuple[Path, int]:
        """Run one job (one matrix entry) in a fresh checkout: its directory, and the exit status of the step
        that failed it (0 if none did). As on GitHub, a failed step skips the rest but ``if: always()``."""
        work = self.root / (name + "".join(f"-{v}" for v in values.values()))
        failed = 0
        for step in job["steps"]:
            if failed and step.get("if") != "always()":
                continue
            uses, run = step.get("uses", ""), step.get("run")
            with_ = {k: self.fill(str(v), values) for k, v in (step.get("with") or {}).items()}
            if uses.startswith("actions/checkout@"):
                shutil.copytree(self.project, work)
            elif uses.startswith("actions/setup-python@"):
                pass
            elif uses.startswith("actions/upload-artifact@"):
                shutil.copytree(work / with_["path"], self.artifacts / with_["name"], symlinks=False)
            elif uses.startswith("actions/download-artifact@"):
                pattern = with_["pattern"]
                for artifact in sorted(self.artifacts.glob(pattern)):
                    shutil.copytree(artifact, work / with_["path"] / artifact.name)
            elif uses.startswith("actions/cache/restore@"):
                if self.cache.is_dir():
                    shutil.copytree(self.cache, work / with_["path"], symlinks=True, dirs_exist_ok=True)
            elif uses.startswith("actions/cache/save@"):
                shutil.rmtree(self.cache, ignore_errors=True)
                shutil.copytree(work / with_["path"], self.cache, symlinks=True)
            elif run is not None:
                script = _INSTALL.sub("", self.fill(run, values).strip())
                env = {**self.env, **{k: self.fill(str(v), values) for k, v in (step.get("env") or {}).items()}}
                done = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                                      timeout=300)
                self.output[name, *values.values()] = done.stdout + done.stderr
                failed = done.returncode
            else:
                raise AssertionError(f"job {name}: a step this runner does not know: {step}")
        return work, failed

    def fill(self, text: str, values: dict[str, str]) -> str:
        """``${{ matrix.X }}`` from the matrix entry, ``${{ secrets.X }}`` a stand-in, ``github.run_id`` the run's."""
        def value(match: re.Match) -> str:
            scope, _, key = match[1].partition(".")
            if scope == "matrix":
                return values[key]
            if scope == "secrets":
                return f"secret-{key.lower()}"
            assert match[1] == "github.run_id", f"an expression this runner does not know: {match[0]}"
            return str(self.run)
        return _EXPRESSION.sub(value, text)


def _readme_yaml(needle: str) -> dict:
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return yaml.safe_load(next(b for b in blocks if needle in b))


@pytest.fixture
def servers():
    with ReferenceServer("stock") as stock, ReferenceServer("custom") as custom:
        yield stock, custom


@pytest.fixture
def checkout(tmp_path, servers) -> Path:
    """The project a team keeps: the cases and workflows, pytest.ini and an endpoints file (prod, runpod)."""
    stock, custom = servers
    project = tmp_path / "repo"
    for folder in ("cases", "workflows"):
        shutil.copytree(ROOT / folder, project / folder)
    shutil.copy(ROOT / "pytest.ini", project / "pytest.ini")
    (project / "endpoints.yaml").write_text(
        f"endpoints:\n  prod: {{url: '{custom.url}', profile: custom}}\n"
        f"  runpod: {{kind: runpod, url: '{stock.url}/runpod/v2/stock', profile: stock}}\n")
    return project


def test_the_readme_sharded_nightly_makes_one_run_of_its_four_shards(tmp_path, checkout):
    workflow = _readme_yaml("matrix: {shard:")
    compat, merge = workflow["jobs"]["compat"], workflow["jobs"]["merge"]
    assert merge["needs"] == "compat"
    runner = Runner(tmp_path, checkout)
    shards = compat["strategy"]["matrix"]["shard"]
    for shard in shards:
        _, failed = runner.job("compat", compat, {"shard": str(shard)})
        # A shard's cells fail pytest where they are not as expected (Denrisi on the stock worker, exit 1).
        assert failed in (0, 1), runner.output["compat", str(shard)][-3000:]
    work, failed = runner.job("merge", merge, {})
    # The merge job's command asks for the verdict, and exits as the one run would: Denrisi's custom nodes are
    # missing on the stock worker behind runpod, NO-GO (10) fails the job.
    assert failed == 10, runner.output["merge",][-3000:]
    run = json.loads((work / "reports/latest/matrix.json").read_text())
    cases = len(run["cases"])
    assert run["run"]["status"] == "complete" and run["run"]["selection"] is None
    assert len(run["cells"]) == cases * 2 and len({(c["case"], c["endpoint"]) for c in run["cells"]}) == cases * 2
    assert run["verdict"]["decision"] == "NO-GO"
    parts = [json.loads((p / "matrix.json").read_text())["run"]["shard"] for p in (work / "shards").iterdir()]
    assert sorted(p["index"] for p in parts) == shards and {p["count"] for p in parts} == {len(shards)}


def test_the_example_nightly_compares_each_night_with_the_last(tmp_path, checkout):
    workflow = yaml.safe_load((ROOT / "examples/github-actions-nightly.yml").read_text())
    [job] = workflow["jobs"].values()
    runner = Runner(tmp_path, checkout, run=1)
    first, failed = runner.job("night", job, {})
    assert failed == 0, runner.output["night",][-3000:]
    earlier = json.loads((first / "reports/latest/matrix.json").read_text())
    assert earlier["run"]["compare_to"] is None and earlier["drift"] is None
    # The second night's gate runs `comfy-compat diff` against the first night, restored from the cache.
    runner = Runner(tmp_path, checkout, run=2)
    second, failed = runner.job("night", job, {})
    assert failed == 0, runner.output["night",][-3000:]
    assert earlier["run"]["id"] in runner.output["night",]
    night = json.loads((second / "reports/latest/matrix.json").read_text())
    assert Path(night["run"]["compare_to"]).name == earlier["run"]["id"]
    assert night["drift"]["cells"]["new_failures"] == []
    assert json.loads((runner.artifacts / "compat-reports/matrix.json").read_text())["run"]["id"] == night["run"]["id"]
