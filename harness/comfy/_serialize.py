"""What the frontend does to a widget's value as it goes into the prompt (``widget.serializeValue``).

Text with ``dynamicPrompts`` loses its comments and has each ``{a|b|c}`` replaced by one choice
(Comfy.DynamicPrompts, made when queueing); a save node's ``filename_prefix`` has ``%date:...%`` and
``%Node.widget%`` replaced (Comfy.SaveImageExtraOutput); a 1.27.10 textarea reads back a string.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["SAVE_NODES", "dynamic_prompt", "js_string", "text_replacements"]

# Comfy.SaveImageExtraOutput's saveNodeTypes, per frontend.
SAVE_NODES = {
    "1.27.10": frozenset({"SaveImage", "SaveAnimatedWEBP", "SaveWEBM", "SaveAudio", "SaveGLB", "SaveAnimatedPNG",
                          "CLIPSave", "VAESave", "ModelSave", "LoraSave", "SaveLatent"}),
    "1.49.6": frozenset({"SaveImage", "SaveImageAdvanced", "SaveSVGNode", "SaveVideo", "SaveAnimatedWEBP", "SaveWEBM",
                         "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "SaveAudioAdvanced", "SaveGLB",
                         "Save3DAdvanced", "SaveGaussianSplat", "SavePointCloud", "SaveAnimatedPNG", "CLIPSave",
                         "VAESave", "ModelSave", "LoraSave", "SaveLatent"}),
}
_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//.*")
_DATE = re.compile(r"dd?|MM?|hh?|mm?|ss?|yyy?y?")
_UNSAFE = re.compile(r'[/?<>\\:*|"\x00-\x1F\x7F]')


def js_string(value: Any) -> str:
    """``String(value)`` as JavaScript writes it (what a textarea's value becomes); null is empty."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def js_json(value: Any) -> str:
    """``JSON.stringify(value)``: compact, integral floats without ``.0``, NaN and infinities as null."""
    def plain(v: Any) -> Any:
        if isinstance(v, float):
            return None if math.isnan(v) or math.isinf(v) else int(v) if v.is_integer() and abs(v) < 1e21 else v
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v
    return json.dumps(plain(value), separators=(",", ":"), ensure_ascii=False)


def dynamic_prompt(text: str, choose: Callable[[list[str]], str]) -> str:
    """processDynamicPrompt: strip C-style comments, then resolve ``{a|b}`` choices (nested, ``\\`` escapes)."""
    text = _COMMENTS.sub("", text) if "/" in text else text
    if "{" not in text and "\\" not in text:
        return text
    position = 0

    def next_char() -> str:
        # A backslash keeps the character after it (JavaScript reads past the end as "undefined").
        nonlocal position
        char = text[position]
        position += 1
        if char == "\\":
            char += text[position] if position < len(text) else "undefined"
            position += 1
        return char

    def block() -> str:
        options: list[str] = []
        choice = ""
        depth = 0
        while position < len(text):
            char = next_char()
            if char == "{":
                depth += 1
            elif char == "}":
                if not depth:
                    break
                depth -= 1
            elif char == "|" and not depth:
                options.append(choice)
                choice = ""
                continue
            choice += char
        options.append(choice)
        return dynamic_prompt(choose(options), choose)

    result = ""
    while position < len(text):
        char = next_char()
        result += block() if char == "{" else char
    return re.sub(r"\\([{}|])", r"\1", result)


def _format_date(pattern: str, now: datetime.datetime) -> str:
    parts = {"d": now.day, "M": now.month, "h": now.hour, "m": now.minute, "s": now.second}

    def one(match: re.Match) -> str:
        token = match.group(0)
        if token == "yy":
            return str(now.year)[2:]
        if token == "yyyy":
            return str(now.year)
        if token[0] in parts:
            return str(parts[token[0]]).rjust(len(token), "0")
        return token

    return _DATE.sub(one, pattern)


def text_replacements(value: Any, nodes: Iterable, now: datetime.datetime | None = None) -> Any:
    """applyTextReplacements: ``%date:FORMAT%`` and ``%Node.widget%`` (by "Node name for S&R", else title)."""
    if not isinstance(value, str) or "%" not in value:
        return value
    nodes = list(nodes)

    def one(match: re.Match) -> str:
        text = match.group(1)
        split = text.split(".")
        if len(split) != 2:
            if split[0].startswith("date:"):
                return _format_date(split[0][5:], now or datetime.datetime.now())
            return match.group(0)
        found = [n for n in nodes if n.properties.get("Node name for S&R") == split[0]] or \
                [n for n in nodes if n.title == split[0]]
        if not found:
            return match.group(0)
        node = found[0]
        for widget, widget_value in zip(node.widgets, node.values):
            if getattr(widget, "name", None) == split[1]:
                return _UNSAFE.sub("_", "" if widget_value is None else js_string(widget_value))
        return match.group(0)

    return re.sub(r"%([^%]+)%", one, value)
