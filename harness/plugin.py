"""The pytest plugin: options, markers and the ``compat_cell`` fixture that turns cases into tests.

A test that asks for ``compat_cell`` is parametrised with every case × endpoint; each parameter runs
one cell through the engine and gets the finished ``Cell``. Settings come from the command line,
then from pytest.ini (``comfy_*`` keys). With no endpoint configured, the run starts the embedded
reference endpoint with the ``stock`` and ``custom`` profiles and targets both.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness import exitcodes

from harness.run.cases import Case, Suite, cases_from_workflows, load_case_files
from harness.run.cells import Cell
from harness.report.conclusions import conclude, summary_lines
from harness.report.drift import load_run
from harness.run.endpoints import (Endpoint, VerdictSpec, check_all_secrets, load_endpoints_file, load_verdict_spec,
                                   parse_endpoint_option)
from harness.run.feeder import Feeder
from harness.errors import ConfigError, HarnessError
from harness.report.matrix import MatrixWriter, ReportWriteError, check_writable, new_run_id
from harness.report.verdict import Budgets
from harness.run.sharing import parse_shard, slots, spread, worker_index
from harness.comfy.versions import MODELLED

if TYPE_CHECKING:
    from harness.run.engine import Engine, EngineThread

__all__ = ["CompatRun", "Settings"]

REFERENCE_PROFILES = ("stock", "custom")
REFERENCE_VERSION = "0.33.0"
"""The ComfyUI release the default run's reference endpoint answers as: the current one (harness.comfy.versions
.CURRENT, what serverless images are rebuilt on); --reference-version 0.3.64 for teams still on that."""
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
PATH_OPTIONS = ("--workflows", "--endpoints-file", "--report-dir", "--compare-to")
# pytest's -k grammar has no '@', which every cell's test id has (``smoke_invert@stock``). The ids stay
# (they are names in users' JUnit and Allure history); -k's '@' is read as this token instead, and every
# cell carries its id spelt with it as an extra keyword. '+' is an identifier character of -k.
_AT = "+at+"


@dataclass(frozen=True)
class Settings:
    endpoints: tuple[str, ...]
    endpoints_file: Path | None
    workflows: Path | None
    cases: tuple[Path, ...]
    report_dir: Path
    unmatched_cases: tuple[str, ...] = ()
    """``comfy_cases`` globs that matched no file: an error once the cases are read."""
    exit_codes: str = "v2"
    """``v2`` (harness.exitcodes' table) or ``legacy`` (the verdict's 0/1/2 alone)."""
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
    reference_version: str = REFERENCE_VERSION
    """The ComfyUI release the embedded reference endpoint answers as, when it is the run's target."""
    shard: tuple[int, int] | None = None
    """(I, N): this run is part I of N of the cells (``--shard=I/N``), for ``comfy-compat merge``."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("comfy-compat", "ComfyUI workflow compatibility (write path options as --opt=PATH)")
    group.addoption("--endpoint", action="append", dest="comfy_endpoint", default=None, metavar="[NAME=]URL",
                    help="ComfyUI endpoint to test; repeatable. ini: comfy_endpoints. "
                         "Default: the embedded reference endpoint (profiles stock and custom).")
    group.addoption("--reference-version", dest="comfy_reference_version", default=None, choices=MODELLED,
                    help=f"The ComfyUI release the embedded reference endpoint answers as: its recorded catalogues, "
                         f"validation and /system_stats (default: {REFERENCE_VERSION}). ini: comfy_reference_version.")
    group.addoption("--endpoints-file", dest="comfy_endpoints_file", default=None, metavar="PATH",
                    help="Named endpoints with kind, url, headers (${ENV_VAR} secrets), timeouts. ini: comfy_endpoints_file.")
    group.addoption("--workflows", dest="comfy_workflows", default=None, metavar="PATH",
                    help="Replay every *.json API workflow in DIR, expecting passed, instead of the case files. ini: comfy_workflows.")
    group.addoption("--report-dir", dest="comfy_report_dir", default=None, metavar="PATH",
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
                    help="Go/no-go verdict: the endpoint to move to; NO-GO exits 10, UNDECIDABLE 11 (see "
                         "--exit-codes). ini: comfy_candidate.")
    group.addoption("--compare-to", dest="comfy_compare_to", default=None, metavar="PATH|previous",
                    help="Report drift against an earlier run (`previous`: the newest other complete run in the report "
                         "directory). ini: comfy_compare_to.")
    group.addoption("--exit-codes", dest="comfy_exit_codes", default=None, choices=exitcodes.SCHEMES,
                    help=f"v2 (default) or legacy (the verdict's 0 GO/1 NO-GO/2 UNDECIDABLE alone, as before v2; a GO "
                         f"run with failing cells then exits 0). v2 {exitcodes.table_text()}. ini: comfy_exit_codes.")
    group.addoption("--shard", dest="comfy_shard", default=None, metavar="I/N",
                    help="Run part I of N of the cells (1-based; the same split every time, each part an even share of "
                         "every endpoint), e.g. one per CI job; `comfy-compat merge` makes one run of the parts. ini: comfy_shard.")
    parser.addini("comfy_endpoints", "Endpoints to test, one [NAME=]URL per line.", type="linelist", default=[])
    parser.addini("comfy_endpoints_file", "Endpoints YAML file.", default="")
    parser.addini("comfy_reference_version", "ComfyUI release of the embedded reference endpoint (see --reference-version).",
                  default="")
    parser.addini("comfy_workflows", "Directory of API workflows to replay instead of the case files.", default="")
    parser.addini("comfy_cases", "Case files (YAML), globs relative to the rootdir.", type="linelist", default=["cases/*.yaml"])
    parser.addini("comfy_report_dir", "Report directory.", default="reports")
    parser.addini("comfy_repeat", "Attempts per cell.", default="1")
    parser.addini("comfy_repeat_identical", "Send repeats as written (see --repeat-identical).", type="bool", default=False)
    parser.addini("comfy_cold_start", "Measure cold starts (see --cold-start).", type="bool", default=False)
    parser.addini("comfy_baseline", "Verdict baseline endpoint.", default="")
    parser.addini("comfy_candidate", "Verdict candidate endpoint.", default="")
    parser.addini("comfy_compare_to", "Run directory (or `previous`) to report drift against.", default="")
    parser.addini("comfy_exit_codes", "Exit status scheme: v2 or legacy (see --exit-codes).", default="v2")
    parser.addini("comfy_shard", "Part of the cells to run, I/N (see --shard).", default="")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    """Stop at once when a path option written with a space misled pytest's choice of rootdir and ini file.

    pytest picks its rootdir and ini file from the command line's paths before this plugin's options are
    known, so ``--workflows ~/flows`` reads ``~/flows`` as a test path: with it outside the project,
    pytest.ini is not found and the project's own tests/ would run instead of the cases. Where the
    choice comes out the same without the value, the option works as written.
    """
    spaced = [(opt, args[i + 1]) for i, opt in enumerate(args[:-1]) if opt in PATH_OPTIONS and Path(args[i + 1]).exists()]
    if spaced and _setup_without(early_config) != (early_config.rootpath, early_config.inipath):
        opt, value = spaced[0]
        raise pytest.UsageError(f"{opt} {value}: pytest read it as a test path before comfy-compat was loaded, so its "
                                f"rootdir and ini file would be wrong and other tests would run; write {opt}={value}")


def _setup_without(config: pytest.Config) -> tuple[Path, Path | None] | None:
    """The rootdir and ini file pytest would pick from the command line's real test paths; None if unknown."""
    from _pytest.config.findpaths import determine_setup  # no public API tells how pytest chose them

    ns = config.known_args_namespace
    try:
        rootpath, inipath, *_ = determine_setup(
            inifile=ns.inifilename, override_ini=ns.override_ini, args=ns.file_or_dir,
            rootdir_cmd_arg=ns.rootdir or None, invocation_dir=config.invocation_params.dir)
    except TypeError:  # another pytest's signature: assume the worst, the value did mislead it
        return None
    return rootpath, inipath


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compat(case, endpoint): a compatibility cell; set by the plugin on every case × endpoint.")
    if "@" in (config.option.keyword or ""):
        config.option.keyword = config.option.keyword.replace("@", _AT)
    run = CompatRun(_settings(config))
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "comfy_compat_run_id" in workerinput:
        run.run_id, run.worker = workerinput["comfy_compat_run_id"], workerinput["workerid"]
        if workerinput.get("comfy_compat_shares"):
            part = worker_index(workerinput["workerid"], workerinput["workercount"])
            run.part = None if part is None else (part, workerinput["workercount"])
    elif config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(run), "comfy-compat-xdist")
    config.stash[_RUN] = run


