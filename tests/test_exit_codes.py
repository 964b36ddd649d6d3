"""Exit statuses end to end: a failing cell fails the run whatever the verdict, NO-GO and UNDECIDABLE
have codes apart from pytest's, the legacy scheme still gives the old 0/1/2, and ``comfy-compat
verdict/diff/report`` leave a run's files alone unless told ``--write``.
"""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT, matrix
from harness import exitcodes

# smoke_invert again, expected to fail on custom where it passes: a cell that is not as expected.
WRONG = ("cases:\n  - id: smoke_wrong\n    workflow: ../workflows/smoke_invert.json\n"
         "    expect: {default: passed, custom: missing_node}\n")
BOTH_NATIVE = "smoke_wrong@stock or smoke_wrong@custom"


def comfy_compat(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_a_go_verdict_with_a_failing_cell_exits_1(project):
    (project.path / "cases/wrong.yaml").write_text(WRONG)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", BOTH_NATIVE, "--baseline=stock", "--candidate=custom")
    result.assert_outcomes(passed=1, failed=1)
    assert matrix(project)["verdict"]["decision"] == "GO"
    assert result.ret == 1
    result.stdout.fnmatch_lines(["exit status 1: a cell is not its expected outcome*"])


def test_legacy_exit_codes_keep_the_verdict_alone_and_say_so(project):
    (project.path / "cases/wrong.yaml").write_text(WRONG)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", BOTH_NATIVE, "--baseline=stock", "--candidate=custom",
                                          "--exit-codes=legacy")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["exit status 0: legacy exit codes: GO although a cell is not as expected (v2 would exit 1)"])
    nogo = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "denrisi_zimage@", "--baseline=custom",
                                        "--candidate=stock", "-o", "comfy_exit_codes=legacy")
    assert nogo.ret == 1


def test_no_go_exits_10_even_when_every_cell_is_as_expected(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "denrisi_zimage@stock or denrisi_zimage@custom",
                                          "--baseline=custom", "--candidate=stock")
    result.assert_outcomes(passed=2)
    assert result.ret == exitcodes.Exit.NO_GO == 10


def test_cli_verdict_prints_and_a_misspelt_endpoint_writes_nothing(project):
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "denrisi_zimage@stock or denrisi_zimage@custom")
    run_dir = (project.path / "reports/latest").resolve()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}

    typo = comfy_compat("verdict", str(run_dir), "--baseline", "custom", "--candidate", "stok", cwd=project.path)
    assert typo.returncode == exitcodes.Exit.USAGE_ERROR
    assert typo.stderr.startswith(f"comfy-compat: --candidate 'stok': no such endpoint in {run_dir} (endpoints: stock, ")
    assert len(typo.stderr.splitlines()) == 1
    judged = comfy_compat("verdict", str(run_dir), "--baseline", "custom", "--candidate", "stock", cwd=project.path)
    assert judged.returncode == 10 and "NO-GO" in judged.stdout
    legacy = comfy_compat("verdict", str(run_dir), "--baseline", "custom", "--candidate", "stock", "--exit-codes", "legacy",
                          cwd=project.path)
    assert legacy.returncode == 1
    drift = comfy_compat("diff", str(run_dir), str(run_dir), cwd=project.path)
    assert drift.returncode == exitcodes.Exit.USAGE_ERROR  # a run compared with itself
    report = comfy_compat("report", str(run_dir), cwd=project.path)
    assert report.returncode == exitcodes.Exit.USAGE_ERROR
    assert report.stderr.strip() == f"comfy-compat: report: report.html, matrix.md already in {run_dir}; --write overwrites"
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before

    comfy_compat("verdict", str(run_dir), "--baseline", "custom", "--candidate", "stock", "--write", cwd=project.path)
    assert matrix(project)["verdict"]["decision"] == "NO-GO"
    assert comfy_compat("report", str(run_dir), "--write", cwd=project.path).returncode == 0


def test_a_bad_cli_argument_exits_4_not_argparses_2(tmp_path):
    result = comfy_compat("verdict", str(tmp_path), cwd=tmp_path)
    assert result.returncode == exitcodes.Exit.USAGE_ERROR
    assert "the following arguments are required: --baseline, --candidate" in result.stderr


def test_the_table_is_in_readme_and_both_helps():
    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", readme, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == {int(code): text for code, text in exitcodes.TABLE}
    cli_help = comfy_compat("--help", cwd=ROOT).stdout
    assert all(f"{int(code):>2}  {text}" in cli_help for code, text in exitcodes.TABLE)
    pytest_help = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "10 verdict NO-GO" in " ".join(pytest_help.split())
