"""429s through every envelope of the reference endpoint: each provider says ``rate_limited`` and keeps
the reply's Retry-After (Modal's, from a custom app, is in test_modal_provider.py)."""

from __future__ import annotations

import pytest

from conftest import outcome, run_provider
from harness.run.outcomes import Outcome
from harness.reference.profile import Injection, Profile


@pytest.mark.parametrize(("kind", "path", "retry_after"), [
    ("comfyui", "", "7"),                      # a proxy in front of ComfyUI (ComfyUI itself never sends 429)
    ("runpod", "/runpod/v2/stock", "7"),       # RunPod's platform over its rate limit
    ("vast", "/vast/stock", None),             # the PyWorker's own 429 is empty: no Retry-After to keep
])
async def test_every_provider_reports_a_429_as_rate_limited_with_its_retry_after(reference_endpoint, tmp_path, kind, path, retry_after):
    server = reference_endpoint(Profile.builtin("stock").replace(inject=Injection(rate_limited=1.0, retry_after=7), seed=1))
    record = await run_provider(kind, server.url + path, {"1": {"class_type": "EmptyImage", "inputs": {}}}, tmp_path)
    assert outcome(record) is Outcome.RATE_LIMITED
    evidence = record.classification.evidence
    assert evidence.http_status == 429 and evidence.retry_after == retry_after
    if retry_after:
        assert evidence.message.endswith(f"(Retry-After: {retry_after})")
