"""The UI → API converter, one rule of the frontend's graphToPrompt per test, on small UI graphs.

Each test builds a UI workflow the way the web UI saves it (``nodes`` with ``widgets_values``,
``links`` as ``[id, origin, origin_slot, target, target_slot, type]``, subgraph ``definitions``) and
asserts the exact prompt; where frontends 1.27.10 and 1.49.6 differ, both are asserted.
"""

from __future__ import annotations

import pytest

from harness.comfy.catalogue import Catalogue
from harness.comfy.convert import FRONTENDS, ConversionError, MissingClasses, MissingNode, convert, is_ui_workflow
from harness.errors import WorkflowError

CATALOGUE = Catalogue({
    "Loader": {"input": {"required": {"ckpt_name": [["a.safetensors", "b.safetensors"], {}]}},
               "output": ["MODEL", "CLIP"], "display_name": "Load Checkpoint"},
    "Sampler": {"input": {"required": {"model": ["MODEL", {}], "seed": ["INT", {"control_after_generate": True}],
                                       "steps": ["INT", {"default": 20}],
                                       "sampler": [["euler", "dpm"], {"control_after_generate": True}]},
                          "optional": {"denoise": ["FLOAT", {"default": 1.0}]}},
                "input_order": {"required": ["model", "seed", "steps", "sampler"], "optional": ["denoise"]},
                "output": ["LATENT"], "display_name": "My Sampler"},
    "Patch": {"input": {"required": {"model": ["MODEL", {}], "strength": ["FLOAT", {"default": 1.0}]}},
              "output": ["MODEL"], "display_name": "Patch"},
    "Int": {"input": {"required": {"value": ["INT", {}]}}, "output": ["INT"], "display_name": "Int"},
    "Text": {"input": {"required": {"clip": ["CLIP", {}], "text": ["STRING", {"multiline": True, "dynamicPrompts": True}]}},
             "output": ["CONDITIONING"], "display_name": "Text Encode"},
    "SaveImage": {"input": {"required": {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}},
                  "output": [], "output_node": True, "display_name": "Save Image"},
    "LoadImage": {"input": {"required": {"image": [["x.png"], {"image_upload": True}]}}, "output": ["IMAGE", "MASK"],
                  "display_name": "Load Image"},
    "ImageCompare": {"input": {"required": {"compare_view": ["IMAGECOMPARE", {"socketless": True}]},
                               "optional": {"image_a": ["IMAGE", {}]}}, "output": [], "display_name": "Image Compare"},
    "PreviewAudio": {"input": {"required": {"audio": ["AUDIO", {}]}}, "output": [], "display_name": "Preview Audio"},
    "Load3D": {"input": {"required": {"model_file": [["m.glb"], {"file_upload": True}], "image": ["LOAD_3D", {}]}},
               "output": ["IMAGE"], "display_name": "Load 3D"},
    "Resize": {"input": {"required": {
        "image": ["IMAGE", {}],
        "mode": ["COMFY_DYNAMICCOMBO_V3", {"options": [
            {"key": "size", "inputs": {"required": {"width": ["INT", {"default": 512}], "height": ["INT", {"default": 512}]}}},
            {"key": "factor", "inputs": {"required": {"multiplier": ["FLOAT", {"default": 1.0}]}}}]}],
        "method": [["nearest", "bilinear"], {}]}},
        "input_order": {"required": ["image", "mode", "method"]}, "output": ["IMAGE"], "display_name": "Resize"},
    "Batch": {"input": {"required": {"images": ["COMFY_AUTOGROW_V3", {"template": {
        "input": {"required": {"image": ["IMAGE", {}]}}, "prefix": "image", "min": 1, "max": 8}}]}},
        "output": ["IMAGE"], "display_name": "Batch Images"},
    "ImageBlur": {"input": {"required": {"image": ["IMAGE", {}]}}, "output": ["IMAGE"]},
})


def node(node_id, node_type, *, inputs=(), outputs=(), values=None, mode=0, **extra) -> dict:
    """A node as the UI saves it; ``inputs`` as (name, type, link[, widget]) and ``outputs`` as (type, links)."""
    data = {"id": node_id, "type": node_type, "mode": mode,
            "inputs": [{"name": i[0], "type": i[1], "link": i[2], **({"widget": {"name": i[0]}} if len(i) > 3 else {})}
                       for i in inputs],
            "outputs": [{"name": o[0], "type": o[0], "links": list(o[1])} for o in outputs],
            "properties": {}, **extra}
    if values is not None:
        data["widgets_values"] = values
    return data


