"""The engine: runs cells (case × endpoint) through providers and tells its listeners of each finished cell.

Front ends (the pytest plugin, the CLI) only adapt: they build an ``Engine`` and ask it for cells; what
is reported is up to the listeners they give it (``harness.run.events``), the report writer among them. The
engine's coroutines run on one event loop; ``EngineThread`` gives synchronous callers (pytest tests)
that loop in a background thread, so providers' connection pools live for the whole run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from harness.run.cases import Case, OutputCheck
from harness.comfy.catalogue import Catalogue
from harness.comfy.packs import default_index
from harness.comfy.convert import ConversionError, MissingClasses
from harness.comfy.versions import Modelled, modelled_version
from harness.comfy.workflows import listed_models, seed_inputs, vary_seeds
from harness.run.cells import Cell
from harness.run.classify import Classification, missing_node
from harness.run.endpoints import Endpoint
from harness.run.events import CellFinished, EndpointIntroduced, EndpointListed, Event, Listener
from harness.errors import ConfigError, HarnessError, WorkflowError
from harness.report.fingerprint import fingerprint
from harness.run.outcomes import NODE_ERROR_PRECEDENCE, Outcome
from harness.run.preflight import preflight
from harness.run.secrets import redact, remember, scrub
from harness.providers.base import CLEANUP_S, BaseProvider, OutputImage, RunRecord, Timings, failure, watching
from harness.providers.comfyui import ComfyUIProvider
from harness.providers.http import HTTPProvider
from harness.providers.modal import ModalProvider
from harness.providers.runpod import RunPodProvider
from harness.providers.vast import VastProvider
from harness.run.stats import Attempt, cell_cost, cell_stats, typical_outcome

__all__ = ["DEADLINE_GRACE_S", "PROVIDERS", "Engine", "EngineThread", "RunFolder", "check_outputs", "introduction_deadline"]

DEADLINE_GRACE_S = 0.5
"""Seconds past its deadline an attempt is given to end on its own (a provider's interrupt or cancel, bounded
by ``CLEANUP_S``) before the engine ends it: a cell always ends within its deadline + 1 s."""
_INTRODUCTION_EXTRA_S = 5.0
"""Seconds beyond its connect timeout an endpoint has to serve /object_info and /system_stats: a 1,200-class
catalogue is ~5 MB, seconds even over a slow link."""

PROVIDERS: dict[str, type[BaseProvider]] = {"comfyui": ComfyUIProvider, "runpod": RunPodProvider, "vast": VastProvider,
                                             "modal": ModalProvider, "http": HTTPProvider}
"""Endpoint kind → provider class."""

T = TypeVar("T")


class RunFolder(Protocol):
    """Where a run keeps each cell's files (request.json, outputs): the report writer's run directory."""

    run_id: str
    dir: Path

    def cell_dir(self, case: str, endpoint: str) -> Path: ...

    def write_request(self, cell_dir: Path, text: str) -> Path:
        """Write the cell's request body as ``cell_dir/request.json``; its path."""


def check_outputs(images: Sequence[OutputImage], expected: OutputCheck, other_outputs: int = 0) -> Classification | None:
    """``output_invalid`` when a successful run's saved images are missing, unreadable or the wrong size,
    or, where the case states no ``min_images``, when it returned no output at all.

    Only saved images (type ``output``) count, a saved video among them (ComfyUI lists SaveVideo's with the
    images; its size is its frames'): previews that output nodes such as FluxResolutionNode emit along the
    way are not what a workflow is run for. A workflow that makes audio or text is run
    for those (``other_outputs``), so an unstated expectation takes them as its output.
    """
    images = [i for i in images if i.type == "output"]
    broken = [i for i in images if i.error]
    if broken:
        return failure(Outcome.OUTPUT_INVALID, f"{broken[0].filename}: {broken[0].error}")
    if expected.min_images is None:
        if not images and not other_outputs:
            return failure(Outcome.OUTPUT_INVALID, "expected at least one output (a saved image, audio, text...), the endpoint returned none")
    elif len(images) < expected.min_images:
        return failure(Outcome.OUTPUT_INVALID, f"expected at least {expected.min_images} image(s), the endpoint returned {len(images)}")
    for image in images:
        wrong = [(k, getattr(image, k), want) for k, want in (("width", expected.width), ("height", expected.height))
                 if want is not None and getattr(image, k) != want]
        if wrong:
            what = ", ".join(f"{k} {got} (expected {want})" for k, got, want in wrong)
            return failure(Outcome.OUTPUT_INVALID, f"{image.filename}: {what}")
    return None


