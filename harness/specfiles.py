"""Reading the YAML files users write (case specs, endpoints files), checked against our JSON Schemas.

An invalid file gives one line: the file, the field (as a JSON path) and what was expected, e.g.
``cases/seed.yaml: $.cases[1].expect: 'pased' is not one of ['passed', ...]``.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from harness.errors import ConfigError

__all__ = ["load_checked", "schema"]


@functools.cache
def schema(name: str) -> dict:
    """One of the JSON Schemas shipped in ``harness/schemas`` (``case``, ``endpoints``, ``matrix``)."""
    return json.loads(resources.files("harness.schemas").joinpath(f"{name}.schema.json").read_text("utf-8"))


def load_checked(path: str | Path, schema_name: str) -> Any:
    """Parse a YAML file and validate it, or raise ConfigError with a one-line message."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    validator = jsonschema.Draft202012Validator(schema(schema_name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        raise ConfigError(f"{path}: {error.json_path}: {error.message}")
    return data