def workflow(nodes, links=(), **extra) -> dict:
    return {"last_node_id": max([n["id"] for n in nodes] + [0]), "nodes": list(nodes), "links": [list(x) for x in links],
            "version": 0.4, **extra}


def prompt_of(ui, frontend="1.49.6", **kwargs) -> dict:
    return convert(ui, CATALOGUE, frontend=frontend, **kwargs)


def loader(node_id=1, links_model=(), links_clip=(), **extra) -> dict:
    return node(node_id, "Loader", outputs=[("MODEL", links_model), ("CLIP", links_clip)], values=["b.safetensors"], **extra)


def sampler(node_id=2, model_link=None, values=(5, "fixed", 30, "dpm", "increment", "", 0.5), **extra) -> dict:
    return node(node_id, "Sampler", inputs=[("model", "MODEL", model_link)], outputs=[("LATENT", ())],
                values=list(values), **extra)


LOADED = {"inputs": {"ckpt_name": "b.safetensors"}, "class_type": "Loader", "_meta": {"title": "Load Checkpoint"}}


def sampled(model=("1", 0), **inputs) -> dict:
    values = {"seed": 5, "steps": 30, "sampler": "dpm", "denoise": 0.5, **inputs}
    if model is not None:
        values["model"] = list(model)
    return {"inputs": values, "class_type": "Sampler", "_meta": {"title": "My Sampler"}}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_widget_values_follow_the_catalogue_input_order_skipping_control_values(frontend):
    # seed and the sampler combo each carry control_after_generate: "fixed", then "increment" + filter "".
    ui = workflow([loader(links_model=[1]), sampler(model_link=1)], [(1, 1, 0, 2, 0, "MODEL")])
    assert prompt_of(ui, frontend) == {"1": LOADED, "2": sampled()}


def test_the_old_boolean_control_value_takes_its_place_too():
    ui = workflow([sampler(values=[5, True, 30, "dpm", False, "", 0.5])])
    assert prompt_of(ui) == {"2": sampled(model=None)}


def test_a_widget_converted_to_an_input_sends_its_link():
    ui = workflow([node(7, "Int", outputs=[("INT", [3])], values=[9]),
                   node(2, "Sampler", inputs=[("model", "MODEL", None), ("steps", "INT", 3, "widget")],
                        values=[5, "fixed", 30, "dpm", "fixed", "", 0.5])],
                  [(3, 7, 0, 2, 1, "INT")])
    assert prompt_of(ui)["2"] == sampled(model=None, steps=["7", 0])


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_primitive_node_sets_the_widgets_it_feeds_and_is_not_sent(frontend):
    ui = workflow([node(8, "PrimitiveNode", outputs=[("INT", [4])], values=[42, "fixed"]),
                   node(2, "Sampler", inputs=[("model", "MODEL", None), ("steps", "INT", 4, "widget")],
                        values=[5, "fixed", 30, "dpm", "fixed", "", 0.5])],
                  [(4, 8, 0, 2, 1, "INT")])
    assert prompt_of(ui, frontend) == {"2": sampled(model=None, steps=42)}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_ui_only_nodes_are_resolved_away(frontend):
    ui = workflow([loader(links_model=[1]), node(3, "Reroute", inputs=[("", "*", 1)], outputs=[("MODEL", [2])]),
                   node(4, "Note", values=["a note"]), node(5, "MarkdownNote", values=["# notes"]),
                   sampler(model_link=2)],
                  [(1, 1, 0, 3, 0, "MODEL"), (2, 3, 0, 2, 0, "MODEL")])
    assert prompt_of(ui, frontend) == {"1": LOADED, "2": sampled()}


def _with_pack(module: str, class_type: str) -> Catalogue:
    """CATALOGUE on a server that also has the pack installed as ``custom_nodes/<module>``."""
    return Catalogue({**CATALOGUE.object_info, class_type: {"input": {"required": {}}, "output": [], "python_module": f"custom_nodes.{module}"}})


def _set_get_workflow() -> dict:
    return workflow([loader(links_clip=[1]), node(3, "SetNode", inputs=[("CLIP", "CLIP", 1)], outputs=[("*", ())],
                                                   values=["clip"], title="Set_clip"),
                     node(4, "GetNode", outputs=[("CLIP", [2])], values=["clip"]),
                     node(5, "Text", inputs=[("clip", "CLIP", 2)], outputs=[("CONDITIONING", ())], values=["hello"])],
                    [(1, 1, 1, 3, 0, "CLIP"), (2, 4, 0, 5, 0, "CLIP")])