class Engine:
    """One run: its endpoints' providers, what each endpoint told about itself, and the report."""

    def __init__(self, endpoints: Sequence[Endpoint], folder: RunFolder, *, listeners: Sequence[Listener] = (),
                 repeat: int = 1, cold_start: bool = False, repeat_identical: bool = False) -> None:
        for endpoint in endpoints:
            if endpoint.kind not in PROVIDERS:
                raise ConfigError(f"endpoint {endpoint.name!r}: kind {endpoint.kind!r} is not one of {sorted(PROVIDERS)}")
            endpoint.check_secrets()
        remember(endpoints)
        self.endpoints = {e.name: e for e in endpoints}
        self.folder = folder
        self.listeners = tuple(listeners)
        self.providers: dict[str, BaseProvider] = {}
        self.catalogues: dict[str, Catalogue | None] = {}
        self.modelled: dict[str, Modelled] = {}
        """Per endpoint, the ComfyUI version (and web frontend) its cells are modelled on."""
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._first_done: dict[str, asyncio.Event] = {}
        self._introduced: dict[str, asyncio.Future] = {}
        self._catalogue_reads: dict[tuple, tuple[BaseProvider, asyncio.Future]] = {}
        """One read per catalogue document the run's endpoints share, by URL and credentials."""
        self._late: set[str] = set()
        """Endpoints whose introduction outlived its deadline."""
        self._running: set[asyncio.Task] = set()
        """The tasks of the cells under way."""
        self.repeat = repeat
        """Attempts per cell, unless a case sets its own."""
        self.cold_start = cold_start
        self.repeat_identical = repeat_identical
        """Send measured attempts as written, seeds included, so ComfyUI may serve them from its cache."""

    async def start(self) -> None:
        """Open a provider per endpoint and start reading each endpoint's catalogue and provenance.

        Each introduction runs on its own, bounded by ``introduction_deadline``: an endpoint's cells wait
        for its own introduction only, so a slow or dead endpoint delays nobody else's cells.
        """
        _raise_open_files_limit()
        # Read now, before any cell's clock runs: the pack index takes ~0.3 s of CPU on first use, which
        # inside a cell would come off the deadline of every cell running beside it.
        default_index()
        for name, endpoint in self.endpoints.items():
            self.providers[name] = PROVIDERS[endpoint.kind](endpoint)
            self._limits[name] = asyncio.Semaphore(endpoint.max_concurrency)
            # Listed now, in the declared order (the matrix's column order); filled in once introduced.
            self._emit(EndpointListed(endpoint))
            self._introduced[name] = asyncio.ensure_future(self._introduce(name))

    async def _introduce(self, name: str) -> None:
        provider = self.providers[name]
        catalogue: Catalogue | None = None
        provenance: dict | None = None
        try:
            async with asyncio.timeout(introduction_deadline(self.endpoints[name])):
                catalogue, provenance = await asyncio.gather(self._catalogue(name), provider.provenance())
        except TimeoutError:
            self._late.add(name)  # an endpoint that cannot say what it is in time is run without a preflight
        self.catalogues[name] = catalogue
        self.modelled[name] = _modelled(self.endpoints[name], provenance)
        # Endpoints that tell nothing about themselves (serverless envelopes) have no fingerprint to drift.
        print_ = scrub(fingerprint(name, catalogue, provenance)) if catalogue is not None or provenance is not None else None
        self._emit(EndpointIntroduced(self.endpoints[name], scrub(provenance), catalogue.source if catalogue else None,
                                      print_, self.modelled[name].to_dict()))

    def _emit(self, event: Event) -> None:
        for listener in self.listeners:
            listener.handle(event)

    async def _catalogue(self, name: str) -> Catalogue | None:
        """The endpoint's catalogue, read once for every endpoint that names the same document with the
        same credentials: the default run's envelopes share their server's, as a team's serverless
        columns often share one saved /object_info (megabytes of JSON each, read and parsed once)."""
        endpoint, provider = self.endpoints[name], self.providers[name]
        url = endpoint.object_info if isinstance(endpoint.object_info, str) else (
            f"{endpoint.url}/object_info" if endpoint.kind == "comfyui" else None)
        if url is None:
            return await provider.catalogue()
        key = (url, tuple(sorted(endpoint.headers.items())))
        if key not in self._catalogue_reads:
            self._catalogue_reads[key] = (provider, asyncio.ensure_future(provider.catalogue()))
        reader, read = self._catalogue_reads[key]
        catalogue = await asyncio.shield(read)  # one endpoint's deadline must not cancel the others' read
        provider.catalogue_failure = reader.catalogue_failure
        return catalogue

    async def close(self) -> None:
        # Cells cancelled a moment ago (-x, Ctrl-C) first see their cancellation and hand their providers
        # the clean-up of what they left on the endpoints, which aclose then waits for.
        if self._running:
            await asyncio.wait(self._running, timeout=CLEANUP_S + 1.0)
        # An introduction still under way (a catalogue read past its endpoint's deadline) ends with the run.
        pending = [f for f in (*self._introduced.values(), *(read for _, read in self._catalogue_reads.values())) if not f.done()]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(p.aclose() for p in self.providers.values()))

    async def run_cell(self, case: Case, endpoint_name: str) -> Cell:
        """Run the case's attempts on the endpoint (concurrently, within its limit) and record the cell."""
        task = asyncio.current_task()
        self._running.add(task)
        try:
            return await self._run_cell(case, endpoint_name)
        finally:
            self._running.discard(task)

    async def _run_cell(self, case: Case, endpoint_name: str) -> Cell:
        endpoint = self.endpoints[endpoint_name]
        provider = self.providers[endpoint_name]
        if endpoint_name in self._introduced:  # shielded: one cell's cancellation must not cancel its endpoint's
            await asyncio.shield(self._introduced[endpoint_name])
        catalogue = self.catalogues.get(endpoint_name)
        conversion = self._conversion(case, endpoint_name)
        try:
            workflow = self._prompt(case, endpoint_name)
        except _Unconverted as exc:
            return self._unconverted(case, endpoint_name, exc.verdict, conversion)
        cell_dir = self.folder.cell_dir(case.id, endpoint_name)
        # Compact: the standard library's indenting encoder is pure Python, 5-6x its C encoder (0.33 against
        # 0.055 ms for the Denrisi workflow, measured); `jq . request.json` shows it indented.
        body_file = self.folder.write_request(cell_dir, redact(json.dumps(provider.request_body(workflow, case.images))))
        modelled = self.modelled[endpoint_name]
        prediction = preflight(workflow, catalogue, version=modelled.version) if catalogue is not None else None
        count = case.repeat or self.repeat
        repeats = _repeats(workflow, count, self.cold_start, self.repeat_identical)
        runs = await asyncio.gather(*(self._attempt(case, workflow, endpoint_name, cell_dir, index, prediction, repeats["varied"])
                                      for index in range(count)))
        attempts = [attempt for attempt, _, _ in runs]
        typical = typical_outcome(attempts)
        _, record, verdict = runs[attempts.index(typical)]
        _discard_passed_outputs(runs, record, cell_dir)
        cell = Cell(
            case=case.id,
            endpoint=endpoint_name,
            outcome=typical.outcome,
            expected=case.expected_for(endpoint),
            predicted=(prediction.outcome if prediction else Outcome.PASSED) if catalogue is not None else None,
            partial=bool(verdict and verdict.partial),
            evidence=_with_model_sources(_evidence(verdict, prediction, modelled if catalogue is not None else None), case),
            timings=record.timings,
            repro=provider.repro(str(body_file.relative_to(self.folder.dir)), case.images),
            images=record.images,
            tags=case.tags,
            job_id=record.job_id,
            attempts=tuple(attempts),
            stats=cell_stats(attempts, repeats),
            cost=cell_cost(attempts, endpoint.price_per_gpu_hour),
            conversion=conversion,
        )
        return self._record(cell)

    def _record(self, cell: Cell) -> Cell:
        """Tell the listeners of the cell: whatever an endpoint echoed back, no secret of the run reaches
        the report, pytest (JUnit, Allure) or the terminal."""
        cell = scrub(cell)
        self._emit(CellFinished(cell))
        return cell

    def _conversion(self, case: Case, endpoint_name: str) -> dict | None:
        """How a UI-format case became this endpoint's prompt: the frontend modelled and why, the catalogue."""
        if not case.is_ui:
            return None
        catalogue = self.catalogues.get(endpoint_name)
        return {"format": "ui", **self.modelled[endpoint_name].to_dict(), "catalogue": catalogue.source if catalogue else None}

    def _prompt(self, case: Case, endpoint_name: str) -> dict:
        """The prompt the case submits here; a UI export is converted with the endpoint's own catalogue."""
        if not case.is_ui:
            return case.workflow
        endpoint, catalogue = self.endpoints[endpoint_name], self.catalogues.get(endpoint_name)
        unread = self.providers[endpoint_name].catalogue_failure
        if catalogue is None and unread is not None:
            # The endpoint was not there to ask: that is the cell's outcome, not a missing setting.
            raise _Unconverted(dataclasses.replace(unread, evidence=dataclasses.replace(
                unread.evidence, message=f"{unread.evidence.message}; the UI export needs its /object_info to be converted")))
        if catalogue is None and endpoint_name in self._late:
            raise _Unconverted(failure(Outcome.NO_CATALOGUE, (
                f"{case.workflow_path.name} is a UI export, converted with the endpoint's node definitions, and "
                f"{endpoint.name} did not give its catalogue within {introduction_deadline(endpoint):g} s "
                "(timeouts.connect + 5 s)")))
        if catalogue is None:
            raise _Unconverted(failure(Outcome.NO_CATALOGUE, (
                f"{case.workflow_path.name} is a UI export, converted with the endpoint's node definitions, and "
                f"{endpoint.name} has none: it serves no /object_info"
                + ("" if endpoint.kind == "comfyui" else f" (kind {endpoint.kind})")
                + "; set object_info: in endpoints.yaml (a saved /object_info of its image, a file or URL)")))
        try:
            return case.prompt_for(catalogue, self.modelled[endpoint_name].frontend)
        except MissingClasses as exc:
            verdict = missing_node([(n.node_id, n.class_type) for n in exc.nodes],
                                   declared={n.class_type: n.properties for n in exc.nodes if n.class_type})
            message = (f"{verdict.evidence.message} (the UI export cannot be converted without them: "
                       f"{catalogue.source} lacks them; nothing was submitted)")
            raise _Unconverted(dataclasses.replace(verdict, evidence=dataclasses.replace(verdict.evidence, message=message))) from exc
        except ConversionError as exc:
            raise _Unconverted(failure(Outcome.INVALID_GRAPH, f"the UI export cannot be converted: {exc}")) from exc
        except WorkflowError as exc:  # the case file's mistake, found only once the export is converted: a cell all the same
            raise _Unconverted(failure(Outcome.CASE_ERROR, f"{exc}, in the prompt converted from the UI export with "
                                       f"{endpoint.name}'s catalogue: fix the case; nothing was submitted")) from exc

    def _unconverted(self, case: Case, endpoint_name: str, verdict: Classification, conversion: dict | None) -> Cell:
        """The cell of a UI export that cannot become a prompt here: decided offline, nothing submitted."""
        cell = Cell(
            case=case.id,
            endpoint=endpoint_name,
            outcome=verdict.outcome,
            expected=case.expected_for(self.endpoints[endpoint_name]),
            # The catalogue decided it, so that is also what the preflight says.
            predicted=verdict.outcome if self.catalogues.get(endpoint_name) is not None else None,
            evidence=verdict.evidence.to_dict(),
            tags=case.tags,
            conversion=conversion,
        )
        return self._record(cell)

    async def _attempt(self, case: Case, workflow: dict, endpoint_name: str, cell_dir: Path, index: int,
                       prediction: Classification | None, vary: bool) -> tuple[Attempt, RunRecord, Classification | None]:
        endpoint = self.endpoints[endpoint_name]
        if vary:
            # Unique to the run, the cell and the attempt: no value repeats from an earlier run either.
            salt = f"{self.folder.run_id}/{case.id}@{endpoint_name}/{index}"
            workflow = vary_seeds(workflow, salt, _seed_limits(workflow, self.catalogues.get(endpoint_name)))
        outputs = _attempt_outputs(cell_dir, index)
        budget = case.timeout or (endpoint.timeouts.queue + endpoint.timeouts.execution)
        async with self._slot(endpoint_name) as (cold, release):
            record = await self._guarded_run(endpoint, workflow, budget, outputs, case.images, release)
        verdict = _recover_hidden(record.classification, prediction) or check_outputs(record.images, case.outputs, record.other_outputs)
        attempt = Attempt(
            outcome=verdict.outcome if verdict else Outcome.PASSED,
            timings=record.timings,
            images=sum(1 for image in record.images if image.type == "output" and not image.error),
            cold=cold,
            message=verdict.evidence.message if verdict else "",
            cached_nodes=record.cached_nodes,
            executed_nodes=record.executed_nodes,
            wholly_cached=_wholly_cached(record, workflow),
            seeds={f"{n}.{i}": workflow[n]["inputs"][i] for n, i in seed_inputs(workflow)} if vary else {},
        )
        return attempt, record, verdict

    async def _guarded_run(self, endpoint: Endpoint, workflow: dict, budget: float, outputs: Path,
                           images: Sequence[Path], release: Callable[[], None]) -> RunRecord:
        """The provider's run, ended ``DEADLINE_GRACE_S`` after its deadline whatever the endpoint does.

        Providers keep their own deadline (and clean up: interrupt, cancel) where they wait on purpose; this
        catches every other await (a reply trickling a byte a second, a handshake that never completes).
        A provider that raises is a bug or a reply it did not foresee: the cell says so, it is never lost.
        """
        started = time.monotonic()
        deadline = started + budget
        with watching(on_finished=release) as watch:
            try:
                async with asyncio.timeout_at(deadline + DEADLINE_GRACE_S):
                    return await self.providers[endpoint.name].run(workflow, deadline=deadline, outputs_dir=outputs, images=images)
            except TimeoutError:
                verdict = watch.overrun(endpoint, budget)
            except HarnessError:
                raise
            except Exception as exc:  # any provider bug becomes the cell's evidence
                verdict = failure(Outcome.PROTOCOL_ERROR, f"the {endpoint.kind} provider failed on {endpoint.public_url}'s reply "
                                  f"({watch.doing or watch.phase}): {type(exc).__name__}: {str(exc)[:200]}")
        return RunRecord(verdict, timings=Timings(total=time.monotonic() - started))

    @contextlib.asynccontextmanager
    async def _slot(self, endpoint_name: str) -> AsyncIterator[tuple[bool, Callable[[], None]]]:
        """A place in the endpoint's concurrency limit; yields whether this is the run's cold request, and
        a function that gives the place back early (once the endpoint has finished the job: its outputs
        are fetched while the next job runs); it is given back on leaving at the latest.

        With ``cold_start`` the endpoint's first request waits out its idle period (so a serverless
        endpoint scales to zero) and runs alone: concurrent requests would share its cold start.
        """
        first = endpoint_name not in self._first_done
        if first:
            self._first_done[endpoint_name] = done = asyncio.Event()
            try:
                if self.cold_start:
                    await asyncio.sleep(self.endpoints[endpoint_name].cold_start_idle)
                async with self._place(endpoint_name) as release:
                    yield self.cold_start, release
            finally:
                done.set()
            return
        if self.cold_start:
            await self._first_done[endpoint_name].wait()
        async with self._place(endpoint_name) as release:
            yield False, release

    @contextlib.asynccontextmanager
    async def _place(self, endpoint_name: str) -> AsyncIterator[Callable[[], None]]:
        """One place in the endpoint's limit, and the function that gives it back (once, however often called)."""
        limit = self._limits[endpoint_name]
        await limit.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                limit.release()

        try:
            yield release
        finally:
            release()