def _settings(config: pytest.Config) -> Settings:
    """Each setting from its flag, else its ini key; paths are relative to the rootdir."""
    root = config.rootpath

    def path(flag: str, ini: str) -> Path | None:
        value = config.getoption(flag) or config.getini(ini)
        return (root / Path(value).expanduser()) if value else None

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
    patterns = config.getini("comfy_cases")
    globbed = {pattern: sorted(Path(p) for p in glob.glob(str(root / Path(pattern).expanduser()), recursive=True))
               for pattern in patterns}
    return Settings(
        endpoints=tuple(config.getoption("comfy_endpoint") or config.getini("comfy_endpoints")),
        endpoints_file=path("comfy_endpoints_file", "comfy_endpoints_file"),
        workflows=path("comfy_workflows", "comfy_workflows"),
        cases=tuple(p for paths in globbed.values() for p in paths),
        unmatched_cases=tuple(pattern for pattern, paths in globbed.items() if not paths),
        exit_codes=_exit_codes(value("comfy_exit_codes", "comfy_exit_codes")),
        report_dir=path("comfy_report_dir", "comfy_report_dir") or root / "reports",
        repeat=repeat,
        repeat_identical=bool(value("comfy_repeat_identical", "comfy_repeat_identical")),
        cold_start=bool(value("comfy_cold_start", "comfy_cold_start")),
        baseline=value("comfy_baseline", "comfy_baseline"),
        candidate=value("comfy_candidate", "comfy_candidate"),
        compare_to=compare_to if compare_to in (None, "previous") else str(root / Path(compare_to).expanduser()),
        alluredir=config.getoption("allure_report_dir", None),
        reference_version=_reference_version(value("comfy_reference_version", "comfy_reference_version")),
        shard=_shard(value("comfy_shard", "comfy_shard")),
    )


