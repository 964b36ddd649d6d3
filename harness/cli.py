"""The ``comfy-compat`` command: one argparse subcommand per task: ``serve`` runs a reference endpoint;
``verdict``, ``diff`` and ``report`` work on the run directories a compatibility run leaves, ``merge``
makes one run of a run's shards; ``convert`` turns UI workflows into API prompts as an endpoint's web
frontend would.

A subcommand is a ``(configure, run)`` pair in ``SUBCOMMANDS``; ``run`` gets the parsed arguments and
returns the exit status (``harness.exitcodes``). Harness errors and bad arguments print as one line
without a traceback and exit 4, pytest's usage error, before anything is written. ``verdict``, ``diff``
and ``report`` only print unless given ``--write``: re-judging a run must not replace what the run wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import errno
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn
from pathlib import Path

import httpx

from harness.comfy.catalogue import Catalogue, load_catalogue
from harness.comfy.convert import FRONTENDS, ConversionError, MissingClasses, convert, is_ui_workflow
from harness.comfy.versions import MODELLED, modelled_version
from harness import exitcodes
from harness.errors import ConfigError, HarnessError
from harness.report.matrix import MatrixWriter, new_run_id
from harness.report.verdict import Budgets

__all__ = ["SUBCOMMANDS", "main"]


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="stock", help="stock, custom or a profile YAML file (default: stock)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8189, help="port to bind (default: 8189; 0 picks a free one)")
    parser.add_argument("--comfyui-version", choices=MODELLED, default=None,
                        help="the ComfyUI release to answer as: its recorded catalogue, validation and /system_stats "
                             "(default: the profile's own; 0.3.64 for stock and custom)")
    parser.add_argument("--models", choices=("profile", "none"), default="profile",
                        help="none: serve no model files, like a fresh server (default: the profile's)")


def _serve(args: argparse.Namespace) -> int:
    from harness.reference.profile import load_profile
    from harness.reference.server import running_server  # only this subcommand pays for aiohttp

    profile = load_profile(args.profile, args.comfyui_version)
    if args.models == "none":
        profile = profile.replace(models={})

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with running_server(profile, args.host, args.port) as server:
            print(f"comfy-compat: reference endpoint '{profile.name}' (ComfyUI {profile.comfyui_version}, "
                  f"{len(profile.catalogue())} node classes) listening on {server.url} (Ctrl-C stops)", flush=True)
            await stop.wait()
        print("comfy-compat: reference endpoint stopped", flush=True)

    try:
        asyncio.run(serve())
    except OSError as exc:  # binding: a busy port, a port below 1024, an address not on this machine
        busy = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be listened on ({exc.strerror or exc})"
        raise ConfigError(f"serve: {args.host}:{args.port} {busy}; choose another with --port (0 picks a free one)") from None
    return 0


def _configure_verdict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a reports/<run-id> directory (or reports/latest)")
    parser.add_argument("--baseline", required=True, metavar="ENDPOINT", help="the endpoint production runs on now")
    parser.add_argument("--candidate", required=True, metavar="ENDPOINT", help="the endpoint to move to")
    _add_budget(parser)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="judge waivers' expiry as of this day (default: today)")
    parser.add_argument("--exit-codes", choices=exitcodes.SCHEMES, default="v2",
                        help="v2: 0 GO, 10 NO-GO, 11 UNDECIDABLE (default); legacy: 0 GO, 1 NO-GO, 2 UNDECIDABLE")
    _add_write(parser, "the verdict into the run's matrix.json, matrix.md and report.html")


def _add_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", action="append", default=[], metavar="METRIC=VALUE",
                        help="success_rate, p95_seconds or cost_per_image the candidate must meet; repeatable")


def _add_write(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--write", action="store_true", help=f"write {what} (default: only print)")


def _verdict(args: argparse.Namespace) -> int:
    from harness.report.conclusions import summary_lines, verdict_of

    writer = MatrixWriter.reopen(Path(args.run_dir))
    budgets = Budgets.from_dict(_budgets(args.budget))
    _check_roles(args, writer.matrix, args.run_dir)
    verdict = verdict_of(writer.matrix, args.baseline, args.candidate, budgets, args.today)
    if args.write:
        writer.update(verdict=verdict)
    print("\n".join(summary_lines({"verdict": verdict})))
    return exitcodes.verdict_status(verdict["decision"], args.exit_codes)


def _check_roles(args: argparse.Namespace, matrix: dict, where: str) -> None:
    """A misspelt --baseline or --candidate is a usage error: judged, it would be an UNDECIDABLE written
    over the run's own."""
    names = [e["name"] for e in matrix.get("endpoints", [])]
    for role in ("baseline", "candidate"):
        if getattr(args, role) not in (None, *names):
            raise ConfigError(f"--{role} {getattr(args, role)!r}: no such endpoint in {where} (endpoints: {', '.join(names)})")


