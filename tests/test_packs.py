"""Pack attribution from the recorded ComfyUI-Manager map (2026-08-19), the packs' own node lists and
overrides.yaml."""

from __future__ import annotations

import json

import pytest

from harness.comfy import packs
from harness.comfy.packs import CORE_URL, PACKS_DIR, PackIndex, Source, attribute, option_pack

RES4LYF = "https://github.com/ClownsharkBatwing/RES4LYF"
CONTROLALTAI = "https://github.com/gseth/ControlAltAI-Nodes"


def test_flux_resolution_node_is_pinned_to_controlaltai_and_stays_ambiguous():
    a = attribute("FluxResolutionNode")
    urls = [p.url for p in a.candidates]
    # The map lists another repository first; the pin comes from ControlAltAI's own node list.
    assert urls == [CONTROLALTAI, "https://github.com/TheLustriVA/ComfyUI-Image-Size-Tools"]
    assert a.ambiguous is True and a.source is Source.OVERRIDE
    assert (a.pack.name, a.pack.title, a.pack.install) == ("ControlAltAI-Nodes", "ControlAltAI Nodes", "comfy node install controlaltai-nodes")
    first, second = a.to_dicts()
    assert (first["preferred"], second["preferred"], first["ambiguous"]) == (True, False, True)


@pytest.mark.parametrize("class_type", ["ClownsharKSampler_Beta", "Sigmas Rescale"])
def test_res4lyf_classes_install_by_git_clone(class_type):
    a = attribute(class_type)
    assert a.pack.url == RES4LYF and a.source is Source.OVERRIDE and not a.ambiguous
    # Not a pip package and no registry id in its source: a clone into custom_nodes.
    assert a.pack.registry is None
    assert a.pack.install == "git clone https://github.com/ClownsharkBatwing/RES4LYF ComfyUI/custom_nodes/RES4LYF"


def test_every_class_of_a_pinned_pack_prefers_it_even_where_the_map_lists_others():
    for listing, url in (("res4lyf_nodes.json", RES4LYF), ("controlaltai_nodes.json", CONTROLALTAI)):
        names = [n["class_type"] for n in json.loads((PACKS_DIR / listing).read_text())["nodes"]]
        assert {attribute(n).pack.url for n in names} == {url}
    seed = attribute("SeedGenerator")  # also listed by two unrelated packs
    assert seed.pack.url == RES4LYF and len(seed.candidates) == 3


def test_a_preemption_is_the_managers_tie_break():
    a = attribute("IPAdapter")
    assert a.source is Source.PREEMPTION and a.pack.url == "https://github.com/cubiq/ComfyUI_IPAdapter_plus" and a.ambiguous


def test_a_stock_class_means_updating_comfyui():
    a = attribute("KSampler")
    assert a.source is Source.CORE and a.pack.url == CORE_URL and a.pack.install.startswith("update ComfyUI")


def test_a_name_no_pack_lists_falls_back_to_nodename_patterns():
    a = attribute("Any Switch (rgthree)")  # rgthree lists its classes by the ' \(rgthree\)$' pattern
    assert a.source is Source.PATTERN and [p.url for p in a.candidates] == ["https://github.com/rgthree/rgthree-comfy"]
    both = attribute("Some Node Inspire")  # one pattern, declared by two packs
    assert both.ambiguous and {p.title for p in both.candidates} == {"ComfyUI Inspire Pack", "ComfyUI Connection Helper"}


def test_an_exact_listing_wins_over_patterns():
    # Listed by name by one pack and matched by another pack's over-broad 'Hunyuan' pattern.
    a = attribute("HunyuanWorldModelLoader")
    assert a.source is Source.MAP
    assert [p.url for p in a.candidates] == ["https://github.com/A043-studios/ComfyUI_HunyuanWorldnode"]
    assert attribute("HunyuanNobodyListsThis").pack.url == "https://github.com/exedesign/Hunyuan-3D-v3"


def test_an_unknown_class_has_no_pack():
    a = attribute("NoPackHasThisClass_42")
    assert (a.candidates, a.source, a.pack, a.ambiguous, a.to_dicts()) == ((), None, None, False, [])


@pytest.mark.parametrize(
    ("class_type", "input_name", "value", "url"),
    [
        ("KSampler", "scheduler", "beta57", RES4LYF),
        ("BasicScheduler", "scheduler", "bong_tangent", RES4LYF),
        ("KSamplerSelect", "sampler_name", "res_2m", RES4LYF),
        ("KSamplerAdvanced", "sampler_name", "res_6s_ode", RES4LYF),
        ("KSampler", "scheduler", "normal", None),  # stock option
        ("KSampler", "sampler_name", "not_a_sampler", None),
        ("KSampler", "cfg", 7.0, None),
    ],
)
def test_option_attribution(class_type, input_name, value, url):
    pack = option_pack(class_type, input_name, value)
    assert (pack.url if pack else None) == url


def test_single_file_packs_are_downloaded_not_cloned():
    [url] = [p.url for p in attribute("Seed With Text").candidates]
    assert url.endswith("alkemann.py")
    assert attribute("Seed With Text").pack.install == f"curl -fLo ComfyUI/custom_nodes/alkemann.py {url}"


def test_a_broken_pattern_does_not_hide_other_packs():
    index = PackIndex({"https://x/a": [["A"], {"nodename_pattern": "("}], "https://x/b": [[], {"nodename_pattern": "^B"}]}, {})
    assert [p.url for p in index.attribute("Bee").candidates] == ["https://x/b"]
    assert index.attribute("A").pack.title == "a"


def test_the_index_is_built_once_and_shared():
    # How long building it takes is a figure for bench/, not a timed test on a shared 2-core machine.
    packs.default_index.cache_clear()
    index = packs.default_index()
    assert index.attribute("Any Switch (rgthree)").source is not None  # compiles the patterns too
    assert packs.default_index() is index