def _repeats(workflow: dict, count: int, cold_start: bool, identical: bool) -> dict:
    """How a cell's attempts differ, for its ``stats``: measured attempts (repeats, a cold start) vary
    every seed-like input so that each one really runs; ComfyUI would serve an unchanged prompt from
    its cache. A single unmeasured attempt runs the case as written."""
    inputs = [f"{n}.{i}" for n, i in seed_inputs(workflow)]
    measured = count > 1 or cold_start
    if not measured:
        return {"varied": False, "inputs": [], "note": ""}
    if identical:
        return {"varied": False, "inputs": [], "note": "--repeat-identical: every attempt sent as written; the endpoint may serve repeats from its cache"}
    if not inputs:
        return {"varied": False, "inputs": [], "note": "nothing to vary: the workflow has no seed-like input, so the endpoint may serve repeats from its cache"}
    return {"varied": True, "inputs": inputs, "note": f"each attempt sent {', '.join(inputs)} unique to the run and attempt, so none is served from cache"}


def _seed_limits(workflow: dict, catalogue: Catalogue | None) -> dict[tuple[str, str], tuple[int, int]]:
    """(min, max) of each seed-like input as the endpoint's catalogue declares it, kept within 0..2**32-1."""
    limits = {}
    for node_id, name in seed_inputs(workflow):
        class_type = workflow[node_id].get("class_type")
        spec = catalogue[class_type].inputs.get(name) if catalogue is not None and class_type in catalogue else None
        if spec is not None:
            low, high = spec.extra.get("min", 0), spec.extra.get("max", 2**32 - 1)
            if isinstance(low, int) and isinstance(high, int):
                limits[(node_id, name)] = (max(low, 0), max(min(high, 2**32 - 1), max(low, 0)))
    return limits