def test_get_node_reads_the_set_node_of_its_name_where_the_server_has_kjnodes():
    prompt = convert(_set_get_workflow(), _with_pack("ComfyUI-KJNodes", "ImageResizeKJ"), frontend="1.49.6")
    assert prompt["5"] == {"inputs": {"text": "hello", "clip": ["1", 1]}, "class_type": "Text", "_meta": {"title": "Text Encode"}}
    assert "3" not in prompt and "4" not in prompt


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_without_kjnodes_set_and_get_nodes_are_unknown_nodes(frontend):
    """Their web extension is KJNodes': without it the frontend sends them as nodes it does not know (no
    class_type; saved values as UNKNOWN, UNKNOWN_1... in 1.49.6, all as UNKNOWN in 1.27.10; the title
    only if the file has one), as the corpus's frontends did; strict, they are missing classes."""
    with pytest.raises(MissingClasses) as missing:
        prompt_of(_set_get_workflow(), frontend)
    assert {(n.node_id, n.class_type) for n in missing.value.nodes} == {("3", "SetNode"), ("4", "GetNode")}
    loose = prompt_of(_set_get_workflow(), frontend, strict=False)
    assert loose["3"] == {"inputs": {"UNKNOWN": "clip", "CLIP": ["1", 1]}, "_meta": {"title": "Set_clip"}}
    assert loose["4"] == {"inputs": {"UNKNOWN": "clip"}, "_meta": {}}
    assert loose["5"]["inputs"]["clip"] == ["4", 0]


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_an_unknown_nodes_values_go_as_unknown_and_non_scalars_as_json_text(frontend):
    ui = workflow([node(6, "Mystery", values=[1.0, "a\nb", None, [False, True], {"k": 2.5}])])
    names = ["UNKNOWN"] * 5 if frontend == "1.27.10" else ["UNKNOWN", "UNKNOWN_1", "UNKNOWN_2", "UNKNOWN_3", "UNKNOWN_4"]
    sent = [1.0, "a\nb", "null", "[false,true]", '{"k":2.5}']
    assert prompt_of(ui, frontend, strict=False)["6"]["inputs"] == dict(zip(names, sent))


RGTHREE_VIRTUAL = ("Label (rgthree)", "Bookmark (rgthree)", "Fast Groups Muter (rgthree)", "Fast Groups Bypasser (rgthree)",
                   "Fast Muter (rgthree)", "Fast Bypasser (rgthree)", "Mute / Bypass Relay (rgthree)",
                   "Mute / Bypass Repeater (rgthree)", "Node Collector (rgthree)", "Fast Actions Button (rgthree)",
                   "Random Unmuter (rgthree)")


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_rgthree_frontend_nodes_are_virtual_where_the_server_has_rgthree(frontend):
    """rgthree-comfy's RgthreeBaseVirtualNode subclasses (muters, bypassers, relays, labels, its Reroute)
    are never sent where its web extension is loaded; its Reroute passes its input on. Elsewhere they
    are nodes the frontend does not know."""
    helpers = [node(10 + i, t, inputs=[("", "*", None)], values=[]) for i, t in enumerate(RGTHREE_VIRTUAL)]
    ui = workflow([loader(links_model=[1]), node(3, "Reroute (rgthree)", inputs=[("", "*", 1)], outputs=[("*", [2])]),
                   sampler(model_link=2), *helpers],
                  [(1, 1, 0, 3, 0, "MODEL"), (2, 3, 0, 2, 0, "MODEL")])
    assert convert(ui, _with_pack("rgthree-comfy", "Seed (rgthree)"), frontend=frontend) == {"1": LOADED, "2": sampled()}
    with pytest.raises(MissingClasses) as missing:
        prompt_of(ui, frontend)
    assert {n.class_type for n in missing.value.nodes} == {"Reroute (rgthree)", *RGTHREE_VIRTUAL}


