"""Path options written with a space or with ``=``, ``~`` expanded; where pytest would have read the
path as a test path (and so missed pytest.ini and collected other tests), a one-line stop instead.
"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import ROOT



@pytest.fixture
def flows(tmp_path_factory: pytest.TempPathFactory):
    """A folder of workflows outside the project, as ``~/our-workflows`` is."""
    home = tmp_path_factory.mktemp("home")
    (home / "flows").mkdir()
    shutil.copy(ROOT / "workflows/smoke_invert.json", home / "flows/mine.json")
    return home


def test_an_outside_path_after_a_space_stops_at_once_saying_to_write_equals(project, flows):
    (project.path / "tests").mkdir()
    # What pytest would run instead: the project's own tests.
    (project.path / "tests/test_other.py").write_text("def test_other():\n    pass\n")
    for option in ("--workflows", "--report-dir", "--endpoints-file", "--compare-to"):
        result = project.runpytest_subprocess("-p", "no:cacheprovider", option, str(flows / "flows"))
        assert result.ret == pytest.ExitCode.USAGE_ERROR, option
        result.stderr.fnmatch_lines([f"ERROR: {option} {flows}/flows: pytest read it as a test path*write {option}={flows}/flows"])
        assert "test_other" not in result.stdout.str()
    assert not (flows / "flows/latest").exists()


def test_equals_and_tilde_work(project, flows, monkeypatch):
    monkeypatch.setenv("HOME", str(flows))
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows=~/flows", "--report-dir=~/out", "-k", "mine@stock")
    result.assert_outcomes(passed=1)
    assert (flows / "out/latest/matrix.json").is_file() and not (project.path / "reports").exists()
    first = (flows / "out/latest").resolve()
    again = project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows=~/flows", "--report-dir=~/out",
                                         f"--compare-to=~/out/{first.name}", "-k", "mine@stock")
    again.assert_outcomes(passed=1)
    assert (flows / "out/latest/matrix.json").is_file()


def test_a_space_is_fine_where_pytest_picks_the_same_ini(project):
    (project.path / "mine").mkdir()
    shutil.copy(ROOT / "workflows/smoke_invert.json", project.path / "mine/smoke.json")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--workflows", "mine", "--report-dir", "out", "-k", "smoke@stock")
    result.assert_outcomes(passed=1)
    data = json.loads((project.path / "out/latest/matrix.json").read_text())
    assert [c["case"] for c in data["cells"]] == ["smoke"]
