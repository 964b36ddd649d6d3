"""The fault suite: hostile and broken endpoints of every kind, through the whole engine and report.

``fault_server.FaultServer`` impersonates comfyui, runpod, vast and modal and misbehaves as each fault
says (trickling replies, hangs, refusals, malformed bodies, hostile names, echoed secrets, redirects,
a silent or dead websocket, a dead prompt worker). One engine run holds an endpoint per fault × kind,
all at once, with a 2 s deadline per cell, and ``test_the_fault_suite`` checks every promise on it: per
cell the outcome (and its phase, Retry-After or excerpt), the wall time against the deadline + 1 s and
the canary secret's absence; for the run, every cell in the report, no file outside the run directory,
the canary in no byte written, no credential at another origin, endpoint markup inert. The
pytest-level promises (JUnit, Allure, terminal, a full disk, an unwritable report directory) run the
plugin in a subprocess.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import resource
import secrets
import shutil
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from conftest import ROOT, load_json
from fault_server import EVIL_NAMES, FAULTS, FaultServer
from harness.errors import LocalResourceError
from harness.providers.base import safe_name, transport_failures
from harness.report.matrix import MatrixWriter
from harness.run.cases import Case, OutputCheck
from harness.run.cells import Cell
from harness.run.endpoints import Endpoint, Limits, Timeouts
from harness.run.engine import DEADLINE_GRACE_S, Engine, EngineThread, introduction_deadline
from harness.run.outcomes import Outcome

DEADLINE = 2.0
PROMISE = DEADLINE + 1.0
"""Every cell ends within its deadline + 1 s, whatever the endpoint does."""
TIMEOUTS = Timeouts(connect=1.0, queue=1.5, execution=1.0)
LIMITS = Limits(reply_mb=1, output_mb=1)
"""A queue budget under the 2 s deadline, so queue_timeout is reachable; not so short that a loaded machine's
slow healthy reply would already be one."""
CANARY_VAR = "FAULT_CANARY"
CANARY = f"canary-{secrets.token_hex(8)}"
SMOKE = load_json("workflows/smoke_invert.json")
KINDS = ("comfyui", "runpod", "vast", "modal")

O = Outcome
# fault → expected outcome per kind (comfyui, runpod, vast, modal); None where the fault has no meaning for the kind.
EXPECTED: dict[str, tuple[Outcome | None, ...]] = {
    "ok": (O.PASSED,) * 4,
    # Nothing answered the submission: unreachable; a sync envelope (vast, modal) holds the job while it runs.
    "hang_submit": (O.UNREACHABLE, O.UNREACHABLE, O.EXECUTION_TIMEOUT, O.EXECUTION_TIMEOUT),
    "trickle_submit": (O.QUEUE_TIMEOUT, O.QUEUE_TIMEOUT, O.EXECUTION_TIMEOUT, O.EXECUTION_TIMEOUT),
    # ComfyUI's socket said the prompt started; RunPod and Vast's route service never did.
    "trickle_poll": (O.EXECUTION_TIMEOUT, O.QUEUE_TIMEOUT, O.QUEUE_TIMEOUT, O.EXECUTION_TIMEOUT),
    "trickle_view": (O.EXECUTION_TIMEOUT, O.EXECUTION_TIMEOUT, None, O.EXECUTION_TIMEOUT),
    **{f"poll_{c}": (O.SERVER_ERROR,) * 4 for c in ("500", "503")},
    "poll_429": (O.RATE_LIMITED,) * 4,
    **{f"poll_{c}": (O.AUTH_ERROR,) * 4 for c in ("401", "403")},
    **{f"view_{c}": (O.SERVER_ERROR, O.SERVER_ERROR, None, O.SERVER_ERROR) for c in ("500", "503")},
    "view_429": (O.RATE_LIMITED, O.RATE_LIMITED, None, O.RATE_LIMITED),
    **{f"view_{c}": (O.AUTH_ERROR, O.AUTH_ERROR, None, O.AUTH_ERROR) for c in ("401", "403")},
    **{f"poll_{m}": (O.PROTOCOL_ERROR,) * 4 for m in ("truncated", "html", "list")},
    "image_string": (O.PROTOCOL_ERROR,) * 4,
    "evil_names": (O.PASSED, O.PASSED, O.PASSED, None),
    "echo": (O.INVALID_INPUT, O.SERVER_ERROR, O.SERVER_ERROR, O.SERVER_ERROR),
    # Followed without credentials (native, Modal's 303); RunPod's and Vast's APIs never redirect.
    "redirect_other": (O.PASSED, O.PROTOCOL_ERROR, O.PROTOCOL_ERROR, O.PASSED),
    "redirect_loop": (O.PROTOCOL_ERROR, O.PROTOCOL_ERROR, O.PROTOCOL_ERROR, O.EXECUTION_TIMEOUT),
    "ws_hang": (O.PASSED, None, None, None),
    "ws_silent": (O.PASSED, None, None, None),
    "dead_worker": (O.EXECUTION_TIMEOUT, None, None, None),
    "trickle_intro": (O.PASSED, None, None, None),
    "markup": (O.INVALID_INPUT, O.SERVER_ERROR, O.SERVER_ERROR, O.SERVER_ERROR),
    # Past the endpoint's limits (1 MB here): cut off, never read whole. Vast's sync reply has no download.
    "huge_poll": (O.PROTOCOL_ERROR,) * 4,
    "huge_view": (O.PROTOCOL_ERROR, O.PROTOCOL_ERROR, None, O.PROTOCOL_ERROR),
}
EXCERPTS = {"poll_truncated": '"sta', "poll_html": "nginx", "poll_list": "[1, 2, 3]", "image_string": ".png"}
CELLS = [(fault, kind, want) for fault, wants in EXPECTED.items() for kind, want in zip(KINDS, wants, strict=True) if want]
assert set(EXPECTED) == set(FAULTS)


def endpoint(server: FaultServer, fault: str, kind: str) -> Endpoint:
    url = server.url(fault)
    secret = f"${{{CANARY_VAR}}}"
    if kind == "comfyui":
        return Endpoint(f"{fault}-{kind}", url, kind=kind, timeouts=TIMEOUTS, limits=LIMITS,
                        headers={"Authorization": f"Bearer {secret}", "X-Api-Key": secret})
    if kind == "runpod":
        return Endpoint(f"{fault}-{kind}", url, kind=kind, timeouts=TIMEOUTS, limits=LIMITS, headers={"Authorization": f"Bearer {secret}"})
    if kind == "vast":  # through the route service, which gets the key; the worker must not
        return Endpoint(f"{fault}-{kind}", f"{url}/my-comfy", kind=kind, timeouts=TIMEOUTS, limits=LIMITS, headers={"Authorization": f"Bearer {secret}"})
    return Endpoint(f"{fault}-{kind}", url, kind=kind, timeouts=TIMEOUTS, limits=LIMITS, headers={"Modal-Key": secret, "Modal-Secret": secret},
                    request={"response": "urls", "images": "images"})


CASE = Case(id="smoke", workflow=SMOKE, workflow_path=ROOT / "workflows/smoke_invert.json", timeout=DEADLINE,
            outputs=OutputCheck(min_images=1))


@dataclass
class FaultRun:
    cells: dict[tuple[str, str], Cell]
    walls: dict[tuple[str, str], float]
    """Seconds each cell took from the end of its endpoint's introduction (from the start for trickle_intro)."""
    run_dir: Path
    root: Path
    """The test's whole temporary directory, the run directory inside it."""
    before: set[Path]
    other: FaultServer
    other_seen: list[tuple[str, str, dict[str, str]]]
    """What reached the other origin (the redirects' target)."""