def _budgets(items: Sequence[str]) -> dict[str, float]:
    budgets: dict[str, float] = {}
    for item in items:
        metric, _, value = item.partition("=")
        if metric not in Budgets.__dataclass_fields__:
            raise ConfigError(f"--budget {item!r}: metric must be one of {', '.join(Budgets.__dataclass_fields__)}")
        try:
            budgets[metric] = float(value)
        except ValueError:
            raise ConfigError(f"--budget {item!r}: expected METRIC=NUMBER") from None
    return budgets


def _configure_diff(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD_RUN", help="the earlier run directory")
    parser.add_argument("new", metavar="NEW_RUN", help="the later run directory; its matrix.json gets the drift section")
    parser.add_argument("--json", action="store_true", help="print the drift document as JSON")
    _add_write(parser, "the drift section into NEW_RUN's matrix.json, matrix.md and report.html")


def _diff(args: argparse.Namespace) -> int:
    """Exit 1 when the new run has new product failures: what a nightly job should fail on."""
    from harness.report.conclusions import drift_against, summary_lines

    writer = MatrixWriter.reopen(Path(args.new))
    drift = drift_against(writer, args.old)
    if args.write:
        writer.update(drift=drift)
    print(json.dumps(drift, indent=2) if args.json else "\n".join(summary_lines({"drift": drift}) + _drift_lines(drift)))
    product = {o for o, info in writer.matrix["outcomes"].items() if info["disposition"] == "product"}
    return 1 if any(c["outcome"] in product for c in drift["cells"]["new_failures"]) else 0


def _drift_lines(drift: dict) -> list[str]:
    from harness.report.drift import endpoint_change_lines

    lines = [f"  {kind.replace('_', ' ')}: {c['case']} on {c['endpoint']}: {c['previous'] or 'not run'} -> {c['outcome']}"
             for kind in ("new_failures", "fixed", "changed") for c in drift["cells"][kind]]
    for name, changes in drift["endpoints"].items():
        lines += [f"  {name}: {label}: {', '.join(items)}" for label, items in endpoint_change_lines(changes)]
    return lines


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a reports/<run-id> directory (or reports/latest)")
    parser.add_argument("--html", action="store_true", help="(re)write report.html (default: every format)")
    parser.add_argument("--markdown", action="store_true", help="(re)write matrix.md")
    parser.add_argument("--write", action="store_true", help="overwrite the files that exist (default: write only missing ones)")


def _report(args: argparse.Namespace) -> int:
    writer = MatrixWriter.reopen(Path(args.run_dir))
    html, markdown = args.html or not args.markdown, args.markdown or not args.html
    existing = [name for wanted, name in ((html, "report.html"), (markdown, "matrix.md")) if wanted and (writer.dir / name).exists()]
    if existing and not args.write:
        raise ConfigError(f"report: {', '.join(existing)} already in {writer.dir}; --write overwrites")
    for path in writer.render(html=html, markdown=markdown):
        print(path)
    return 0


def _configure_merge(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="the shards' run directories (pytest --shard=I/N)")
    parser.add_argument("--report-dir", default="reports", metavar="DIR",
                        help="where the merged run's directory goes; DIR/latest points at it (default: reports)")
    parser.add_argument("--baseline", default=None, metavar="ENDPOINT", help="go/no-go verdict: the endpoint production runs on now")
    parser.add_argument("--candidate", default=None, metavar="ENDPOINT", help="go/no-go verdict: the endpoint to move to")
    parser.add_argument("--compare-to", default=None, metavar="PATH|previous",
                        help="drift against an earlier run (previous: the newest other complete run in --report-dir)")
    parser.add_argument("--endpoints-file", default=None, metavar="PATH",
                        help="the shards' endpoints file: its verdict: section (baseline, candidate, budgets) judges the "
                             "merged run as it would have judged the one run; the flags win")
    _add_budget(parser)


def _merge(args: argparse.Namespace) -> int:
    """Write one run of the shards, concluded as a run is; exit as that run would have (harness.exitcodes)."""
    from harness.report.conclusions import conclude, summary_lines
    from harness.report.drift import load_run
    from harness.report.merge import merge
    from harness.run.endpoints import VerdictSpec, load_verdict_spec

    # What the one run would have been judged by: its endpoints file's verdict: section, the flags over it.
    spec = (load_verdict_spec(args.endpoints_file) if args.endpoints_file else None) or VerdictSpec()
    args.baseline, args.candidate = args.baseline or spec.baseline, args.candidate or spec.candidate
    if (args.baseline is None) != (args.candidate is None):
        raise ConfigError("a verdict needs both --baseline and --candidate (or both in the endpoints file's verdict:)")
    budgets = Budgets.from_dict({**spec.budgets, **_budgets(args.budget)})
    shards = [load_run(run_dir) for run_dir in args.run_dirs]
    _check_roles(args, shards[0], args.run_dirs[0])
    if args.compare_to not in (None, "previous"):
        load_run(args.compare_to, lean=True)  # a wrong directory is a one-line error before anything is written
    run_id = new_run_id()
    sections, kept = merge(shards, Path(args.report_dir).resolve() / run_id)  # checked before anything is written
    writer = MatrixWriter(Path(args.report_dir), run_id, repeat=max(s["run"].get("repeat", 1) for s in shards))
    for run_dir in args.run_dirs:  # the cells' request.json, outputs and repros are relative to the run directory
        if (Path(run_dir) / "cells").is_dir():
            shutil.copytree(Path(run_dir) / "cells", writer.dir / "cells", copy_function=_link, dirs_exist_ok=True)
    for entry, shard in zip(sections["endpoints"], kept, strict=True):
        if entry.get("fingerprint"):
            (writer.dir / entry["fingerprint"]).parent.mkdir(parents=True, exist_ok=True)
            _link(Path(args.run_dirs[shard]) / entry["fingerprint"], writer.dir / entry["fingerprint"])
    writer.matrix["run"]["selection"] = sections.pop("selection")
    writer.matrix.update(sections)
    complete = all(s["run"].get("status") == "complete" for s in shards)
    verdict = conclude(writer, status="complete" if complete else "interrupted",
                       migration=(args.baseline, args.candidate) if args.baseline else None, budgets=budgets,
                       compare_to=args.compare_to)
    cells = writer.matrix["cells"]
    print(f"comfy-compat: {len(shards)} runs merged into {writer.dir}: {len(cells)} cells"
          + (f" ({writer.matrix['run']['selection']})" if writer.matrix["run"]["selection"] else ""))
    print("\n".join(summary_lines(writer.matrix)))
    unexpected = exitcodes.Exit.CELLS_UNEXPECTED if any(not c["ok"] for c in cells) else exitcodes.Exit.OK
    return exitcodes.run_status(unexpected, verdict["decision"] if verdict else None)


def _link(source: Path | str, target: Path | str) -> None:
    """Hard-link a shard's file into the merged run (a copy across file systems); shards' copies of one
    endpoint's fingerprint are alike, so a second one replaces the first."""
    Path(target).unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _configure_convert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="UI workflow files, or folders of *.json workflows")
    parser.add_argument("--object-info", required=True, metavar="FILE|URL",
                        help="the target endpoint's /object_info: a saved file, or a ComfyUI URL (…/object_info)")
    parser.add_argument("--frontend", choices=FRONTENDS, default=None,
                        help="the web frontend to reproduce (default: the one the endpoint's ComfyUI version pins)")
    parser.add_argument("--comfyui-version", default=None, metavar="VERSION",
                        help="the endpoint's ComfyUI version, when --object-info is a file (default: asked of the "
                             "URL's /system_stats, else the current one)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write each API prompt into DIR under its file's name (needed for several files)")
    parser.add_argument("--unknown-nodes", choices=("refuse", "send"), default="refuse",
                        help="a node whose class the catalogue lacks: refuse the file (default), or write it as the "
                             "frontend sends it (no class_type; ComfyUI will refuse the prompt)")


