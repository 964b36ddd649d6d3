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

from harness.run.cases import Case, Suite, cases_from_workflows, load_case_files
from harness.run.cells import Cell
from harness.report.conclusions import conclude, summary_lines
from harness.report.drift import load_run
from harness.run.endpoints import Endpoint, VerdictSpec, load_endpoints_file, load_verdict_spec, parse_endpoint_option
from harness.run.engine import Engine, EngineThread
from harness.errors import ConfigError, HarnessError
from harness.report.matrix import MatrixWriter, ReportWriteError, check_writable, new_run_id
from harness.report.verdict import Budgets

__all__ = ["CompatRun", "Settings"]

REFERENCE_PROFILES = ("stock", "custom")
# How the default run reaches each reference server: (endpoint name, kind, path) per provider envelope.
# Every profile is served natively and through each provider's envelope, so the matrix shows what each
# provider lets through of the same ComfyUI's answers.
REFERENCE_ENVELOPES: tuple[tuple[str, str, str], ...] = (
    ("{profile}", "comfyui", ""),
    ("runpod-{profile}", "runpod", "/runpod/v2/{profile}"),
    ("vast-{profile}", "vast", "/vast/{profile}"),
    # A team's own Modal app that takes the workflow JSON (harness.reference.modal), via its request: mapping.
    ("modal-{profile}", "modal", "/modal-app/{profile}"),
)
_RUN: pytest.StashKey[CompatRun] = pytest.StashKey()


@dataclass(frozen=True)
class Settings:
    endpoints: tuple[str, ...]
    endpoints_file: Path | None
    workflows: Path | None
    cases: tuple[Path, ...]
    report_dir: Path
    repeat: int = 1
    repeat_identical: bool = False
    """Send repeats as written instead of varying their seeds (to measure the endpoint's cache)."""
    cold_start: bool = False
    baseline: str | None = None
    candidate: str | None = None
    compare_to: str | None = None
    """A run directory, or ``previous`` for the newest other run in the report directory."""
    alluredir: str | None = None
    """allure-pytest's --alluredir, where Allure's environment and categories go too."""


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
    group.addoption("--repeat", dest="comfy_repeat", type=int, default=None, metavar="N",
                    help="Attempts per cell (a case's own `repeat` wins); cells then report success rate and "
                         "latency percentiles. ini: comfy_repeat.")
    group.addoption("--repeat-identical", dest="comfy_repeat_identical", action="store_true", default=None,
                    help="Send every attempt as written; by default a measured attempt gets its seed-like inputs "
                         "(seed, noise_seed, *_seed) unique to the run and attempt, so ComfyUI cannot serve it from "
                         "its cache. ini: comfy_repeat_identical.")
    group.addoption("--cold-start", dest="comfy_cold_start", action="store_true", default=None,
                    help="Wait each endpoint's cold_start.idle (endpoints file) before its first request and "
                         "time that request apart. ini: comfy_cold_start.")
    group.addoption("--baseline", dest="comfy_baseline", default=None, metavar="ENDPOINT",
                    help="Go/no-go verdict: the endpoint production runs on now. ini: comfy_baseline.")
    group.addoption("--candidate", dest="comfy_candidate", default=None, metavar="ENDPOINT",
                    help="Go/no-go verdict: the endpoint to move to; the exit status becomes the verdict's "
                         "(0 GO, 1 NO-GO, 2 undecidable). ini: comfy_candidate.")
    group.addoption("--compare-to", dest="comfy_compare_to", default=None, metavar="RUN_DIR|previous",
                    help="Report drift against an earlier run (`previous`: the newest other run in the report "
                         "directory). ini: comfy_compare_to.")
    parser.addini("comfy_endpoints", "Endpoints to test, one [NAME=]URL per line.", type="linelist", default=[])
    parser.addini("comfy_endpoints_file", "Endpoints YAML file.", default="")
    parser.addini("comfy_workflows", "Directory of API workflows to replay instead of the case files.", default="")
    parser.addini("comfy_cases", "Case files (YAML), globs relative to the rootdir.", type="linelist", default=["cases/*.yaml"])
    parser.addini("comfy_report_dir", "Report directory.", default="reports")
    parser.addini("comfy_repeat", "Attempts per cell.", default="1")
    parser.addini("comfy_repeat_identical", "Send repeats as written (see --repeat-identical).", type="bool", default=False)
    parser.addini("comfy_cold_start", "Measure cold starts (see --cold-start).", type="bool", default=False)
    parser.addini("comfy_baseline", "Verdict baseline endpoint.", default="")
    parser.addini("comfy_candidate", "Verdict candidate endpoint.", default="")
    parser.addini("comfy_compare_to", "Run directory (or `previous`) to report drift against.", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat(case, endpoint): a compatibility cell; set by the plugin on every case × endpoint.")
    run = CompatRun(_settings(config))
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "comfy_compat_run_id" in workerinput:
        run.run_id, run.worker = workerinput["comfy_compat_run_id"], workerinput["workerid"]
    elif config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(run), "comfy-compat-xdist")
    config.stash[_RUN] = run