def run_faults(root: Path) -> FaultRun:
    """One engine run over every fault × kind at once, against a fault server and a second origin."""
    os.environ[CANARY_VAR] = CANARY
    other = FaultServer().start()
    server = FaultServer(redirect_to=other).start()
    before = set(root.rglob("*"))
    writer = MatrixWriter(root / "reports", "fault-run")
    engine = Engine([endpoint(server, fault, kind) for fault, kind, _ in CELLS], writer, listeners=[writer])
    thread = EngineThread()

    async def timed(fault: str, kind: str) -> tuple[Cell, float]:
        name = f"{fault}-{kind}"
        started = time.monotonic()
        if fault != "trickle_intro":  # the deadline counts from the cell's start, after its endpoint's introduction
            await asyncio.shield(engine._introduced[name])
            started = time.monotonic()
        cell = await engine.run_cell(CASE, name)
        return cell, time.monotonic() - started

    try:
        thread.call(engine.start())
        futures = {(fault, kind): thread.submit(timed(fault, kind)) for fault, kind, _ in CELLS}
        done = {key: future.result(timeout=60) for key, future in futures.items()}
        thread.call(engine.close())
        other_seen = other.seen
    finally:
        thread.stop()
        server.stop()
        other.stop()
        os.environ.pop(CANARY_VAR, None)
    writer.finish()
    return FaultRun({k: c for k, (c, _) in done.items()}, {k: w for k, (_, w) in done.items()}, writer.dir, root, before,
                    other, other_seen)