def _convert(args: argparse.Namespace) -> int:
    """Convert as the endpoint's web frontend would; a file that cannot be converted gets one line and
    makes the exit status 1, the others are still written."""
    from harness.comfy.workflows import load_workflow

    files = [p for path in map(Path, args.paths) for p in (sorted(path.glob("*.json")) if path.is_dir() else [path])]
    if args.out is None and (len(files) != 1 or Path(args.paths[0]).is_dir()):
        raise ConfigError(f"convert: {len(files)} workflow files: give --out DIR to write them into (stdout takes one)")
    catalogue, told = _catalogue_of(args.object_info)
    modelled = modelled_version(args.comfyui_version or told, "--comfyui-version" if args.comfyui_version else
                                ("/system_stats" if told else "not given"), frontend=args.frontend)
    print(f"comfy-compat: converting as frontend {modelled.frontend} ({modelled.reason}) with {catalogue.source}", file=sys.stderr)
    failed = 0
    for path in files:
        try:
            workflow = load_workflow(path)
            prompt = _converted(workflow, catalogue, modelled.frontend, path, args.unknown_nodes == "send")
        except HarnessError as exc:
            # load_workflow's messages name the file; the converter's name only the node.
            where = "" if not isinstance(exc, ConversionError) else f"{path}: "
            print(f"comfy-compat: {where}{exc}", file=sys.stderr)
            failed += 1
            continue
        text = json.dumps(prompt, indent=2, ensure_ascii=False) + "\n"
        if args.out is None:
            sys.stdout.write(text)
        else:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / path.name).write_text(text, encoding="utf-8")
    return 1 if failed else 0