def _wholly_cached(record: RunRecord, workflow: dict) -> bool:
    """Nothing ran: no node executed, or (where only the cached nodes are known) every node was cached."""
    if record.classification is not None:
        return False
    if record.executed_nodes is not None:
        return record.executed_nodes == 0
    return record.cached_nodes is not None and record.cached_nodes >= len(workflow)


_PROVABLE = frozenset(NODE_ERROR_PRECEDENCE)
"""Validation-level outcomes (those of ComfyUI's node errors): what the preflight against an endpoint's
catalogue decides as ComfyUI would."""


def _recover_hidden(verdict: Classification | None, prediction: Classification | None) -> Classification | None:
    """A provider that hid ComfyUI's reason, on an endpoint whose catalogue proves one: the preflight's verdict.

    What providers hide is how ComfyUI validated the prompt: a refusal (a missing class, no output node,
    Vast's "node errors: {}") or a partial acceptance whose node_errors the worker ignored (RunPod's
    "Job processing failed", Vast's comfyui_job_id crash). The preflight validates as ComfyUI does, so a
    validation-level prediction (partial acceptance included) is the reason; without one the verdict
    stays the provider's (``server_error``, the reason hidden), never a guess.
    """
    if verdict is None or not verdict.hidden or prediction is None or prediction.outcome not in _PROVABLE:
        return verdict
    message = f"{prediction.evidence.message} (the provider hid ComfyUI's reason; the endpoint's catalogue proves it)"
    # Still ``hidden``: the reason was recovered from the catalogue, not heard from the endpoint.
    return dataclasses.replace(prediction, hidden=True, evidence=dataclasses.replace(
        prediction.evidence, message=message, http_status=verdict.evidence.http_status))


