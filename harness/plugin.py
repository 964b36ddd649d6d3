"""The pytest plugin: options, markers and the ``compat_cell`` fixture that turns cases into tests.

A test that asks for ``compat_cell`` is parametrised with every case × endpoint; each parameter runs
one cell through the engine and gets the finished ``Cell``. Settings come from the command line,
then from pytest.ini (``comfy_*`` keys). With no endpoint configured, the run starts the embedded
reference endpoint with the ``stock`` and ``custom`` profiles and targets both.
"""

from __future__ import annotations

import concurrent.futures
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.cases import Case, cases_from_workflows, load_case_files
from harness.cells import Cell
from harness.endpoints import Endpoint, load_endpoints_file, parse_endpoint_option
from harness.engine import Engine, EngineThread
from harness.errors import HarnessError
from harness.report.matrix import MatrixWriter

__all__ = ["CompatRun", "Settings"]

REFERENCE_PROFILES = ("stock", "custom")
# How the default run reaches each reference server: (endpoint name, kind, path) per provider envelope.
# Every profile is served natively and through each provider's envelope, so the matrix shows what each
# provider lets through of the same ComfyUI's answers.
REFERENCE_ENVELOPES: tuple[tuple[str, str, str], ...] = (
    ("{profile}", "comfyui", ""),
    ("runpod-{profile}", "runpod", "/runpod/v2/{profile}"),
    ("vast-{profile}", "vast", "/vast/{profile}"),
)
_RUN: pytest.StashKey[CompatRun] = pytest.StashKey()


@dataclass(frozen=True)
class Settings:
    endpoints: tuple[str, ...]
    endpoints_file: Path | None
    workflows: Path | None
    cases: tuple[Path, ...]
    report_dir: Path


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("comfy-compat", "ComfyUI workflow compatibility")
    group.addoption("--endpoint", action="append", dest="comfy_endpoint", default=None, metavar="[NAME=]URL",
                    help="ComfyUI endpoint to test; repeatable. ini: comfy_endpoints. "
                         "Default: the embedded reference endpoint (profiles stock and custom).")
    group.addoption("--endpoints-file", dest="comfy_endpoints_file", default=None, metavar="YAML",
                    help="Named endpoints with kind, url, headers (${ENV_VAR} secrets), timeouts. ini: comfy_endpoints_file.")
    group.addoption("--workflows", dest="comfy_workflows", default=None, metavar="DIR",
                    help="Replay every *.json API workflow in DIR, expecting passed, instead of the case files. ini: comfy_workflows.")
    group.addoption("--report-dir", dest="comfy_report_dir", default=None, metavar="DIR",
                    help="Where reports/<run-id>/ and reports/latest go (default: reports). ini: comfy_report_dir.")
    parser.addini("comfy_endpoints", "Endpoints to test, one [NAME=]URL per line.", type="linelist", default=[])
    parser.addini("comfy_endpoints_file", "Endpoints YAML file.", default="")
    parser.addini("comfy_workflows", "Directory of API workflows to replay instead of the case files.", default="")
    parser.addini("comfy_cases", "Case files (YAML), globs relative to the rootdir.", type="linelist", default=["cases/*.yaml"])
    parser.addini("comfy_report_dir", "Report directory.", default="reports")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat(case, endpoint): a compatibility cell; set by the plugin on every case × endpoint.")
    config.stash[_RUN] = CompatRun(_settings(config))