def _settings(config: pytest.Config) -> Settings:
    """Each setting from its flag, else its ini key; paths are relative to the rootdir."""
    root = config.rootpath

    def path(flag: str, ini: str) -> Path | None:
        value = config.getoption(flag) or config.getini(ini)
        return (root / value) if value else None

    def value(flag: str, ini: str) -> str | None:
        return config.getoption(flag) or config.getini(ini) or None

    repeat = value("comfy_repeat", "comfy_repeat")
    try:
        repeat = int(repeat or 1)
    except ValueError:
        raise pytest.UsageError(f"comfy_repeat: expected a whole number of attempts, got {repeat!r}") from None
    if repeat < 1:
        raise pytest.UsageError(f"--repeat {repeat}: expected at least 1 attempt per cell")
    compare_to = value("comfy_compare_to", "comfy_compare_to")
    return Settings(
        endpoints=tuple(config.getoption("comfy_endpoint") or config.getini("comfy_endpoints")),
        endpoints_file=path("comfy_endpoints_file", "comfy_endpoints_file"),
        workflows=path("comfy_workflows", "comfy_workflows"),
        cases=tuple(p for pattern in config.getini("comfy_cases") for p in sorted(root.glob(pattern))),
        report_dir=path("comfy_report_dir", "comfy_report_dir") or root / "reports",
        repeat=repeat,
        repeat_identical=bool(value("comfy_repeat_identical", "comfy_repeat_identical")),
        cold_start=bool(value("comfy_cold_start", "comfy_cold_start")),
        baseline=value("comfy_baseline", "comfy_baseline"),
        candidate=value("comfy_candidate", "comfy_candidate"),
        compare_to=compare_to if compare_to in (None, "previous") else str(root / compare_to),
        alluredir=config.getoption("allure_report_dir", None),
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    """Read cases and endpoints up front when this run collects the cases, so a bad file is one line."""
    config = session.config
    cases_dir = config.rootpath / "cases"
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == cases_dir or cases_dir in path.parents or path in cases_dir.parents:
            run = config.stash[_RUN]
            try:
                run.plan()
                check_writable(run.settings.report_dir)
            except HarnessError as exc:
                raise pytest.UsageError(str(exc)) from None
            if config.pluginmanager.hasplugin("dsession"):  # the xdist controller: workers run the cells
                run.start_controller()
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
    try:
        return request.config.stash[_RUN].cell(case, endpoint_name)
    except ReportWriteError as exc:
        # A full disk ends the run in one line; matrix.json keeps its last complete version.
        pytest.exit(f"comfy-compat: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
    except HarnessError as exc:  # this machine's limit (open files, memory), not the endpoint's outcome
        pytest.fail(f"comfy-compat could not run {case.id} on {endpoint_name}: {exc}", pytrace=False)


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
    run = session.config.stash[_RUN]
    cells = [item.callspec.params["compat_cell"] for item in session.items
             if hasattr(item, "callspec") and "compat_cell" in item.callspec.params]
    run.schedule(cells)
    if cells:
        try:
            check_writable(run.settings.report_dir)
        except ReportWriteError as exc:  # one line now, not a traceback per cell once they ran
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(_RUN, None)
    if run is None:
        return
    try:
        verdict = run.finish(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
    except ReportWriteError as exc:
        if exitstatus != pytest.ExitCode.INTERNAL_ERROR:  # else a cell already ended the run saying so
            session.config.get_terminal_writer().line(f"comfy-compat: {exc}", red=True)
        session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    if verdict is not None and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        # With a verdict asked for, the run answers the migration question: scripts branch on 0/1/2.
        session.exitstatus = verdict["exit_code"]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    run = config.stash[_RUN]
    if run.writer is None:
        return
    matrix = run.writer.matrix
    cells = matrix["cells"]
    counts: dict[str, int] = {}
    for c in cells:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    terminalreporter.write_sep("-", "comfy-compat")
    terminalreporter.write_line(f"{len(cells)} cells: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    for line in summary_lines(matrix):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"report: {run.writer.dir / 'report.html'} (and matrix.md, matrix.json; latest: {run.writer.root / 'latest'})")


class _XdistController:
    """Hooks of the xdist controller (registered only when xdist is loaded): workers write into its run."""

    def __init__(self, run: CompatRun) -> None:
        self.run = run

    def pytest_configure_node(self, node) -> None:
        node.workerinput["comfy_compat_run_id"] = self.run.run_id


@dataclass
class CompatRun:
    """The plugin's state for one pytest session; everything heavy starts on the first cell.

    Under pytest-xdist the controller runs no cell: it names the run, and when the workers are done
    merges their parts and concludes (verdict, drift, reports). Each worker runs the cells pytest hands
    it, one at a time: xdist's own scheduling is the concurrency then.
    """

    settings: Settings
    run_id: str = field(default_factory=new_run_id)
    worker: str | None = None
    writer: MatrixWriter | None = None
    _suite: Suite | None = None
    _endpoints: list[Endpoint] | None = None
    _verdict_spec: VerdictSpec | None = None
    _engine: Engine | None = None
    _thread: EngineThread | None = None
    _servers: list = field(default_factory=list)
    _scheduled: list[tuple[Case, str]] = field(default_factory=list)
    _running: dict[tuple[str, str], concurrent.futures.Future] = field(default_factory=dict)

    def plan(self) -> tuple[list[Case], list[str]]:
        """The cases and endpoint names to parametrise with; reads and checks every input file."""
        if self._suite is None:
            s = self.settings
            self._suite = cases_from_workflows(s.workflows) if s.workflows else load_case_files(list(s.cases))
            endpoints = [parse_endpoint_option(v, i) for i, v in enumerate(s.endpoints)]
            if s.endpoints_file:
                endpoints += load_endpoints_file(s.endpoints_file)
                self._verdict_spec = load_verdict_spec(s.endpoints_file)
            for endpoint in endpoints:
                endpoint.check_secrets()
            self._endpoints = endpoints
        names = [e.name for e in self._endpoints] or [
            name.format(profile=p) for name, _, _ in REFERENCE_ENVELOPES for p in REFERENCE_PROFILES
        ]
        migration = self.migration()
        for role, name in zip(("baseline", "candidate"), migration or (), strict=False):
            if name not in names:
                raise ConfigError(f"--{role} {name!r}: no such endpoint (endpoints: {', '.join(names)})")
        if self.settings.compare_to not in (None, "previous"):
            load_run(self.settings.compare_to)  # a wrong directory is a one-line error now, not after the run
        return self._suite.cases, names

    def migration(self) -> tuple[str, str] | None:
        """(baseline, candidate) when a verdict is asked for, from the flags or the endpoints file."""
        spec = self._verdict_spec or VerdictSpec()
        baseline = self.settings.baseline or spec.baseline
        candidate = self.settings.candidate or spec.candidate
        if (baseline is None) != (candidate is None):
            raise ConfigError("a verdict needs both --baseline and --candidate (or both in the endpoints file's verdict:)")
        return (baseline, candidate) if baseline else None

    def schedule(self, cells: list[tuple[Case, str]]) -> None:
        """The cells this session will ask for, after -k/-m selection; they run together."""
        self._scheduled = cells

    def cell(self, case: Case, endpoint_name: str) -> Cell:
        if self._engine is None:
            self._start()
            # Every selected cell is submitted at once: the engine's per-endpoint limits pace them, so a
            # run takes as long as its slowest endpoint needs, not the sum of all waits. Tests then
            # collect their cell in pytest's order. An xdist worker only knows its cells one at a time.
            for c, e in self._scheduled if self.worker is None else ():
                self._running.setdefault((c.id, e), self._thread.submit(self._engine.run_cell(c, e)))
        future = self._running.get((case.id, endpoint_name))
        if future is None:
            future = self._running[(case.id, endpoint_name)] = self._thread.submit(self._engine.run_cell(case, endpoint_name))
        return future.result()

    def start_controller(self) -> None:
        """The xdist controller's own writer: the run's matrix.json, filled from the workers' parts at the end."""
        self.writer = MatrixWriter(self.settings.report_dir, self.run_id, repeat=self.settings.repeat)

    def _start(self) -> None:
        endpoints = self._endpoints or self._start_reference_endpoints()
        self.writer = MatrixWriter(self.settings.report_dir, self.run_id, part=self.worker, repeat=self.settings.repeat)
        scheduled = {case.id: case for case, _ in self._scheduled}
        self.writer.plan(list(scheduled.values()), self._suite.waivers if self._suite else [])
        self._thread = EngineThread()
        self._engine = Engine(endpoints, self.writer, repeat=self.settings.repeat, cold_start=self.settings.cold_start,
                              repeat_identical=self.settings.repeat_identical)
        self._thread.call(self._engine.start())

    def _start_reference_endpoints(self) -> list[Endpoint]:
        from harness.reference.modal import WORKFLOW_APP_REQUEST
        from harness.reference.server import ReferenceServer  # only runs that use it pay for aiohttp's app

        endpoints = []
        for profile in REFERENCE_PROFILES:
            server = ReferenceServer(profile)
            server.start()
            self._servers.append(server)
            endpoints += [
                Endpoint(name=name.format(profile=profile), url=server.url + path.format(profile=profile), kind=kind, profile=profile,
                         request=WORKFLOW_APP_REQUEST if kind == "modal" else None)
                for name, kind, path in REFERENCE_ENVELOPES
            ]
        return endpoints

    def finish(self, interrupted: bool) -> dict | None:
        """Close everything; on the run's own matrix, conclude. Returns the verdict, if one was asked for."""
        if self._engine is not None:
            self._thread.call(self._engine.close())
            self._thread.stop()
        for server in reversed(self._servers):
            server.stop()
        if self.writer is None:
            return None
        if self.worker is not None:
            self.writer.finish("interrupted" if interrupted else "complete")
            return None
        self.writer.merge_parts()
        self.writer.finish("interrupted" if interrupted else "complete")
        return conclude(self.writer, migration=self.migration(), budgets=Budgets.from_dict(
            (self._verdict_spec or VerdictSpec()).budgets), compare_to=self.settings.compare_to,
            alluredir=self.settings.alluredir)