class _Unconverted(Exception):
    """A UI-format case has no prompt for an endpoint; carries the cell's verdict."""

    def __init__(self, verdict: Classification) -> None:
        super().__init__(verdict.evidence.message)
        self.verdict = verdict


def _modelled(endpoint: Endpoint, provenance: dict | None) -> Modelled:
    """The version an endpoint's cells are modelled on: endpoints.yaml's word, else its /system_stats."""
    if endpoint.comfyui_version:  # what the user says of the endpoint outweighs what it says of itself
        return modelled_version(endpoint.comfyui_version, "endpoints.yaml", frontend=endpoint.frontend)
    told = (provenance or {}).get("comfyui_version")
    return modelled_version(told, "/system_stats" if told else "not served", frontend=endpoint.frontend,
                            required_frontend=(provenance or {}).get("required_frontend_version"))


def _with_model_sources(evidence: dict, case: Case) -> dict:
    """Missing models a UI file lists get its download URL: the frontend keeps one per listed model."""
    if not (case.is_ui and evidence.get("missing_models")):
        return evidence
    listed = listed_models(case.workflow)
    for model in evidence["missing_models"]:
        source = listed.get(model.get("file"))
        if source:
            model.update({k: v for k, v in (("url", source.get("url")), ("listed_folder", source.get("directory"))) if v})
    return evidence


