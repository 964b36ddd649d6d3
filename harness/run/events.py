"""What the engine tells its listeners as a run goes on: endpoints listed and introduced, cells finished.

The engine hands each event to every listener it was given (the report writer, a front end's progress)
and knows nothing of what they do with it, as schemathesis's engine emits events to its handlers:
reports change without touching the engine. A listener that raises (a full disk) ends the cell that
emitted the event, and the run with it, as the front end decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from harness.run.cells import Cell
from harness.run.endpoints import Endpoint

__all__ = ["CellFinished", "EndpointIntroduced", "EndpointListed", "Event", "Listener"]


@dataclass(frozen=True)
class EndpointListed:
    """An endpoint of the run, before anything is known of it (listeners keep the declared order)."""

    endpoint: Endpoint


@dataclass(frozen=True)
class EndpointIntroduced:
    """What an endpoint told of itself (secrets scrubbed); every part None when it told nothing in time."""

    endpoint: Endpoint
    provenance: dict | None
    catalogue: str | None
    """Where its catalogue came from (a URL or file), if it has one."""
    fingerprint: dict | None
    modelled: dict
    """The ComfyUI release its cells are modelled on (``Modelled.to_dict()``)."""


@dataclass(frozen=True)
class CellFinished:
    """A cell, finished and scrubbed of the run's secrets."""

    cell: Cell


Event = EndpointListed | EndpointIntroduced | CellFinished


class Listener(Protocol):
    def handle(self, event: Event) -> None: ...