def _shard(text: str | None) -> tuple[int, int] | None:
    try:
        return parse_shard(text) if text else None
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def _reference_version(version: str | None) -> str:
    if version not in (None, *MODELLED):
        raise pytest.UsageError(f"comfy_reference_version: expected one of {', '.join(MODELLED)}, got {version!r}")
    return version or REFERENCE_VERSION


def _exit_codes(scheme: str | None) -> str:
    if scheme not in (None, *exitcodes.SCHEMES):
        raise pytest.UsageError(f"comfy_exit_codes: expected one of {', '.join(exitcodes.SCHEMES)}, got {scheme!r}")
    return scheme or "v2"


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
                run.selection = _selected_by_options(config)  # it collects nothing itself
                run.shares = _only_cases(config) and not _dist_chosen(config)
                run.start_controller()
            return


def _only_cases(config: pytest.Config) -> bool:
    """Whether the run collects nothing but the cases (``pytest`` in the project: testpaths is cases/)."""
    cases_dir = config.rootpath / "cases"
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return all(path == cases_dir or cases_dir in path.parents for path in paths)


def _dist_chosen(config: pytest.Config) -> bool:
    """Whether --dist (or --distload) was given: xdist itself makes -n's default ``no`` into ``load``
    after parsing, so the early parse (command line and addopts) is what tells."""
    given = config.known_args_namespace
    return getattr(given, "dist", "no") != "no" or bool(getattr(given, "distload", False))


def pytest_report_header(config: pytest.Config) -> list[str]:
    settings = config.stash[_RUN].settings
    targets = ", ".join(settings.endpoints) or (str(settings.endpoints_file) if settings.endpoints_file else "")
    reference = f"embedded reference (stock, custom) answering as ComfyUI {settings.reference_version}"
    return [f"comfy-compat: endpoints: {targets or reference}; reports: {settings.report_dir}"]


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
    # Only where allure-pytest records (--alluredir): the cell's JSON was the plugin's dearest work per test.
    if isinstance(cell, Cell) and item.config.pluginmanager.has_plugin("allure_listener"):
        _attach_to_allure(cell)
    return (yield)


