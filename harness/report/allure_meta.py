"""Allure metadata for a run: ``environment.properties`` and ``categories.json`` in the alluredir.

The plugin already makes one Allure test per cell; these two files make the Allure report say which
run and endpoints it was (the Environment widget) and group failed cells by outcome (the Categories
tab) instead of lumping them all under "Product defects". Written from the matrix.json document
alone, like the other reports.

Allure matches a category's ``messageRegex`` against the whole failure message. A cell's failure
message is ``Cell.summary()`` inside pytest's assertion text::

    AssertionError: denrisi_zimage on stock: missing_node (expected passed): 3 node classes ...

so each category matches ``: <outcome> (expected `` anywhere in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["write_allure_metadata", "environment_properties", "categories"]

_STATUSES = ["failed", "broken"]


def write_allure_metadata(matrix: Mapping[str, Any], alluredir: Path) -> list[Path]:
    """Write both files into ``alluredir`` (created if needed); the paths written."""
    alluredir = Path(alluredir)
    alluredir.mkdir(parents=True, exist_ok=True)
    env = alluredir / "environment.properties"
    env.write_text(environment_properties(matrix), encoding="utf-8")
    cats = alluredir / "categories.json"
    cats.write_text(json.dumps(categories(matrix), indent=2, ensure_ascii=False), encoding="utf-8")
    return [env, cats]


def environment_properties(matrix: Mapping[str, Any]) -> str:
    """The run and each endpoint as Java properties (one ``key=value`` a line).

    Only public facts: the endpoint URL in matrix.json is already ``public_url`` (no credentials),
    and headers are never in the document at all.
    """
    run = matrix.get("run") or {}
    pairs: list[tuple[str, Any]] = [
        ("run.id", run.get("id")),
        ("run.status", run.get("status")),
        ("harness.version", run.get("harness_version")),
    ]
    if (run.get("repeat") or 1) > 1:
        pairs.append(("run.repeat", run["repeat"]))
    verdict = matrix.get("verdict") or {}
    if verdict.get("decision"):
        pairs.append(("verdict", f"{verdict['decision']} ({verdict.get('candidate')} vs {verdict.get('baseline')})"))
    for endpoint in matrix.get("endpoints") or []:
        prefix = f"endpoint.{endpoint.get('name')}"
        provenance = endpoint.get("provenance") or {}
        pairs += [
            (f"{prefix}.kind", endpoint.get("kind")),
            (f"{prefix}.url", endpoint.get("url")),
            (f"{prefix}.profile", endpoint.get("profile")),
            (f"{prefix}.comfyui_version", provenance.get("comfyui_version")),
        ]
    return "".join(f"{_escape(key, key=True)}={_escape(value)}\n" for key, value in pairs if value not in (None, ""))


def _escape(value: Any, *, key: bool = False) -> str:
    r"""Java properties escaping: ``\``, line breaks, ``=``/``:`` (and spaces in keys), non-Latin-1 as ``\uXXXX``.

    Allure reads the file with ``java.util.Properties`` (ISO-8859-1), so anything else would be
    mangled; an endpoint name may contain spaces or colons.
    """
    out = []
    for ch in str(value):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[ch])
        elif ch in "=:#!" or (key and ch == " "):
            out.append("\\" + ch)
        elif ord(ch) > 0x7E or ord(ch) < 0x20:
            out.append("".join(f"\\u{unit:04x}" for unit in _utf16(ch)))
        else:
            out.append(ch)
    return "".join(out)


def _utf16(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def categories(matrix: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One Allure category per outcome code: "Product: missing_node — <meaning>", "Infra: ..."."""
    found = []
    for code, info in (matrix.get("outcomes") or {}).items():
        info = info or {}
        side = "Infra" if info.get("disposition") == "infra" else "Product"
        meaning = str(info.get("meaning") or "").rstrip(".")
        if code == "passed":
            # A cell that passed but was expected to fail: the endpoint changed (or the case is stale).
            meaning = "passed where a failure was expected"
        found.append({
            "name": f"{side}: {code}" + (f" — {meaning}" if meaning else ""),
            # (?s): the message spans lines (pytest's assertion rewrite follows the summary).
            "messageRegex": rf"(?s).*: {re.escape(code)} \(expected .*",
            "matchedStatuses": list(_STATUSES),
        })
    return found