def test_a_muted_node_is_dropped_with_its_links_and_the_frontends_differ_on_widget_inputs():
    ui = workflow([loader(links_model=[1], mode=2), node(7, "Int", outputs=[("INT", [3])], values=[9], mode=2),
                   node(2, "Sampler", inputs=[("model", "MODEL", 1), ("steps", "INT", 3, "widget")],
                        values=[5, "fixed", 30, "dpm", "fixed", "", 0.5])],
                  [(1, 1, 0, 2, 0, "MODEL"), (3, 7, 0, 2, 1, "INT")])
    # 1.49.6: a muted node produces nothing, so the widget keeps its value; 1.27.10 first sends the
    # link, then removes it with the muted node, and the widget value is gone with it.
    assert prompt_of(ui, "1.49.6") == {"2": sampled(model=None)}
    without_steps = sampled(model=None)
    del without_steps["inputs"]["steps"]
    assert prompt_of(ui, "1.27.10") == {"2": without_steps}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_a_bypassed_node_passes_its_input_of_the_same_type(frontend):
    ui = workflow([loader(links_model=[1]),
                   node(3, "Patch", inputs=[("model", "MODEL", 1)], outputs=[("MODEL", [2])], values=[0.5], mode=4),
                   sampler(model_link=2)],
                  [(1, 1, 0, 3, 0, "MODEL"), (2, 3, 0, 2, 0, "MODEL")])
    assert prompt_of(ui, frontend) == {"1": LOADED, "2": sampled()}


def test_an_input_fed_by_a_bypassed_node_with_no_matching_input_is_left_out():
    ui = workflow([node(3, "Int", outputs=[("INT", [2])], values=[1], mode=4), sampler(model_link=2)],
                  [(2, 3, 0, 2, 0, "MODEL")])
    assert prompt_of(ui) == {"2": sampled(model=None)}


GROUP = {"nodes": [{"index": 0, "type": "Loader", "widgets_values": ["a.safetensors"], "outputs": [
    {"name": "MODEL", "type": "MODEL", "links": []}, {"name": "CLIP", "type": "CLIP", "links": []}]},
    {"index": 1, "type": "Sampler", "inputs": [{"name": "model", "type": "MODEL", "link": None}],
     "widgets_values": [0, "fixed", 20, "euler", "fixed", "", 1.0]}],
    "links": [[0, 0, 1, 0, 1, "MODEL"]], "external": [[1, 0, "LATENT"]]}


def test_a_legacy_group_node_runs_its_inner_nodes_valued_from_the_group():
    group = node(10, "workflow>pair", outputs=[("LATENT", [])],
                 values=["b.safetensors", 5, "fixed", 30, "dpm", "increment", "", 0.5])
    ui = workflow([group], extra={"groupNodes": {"pair": GROUP}})
    inner = {"1.27.10": ("10:0", "10:1"), "1.49.6": ("13:11", "13:12")}  # 1.49.6: a new subgraph after id 10
    for frontend, (first, second) in inner.items():
        assert prompt_of(ui, frontend) == {first: LOADED, second: sampled(model=(first, 0))}


def definition(sg_id, nodes, links, inputs=(), outputs=()) -> dict:
    return {"id": sg_id, "name": sg_id, "nodes": nodes, "links": links,
            "inputs": [{"name": n, "type": t, "linkIds": ids} for n, t, ids in inputs],
            "outputs": [{"name": n, "type": t, "linkIds": ids} for n, t, ids in outputs]}


def sub_link(link_id, origin, origin_slot, target, target_slot, link_type) -> dict:
    return {"id": link_id, "origin_id": origin, "origin_slot": origin_slot, "target_id": target,
            "target_slot": target_slot, "type": link_type}


INNER = definition("inner-sg", [
    node(5, "Sampler", inputs=[("model", "MODEL", 21), ("steps", "INT", 22, "widget")], outputs=[("LATENT", [23])],
         values=[5, "fixed", 30, "dpm", "fixed", "", 0.5])],
    [sub_link(21, -10, 0, 5, 0, "MODEL"), sub_link(22, -10, 1, 5, 1, "INT"), sub_link(23, 5, 0, -20, 0, "LATENT")],
    inputs=[("model", "MODEL", [21]), ("steps", "INT", [22])], outputs=[("LATENT", "LATENT", [23])])


