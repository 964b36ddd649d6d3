"""Deployment profiles of the reference endpoint: which catalogue, model files, input images and
execution behaviour one simulated ComfyUI server has, read from YAML (``fixtures/profiles/*.yaml``).

A profile describes one deployment (``stock``, ``custom``) on ComfyUI 0.3.64 and, under ``versions:``,
the same deployment on another modelled release: its own recorded catalogue, validation rules
(``Flavour``) and ``/system_stats``. ``Profile.for_version`` picks one.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.comfy.catalogue import Catalogue, load_catalogue
from harness.errors import ConfigError
from harness.specfiles import load_checked
from harness.comfy.validator import Flavour

__all__ = ["BUILTIN_DIR", "FailureRule", "InputImage", "Injection", "Latency", "Profile", "RECORDED_SYSTEMS", "load_profile"]

BUILTIN_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "profiles"
"""Where the built-in profiles live (the repository's fixtures; the package is installed editable)."""

# The system block of fixtures/captures/stock/system_stats.json; a profile overrides single keys.
RECORDED_SYSTEM: dict[str, Any] = {
    "os": "posix",
    "ram_total": 25325268992,
    "ram_free": 23665414144,
    "comfyui_version": "0.3.64",
    "required_frontend_version": "1.27.10",
    "installed_templates_version": "0.1.95",
    "required_templates_version": "0.1.95",
    "python_version": "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]",
    "pytorch_version": "2.14.1+cu130",
    "embedded_python": False,
    "argv": ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", "8188", "--disable-auto-launch"],
}

# The system block of fixtures/captures/0.33.0/stock/system_stats.json (ComfyUI 0.33.0, 783545f).
RECORDED_SYSTEM_0_33_0: dict[str, Any] = {
    "os": "linux",
    "ram_total": 25275990016,
    "ram_free": 21417893888,
    "comfyui_version": "0.33.0",
    "required_frontend_version": "1.49.6",
    "installed_templates_version": "0.11.44",
    "required_templates_version": "0.11.44",
    "comfy_package_versions": [
        {"name": "comfyui-frontend-package", "installed": "1.49.6", "required": "1.49.6"},
        {"name": "comfyui-workflow-templates", "installed": "0.11.44", "required": "0.11.44"},
        {"name": "comfyui-embedded-docs", "installed": "0.5.10", "required": "0.5.10"},
        {"name": "comfy-kitchen", "installed": "0.2.31", "required": "0.2.31"},
        {"name": "comfy-aimdo", "installed": "0.4.13", "required": "0.4.13"},
    ],
    "python_version": "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]",
    "pytorch_version": "2.14.1+cu130",
    "embedded_python": False,
    "deploy_environment": "local-git",
    "argv": ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", "8190"],
}

RECORDED_SYSTEMS: dict[str, Mapping[str, Any]] = {"0.3.64": RECORDED_SYSTEM, "0.33.0": RECORDED_SYSTEM_0_33_0}
"""Per modelled ComfyUI version, the ``/system_stats`` system block of its recording server."""

# ComfyUI ships an input/example.png; its size is not recorded, so plain names are generated at this size.
DEFAULT_INPUT_SIZE = 512


@dataclass(frozen=True)
class InputImage:
    """A PNG the profile puts into ComfyUI's ``input/`` folder before the server starts."""

    name: str
    width: int = DEFAULT_INPUT_SIZE
    height: int = DEFAULT_INPUT_SIZE


@dataclass(frozen=True)
class FailureRule:
    """Makes every node of one class fail at execution with the given exception."""

    class_type: str
    exception_type: str
    exception_message: str


@dataclass(frozen=True)
class Latency:
    """How long one prompt's execution takes, drawn once per prompt (seeded by the profile's ``seed``).

    ``fixed``: always ``mean``; ``uniform``: uniform on [mean - sigma, mean + sigma]; ``lognormal``: a
    log-normal whose own mean and standard deviation are ``mean`` and ``sigma`` seconds. Draws are clipped
    at 0. The drawn seconds are shared evenly by the nodes the prompt actually runs (cached nodes take
    none), replacing ``node_seconds``/``class_seconds``.
    """

    distribution: str = "fixed"
    mean: float = 0.0
    sigma: float = 0.0

    def draw(self, rng: random.Random) -> float:
        if self.distribution == "uniform":
            return max(0.0, rng.uniform(self.mean - self.sigma, self.mean + self.sigma))
        if self.distribution == "lognormal":
            if self.mean <= 0:
                return 0.0
            var = math.log1p((self.sigma / self.mean) ** 2)
            return rng.lognormvariate(math.log(self.mean) - var / 2, math.sqrt(var))
        return max(0.0, self.mean)


@dataclass(frozen=True)
class Injection:
    """Failures injected at a rate, seeded by the profile's ``seed``.

    ``rate_limited``: the fraction of submissions (native POST /prompt, RunPod /run and /runsync, Vast's
    PyWorker) refused as an overloaded front proxy or platform would: 429 with ``Retry-After:
    <retry_after>`` and a plain-text body (ComfyUI itself never sends 429); the Vast PyWorker's is its own
    empty 429. ``execution_error``: the fraction of accepted prompts whose first executed node raises
    ``exception_type: exception_message`` (an ``execution_error`` exactly as a FailureRule gives).
    """

    rate_limited: float = 0.0
    execution_error: float = 0.0
    retry_after: int = 1
    exception_type: str = "RuntimeError"
    exception_message: str = "injected failure (reference endpoint, inject.execution_error)"
    """What the failing node raises; e.g. ``torch.OutOfMemoryError`` / ``Allocation on device `` to be an OOM."""


@dataclass(frozen=True)
class Profile:
    name: str
    catalogue_path: Path
    remove_classes: tuple[str, ...] = ()
    models: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Model file names per ComfyUI models folder (``checkpoints``, ``vae``, ...)."""
    inputs: tuple[InputImage, ...] = (InputImage("example.png"),)
    node_seconds: float = 0.003
    class_seconds: Mapping[str, float] = field(default_factory=dict)
    failures: tuple[FailureRule, ...] = ()
    capacity: int = 1
    """Prompts executing at once. 1 is ComfyUI (one prompt worker, its cache); N > 1 runs N workers
    without the node cache (see executor.py)."""
    cache_lru: int = 0
    """0: ComfyUI's default (classic) cache, which keeps only what the next prompt reuses; N: its
    ``--cache-lru N``, which keeps outputs of earlier prompts too (cache.py)."""
    latency: Latency | None = None
    inject: Injection = Injection()
    seed: int | None = None
    """Seeds latency draws and injected failures; None draws from the OS."""
    output_megabytes: float | None = None
    """SaveImage writes a PNG of incompressible noise of about this many MB instead of a flat image."""
    flavour: Flavour = Flavour.V0_3_64
    system: Mapping[str, Any] = field(default_factory=lambda: dict(RECORDED_SYSTEM))
    source: str = "<memory>"
    versions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Other ComfyUI versions this deployment is recorded on: version → ``catalogue`` (a resolved
    path) and ``system_stats`` overrides, from the YAML's ``versions:``."""

    @property
    def comfyui_version(self) -> str:
        """The ComfyUI version the profile answers as (its ``/system_stats``)."""
        return self.system["comfyui_version"]

    def for_version(self, version: str | None) -> Profile:
        """The same deployment on ComfyUI ``version`` (None: as it is); ConfigError if not recorded."""
        if version is None or version == self.comfyui_version:
            return self
        entry = self.versions.get(version)
        if entry is None or version not in RECORDED_SYSTEMS:
            known = ", ".join(sorted({self.comfyui_version, *self.versions}))
            raise ConfigError(f"profile {self.name!r}: no ComfyUI {version} recording (known: {known})")
        return self.replace(
            catalogue_path=entry["catalogue"],
            flavour=Flavour.of_version(version),
            system={**RECORDED_SYSTEMS[version], **entry.get("system_stats", {})},
        )

    @classmethod
    def builtin(cls, name: str) -> Profile:
        path = BUILTIN_DIR / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))
            raise ConfigError(f"profile {name!r}: no such built-in profile (known: {', '.join(known)})")
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: str | Path) -> Profile:
        path = Path(path)
        data = load_checked(path, "profile")
        catalogue_path = (path.parent / data["catalogue"]).resolve()
        if not catalogue_path.is_file():
            raise ConfigError(f"{path}: $.catalogue: no such file {catalogue_path}")
        execution = data.get("execution", {})
        return cls(
            name=data["name"],
            catalogue_path=catalogue_path,
            remove_classes=tuple(data.get("remove_classes", ())),
            models={folder: tuple(names) for folder, names in data.get("models", {}).items()},
            inputs=tuple(_input_image(item) for item in data.get("inputs", ["example.png"])),
            node_seconds=execution.get("node_seconds", cls.node_seconds),
            class_seconds=dict(execution.get("class_seconds", {})),
            failures=tuple(FailureRule(**rule) for rule in execution.get("failures", ())),
            capacity=execution.get("capacity", 1),
            cache_lru=execution.get("cache_lru", 0),
            latency=Latency(**execution["latency"]) if "latency" in execution else None,
            inject=Injection(**execution.get("inject", {})),
            seed=execution.get("seed"),
            output_megabytes=execution.get("output_megabytes"),
            flavour=Flavour(data.get("flavour", Flavour.V0_3_64.value)),
            system={**RECORDED_SYSTEM, **data.get("system_stats", {})},
            source=str(path),
            versions={version: _version_entry(path, version, entry) for version, entry in data.get("versions", {}).items()},
        )

    def catalogue(self) -> Catalogue:
        catalogue = load_catalogue(self.catalogue_path)
        return catalogue.without(*self.remove_classes) if self.remove_classes else catalogue

    def seconds_for(self, class_type: str) -> float:
        return self.class_seconds.get(class_type, self.node_seconds)

    def failure_for(self, class_type: str) -> FailureRule | None:
        return next((rule for rule in self.failures if rule.class_type == class_type), None)

    def rng(self, purpose: str) -> random.Random:
        """A generator per purpose, so draws of one kind never shift another's sequence."""
        return random.Random(f"{self.seed}:{purpose}" if self.seed is not None else None)

    def replace(self, **changes: Any) -> Profile:
        """A copy with some fields changed, e.g. ``models={}`` for a server without model files."""
        return dataclasses.replace(self, **changes)


def _version_entry(path: Path, version: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    catalogue = (path.parent / entry["catalogue"]).resolve()
    if not catalogue.is_file():
        raise ConfigError(f"{path}: $.versions.{version}.catalogue: no such file {catalogue}")
    return {**entry, "catalogue": catalogue}


def _input_image(item: str | Mapping[str, Any]) -> InputImage:
    return InputImage(item) if isinstance(item, str) else InputImage(**item)


def load_profile(name_or_path: str | Path | Profile, comfyui_version: str | None = None) -> Profile:
    """A built-in profile by name (``stock``, ``custom``), or a profile YAML file by path, on ComfyUI
    ``comfyui_version`` (None: the profile's own, 0.3.64 for the built-in ones)."""
    if isinstance(name_or_path, Profile):
        return name_or_path.for_version(comfyui_version)
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return Profile.from_file(text).for_version(comfyui_version)
    return Profile.builtin(text).for_version(comfyui_version)