def cell_checks(run: FaultRun, fault: str, kind: str, want: Outcome) -> dict[str, str | None]:
    """Each promise for one cell: None when kept, else what happened."""
    cell, wall = run.cells[(fault, kind)], run.walls[(fault, kind)]
    ev = cell.evidence
    allowed = PROMISE + (introduction_deadline(endpoint(run.other, fault, kind)) if fault == "trickle_intro" else 0)
    checks = {
        "outcome": None if cell.outcome is want else cell.summary(),
        "deadline": None if wall <= allowed else f"{wall:.2f} s > {allowed:.2f} s",
        "canary": None if CANARY not in json.dumps(cell.to_dict()) + cell.summary() else "the canary is in the cell",
    }
    if want in (O.QUEUE_TIMEOUT, O.EXECUTION_TIMEOUT, O.UNREACHABLE):
        checks["phase"] = None if ev.get("phase") in ("submit", "queue", "execution", "download") else f"no phase: {ev}"
    if want is O.RATE_LIMITED:
        checks["retry_after"] = None if ev.get("retry_after") == "7" else f"Retry-After lost: {ev}"
    if fault in EXCERPTS:  # a short excerpt of the malformed reply
        message = ev.get("message", "")
        checks["excerpt"] = None if EXCERPTS[fault] in message and len(message) < 400 else message
    if fault.startswith("huge_"):  # the limit that cut it off, named; no partial output left behind
        setting = "limits.output_mb" if fault == "huge_view" and kind != "modal" else "limits.reply_mb"
        outputs = run.run_dir / "cells" / f"smoke@{fault}-{kind}" / "outputs"
        left = [p.name for p in outputs.iterdir()] if outputs.exists() else []
        checks["limit"] = None if f"more than 1 MB, the most the harness reads ({setting}" in ev.get("message", "") and not left \
            else f"{ev.get('message')}; left {left}"
    if fault == "dead_worker":
        checks["stopped"] = None if ev["message"].startswith("the endpoint stopped executing") else ev["message"]
    if fault == "evil_names":
        folder = (run.run_dir / "cells" / f"smoke@evil_names-{kind}" / "outputs").resolve()
        paths = [Path(i.path).resolve() for i in cell.images]
        names_ok = (len(cell.images) == len(EVIL_NAMES) and len({p.name for p in paths}) == len(paths)
                    and all(p.parent == folder and len(p.name) <= 80 and "\x00" not in p.name for p in paths)
                    and {i.filename for i in cell.images} >= {n for n in EVIL_NAMES if n and kind == "comfyui"})
        checks["names"] = None if names_ok else f"{[i.path for i in cell.images]}"
    return checks


