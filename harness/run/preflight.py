"""The outcome a workflow should have on an endpoint, predicted offline from the endpoint's catalogue.

The prediction is recorded beside the observed outcome, so a report shows where an endpoint behaves
unlike the ComfyUI it claims to be. It goes through the same classifier as a real answer: the prompt is
validated as ``POST /prompt`` would validate it and the resulting body is classified, with the rules of
the ComfyUI release the endpoint is modelled on (``harness.comfy.versions``). One thing the real server
cannot say is added: ComfyUI stops at the first node class it lacks, the preflight names them all (after
0.33.0's node replacements, which revive some removed classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.comfy.catalogue import Catalogue
from harness.run.classify import Classification, classify_prompt_response, missing_node
from harness.comfy.validator import Flavour, replaced, validate_prompt
from harness.comfy.versions import MODELLED

__all__ = ["missing_classes_in", "preflight"]

# ComfyUI's answer when its handler raises (a node that is not an object): aiohttp's plain 500 page.
_SERVER_ERROR_BODY = "500 Internal Server Error\n\nServer got itself in trouble"


def missing_classes_in(workflow: Mapping[str, Any], catalogue: Catalogue) -> list[tuple[str, str | None]]:
    """Every (node_id, class_type) of the workflow whose class the catalogue lacks, in prompt order.

    A node without ``class_type`` is listed with None, as ComfyUI refuses it the same way. Entries that
    are not node objects are left to the validator, which fails on them as the server does.
    """
    return [
        (str(node_id), node.get("class_type"))
        for node_id, node in workflow.items()
        if isinstance(node, Mapping) and node.get("class_type") not in catalogue
    ]


def preflight(
    workflow: Mapping[str, Any], catalogue: Catalogue, files: Mapping[str, Sequence[str]] | None = None,
    *, version: str = MODELLED[0],
) -> Classification | None:
    """The classification ComfyUI's answer to this workflow would get; None when it would run it whole.

    ``files`` is the endpoint's files per models folder and ``input``, as ``validate_prompt`` takes them;
    without it the catalogue's own option lists are used (a live endpoint's list its models).
    ``version`` is the modelled ComfyUI release whose rules apply (``Modelled.version``).
    """
    flavour = Flavour.of_version(version)
    try:
        workflow = replaced(workflow, catalogue, flavour)
        # A prompt that is not an object has no nodes to scan; validating it raises as the server does.
        missing = missing_classes_in(workflow, catalogue) if isinstance(workflow, Mapping) else []
        if missing:
            return missing_node(missing)
        validation = validate_prompt(workflow, catalogue, files, flavour=flavour)
    except Exception:  # noqa: BLE001 - any exception escaping ComfyUI's handler is its 500 answer
        return classify_prompt_response(500, _SERVER_ERROR_BODY)
    status = 200 if validation.accepted else 400
    return classify_prompt_response(status, validation.response_body("preflight", 0))