def _attach_to_allure(cell: Cell) -> None:
    """One allure test per cell, with its evidence.

    Attached in the call phase: attachments made while a fixture sets up go to the fixture, not the test.
    """
    import allure

    # The parameter's default value is the repr of the (Case, endpoint) pair pytest was given.
    allure.dynamic.parameter("compat_cell", f"{cell.case}@{cell.endpoint}")
    # Excluded from Allure's history id: the same cell with another outcome is the same test.
    allure.dynamic.parameter("outcome", f"{cell.outcome.value} (expected {cell.expected.value})", excluded=True)
    allure.dynamic.label("endpoint", cell.endpoint)
    allure.dynamic.tag(cell.outcome.value)
    allure.attach(json.dumps(cell.to_dict(), indent=2), name="cell", attachment_type=allure.attachment_type.JSON)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed cell's report says what matters in four lines, instead of pytest's assertion with the
    repr of the whole cell; in the terminal, JUnit's failure text and Allure's trace alike."""
    report = yield
    cell = getattr(item, "funcargs", {}).get("compat_cell")
    if call.when == "call" and isinstance(cell, Cell):
        _allure_duration(item.config, cell)
        if report.failed and not cell.ok:
            report.longrepr = _failure_text(item.config.stash[_RUN], cell)
    return report


def _failure_text(run: CompatRun, cell: Cell) -> str:
    from harness.report.html import cell_anchor

    lines = [f"{cell.case} on {cell.endpoint}: {cell.outcome.value} (expected {cell.expected.value})"]
    message = str(cell.evidence.get("message") or "").strip()
    if message:
        first = message.splitlines()[0]
        more = "…" if len(first) > 300 or len(message) > len(first) else ""
        lines.append(f"evidence: {first[:300]}{more}")
    if cell.evidence.get("hint"):
        lines.append(f"remedy: {cell.evidence['hint']}")
    if run.writer is not None:
        lines.append(f"report: {run.writer.dir / 'report.html'}#{cell_anchor(cell.case, cell.endpoint)}")
    return "\n".join(lines)


def _allure_duration(config: pytest.Config, cell: Cell) -> None:
    """Give the cell's Allure test the cell's own duration.

    The cells run together before their tests ask for them, so the test's call lasts ~0 ms; allure has no
    API to set a duration, hence its listener's current result (a no-op without --alluredir).
    """
    listener = config.pluginmanager.get_plugin("allure_listener")
    result = listener.allure_logger.get_test(None) if listener is not None else None
    if result is not None and result.stop is not None:
        result.start = result.stop - round(cell.timings.total * 1000)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    """Before any selection: each cell's test id with -k's spelling of '@', so ``-k 'smoke_invert@stock'``
    selects it (see _AT). After -k and -m: ``--shard`` keeps its part of the cells."""
    for item in items:
        if _cell_of(item) is not None:
            item.extra_keyword_matches.add(item.name.replace("@", _AT))
    yield
    shard = config.stash[_RUN].settings.shard
    if shard is not None:
        cells = [item for item in items if _cell_of(item) is not None]
        dealt = spread([_cell_of(item)[1] for item in cells], shard[1])
        dropped = {item for item, part in zip(cells, dealt, strict=True) if part != shard[0] - 1}
        if dropped:
            config.hook.pytest_deselected(items=[item for item in items if item in dropped])
            items[:] = [item for item in items if item not in dropped]


def _cell_of(item: pytest.Item) -> tuple[Case, str] | None:
    """The (case, endpoint name) a test runs, or None for a test that is no cell."""
    return getattr(getattr(item, "callspec", None), "params", {}).get("compat_cell")


def _endpoint_of(nodeid: str) -> str | None:
    """The endpoint of a cell's test id (``…::test_compat[case@endpoint]``; case ids have no '@'), or None:
    the xdist controller has only the ids."""
    return nodeid.partition("::")[2].partition("[")[2].removesuffix("]").partition("@")[2] or None


def pytest_collection_finish(session: pytest.Session) -> None:
    run = session.config.stash[_RUN]
    cells = [cell for item in session.items if (cell := _cell_of(item)) is not None]
    share = None  # all of them
    if run.worker is not None:
        share = []  # xdist's own scheduling: each cell as it is asked for
        if run.part is not None:  # ShareScheduling hands this worker its whole part: the same deal
            part, count = run.part
            dealt = run.deal([item.nodeid for item in session.items], count)
            share = [cell for item, p in zip(session.items, dealt, strict=True) if p == part and (cell := _cell_of(item))]
    run.schedule(cells, selection=_selection(session, len(cells)), share=share)
    if cells:
        try:
            check_writable(run.settings.report_dir)
        except ReportWriteError as exc:  # one line now, not a traceback per cell once they ran
            pytest.exit(str(exc), returncode=pytest.ExitCode.USAGE_ERROR)


def _selection(session: pytest.Session, selected: int) -> str | None:
    """What narrowed this run to part of its cells (-k, -m, --lf, a test id...), or None for all of them.

    A partial run must not become the run the next ``--compare-to=previous`` compares with.
    """
    config = session.config
    run = config.stash[_RUN]
    if getattr(config, "workerinput", None) is not None or run._suite is None:
        return None  # a worker sees its share (the controller decides for the run), or no case was collected
    cases, names = run.plan()
    of = f"{selected} of {len(cases) * len(names)} cells"
    if run.settings.shard is not None:
        return f"shard {run.settings.shard[0]}/{run.settings.shard[1]}: {of}"
    return None if selected == len(cases) * len(names) else of


def _selected_by_options(config: pytest.Config) -> str | None:
    """The options that narrow a run (-k, -m, --lf, --deselect, test ids), for the xdist controller."""
    given = [flag for flag, on in (("-k", config.option.keyword), ("-m", config.option.markexpr),
                                   ("--lf", getattr(config.option, "lf", False)), ("--deselect", config.option.deselect))
             if on]
    given += [arg for arg in config.args if "::" in arg]
    shard = config.stash[_RUN].settings.shard
    given += [f"shard {shard[0]}/{shard[1]}"] if shard else []
    return ", ".join(given) or None


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
    if verdict is not None:
        # NO-GO and UNDECIDABLE have codes of their own; a failed cell still fails a GO run (harness.exitcodes).
        session.exitstatus = exitcodes.run_status(exitstatus, verdict["decision"], run.settings.exit_codes)
        run.exit_note = _exit_note(exitstatus, verdict["decision"], run.settings.exit_codes)


def _exit_note(pytest_status: int, decision: str, scheme: str) -> str:
    status = exitcodes.run_status(pytest_status, decision, scheme)
    meaning = dict(exitcodes.TABLE).get(status, "") if scheme == "v2" else f"legacy exit codes: {decision}"
    note = f"exit status {status}: {meaning}"
    if scheme == "legacy" and pytest_status == pytest.ExitCode.TESTS_FAILED and decision == "GO":
        note += " although a cell is not as expected (v2 would exit 1)"
    return note


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
    if run.exit_note:
        terminalreporter.write_line(run.exit_note)
    terminalreporter.write_line(f"report: {run.writer.dir / 'report.html'} (and matrix.md, matrix.json; latest: {run.writer.root / 'latest'})")


class _XdistController:
    """Hooks of the xdist controller (registered only when xdist is loaded): workers write into its run."""

    def __init__(self, run: CompatRun) -> None:
        self.run = run

    def pytest_configure_node(self, node) -> None:
        node.workerinput["comfy_compat_run_id"] = self.run.run_id
        node.workerinput["comfy_compat_shares"] = self.run.shares

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        """Each worker's whole share at once (harness.run.xdist_schedule); else xdist's --dist."""
        if not self.run.shares:
            return None
        from harness.run.xdist_schedule import ShareScheduling

        return ShareScheduling(config, log, share=self.run.deal)


@dataclass
class CompatRun:
    """The plugin's state for one pytest session; everything heavy starts on the first cell.

    Under pytest-xdist the controller runs no cell: it names the run, and when the workers are done
    merges their parts and concludes (verdict, drift, reports). When the run is the cases and no
    ``--dist`` was chosen, each worker is handed its whole part (``shares``) and runs it together within
    its part of each endpoint's max_concurrency; else it runs the cells xdist hands it one at a time.
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
    _share: list[tuple[Case, str]] = field(default_factory=list)
    """The cells submitted together on the first one asked for."""
    _feeder: Feeder | None = None
    selection: str | None = None
    """What made this run cover part of its cells (matrix.json's ``run.selection``); None for all."""
    exit_note: str | None = None
    """The terminal's line on the exit status, when a verdict decides it."""
    shares: bool = False
    """xdist: the controller deals each worker its part of the cells at once (ShareScheduling)."""
    part: tuple[int, int] | None = None
    """An xdist worker's (part, parts) when it was dealt its share; None otherwise."""

    def plan(self) -> tuple[list[Case], list[str]]:
        """The cases and endpoint names to parametrise with; reads and checks every input file."""
        if self._suite is None:
            s = self.settings
            if s.unmatched_cases and not s.workflows:
                raise ConfigError(f"comfy_cases: {', '.join(s.unmatched_cases)} matches no case file")
            self._suite = cases_from_workflows(s.workflows) if s.workflows else load_case_files(list(s.cases))
            given = [(parse_endpoint_option(v, i), f"--endpoint {v}") for i, v in enumerate(s.endpoints)]
            if s.endpoints_file:
                given += [(e, str(s.endpoints_file)) for e in load_endpoints_file(s.endpoints_file)]
                self._verdict_spec = load_verdict_spec(s.endpoints_file)
            origin: dict[str, str] = {}
            for endpoint, where in given:
                if endpoint.name in origin:
                    # A second endpoint of the same name used to replace the first without a word.
                    raise ConfigError(f"endpoint name {endpoint.name!r} is given twice: by {origin[endpoint.name]} "
                                      f"and by {where}; name them apart (--endpoint NAME=URL)")
                origin[endpoint.name] = where
            check_all_secrets([e for e, _ in given])
            self._endpoints = [e for e, _ in given]
        names = [e.name for e in self._endpoints] or [
            name.format(profile=p) for name, _, _ in REFERENCE_ENVELOPES for p in REFERENCE_PROFILES
        ]
        migration = self.migration()
        for role, name in zip(("baseline", "candidate"), migration or (), strict=False):
            if name not in names:
                raise ConfigError(f"--{role} {name!r}: no such endpoint (endpoints: {', '.join(names)})")
        if self.settings.compare_to not in (None, "previous"):
            load_run(self.settings.compare_to, lean=True)  # a wrong directory is a one-line error now, not after the run
        return self._suite.cases, names

    def migration(self) -> tuple[str, str] | None:
        """(baseline, candidate) when a verdict is asked for, from the flags or the endpoints file."""
        spec = self._verdict_spec or VerdictSpec()
        baseline = self.settings.baseline or spec.baseline
        candidate = self.settings.candidate or spec.candidate
        if (baseline is None) != (candidate is None):
            raise ConfigError("a verdict needs both --baseline and --candidate (or both in the endpoints file's verdict:)")
        return (baseline, candidate) if baseline else None

    def limits(self) -> dict[str, int]:
        """Each endpoint's max_concurrency by name (the embedded reference endpoints keep the default)."""
        _, names = self.plan()
        given = {e.name: e.max_concurrency for e in self._endpoints}
        return {name: given.get(name, Endpoint.max_concurrency) for name in names}

    def deal(self, test_ids: list[str], parts: int) -> list[int]:
        """Each test's xdist part: cells dealt by their endpoint's slots (harness.run.sharing.spread)."""
        return spread([_endpoint_of(i) for i in test_ids], parts, self.limits())

    def schedule(self, cells: list[tuple[Case, str]], selection: str | None = None,
                 share: list[tuple[Case, str]] | None = None) -> None:
        """The cells this session will ask for, after -k/-m selection, and those of them that run together
        from the first one asked for (all of them unless ``share`` says otherwise)."""
        self._scheduled, self.selection = cells, selection
        self._share = cells if share is None else share

    def cell(self, case: Case, endpoint_name: str) -> Cell:
        if self._feeder is None:
            self._start()
            # Every selected cell (an xdist worker: its share) runs from now on, fed to the engine as each
            # endpoint's cells finish (harness.run.feeder): each endpoint's limit paces its own, so a run takes
            # as long as its slowest endpoint needs, not the sum of all waits. Tests then collect their cell
            # in pytest's order.
            self._feeder = Feeder(lambda c, e: self._thread.submit(self._engine.run_cell(c, e)), self._share,
                                  {e.name: e.max_concurrency for e in self._engine.endpoints.values()})
            self._feeder.start()
        return self._feeder.take(case, endpoint_name)

    def start_controller(self) -> None:
        """The xdist controller's own writer: the run's matrix.json, filled from the workers' parts at the end."""
        self.writer = MatrixWriter(self.settings.report_dir, self.run_id, repeat=self.settings.repeat)
        self._run_fields()

    def _run_fields(self) -> None:
        """matrix.json's run fields the plugin knows: what narrowed the run, and which shard it is."""
        self.writer.matrix["run"]["selection"] = self.selection
        if self.settings.shard is not None:
            self.writer.matrix["run"]["shard"] = dict(zip(("index", "count"), self.settings.shard, strict=True))

    def _start(self) -> None:
        endpoints = self._endpoints or self._start_reference_endpoints()
        if self.part is not None:
            # This worker's part of each endpoint's limit, so the limit holds across the workers; deal() gave
            # it the endpoint's cells in proportion (and none of an endpoint whose slots it holds none of).
            endpoints = [dataclasses.replace(e, max_concurrency=max(1, slots(e.max_concurrency, *self.part)))
                         for e in endpoints]
        self.writer = MatrixWriter(self.settings.report_dir, self.run_id, part=self.worker, repeat=self.settings.repeat)
        # A shard's rows are the whole plan, the same in every shard: comfy-compat merge checks and keeps them.
        rows = self._suite.cases if self.settings.shard else list({case.id: case for case, _ in self._scheduled}.values())
        self._run_fields()  # written with the plan, below
        self.writer.plan(rows, self._suite.waivers if self._suite else [], cells=len(self._scheduled))
        # Imported here: the engine brings aiohttp (about 0.2 s), which an xdist controller, `pytest --help` and
        # every run that collects no cell never need.
        from harness.run.engine import Engine, EngineThread

        self._thread = EngineThread()
        self._engine = Engine(endpoints, self.writer, listeners=[self.writer], repeat=self.settings.repeat,
                              cold_start=self.settings.cold_start, repeat_identical=self.settings.repeat_identical)
        self._thread.call(self._engine.start())

    def _start_reference_endpoints(self) -> list[Endpoint]:
        from harness.reference.modal import WORKFLOW_APP_REQUEST
        from harness.reference.profile import load_profile
        from harness.reference.server import ReferenceServer  # only runs that use it pay for aiohttp's app

        endpoints = []
        for profile in REFERENCE_PROFILES:
            server = ReferenceServer(load_profile(profile, self.settings.reference_version))
            server.start()
            self._servers.append(server)
            # The envelopes serve no /object_info or /system_stats, as on the real platforms: each is configured
            # with its server's, as a team gives a serverless endpoint its image's (UI workflows convert with it).
            endpoints += [
                Endpoint(name=name.format(profile=profile), url=server.url + path.format(profile=profile), kind=kind, profile=profile,
                         object_info=None if kind == "comfyui" else f"{server.url}/object_info",
                         comfyui_version=None if kind == "comfyui" else server.profile.system["comfyui_version"],
                         request=WORKFLOW_APP_REQUEST if kind == "modal" else None)
                for name, kind, path in REFERENCE_ENVELOPES
            ]
        return endpoints

    def _cancel_unfinished(self) -> int:
        """Cancel every cell not finished, and submit no more; how many cells that stopped.

        Done on the engine's loop in one go: cancelled one by one from this thread, a running cell's
        cancellation frees its endpoint's slot, and the next cell would start before its own cancel came.
        """
        futures, unsent = self._feeder.stop()
        counted: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread.loop.call_soon_threadsafe(lambda: counted.set_result(sum(f.cancel() for f in futures)))
        try:
            return unsent + counted.result(timeout=5)
        except concurrent.futures.TimeoutError:  # a loop that does not answer: cancel from here, as well as may be
            return unsent + sum(f.cancel() for f in futures)

    def finish(self, interrupted: bool) -> dict | None:
        """Close everything; on the run's own matrix, conclude. Returns the verdict, if one was asked for."""
        if self._engine is not None:
            # -x, --maxfail or Ctrl-C ended the session: cells not finished (most not started) are
            # cancelled, not left to run on against endpoints nobody reads any more.
            stopped = self._cancel_unfinished() if self._feeder is not None else 0
            if stopped and self.worker is None:
                total = self._feeder.total
                self.selection = f"{total - stopped} of {total} cells: the session stopped early"
                self.writer.matrix["run"]["selection"] = self.selection
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
        return conclude(self.writer, status="interrupted" if interrupted else "complete", migration=self.migration(),
                        budgets=Budgets.from_dict((self._verdict_spec or VerdictSpec()).budgets),
                        compare_to=self.settings.compare_to, alluredir=self.settings.alluredir)