def instance(node_id, sg_id, values, model_link=None, **extra) -> dict:
    return node(node_id, sg_id, inputs=[("model", "MODEL", model_link), ("steps", "INT", None, "widget")],
                outputs=[("LATENT", ())], values=values, **extra)


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_subgraph_nodes_are_sent_as_instance_colon_inner_with_the_instance_widget_values(frontend):
    ui = workflow([loader(links_model=[1]), instance(10, "inner-sg", [12], model_link=1)], [(1, 1, 0, 10, 0, "MODEL")],
                  definitions={"subgraphs": [INNER]})
    assert prompt_of(ui, frontend) == {"1": LOADED, "10:5": sampled(steps=12)}


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_nested_subgraphs_chain_their_ids(frontend):
    outer = definition("outer-sg", [instance(3, "inner-sg", [14], model_link=31)],
                       [sub_link(31, -10, 0, 3, 0, "MODEL")], inputs=[("model", "MODEL", [31])])
    ui = workflow([loader(links_model=[1]), node(10, "outer-sg", inputs=[("model", "MODEL", 1)], values=[])],
                  [(1, 1, 0, 10, 0, "MODEL")], definitions={"subgraphs": [INNER, outer]})
    assert prompt_of(ui, frontend) == {"1": LOADED, "10:3:5": sampled(steps=14)}


def test_frontend_1_49_6_renumbers_inner_ids_that_collide_with_root_ids():
    ui = workflow([node(5, "Int", outputs=[("INT", [])], values=[3]), instance(10, "inner-sg", [12])],
                  definitions={"subgraphs": [INNER]})
    assert set(prompt_of(ui, "1.27.10")) == {"5", "10:5"}
    assert set(prompt_of(ui, "1.49.6")) == {"5", "10:11"}   # the next id after last_node_id 10


def test_a_bypassed_subgraph_instance():
    ui = workflow([loader(links_model=[1]), instance(10, "inner-sg", [12], model_link=1, mode=4)],
                  [(1, 1, 0, 10, 0, "MODEL")], definitions={"subgraphs": [INNER]})
    # 1.49.6 bypasses the instance as a whole; 1.27.10 still flattens it and sends its inner nodes.
    assert prompt_of(ui, "1.49.6") == {"1": LOADED}
    assert prompt_of(ui, "1.27.10") == {"1": LOADED, "10:5": sampled(steps=12)}


def test_legacy_proxy_widgets_take_the_instance_values_by_their_own_order_1_49_6():
    # proxyWidgets promotes steps (through its subgraph input) and the inner seed (no input feeds it).
    ui = workflow([instance(10, "inner-sg", [99, 12], properties={"proxyWidgets": [["5", "seed"], ["-1", "steps"]]})],
                  definitions={"subgraphs": [INNER]})
    assert prompt_of(ui, "1.49.6") == {"10:5": sampled(model=None, seed=99, steps=12)}
    assert prompt_of(ui, "1.27.10") == {"10:5": sampled(model=None, steps=99)}


def test_inputs_the_frontend_adds_that_object_info_does_not_list():
    ui = workflow([node(1, "LoadImage", outputs=[("IMAGE", []), ("MASK", [])], values=["x.png", "image"]),
                   node(2, "ImageCompare", inputs=[("image_a", "IMAGE", None)], values=[]),
                   node(3, "PreviewAudio", inputs=[("audio", "AUDIO", None)], values=[]),
                   node(4, "Load3D", outputs=[("IMAGE", [])],
                        values=["m.glb", "upload3dmodel", "uploadExtraResources", "clear", "threed/s.png"])])
    buttons = {"model_file": "m.glb", "upload 3d model": "upload3dmodel", "upload extra resources": "uploadExtraResources",
               "clear": "clear", "image": "threed/s.png"}
    expected = {"1": {"inputs": {"image": "x.png"}, "class_type": "LoadImage", "_meta": {"title": "Load Image"}},
                "2": {"inputs": {"compare_view": {"__value__": ["", ""]}}, "class_type": "ImageCompare",
                      "_meta": {"title": "Image Compare"}},
                "3": {"inputs": {}, "class_type": "PreviewAudio", "_meta": {"title": "Preview Audio"}},
                "4": {"inputs": buttons, "class_type": "Load3D", "_meta": {"title": "Load 3D"}}}
    assert prompt_of(ui, "1.49.6") == expected
    # 1.27.10 also sends the audio player's empty value.
    expected["3"] = {"inputs": {"audioUI": ""}, "class_type": "PreviewAudio", "_meta": {"title": "Preview Audio"}}
    assert prompt_of(ui, "1.27.10") == expected


def test_a_dynamic_combo_sends_the_chosen_options_widgets_with_dotted_names():
    ui = workflow([node(1, "Resize", inputs=[("image", "IMAGE", None)], outputs=[("IMAGE", [])],
                        values=["factor", 2.5, "bilinear"])])
    assert prompt_of(ui)["1"]["inputs"] == {"mode": "factor", "mode.multiplier": 2.5, "method": "bilinear"}
    ui["nodes"][0]["widgets_values"] = ["size", 640, 480, "nearest"]
    assert prompt_of(ui)["1"]["inputs"] == {"mode": "size", "mode.width": 640, "mode.height": 480, "method": "nearest"}


