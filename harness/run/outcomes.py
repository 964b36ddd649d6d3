"""The outcome vocabulary: what one workflow did on one endpoint, as data.

Every matrix cell carries exactly one ``Outcome``. Each outcome has a disposition: ``product`` outcomes
say something about the endpoint's ability to run the workflow (they count toward go/no-go); ``infra``
outcomes say the harness could not find out (network, auth, capacity, timeouts) and are reported
apart. The codes are a public contract (matrix.json, users' scripts): add codes, never rename or
repurpose one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Disposition", "Outcome", "OutcomeInfo", "NODE_ERROR_PRECEDENCE"]


class Disposition(str, enum.Enum):
    PRODUCT = "product"
    """The endpoint ran, or refused to run, the workflow: a finding about the endpoint."""
    INFRA = "infra"
    """The run could not be judged: the endpoint was not reached, not allowed, or too slow."""


@dataclass(frozen=True)
class OutcomeInfo:
    meaning: str
    hint: str
    disposition: Disposition
    retryable: bool


@enum.unique
class Outcome(str, enum.Enum):
    PASSED = "passed"
    MISSING_NODE = "missing_node"
    MISSING_MODEL = "missing_model"
    INVALID_INPUT = "invalid_input"
    INVALID_GRAPH = "invalid_graph"
    EXECUTION_ERROR = "execution_error"
    OUT_OF_MEMORY = "out_of_memory"
    OUTPUT_INVALID = "output_invalid"
    QUEUE_TIMEOUT = "queue_timeout"
    EXECUTION_TIMEOUT = "execution_timeout"
    CANCELLED = "cancelled"
    AUTH_ERROR = "auth_error"
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"
    SERVER_ERROR = "server_error"
    PROTOCOL_ERROR = "protocol_error"
    NO_CATALOGUE = "no_catalogue"
    CASE_ERROR = "case_error"

    @property
    def info(self) -> OutcomeInfo:
        return _INFO[self]

    @property
    def disposition(self) -> Disposition:
        return _INFO[self].disposition

    @property
    def retryable(self) -> bool:
        return _INFO[self].retryable


_P, _I = Disposition.PRODUCT, Disposition.INFRA

_INFO: dict[Outcome, OutcomeInfo] = {
    Outcome.PASSED: OutcomeInfo("The workflow ran and produced the expected outputs.", "", _P, False),
    Outcome.MISSING_NODE: OutcomeInfo(
        "A node class of the workflow is not installed on the endpoint.",
        "Install the custom node pack that provides it.", _P, False),
    Outcome.MISSING_MODEL: OutcomeInfo(
        "A model file the workflow loads is not on the endpoint.",
        "Add the file to the named models folder.", _P, False),
    Outcome.INVALID_INPUT: OutcomeInfo(
        "An input value was refused: wrong type, out of range, not among the options, missing, or an absent input file.",
        "Change the input, or upload the input file.", _P, False),
    Outcome.INVALID_GRAPH: OutcomeInfo(
        "The graph itself is malformed: bad or dangling links, type mismatches, no output node.",
        "Re-export the workflow in API format from a ComfyUI that has every node.", _P, False),
    Outcome.EXECUTION_ERROR: OutcomeInfo(
        "The workflow was accepted but a node raised while running.",
        "Read the node's exception; often a version mismatch of the node pack or ComfyUI.", _P, False),
    Outcome.OUT_OF_MEMORY: OutcomeInfo(
        "A node ran out of GPU (or CPU) memory.",
        "Use a larger GPU, a smaller resolution or batch, or a lower-precision model.", _P, True),
    Outcome.OUTPUT_INVALID: OutcomeInfo(
        "The run reported success but returned no output, or the expected images were missing, unreadable or of the wrong size.",
        "Check the output nodes and the provider's output settings.", _P, False),
    Outcome.QUEUE_TIMEOUT: OutcomeInfo(
        "The job never started within the queue (cold start) budget.",
        "Raise the cold-start budget or keep a warm worker.", _I, True),
    Outcome.EXECUTION_TIMEOUT: OutcomeInfo(
        "The job started but did not finish within the execution budget.",
        "Raise the cell's timeout or use a faster GPU.", _I, True),
    Outcome.CANCELLED: OutcomeInfo(
        "The job was cancelled or interrupted before it finished.", "Re-run the cell.", _I, True),
    Outcome.AUTH_ERROR: OutcomeInfo(
        "The endpoint refused the credentials.", "Check the API key environment variable.", _I, False),
    Outcome.RATE_LIMITED: OutcomeInfo(
        "The endpoint refused the request for capacity or rate (429, queue full).",
        "Lower concurrency or retry later.", _I, True),
    Outcome.UNREACHABLE: OutcomeInfo(
        "The endpoint could not be reached (connection refused, DNS, TLS, worker down).",
        "Check the URL and that the endpoint is running.", _I, True),
    Outcome.SERVER_ERROR: OutcomeInfo(
        "The endpoint failed with an error that does not say why (a 5xx, an opaque message).",
        "Read the evidence; the provider may hide ComfyUI's reason.", _I, True),
    Outcome.PROTOCOL_ERROR: OutcomeInfo(
        "The endpoint answered in a shape the harness does not understand.",
        "Check the endpoint kind and URL; report the evidence if the kind is right.", _I, False),
    Outcome.NO_CATALOGUE: OutcomeInfo(
        "A UI-format workflow could not be converted to the prompt the endpoint's frontend would send: the "
        "endpoint serves no /object_info and none is configured, and the conversion follows its node definitions.",
        "Give the endpoint `object_info:` in endpoints.yaml (a saved /object_info of its image: a file or URL), "
        "or replay an API-format export.", _I, False),
    Outcome.CASE_ERROR: OutcomeInfo(
        "The case could not be applied to a UI-format workflow as converted for the endpoint: an override names "
        "no node or input of the converted prompt (API-format cases are checked before anything runs).",
        "Fix the case's overrides: node ids are the UI export's, inputs the names in the endpoint's /object_info.", _I, False),
}

NODE_ERROR_PRECEDENCE: tuple[Outcome, ...] = (
    Outcome.MISSING_NODE,
    Outcome.MISSING_MODEL,
    Outcome.INVALID_INPUT,
    Outcome.INVALID_GRAPH,
)
"""When a response shows several problems, the cell's outcome is the first of these it shows."""
