"""Exit statuses of a compatibility run (``pytest``) and of ``comfy-compat``, in one table.

A run exits non-zero whenever a cell is not its expected outcome, whatever the verdict. The verdict's
NO-GO and UNDECIDABLE have codes of their own, apart from pytest's 1–5 (and argparse's 2), so a
script can tell "the migration is blocked" from "a test failed" and from "the run was interrupted".

Before this table (v2) a run with a verdict exited with the verdict alone (0 GO, 1 NO-GO, 2 UNDECIDABLE): a GO run
with failing cells exited 0, and 2 also meant "interrupted". Scripts written for that still get it
with ``--exit-codes=legacy`` (ini ``comfy_exit_codes = legacy``), which says so in the terminal.
"""

from __future__ import annotations

import enum

__all__ = ["SCHEMES", "TABLE", "Exit", "run_status", "table_block", "table_text", "verdict_status"]


class Exit(enum.IntEnum):
    OK = 0
    CELLS_UNEXPECTED = 1
    INTERRUPTED = 2
    INTERNAL_ERROR = 3
    USAGE_ERROR = 4
    NO_TESTS = 5
    NO_GO = 10
    UNDECIDABLE = 11


TABLE: tuple[tuple[Exit, str], ...] = (
    (Exit.OK, "every cell is its expected outcome (and, with a verdict, GO)"),
    (Exit.CELLS_UNEXPECTED, "a cell is not its expected outcome (pytest: tests failed); diff: a new product failure"),
    (Exit.INTERRUPTED, "interrupted (Ctrl-C)"),
    (Exit.INTERNAL_ERROR, "internal error"),
    (Exit.USAGE_ERROR, "usage error: a bad option, file or argument; nothing was run or written"),
    (Exit.NO_TESTS, "no cells collected"),
    (Exit.NO_GO, "verdict NO-GO: a required case blocks the migration"),
    (Exit.UNDECIDABLE, "verdict UNDECIDABLE: a baseline cell could not run"),
)

SCHEMES = ("v2", "legacy")
"""``v2``: the table above (default). ``legacy``: the verdict's 0/1/2 alone, as before."""

_LEGACY = {"GO": 0, "NO-GO": 1, "UNDECIDABLE": 2}
_VERDICT = {"GO": Exit.OK, "NO-GO": Exit.NO_GO, "UNDECIDABLE": Exit.UNDECIDABLE}


def verdict_status(decision: str, scheme: str = "v2") -> int:
    """The exit status of a decision (``GO``, ``NO-GO``, ``UNDECIDABLE``) alone."""
    return _LEGACY[decision] if scheme == "legacy" else int(_VERDICT[decision])


def run_status(pytest_status: int, decision: str | None, scheme: str = "v2") -> int:
    """A run's exit status from pytest's and the verdict's (None: none asked for).

    pytest's own stops (interrupted, internal, usage, nothing collected) win: the verdict of a run that
    did not complete means nothing. Then NO-GO and UNDECIDABLE; then failed cells; else 0.
    """
    if decision is None or pytest_status not in (Exit.OK, Exit.CELLS_UNEXPECTED):
        return pytest_status
    if scheme == "legacy":
        return _LEGACY[decision]
    return int(_VERDICT[decision]) or pytest_status


def table_text() -> str:
    """The table as ``--help`` prints it."""
    return "exit status: " + "; ".join(f"{int(code)} {text}" for code, text in TABLE)


def table_block() -> str:
    """The table as a block of lines, for a command's help epilog."""
    return "exit status:\n" + "\n".join(f"  {int(code):>2}  {text}" for code, text in TABLE)
