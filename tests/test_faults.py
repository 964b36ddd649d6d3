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
import errno
import json
import os
import secrets
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
from harness.run.endpoints import Endpoint, Timeouts
from harness.run.engine import DEADLINE_GRACE_S, Engine, EngineThread, introduction_deadline
from harness.run.outcomes import Outcome

DEADLINE = 2.0
PROMISE = DEADLINE + 1.0
"""Every cell ends within its deadline + 1 s, whatever the endpoint does."""
TIMEOUTS = Timeouts(connect=1.0, queue=1.0, execution=1.0)
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
}
EXCERPTS = {"poll_truncated": '"sta', "poll_html": "nginx", "poll_list": "[1, 2, 3]", "image_string": ".png"}
CELLS = [(fault, kind, want) for fault, wants in EXPECTED.items() for kind, want in zip(KINDS, wants, strict=True) if want]
assert set(EXPECTED) == set(FAULTS)


def endpoint(server: FaultServer, fault: str, kind: str) -> Endpoint:
    url = server.url(fault)
    secret = f"${{{CANARY_VAR}}}"
    if kind == "comfyui":
        return Endpoint(f"{fault}-{kind}", url, kind=kind, timeouts=TIMEOUTS,
                        headers={"Authorization": f"Bearer {secret}", "X-Api-Key": secret})
    if kind == "runpod":
        return Endpoint(f"{fault}-{kind}", url, kind=kind, timeouts=TIMEOUTS, headers={"Authorization": f"Bearer {secret}"})
    if kind == "vast":  # through the route service, which gets the key; the worker must not
        return Endpoint(f"{fault}-{kind}", f"{url}/my-comfy", kind=kind, timeouts=TIMEOUTS, headers={"Authorization": f"Bearer {secret}"})
    return Endpoint(f"{fault}-{kind}", url, kind=kind, timeouts=TIMEOUTS, headers={"Modal-Key": secret, "Modal-Secret": secret},
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


def run_faults(root: Path) -> FaultRun:
    """One engine run over every fault × kind at once, against a fault server and a second origin."""
    os.environ[CANARY_VAR] = CANARY
    server, other = FaultServer().start(), FaultServer().start()
    server.other = other
    before = set(root.rglob("*"))
    writer = MatrixWriter(root / "reports", "fault-run")
    engine = Engine([endpoint(server, fault, kind) for fault, kind, _ in CELLS], writer)
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
    finally:
        thread.stop()
        server.stop()
        other.stop()
        os.environ.pop(CANARY_VAR, None)
    writer.finish()
    return FaultRun({k: c for k, (c, _) in done.items()}, {k: w for k, (_, w) in done.items()}, writer.dir, root, before, other)


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
    forwarded = [path for _, path, headers in run.other.seen if CANARY in json.dumps(headers)]
    md, html = (run.run_dir / "matrix.md").read_text(), (run.run_dir / "report.html").read_text()
    echoed = json.dumps(run.cells[("echo", "comfyui")].evidence)
    return {
        "report: every cell": None if len(data["cells"]) == len(CELLS) and data["run"]["status"] == "complete" else "cells missing",
        "report: column order": None if [e["name"] for e in data["endpoints"]] == [f"{f}-{k}" for f, k, _ in CELLS] else "order",
        "containment: nothing outside the run": None if not outside and not Path("/tmp/x/PWNED").exists() else f"{outside}",
        "secrets: no byte written holds the canary": None if not leaked else f"{leaked}",
        "secrets: an echo shows as $VAR": None if f"${CANARY_VAR}" in echoed else echoed,
        "secrets: none at another origin": None if run.other.seen and not forwarded else f"{forwarded or 'no redirect followed'}",
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
    with capsys.disabled():
        print(f"\nfault suite: {len(checks) - len(failed)}/{len(checks)} checks handled, "
              f"slowest cell {max(w for (f, _), w in run.walls.items() if f != 'trickle_intro'):.2f} s (deadline {DEADLINE} s)")
    assert not failed, "\n".join(f"{name}: {problem}" for name, problem in failed.items())


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


@pytest.mark.parametrize("name", [*EVIL_NAMES, "a" * 1000, "é" * 200, "CON", ".hidden", "a/b\\c"])
def test_safe_names_are_one_short_component(name):
    safe = safe_name("9", name)
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe and 0 < len(safe) <= 80 and not safe.startswith(".")
    assert safe_name("9", name) != safe_name("9", name + "x")


def test_the_grace_keeps_the_promise():
    assert DEADLINE_GRACE_S < 1.0
