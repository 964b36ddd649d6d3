"""Conversion fidelity over ../shared/corpus: every UI file whose output is full-fidelity ground truth
(the real frontend knew every node type) must convert to exactly the prompt that frontend made, as
JSON (``_meta.title`` included), for both modelled frontends, against the /object_info it ran with.

The figures are printed (``ui conversion: N/M identical to frontend V``) whether or not they pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from harness.comfy.catalogue import Catalogue
from harness.comfy.convert import FRONTENDS, convert

CORPUS = ROOT.parent / "shared" / "corpus"


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def index() -> dict:
    if not (CORPUS / "index.json").is_file():
        pytest.skip(f"../shared/corpus is not here ({CORPUS}): its UI files and the frontends' prompts are the ground truth")
    return _load(CORPUS / "index.json")


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_identical_to_frontend(frontend: str, index: dict, capsys: pytest.CaptureFixture) -> None:
    catalogue = Catalogue(_load(CORPUS / index["frontends"][f"frontend-{frontend}"]["object_info"]))
    files = [name for name, entry in index["ui"].items() if entry[f"frontend-{frontend}"]["full_fidelity"]]
    different, reordered = [], []
    for name in files:
        expected = _load(CORPUS / f"frontend-{frontend}" / name)
        # Through JSON, as the frontend's output was saved: numbers and undefined members alike.
        got = json.loads(json.dumps(convert(_load(CORPUS / "ui" / name), catalogue, frontend=frontend)))
        if got != expected:
            different.append(name)
        elif list(got) != list(expected) or any(list(got[k]["inputs"]) != list(expected[k]["inputs"]) for k in got):
            reordered.append(name)
    with capsys.disabled():
        print(f"\nui conversion: {len(files) - len(different)}/{len(files)} identical to frontend {frontend}"
              f" ({len(files) - len(different) - len(reordered)} with its key order too)")
    assert files, "the corpus lists no full-fidelity file"
    assert not different, f"{len(different)} files differ from frontend {frontend}, e.g. {different[:5]}"
    # Key order is the order ComfyUI validates in, so the order its first error names a node in.
    assert not reordered, f"{len(reordered)} files have the frontend's keys in another order, e.g. {reordered[:5]}"