def _settings(config: pytest.Config) -> Settings:
    """Each setting from its flag, else its ini key; paths are relative to the rootdir."""
    root = config.rootpath

    def path(flag: str, ini: str) -> Path | None:
        value = config.getoption(flag) or config.getini(ini)
        return (root / value) if value else None

    return Settings(
        endpoints=tuple(config.getoption("comfy_endpoint") or config.getini("comfy_endpoints")),
        endpoints_file=path("comfy_endpoints_file", "comfy_endpoints_file"),
        workflows=path("comfy_workflows", "comfy_workflows"),
        cases=tuple(p for pattern in config.getini("comfy_cases") for p in sorted(root.glob(pattern))),
        report_dir=path("comfy_report_dir", "comfy_report_dir") or root / "reports",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Read cases and endpoints up front when this run collects the cases, so a bad file is one line."""
    config = session.config
    cases_dir = config.rootpath / "cases"
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == cases_dir or cases_dir in path.parents or path in cases_dir.parents:
            try:
                config.stash[_RUN].plan()
            except HarnessError as exc:
                raise pytest.UsageError(str(exc)) from None
            return


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[_RUN].settings
    targets = ", ".join(settings.endpoints) or (str(settings.endpoints_file) if settings.endpoints_file else "")
    return [f"comfy-compat: endpoints: {targets or 'embedded reference (stock, custom)'}; reports: {settings.report_dir}"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "compat_cell" not in metafunc.fixturenames:
        return
    run = metafunc.config.stash[_RUN]
    try:
        cases, endpoint_names = run.plan()
    except HarnessError as exc:
        # A one-line stop: the message names the file and field; a traceback would only bury it.
        pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)
    # Case tags become markers (``-m smoke``); registered first so --strict-markers accepts them.
    for tag in sorted({t for case in cases for t in case.tags}):
        metafunc.config.addinivalue_line("markers", f"{tag}: case tag from the case files")
    metafunc.parametrize(
        "compat_cell",
        [
            pytest.param((case, name), id=f"{case.id}@{name}",
                         marks=[pytest.mark.compat(case=case.id, endpoint=name), *(getattr(pytest.mark, t) for t in case.tags)])
            for case in cases
            for name in endpoint_names
        ],
        indirect=True,
    )


@pytest.fixture
def compat_cell(request: pytest.FixtureRequest) -> Cell:
    """The finished cell of this test's case × endpoint (run on first request, then recorded)."""
    case, endpoint_name = request.param
    return request.config.stash[_RUN].cell(case, endpoint_name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    cell = getattr(item, "funcargs", {}).get("compat_cell")
    if isinstance(cell, Cell):
        _attach_to_allure(cell)
    return (yield)


def _attach_to_allure(cell: Cell) -> None:
    """One allure test per cell, with its evidence; a no-op unless allure-pytest records (--alluredir).

    Attached in the call phase: attachments made while a fixture sets up go to the fixture, not the test.
    """
    import allure

    allure.dynamic.label("endpoint", cell.endpoint)
    allure.dynamic.tag(cell.outcome.value)
    allure.attach(json.dumps(cell.to_dict(), indent=2), name="cell", attachment_type=allure.attachment_type.JSON)


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_RUN].schedule([
        item.callspec.params["compat_cell"] for item in session.items
        if hasattr(item, "callspec") and "compat_cell" in item.callspec.params
    ])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is not None:
        run.finish(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash[_RUN]
    if run.writer is None:
        return
    cells = run.writer.matrix["cells"]
    counts: dict[str, int] = {}
    for c in cells:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    terminalreporter.write_sep("-", "comfy-compat")
    terminalreporter.write_line(f"{len(cells)} cells: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    terminalreporter.write_line(f"report: {run.writer.dir / 'matrix.md'} (and matrix.json; latest: {run.writer.root / 'latest'})")


@dataclass
class CompatRun:
    """The plugin's state for one pytest session; everything heavy starts on the first cell."""

    settings: Settings
    writer: MatrixWriter | None = None
    _cases: list[Case] | None = None
    _endpoints: list[Endpoint] | None = None
    _engine: Engine | None = None
    _thread: EngineThread | None = None
    _servers: list = field(default_factory=list)
    _scheduled: list[tuple[Case, str]] = field(default_factory=list)
    _running: dict[tuple[str, str], concurrent.futures.Future] = field(default_factory=dict)

    def plan(self) -> tuple[list[Case], list[str]]:
        """The cases and endpoint names to parametrise with; reads and checks every input file."""
        if self._cases is None:
            s = self.settings
            self._cases = cases_from_workflows(s.workflows) if s.workflows else load_case_files(list(s.cases))
            endpoints = [parse_endpoint_option(v, i) for i, v in enumerate(s.endpoints)]
            if s.endpoints_file:
                endpoints += load_endpoints_file(s.endpoints_file)
            for endpoint in endpoints:
                endpoint.check_secrets()
            self._endpoints = endpoints
        names = [e.name for e in self._endpoints] or [
            name.format(profile=p) for name, _, _ in REFERENCE_ENVELOPES for p in REFERENCE_PROFILES
        ]
        return self._cases, names

    def schedule(self, cells: list[tuple[Case, str]]) -> None:
        """The cells this session will ask for, after -k/-m selection; they run together."""
        self._scheduled = cells

    def cell(self, case: Case, endpoint_name: str) -> Cell:
        if self._engine is None:
            self._start()
            # Every selected cell is submitted at once: the engine's per-endpoint limits pace them, so a
            # run takes as long as its slowest endpoint needs, not the sum of all waits. Tests then
            # collect their cell in pytest's order.
            for c, e in self._scheduled:
                self._running.setdefault((c.id, e), self._thread.submit(self._engine.run_cell(c, e)))
        future = self._running.get((case.id, endpoint_name))
        if future is None:
            future = self._running[(case.id, endpoint_name)] = self._thread.submit(self._engine.run_cell(case, endpoint_name))
        return future.result()

    def _start(self) -> None:
        endpoints = self._endpoints or self._start_reference_endpoints()
        self.writer = MatrixWriter(self.settings.report_dir)
        self.writer.plan([case.id for case, _ in self._scheduled])
        self._thread = EngineThread()
        self._engine = Engine(endpoints, self.writer)
        self._thread.call(self._engine.start())

    def _start_reference_endpoints(self) -> list[Endpoint]:
        from harness.reference.server import ReferenceServer  # only runs that use it pay for aiohttp's app

        endpoints = []
        for profile in REFERENCE_PROFILES:
            server = ReferenceServer(profile)
            server.start()
            self._servers.append(server)
            endpoints += [
                Endpoint(name=name.format(profile=profile), url=server.url + path.format(profile=profile), kind=kind, profile=profile)
                for name, kind, path in REFERENCE_ENVELOPES
            ]
        return endpoints

    def finish(self, interrupted: bool) -> None:
        if self._engine is not None:
            self._thread.call(self._engine.close())
            self._thread.stop()
        if self.writer is not None:
            self.writer.finish("interrupted" if interrupted else "complete")
        for server in reversed(self._servers):
            server.stop()