def run_checks(run: FaultRun) -> dict[str, str | None]:
    """What the whole run must show: every cell reported, in order; nothing outside the run; no canary
    in any byte written; no credential at the other origin; markup from endpoints inert."""
    data = json.loads((run.run_dir / "matrix.json").read_text())
    created = set(run.root.rglob("*")) - run.before
    outside = [p for p in created if run.run_dir not in (p, *p.parents) and p not in run.run_dir.parents
               and p != run.root / "reports" / "latest"]
    leaked = [str(p) for p in run.run_dir.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    forwarded = [path for _, path, headers in run.other_seen if CANARY in json.dumps(headers)]
    md, html = (run.run_dir / "matrix.md").read_text(), (run.run_dir / "report.html").read_text()
    echoed = json.dumps(run.cells[("echo", "comfyui")].evidence)
    return {
        "report: every cell": None if len(data["cells"]) == len(CELLS) and data["run"]["status"] == "complete" else "cells missing",
        "report: column order": None if [e["name"] for e in data["endpoints"]] == [f"{f}-{k}" for f, k, _ in CELLS] else "order",
        "containment: nothing outside the run": None if not outside and not Path("/tmp/x/PWNED").exists() else f"{outside}",
        "secrets: no byte written holds the canary": None if not leaked else f"{leaked}",
        "secrets: an echo shows as $VAR": None if f"${CANARY_VAR}" in echoed else echoed,
        "secrets: none at another origin": None if run.other_seen and not forwarded else f"{forwarded or 'no redirect followed'}",
        "markdown: endpoint markup inert": None if "<script>" not in md and "[click](" not in md else "markup in matrix.md",
        "html: endpoint markup inert": None if "<script>alert(1)</script>" not in html else "markup in report.html",
        "introduction: a slow one delays only its own cells": None if run.walls[("ok", "comfyui")] < PROMISE
        and run.walls[("trickle_intro", "comfyui")] > introduction_deadline(endpoint(run.other, "trickle_intro", "comfyui")) - 0.5
        else f"{run.walls[('ok', 'comfyui')]:.2f} s, {run.walls[('trickle_intro', 'comfyui')]:.2f} s",
    }


def test_the_fault_suite(tmp_path, capsys):
    """Every fault × kind in one run (one run, not one per xdist worker: the timings are the point)."""
    run = run_faults(tmp_path)
    checks = {f"{fault}-{kind}: {name}": problem for fault, kind, want in CELLS
              for name, problem in cell_checks(run, fault, kind, want).items()}
    checks.update(run_checks(run))
    failed = {name: problem for name, problem in checks.items() if problem is not None}
    with capsys.disabled():  # the figure, and any failed check in full (a summary line cuts the assertion)
        print(f"\nfault suite: {len(checks) - len(failed)}/{len(checks)} checks handled, "
              f"slowest cell {max(w for (f, _), w in run.walls.items() if f != 'trickle_intro'):.2f} s (deadline {DEADLINE} s)")
        for name, problem in failed.items():
            print(f"fault suite: {name}: {problem}")
    assert not failed, "\n".join(f"{name}: {problem}" for name, problem in failed.items())


# --- through pytest: JUnit, Allure, the terminal; the report directory ---------------------------------

ECHOES = [("echo", kind) for kind in KINDS] + [("redirect_other", "comfyui"), ("redirect_other", "modal"), ("markup", "comfyui")]


@pytest.fixture
def fault_project(pytester: pytest.Pytester):
    """A pytester project with the smoke case, run against a fault server (and a second origin)."""
    shutil.copy(ROOT / "cases" / "test_compat.py", pytester.path / "test_compat.py")
    (pytester.path / "workflows").mkdir()
    shutil.copy(ROOT / "workflows" / "smoke_invert.json", pytester.path / "workflows" / "smoke_invert.json")
    (pytester.path / "cases.yaml").write_text(
        f"cases:\n  - id: smoke\n    workflow: workflows/smoke_invert.json\n    timeout: {DEADLINE}\n")
    (pytester.path / "pytest.ini").write_text("[pytest]\ncomfy_cases = cases.yaml\n")
    other = FaultServer().start()
    server = FaultServer(redirect_to=other).start()

    def endpoints_file(cells: list[tuple[str, str]]) -> str:
        lines = ["endpoints:"]
        for fault, kind in cells:
            e = endpoint(server, fault, kind)
            lines += [f"  {e.name}:", f"    kind: {kind}", f"    url: {e.url}", f"    headers: {json.dumps(dict(e.headers))}",
                      "    timeouts: {connect: 1, queue: 1, execution: 1}"]
            if kind == "modal":
                lines.append(f"    request: {json.dumps(dict(e.request))}")
        (pytester.path / "endpoints.yaml").write_text("\n".join(lines) + "\n")
        return "--endpoints-file=endpoints.yaml"

    pytester.endpoints_file, pytester.other = endpoints_file, other
    yield pytester
    server.stop()
    other.stop()


def test_no_secret_in_junit_allure_terminal_or_any_file(fault_project, monkeypatch):
    monkeypatch.setenv(CANARY_VAR, CANARY)
    result = fault_project.runpytest_subprocess(
        "-p", "no:cacheprovider", "test_compat.py", fault_project.endpoints_file(ECHOES), "--junitxml=junit.xml",
        "--alluredir=allure", "-rA", "-v")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the echoes are failures of the endpoints, reported
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    printed = result.stdout.str() + result.stderr.str()
    assert CANARY not in printed and f"${CANARY_VAR}" in printed
    written = [p for p in fault_project.path.rglob("*") if p.is_file()]
    assert any(p.name == "junit.xml" for p in written) and any(p.parent.name == "allure" for p in written)
    assert [str(p) for p in written if CANARY.encode() in p.read_bytes()] == []
    assert not [h for _, _, h in fault_project.other.seen if CANARY in json.dumps(h)]


def test_a_full_disk_ends_the_run_in_one_line_with_the_last_matrix_valid(fault_project, monkeypatch):
    monkeypatch.setenv(CANARY_VAR, CANARY)
    # The disk fills once the run has written a few times: every later write fails with ENOSPC.
    (fault_project.path / "conftest.py").write_text(textwrap.dedent("""
        import errno
        import harness.report.matrix as matrix

        real, calls = matrix._atomic_write, [0]

        def filling(path, text):
            calls[0] += 1
            if calls[0] > 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(path, text)

        matrix._atomic_write = filling
    """))
    result = fault_project.runpytest_subprocess("-p", "no:cacheprovider", "test_compat.py",
                                                fault_project.endpoints_file([("ok", k) for k in KINDS] * 1))
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR, output
    assert "Traceback" not in output
    assert len([line for line in output.splitlines() if "No space left on device" in line]) == 1, output
    json.loads((fault_project.path / "reports" / "latest" / "matrix.json").read_text())  # still whole


def test_an_unwritable_report_directory_is_one_line_before_any_cell(fault_project, monkeypatch):
    monkeypatch.setenv(CANARY_VAR, CANARY)
    (fault_project.path / "afile").write_text("not a directory")
    result = fault_project.runpytest_subprocess("-p", "no:cacheprovider", "test_compat.py", "--report-dir=afile/reports",
                                                fault_project.endpoints_file([("ok", "comfyui")]))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot write reports under" in result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not [p for p in fault_project.other.seen]  # no cell ran


# --- many endpoints ---------------------------------------------------------------------------------

MANY = 300


def test_300_endpoints_by_2_cases_pass_without_a_spurious_failure(tmp_path):
    """Each endpoint has its own providers, websocket and pools: 300 of them (75 per kind) hold more
    sockets at once than a usual soft limit of open files (set to 512 here; the engine lifts it). Every
    cell must pass; none may turn unreachable for want of a file descriptor."""
    server = FaultServer().start()  # before the limit is lowered: a server process of its own keeps its own
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))
    kinds = [KINDS[i % len(KINDS)] for i in range(MANY)]
    endpoints = [dataclasses.replace(endpoint(server, "ok", kind), name=f"e{i:03d}-{kind}", headers={},
                                     timeouts=Timeouts(connect=5.0, queue=30.0, execution=30.0))
                 for i, kind in enumerate(kinds)]
    cases = [dataclasses.replace(CASE, id=f"smoke{n}", timeout=None) for n in (1, 2)]
    engine = Engine(endpoints, MatrixWriter(tmp_path, "many"))
    thread = EngineThread()
    started = time.monotonic()
    try:
        thread.call(engine.start())
        futures = [thread.submit(engine.run_cell(case, e.name)) for e in endpoints for case in cases]
        cells = [future.result(timeout=120) for future in futures]
        thread.call(engine.close())
    finally:
        thread.stop()
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    wall = time.monotonic() - started
    failed = [cell.summary() for cell in cells if cell.outcome is not O.PASSED]
    assert not failed, f"{len(failed)} of {len(cells)} cells failed, e.g. {failed[:3]}"
    assert len(cells) == 2 * MANY and wall < 60


