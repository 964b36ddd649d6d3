"""Cases: one workflow, its overrides, what each endpoint is expected to do with it, and output checks.

Case files are YAML under ``cases/`` (checked against ``schemas/case.schema.json``); a directory of
API workflows can stand in for them (``--workflows DIR``), each replayed expecting ``passed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.endpoints import Endpoint
from harness.errors import ConfigError
from harness.outcomes import Outcome
from harness.specfiles import load_checked
from harness.workflows import Override, apply_overrides, load_workflow, shorthand_overrides

__all__ = ["Case", "OutputCheck", "load_case_files", "cases_from_workflows"]


@dataclass(frozen=True)
class OutputCheck:
    min_images: int = 1
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Case:
    id: str
    workflow: dict
    """The API-format prompt to submit, overrides applied."""
    workflow_path: Path
    expect: Mapping[str, Outcome] = field(default_factory=lambda: {"default": Outcome.PASSED})
    """Expected outcome by endpoint name or profile name, with ``default`` for the rest."""
    outputs: OutputCheck = OutputCheck()
    timeout: float | None = None
    tags: tuple[str, ...] = ()
    source: str = ""

    def expected_for(self, endpoint: Endpoint) -> Outcome:
        for key in (endpoint.name, endpoint.profile):
            if key is not None and key in self.expect:
                return self.expect[key]
        return self.expect.get("default", Outcome.PASSED)


def load_case_files(paths: list[Path]) -> list[Case]:
    """Every case of the given YAML files; a case's workflow path is relative to its file."""
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for path in paths:
        for index, spec in enumerate(load_checked(path, "case")["cases"]):
            where = f"{path}: $.cases[{index}]"
            case = _case_from_spec(spec, path.parent, where)
            if case.id in seen:
                raise ConfigError(f"{where}.id: case id {case.id!r} is already used in {seen[case.id]}")
            seen[case.id] = where
            cases.append(case)
    return cases


def _case_from_spec(spec: Mapping[str, Any], workflows_dir: Path, where: str) -> Case:
    workflow_path = workflows_dir / spec["workflow"]
    base = load_workflow(workflow_path)
    overrides_spec = spec.get("overrides", {})
    overrides = shorthand_overrides(overrides_spec, base, f"{where}.overrides")
    overrides += [
        Override(o["input"], o["value"], node=o.get("node"), class_type=o.get("class"))
        for o in overrides_spec.get("inputs", [])
    ]
    expect = spec.get("expect", "passed")
    expect_map = {"default": expect} if isinstance(expect, str) else dict(expect)
    return Case(
        id=spec["id"],
        workflow=apply_overrides(base, overrides, f"{where}.overrides"),
        workflow_path=workflow_path,
        expect={k: Outcome(v) for k, v in expect_map.items()},
        outputs=OutputCheck(**spec.get("outputs", {})),
        timeout=spec.get("timeout"),
        tags=tuple(spec.get("tags", ())),
        source=where,
    )


def cases_from_workflows(directory: Path) -> list[Case]:
    """One case per ``*.json`` API workflow in ``directory``, each expected to pass everywhere."""
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise ConfigError(f"--workflows {directory}: no *.json workflow files there")
    return [Case(id=p.stem, workflow=load_workflow(p), workflow_path=p, source=str(p)) for p in paths]
