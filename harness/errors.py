"""The harness's own errors: bad input it was given, as opposed to what endpoints did.

::

    HarnessError
     ├── ConfigError       an option, endpoints file or case spec is wrong
     │    └── SecretMissing   an endpoint's ${VAR} names an unset environment variable
     ├── WorkflowError     a workflow file is unreadable, not API format, or an override misses
     └── LocalResourceError  this machine ran out of open files, memory or disk while running a cell

Each carries a one-line message naming the file and field and what was expected; the CLI and the
pytest plugin print it as it is, without a traceback. What endpoints do is never an exception here:
it is an ``Outcome`` in a matrix cell.
"""

from __future__ import annotations

__all__ = ["ConfigError", "HarnessError", "LocalResourceError", "SecretMissing", "WorkflowError"]


class HarnessError(Exception):
    """Base of every error the harness raises about its own input."""


class ConfigError(HarnessError):
    """Raised when an option, the endpoints file or a case spec is invalid."""


class SecretMissing(ConfigError):
    """Raised before any request when an endpoint's auth names an unset environment variable."""


class WorkflowError(HarnessError):
    """Raised when a workflow cannot be loaded as API format or an override matches no node."""


class LocalResourceError(HarnessError):
    """Raised when the harness's own machine hit a limit (EMFILE, ENOMEM, ENOSPC) talking to an endpoint:
    never the endpoint's outcome, which would otherwise read as ``unreachable``."""