# --- what no endpoint can trigger on purpose ------------------------------------------------------------


async def test_a_provider_bug_becomes_a_protocol_error_cell(tmp_path, monkeypatch):
    from harness.providers.comfyui import ComfyUIProvider

    async def broken(self, workflow, **_):
        raise KeyError("outputs")

    monkeypatch.setattr(ComfyUIProvider, "run", broken)
    engine = Engine([Endpoint("bug", "http://127.0.0.1:9", timeouts=TIMEOUTS)], MatrixWriter(tmp_path, "bug"))
    await engine.start()
    try:
        cell = await engine.run_cell(CASE, "bug")
    finally:
        await engine.close()
    assert cell.outcome is O.PROTOCOL_ERROR and "KeyError: 'outputs'" in cell.evidence["message"]


def test_a_local_limit_is_the_harness_error_not_unreachable():
    cause = OSError(errno.EMFILE, "Too many open files")
    with pytest.raises(LocalResourceError, match="Too many open files"):
        with transport_failures(Endpoint("e", "http://127.0.0.1:9"), "POST /prompt"):
            raise aiohttp.ClientConnectorError(None, cause)  # what aiohttp raises when socket() fails


def test_every_form_of_a_secret_is_redacted_and_short_values_are_left(monkeypatch):
    from harness.run.secrets import redact, remember

    monkeypatch.setenv("FAULT_KEY_A", 'k/e y"1+')
    monkeypatch.setenv("FAULT_KEY_B", "ab")  # too short to redact without destroying the report
    remember([Endpoint("r", "http://127.0.0.1:9", headers={"Authorization": "Bearer ${FAULT_KEY_A}", "X-B": "${FAULT_KEY_B}"})])
    echoed = 'raw k/e y"1+, quoted k%2Fe%20y%221%2B, json "k/e y\\"1+", ab stays'
    assert redact(echoed) == 'raw $FAULT_KEY_A, quoted $FAULT_KEY_A, json "$FAULT_KEY_A", ab stays'


@pytest.mark.parametrize("name", [*EVIL_NAMES, "a" * 1000, "é" * 200, "CON", ".hidden", "a/b\\c"])
def test_safe_names_are_one_short_component(name):
    safe = safe_name("9", name)
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe and 0 < len(safe) <= 80 and not safe.startswith(".")
    assert safe_name("9", name) != safe_name("9", name + "x")


def test_the_grace_keeps_the_promise():
    assert DEADLINE_GRACE_S < 1.0
