"""Reading the YAML files users write (case specs, endpoints files), checked against our JSON Schemas.

An invalid file gives one line: the file, the field (as a JSON path) and what was expected, e.g.
``cases/seed.yaml: $.cases[1].expect: 'pased' is not one of ['passed', ...]``. Every object in the schemas
is closed: an unknown key (``timouts:``) is an error with the nearest known key suggested, since a
misspelt setting that is silently ignored looks exactly like one that took effect. A key written twice
in one mapping is an error too (YAML would keep the last silently).
"""

from __future__ import annotations

import difflib
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
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    validator = jsonschema.Draft202012Validator(schema(schema_name))
    errors = list(validator.iter_errors(data))
    # Every unknown key at once: they are typos of one kind, fixed in one go.
    unknown = [f"{e.json_path}: {text}" for e in errors if (text := _unknown_keys(e))]
    if unknown:
        raise ConfigError(f"{path}: " + "; ".join(unknown))
    error = jsonschema.exceptions.best_match(errors)
    if error is not None:
        raise ConfigError(f"{path}: {error.json_path}: {error.message}")
    return data


def _unknown_keys(error: jsonschema.ValidationError) -> str | None:
    """``unknown key 'timouts' (did you mean 'timeouts'?)`` for an additionalProperties error, else None."""
    known = error.schema.get("properties") if isinstance(error.schema, dict) else None
    if error.validator != "additionalProperties" or not known or not isinstance(error.instance, dict):
        return None
    texts = []
    for key in (k for k in error.instance if k not in known):
        close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
        texts.append(f"unknown key {key!r} (did you mean {close[0]!r}?)" if close
                     else f"unknown key {key!r} (expected one of {', '.join(known)})")
    return "; ".join(texts) or None


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is written twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