def introduction_deadline(endpoint: Endpoint) -> float:
    """Seconds an endpoint's introduction (catalogue, provenance) may take; past it its cells run without."""
    return endpoint.timeouts.connect + _INTRODUCTION_EXTRA_S


def _raise_open_files_limit() -> None:
    """Lift the soft open-files limit to the hard one: hundreds of endpoints hold a socket each (their
    websocket) plus their pools, past a default soft limit of 1,024."""
    try:
        import resource
    except ImportError:  # not on Windows, where the limit is not the process's
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _attempt_outputs(cell_dir: Path, index: int) -> Path:
    """Where an attempt's files go: the first attempt's where a single-attempt cell keeps them, the
    repeats' in a folder each inside it."""
    return cell_dir / "outputs" / (f"attempt-{index:03d}" if index else "")


def _discard_passed_outputs(runs: list[tuple[Attempt, RunRecord, Classification | None]], keep: RunRecord, cell_dir: Path) -> None:
    """Repeats' outputs go once checked, except the cell's own and failures' (they are evidence): every file
    a passed attempt downloaded, its images and its other files (audio...), and its own folder."""
    for index, (attempt, record, _) in enumerate(runs):
        if record is keep or attempt.outcome is not Outcome.PASSED:
            continue
        folder = _attempt_outputs(cell_dir, index)
        with contextlib.suppress(OSError):  # nothing was downloaded
            for path in folder.iterdir():
                if path.is_file():  # the first attempt's folder holds the repeats' folders too
                    path.unlink()
        if index:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _evidence(verdict: Classification | None, prediction: Classification | None, modelled: Modelled | None = None) -> dict:
    """The observed evidence; for a missing node, the preflight's complete list of missing classes.

    ComfyUI names only the first missing class it meets; the preflight read the endpoint's whole
    catalogue, so it can name them all. A failed cell with a prediction says which ComfyUI release's
    rules it was predicted with (``predicted_with``: version and why).
    """
    if verdict is None:
        return {}
    evidence = verdict.evidence.to_dict()
    if modelled is not None:
        evidence["predicted_with"] = {"comfyui_version": modelled.version, "reason": modelled.reason}
    if verdict.hidden:
        # Recovered: the catalogue proved a validation outcome; else the provider's opaque verdict stands.
        evidence["hidden"] = True
        evidence["recovered"] = verdict.outcome in _PROVABLE
    # A verdict recovered from the catalogue (hidden) already is the prediction, with its own message.
    if (verdict.outcome is Outcome.MISSING_NODE and not verdict.hidden
            and prediction is not None and prediction.outcome is Outcome.MISSING_NODE):
        predicted = prediction.evidence.to_dict()
        for key in ("missing_classes", "packages", "message", "hint"):  # the hint installs every pack, not the first's
            if predicted.get(key):
                evidence[key] = predicted[key]
    return evidence


class EngineThread:
    """An event loop in a daemon thread, so synchronous code can await the engine's coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="comfy-compat-engine", daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.submit(coroutine).result()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
