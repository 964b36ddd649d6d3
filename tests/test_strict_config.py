"""Config mistakes are one-line errors before anything runs: unknown keys (with the key meant), a name or
key given twice, ``${VAR}`` in a url (working, never printed), every unset variable at once, a case glob
matching nothing; ``comfy-compat serve`` on a busy port and ``comfy-compat --version``.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from conftest import ROOT, cells, matrix
from harness.errors import ConfigError
from harness.reference.profile import load_profile
from harness.run.cases import load_case_files
from harness.run.endpoints import load_endpoints_file


def usage_error(result: pytest.RunResult, line: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_unknown_endpoint_keys_are_named_with_the_key_meant(project):
    (project.path / "endpoints.yaml").write_text(
        "endpoints:\n  prod:\n    url: http://127.0.0.1:9\n    timouts: {connect: 1}\n    max_concurency: 2\ntimeout: 3\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml")
    usage_error(result, "ERROR: */endpoints.yaml: $: unknown key 'timeout' (expected one of endpoints, verdict); "
                        "$.endpoints.prod: unknown key 'timouts' (did you mean 'timeouts'?); "
                        "unknown key 'max_concurency' (did you mean 'max_concurrency'?)")
    assert not (project.path / "reports").exists()


def test_unknown_keys_in_case_files_and_profiles(tmp_path):
    case = tmp_path / "c.yaml"
    case.write_text("cases:\n  - id: x\n    workflow: w.json\n    expects: passed\n")
    with pytest.raises(ConfigError, match=r"c.yaml: \$.cases\[0\]: unknown key 'expects' \(did you mean 'expect'\?\)$"):
        load_case_files([case])
    profile = tmp_path / "p.yaml"
    profile.write_text(f"name: p\ncatalogue: {ROOT}/fixtures/object_info/stock.json\nexecutoin: {{capacity: 2}}\n")
    with pytest.raises(ConfigError, match=r"p.yaml: \$: unknown key 'executoin' \(did you mean 'execution'\?\)$"):
        load_profile(profile)


def test_a_key_written_twice_in_a_file_is_an_error(tmp_path):
    path = tmp_path / "endpoints.yaml"
    path.write_text("endpoints:\n  mine: {url: 'http://a:1'}\n  mine: {url: 'http://b:1'}\n")
    with pytest.raises(ConfigError, match=r"endpoints.yaml: not valid YAML \(line 3\): key 'mine' is written twice in one mapping$"):
        load_endpoints_file(path)


def test_an_endpoint_name_given_twice_is_an_error(project):
    twice = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoint=mine=http://127.0.0.1:9",
                                         "--endpoint=mine=http://127.0.0.1:10")
    usage_error(twice, "ERROR: endpoint name 'mine' is given twice: by --endpoint mine=http://127.0.0.1:9 "
                       "and by --endpoint mine=http://127.0.0.1:10; name them apart (--endpoint NAME=URL)")
    (project.path / "endpoints.yaml").write_text("endpoints:\n  mine: {url: 'http://127.0.0.1:9'}\n")
    both = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoint=mine=http://127.0.0.1:10",
                                        "--endpoints-file=endpoints.yaml")
    usage_error(both, "ERROR: endpoint name 'mine' is given twice: by --endpoint mine=http://127.0.0.1:10 and by *endpoints.yaml;*")


def test_a_variable_in_a_url_is_filled_in_and_never_printed(project, monkeypatch):
    from harness.reference.server import ReferenceServer

    with ReferenceServer("stock") as srv:
        host, port = srv.url.removeprefix("http://").split(":")
        monkeypatch.setenv("TEST_COMFY_PORT", port)
        (project.path / "endpoints.yaml").write_text("endpoints:\n  mine: {url: 'http://" + host + ":${TEST_COMFY_PORT}'}\n")
        result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml", "-k", "smoke")
    result.assert_outcomes(passed=1)
    data = matrix(project)
    assert data["endpoints"][0]["url"] == f"http://{host}:${{TEST_COMFY_PORT}}"
    # Double-quoted: the shell fills the variable in when the repro is replayed.
    assert cells(data)[("smoke_invert", "mine")]["repro"].startswith(f'curl -sS -X POST "http://{host}:${{TEST_COMFY_PORT}}/prompt"')
    written = "".join(p.read_text(errors="replace") for p in (project.path / "reports/latest").rglob("*") if p.is_file())
    assert f":{port}" not in written


def test_every_unset_variable_is_named_at_once(project, monkeypatch):
    for var in ("NO_SUCH_KEY_A", "NO_SUCH_KEY_B", "NO_SUCH_HOST_C"):
        monkeypatch.delenv(var, raising=False)
    (project.path / "endpoints.yaml").write_text(
        "endpoints:\n"
        "  a: {url: 'http://127.0.0.1:9', headers: {Authorization: 'Bearer ${NO_SUCH_KEY_A}'}}\n"
        "  b: {url: 'https://${NO_SUCH_HOST_C}/v2', headers: {X-Key: '${NO_SUCH_KEY_B}'}}\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml")
    usage_error(result, "ERROR: endpoint 'a': header 'Authorization' needs environment variable NO_SUCH_KEY_A, which is not set; "
                        "endpoint 'b': header 'X-Key' needs environment variable NO_SUCH_KEY_B, which is not set; "
                        "endpoint 'b': url needs environment variable NO_SUCH_HOST_C, which is not set")


def test_a_case_glob_matching_nothing_is_an_error(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-o", "comfy_cases=cases/*.yml")
    usage_error(result, "ERROR: comfy_cases: cases/*.yml matches no case file")


def comfy_compat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=30)


def test_serve_on_a_busy_port_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = comfy_compat("serve", "--port", str(port))
    assert result.returncode == 4
    assert result.stderr == f"comfy-compat: serve: 127.0.0.1:{port} is in use; choose another with --port (0 picks a free one)\n"


def test_version():
    from importlib.metadata import version

    result = comfy_compat("--version")
    assert result.returncode == 0 and result.stdout == f"comfy-compat {version('comfy-compat')}\n"


def test_a_url_variable_is_redacted_from_what_the_endpoint_said(project, monkeypatch):
    # Nothing listens there: aiohttp's own message names the host it could not reach.
    monkeypatch.setenv("TEST_COMFY_HOST", "127.0.0.1")
    (project.path / "endpoints.yaml").write_text("endpoints:\n  mine: {url: 'http://${TEST_COMFY_HOST}:9'}\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "--endpoints-file=endpoints.yaml", "-k", "smoke")
    result.assert_outcomes(failed=1)
    cell = cells(matrix(project))[("smoke_invert", "mine")]
    assert cell["outcome"] == "unreachable" and "$TEST_COMFY_HOST" in cell["evidence"]["message"]
    written = "".join(p.read_text(errors="replace") for p in (project.path / "reports/latest").rglob("*") if p.is_file())
    assert "127.0.0.1" not in written + result.stdout.str() + result.stderr.str()


def test_an_own_pyworker_that_sends_image_urls_is_refused_in_one_line(tmp_path):
    """An own PyWorker's images come base64 in its reply: ``response: urls`` is a configuration error
    before anything runs, not a protocol_error in every cell."""
    path = tmp_path / "endpoints.yaml"
    path.write_text("endpoints:\n  own:\n    kind: vast\n    url: http://127.0.0.1:9/vast/own-x\n"
                    "    request: {response: urls, images: output.images}\n")
    with pytest.raises(ConfigError, match=r"endpoints.yaml: \$\.endpoints\.own\.request\.response: 'json_base64' was expected"):
        load_endpoints_file(path)
    path.write_text(path.read_text().replace("kind: vast", "kind: http").replace("/vast/own-x", "/run"))
    assert load_endpoints_file(path)[0].request["response"] == "urls"  # the http kind fetches URLs