def _converted(workflow: dict, catalogue: Catalogue, frontend: str, path: Path, send_unknown: bool) -> dict:
    """The prompt of one file (an API-format one as it is); with ``send_unknown``, nodes of missing classes go
    as the frontend sends them, and a line names them."""
    if not is_ui_workflow(workflow):
        return workflow
    try:
        return convert(workflow, catalogue, frontend=frontend)
    except MissingClasses as exc:
        if not send_unknown:
            raise
        classes = ", ".join(sorted({n.class_type or "(no type)" for n in exc.nodes}))
        print(f"comfy-compat: {path}: {classes} sent as frontend {frontend} sends nodes it does not know "
              "(no class_type): ComfyUI will refuse the prompt", file=sys.stderr)
        return convert(workflow, catalogue, frontend=frontend, strict=False)


def _catalogue_of(source: str) -> tuple[Catalogue, str | None]:
    """The catalogue at a file or URL, and the ComfyUI version a URL's server says it runs."""
    if not re.match(r"^https?://", source):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"--object-info {source}: no such file")
        try:
            return load_catalogue(path), None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--object-info {source}: not a saved /object_info ({exc})") from None
    base = source.removesuffix("/").removesuffix("/object_info")
    try:
        response = httpx.get(f"{base}/object_info", timeout=60.0)
        info = response.json() if response.status_code == 200 else None
        stats = httpx.get(f"{base}/system_stats", timeout=10.0)
        told = ((stats.json() or {}).get("system") or {}).get("comfyui_version") if stats.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        raise ConfigError(f"--object-info {source}: could not read {base}/object_info ({exc})") from None
    if not isinstance(info, dict):
        raise ConfigError(f"--object-info {source}: {base}/object_info did not answer with a catalogue")
    return Catalogue(info, f"{base}/object_info"), told if isinstance(told, str) else None


SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "serve": ("run the embedded reference endpoint (a simulated ComfyUI 0.3.64 or 0.33.0)", _configure_serve, _serve),
    "verdict": ("go/no-go for moving from --baseline to --candidate, from a finished run (exit 0 GO, 10 NO-GO, 11 UNDECIDABLE)",
                _configure_verdict, _verdict),
    "diff": ("drift between two runs: new failures, fixed cells, node classes and model files that changed",
             _configure_diff, _diff),
    "report": ("re-render a run's reports from its matrix.json", _configure_report, _report),
    "merge": ("one run of a run's shards (pytest --shard=I/N): matrix, verdict and drift, as one run would give",
              _configure_merge, _merge),
    "convert": ("convert UI workflows to the API prompt the endpoint's web frontend would send (exit 1 if any cannot be)",
                _configure_convert, _convert),
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument exits 4 (pytest's usage error) instead of argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(exitcodes.Exit.USAGE_ERROR, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="comfy-compat", description="Replay ComfyUI workflows against endpoints.",
                     epilog=exitcodes.table_block(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"comfy-compat {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (help_text, configure, run) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        configure(sub)
        sub.set_defaults(run=run)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except HarnessError as exc:
        print(f"comfy-compat: {exc}", file=sys.stderr)
        return exitcodes.Exit.USAGE_ERROR


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("comfy-compat")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


if __name__ == "__main__":
    sys.exit(main())