def test_autogrow_inputs_keep_their_dotted_names():
    ui = workflow([node(1, "LoadImage", outputs=[("IMAGE", [1, 2]), ("MASK", [])], values=["x.png", "image"]),
                   node(2, "Batch", inputs=[("images.image0", "IMAGE", 1), ("images.image1", "IMAGE", 2),
                                            ("images.image2", "IMAGE", None)], outputs=[("IMAGE", [])])],
                  [(1, 1, 0, 2, 0, "IMAGE"), (2, 1, 0, 2, 1, "IMAGE")])
    assert prompt_of(ui)["2"]["inputs"] == {"images.image0": ["1", 0], "images.image1": ["1", 0]}


def test_titles_come_from_the_file_then_the_frontends_locale_then_the_catalogue():
    ui = workflow([loader(title="My loader"), node(2, "ImageBlur", inputs=[("image", "IMAGE", None)], outputs=[("IMAGE", [])])])
    assert prompt_of(ui, "1.27.10")["1"]["_meta"] == {"title": "My loader"}
    assert prompt_of(ui, "1.27.10")["2"]["_meta"] == {"title": "Image Blur"}   # 1.27.10's own English name
    assert prompt_of(ui, "1.49.6")["2"]["_meta"] == {"title": "ImageBlur"}     # no display_name: the class


def test_every_node_whose_class_the_catalogue_lacks_is_named():
    inner = definition("sg", [node(1, "Mystery", values=[], properties={"cnr_id": "mystery-pack", "ver": "1.0"})], [])
    ui = workflow([node(3, "Unknown", title="Odd", properties={"aux_id": "someone/pack"}), node(4, "Unknown", mode=2),
                   node(10, "sg", values=[])], definitions={"subgraphs": [inner]})
    with pytest.raises(MissingClasses) as caught:
        prompt_of(ui)
    assert caught.value.nodes == (MissingNode("3", "Unknown", "Odd", {"aux_id": "someone/pack"}),
                                  MissingNode("10:1", "Mystery", None, {"cnr_id": "mystery-pack", "ver": "1.0"}))
    assert isinstance(caught.value, ConversionError) and isinstance(caught.value, WorkflowError)
    # Best effort, as the frontend itself sends them: no class_type.
    assert prompt_of(ui, strict=False)["3"] == {"inputs": {}, "_meta": {"title": "Odd"}}


def test_a_link_to_nowhere_is_a_conversion_error_naming_the_node():
    ui = workflow([sampler(model_link=77)])
    with pytest.raises(ConversionError, match=r"node 2 \(Sampler, 'My Sampler'\): input 'model' names link 77"):
        prompt_of(ui)


def test_an_unknown_frontend_is_a_value_error_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"1\.27\.10, 1\.49\.6"):
        convert(workflow([loader()]), CATALOGUE, frontend="1.30")


def test_dynamic_prompts_and_filename_replacements_are_applied_when_sending():
    ui = workflow([loader(links_clip=[1]),
                   node(5, "Text", inputs=[("clip", "CLIP", 1)], outputs=[("CONDITIONING", ())],
                        values=["a {red|blue} fox // a comment"]),
                   node(6, "SaveImage", inputs=[("images", "IMAGE", None)], values=["out/%Load Checkpoint.ckpt_name%"])],
                  [(1, 1, 1, 5, 0, "CLIP")])
    sent = prompt_of(ui, choose=lambda options: options[-1])
    assert sent["5"]["inputs"]["text"] == "a blue fox "
    assert sent["6"]["inputs"]["filename_prefix"] == "out/b.safetensors"


def test_frontend_1_27_10_reads_a_multiline_text_back_as_a_string():
    ui = workflow([node(5, "Text", inputs=[("clip", "CLIP", None)], outputs=[("CONDITIONING", ())], values=[42])])
    assert prompt_of(ui, "1.27.10")["5"]["inputs"] == {"text": "42"}
    assert prompt_of(ui, "1.49.6")["5"]["inputs"] == {"text": 42}


def test_is_ui_workflow():
    assert is_ui_workflow({"nodes": [], "links": []})
    assert not is_ui_workflow({"3": {"class_type": "KSampler", "inputs": {}}})
    assert not is_ui_workflow(["nodes", "links"])
