"""Cases: one workflow, its overrides, what each endpoint is expected to do with it, and output checks.

Case files are YAML under ``cases/`` (checked against ``schemas/case.schema.json``); a directory of
workflows can stand in for them (``--workflows DIR``), each replayed expecting ``passed``. A workflow
may be an API prompt or a UI export; a UI export becomes a prompt per endpoint (``prompt_for``), since
the frontend maps widget values by the node definitions the endpoint serves.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.run.endpoints import Endpoint
from harness.errors import ConfigError
from harness.run.outcomes import Outcome
from harness.specfiles import load_checked
from harness.report.verdict import Waiver
from harness.comfy.catalogue import Catalogue
from harness.comfy.convert import convert, is_ui_workflow
from harness.comfy.workflows import Override, apply_overrides, load_workflow, shorthand_overrides

__all__ = ["Case", "OutputCheck", "Suite", "load_case_files", "cases_from_workflows"]


@dataclass(frozen=True)
class OutputCheck:
    min_images: int | None = None
    """Saved images a successful run must return; None (not stated): at least one output of any kind, a
    saved image or what a non-image output node reports (audio, text, 3D files)."""
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Case:
    id: str
    workflow: dict
    """The API-format prompt to submit, overrides applied; for a UI-format case, the UI export as saved."""
    workflow_path: Path
    expect: Mapping[str, Outcome] = field(default_factory=lambda: {"default": Outcome.PASSED})
    """Expected outcome by endpoint name or profile name, with ``default`` for the rest."""
    outputs: OutputCheck = OutputCheck()
    timeout: float | None = None
    tags: tuple[str, ...] = ()
    source: str = ""
    required: bool = True
    """Whether the case counts toward a go/no-go verdict."""
    repeat: int | None = None
    """Attempts per cell; None defers to the run's ``--repeat``."""
    images: tuple[Path, ...] = ()
    """Input images the workflow's LoadImage nodes name, sent with each submission under their file names."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """A UI-format case's ``overrides`` as written, applied to each endpoint's prompt once converted."""

    @property
    def is_ui(self) -> bool:
        """The workflow is a UI export, converted per endpoint."""
        return is_ui_workflow(self.workflow)

    def prompt_for(self, catalogue: Catalogue, frontend: str) -> dict:
        """The prompt this case submits to an endpoint with ``catalogue`` whose web frontend is ``frontend``.

        Raises ``MissingClasses`` when a node's class is not in the catalogue and ``ConversionError``
        when the UI file cannot be converted at all; ``WorkflowError`` when an override finds no node.
        """
        if not self.is_ui:
            return self.workflow
        # The frontend picks a dynamic prompt's {a|b} at random on every queue; here the pick is the
        # case's own, so every endpoint (and every night) is sent the same text and cells compare.
        prompt = convert(self.workflow, catalogue, frontend=frontend, choose=random.Random(self.id).choice)
        return _overridden(prompt, self.overrides, f"{self.source}.overrides")

    def __repr__(self) -> str:
        # Short: it is the test parameter pytest and Allure print (and Allure's history id hashes), and
        # the workflow would make it pages long.
        return f"<Case {self.id}>"

    def details(self) -> dict:
        """What matrix.json keeps of the case beside its id (``case_details``)."""
        return {"required": self.required, "workflow": str(self.workflow_path), "tags": list(self.tags)}

    def expected_for(self, endpoint: Endpoint) -> Outcome:
        for key in (endpoint.name, endpoint.profile):
            if key is not None and key in self.expect:
                return self.expect[key]
        return self.expect.get("default", Outcome.PASSED)


@dataclass(frozen=True)
class Suite:
    """What the case files hold: the cases, and the waivers of known failures."""

    cases: list[Case]
    waivers: list[Waiver] = field(default_factory=list)


def load_case_files(paths: list[Path]) -> Suite:
    """Every case and waiver of the given YAML files; a case's workflow path is relative to its file."""
    cases: list[Case] = []
    waivers: list[tuple[Waiver, str]] = []
    seen: dict[str, str] = {}
    for path in paths:
        data = load_checked(path, "case")
        for index, spec in enumerate(data["cases"]):
            where = f"{path}: $.cases[{index}]"
            case = _case_from_spec(spec, path.parent, where)
            if case.id in seen:
                raise ConfigError(f"{where}.id: case id {case.id!r} is already used in {seen[case.id]}")
            seen[case.id] = where
            cases.append(case)
        waivers += [(_waiver(spec, f"{path}: $.waivers[{i}]"), f"{path}: $.waivers[{i}]") for i, spec in enumerate(data.get("waivers", []))]
    for waiver, where in waivers:
        if waiver.case not in seen:
            raise ConfigError(f"{where}.case: no case {waiver.case!r} in the case files (cases: {', '.join(seen)})")
    return Suite(cases, [w for w, _ in waivers])


def _waiver(spec: Mapping[str, Any], where: str) -> Waiver:
    expires = spec["expires"]
    if isinstance(expires, str):
        try:
            expires = dt.date.fromisoformat(expires)
        except ValueError:
            expires = None
    if not isinstance(expires, dt.date):
        raise ConfigError(f"{where}.expires: expected a date YYYY-MM-DD, got {spec['expires']!r}")
    return Waiver(spec["case"], spec["endpoint"], spec["reason"], expires)


def _overridden(workflow: dict, overrides_spec: Mapping[str, Any], where: str) -> dict:
    """The API prompt with a case's ``overrides`` (shorthands and per-node inputs) applied."""
    overrides = shorthand_overrides(overrides_spec, workflow, where)
    overrides += [
        Override(o["input"], o["value"], node=o.get("node"), class_type=o.get("class"))
        for o in overrides_spec.get("inputs", [])
    ]
    return apply_overrides(workflow, overrides, where)


def _case_from_spec(spec: Mapping[str, Any], workflows_dir: Path, where: str) -> Case:
    workflow_path = workflows_dir / spec["workflow"]
    base = load_workflow(workflow_path)
    overrides_spec = spec.get("overrides", {})
    is_ui = is_ui_workflow(base)
    expect = spec.get("expect", "passed")
    expect_map = {"default": expect} if isinstance(expect, str) else dict(expect)
    return Case(
        id=spec["id"],
        # A UI export's overrides wait for its conversion: node ids and inputs exist only in the prompt.
        workflow=base if is_ui else _overridden(base, overrides_spec, f"{where}.overrides"),
        workflow_path=workflow_path,
        expect={k: Outcome(v) for k, v in expect_map.items()},
        outputs=OutputCheck(**spec.get("outputs", {})),
        timeout=spec.get("timeout"),
        tags=tuple(spec.get("tags", ())),
        source=where,
        required=spec.get("required", True),
        repeat=spec.get("repeat"),
        images=tuple(_input_image(workflows_dir / name, f"{where}.images[{i}]") for i, name in enumerate(spec.get("images", ()))),
        overrides=overrides_spec if is_ui else {},
    )


def _input_image(path: Path, where: str) -> Path:
    if not path.is_file():
        raise ConfigError(f"{where}: no such image file {path}")
    return path


def cases_from_workflows(directory: Path) -> Suite:
    """One case per ``*.json`` workflow (API or UI format) in ``directory``, each expected to pass everywhere."""
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ConfigError(f"--workflows {directory}: no *.json workflow files there")
    return Suite([Case(id=p.stem, workflow=load_workflow(p), workflow_path=p, source=str(p)) for p in paths])
