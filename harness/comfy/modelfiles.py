"""Which node inputs name a model file, and in which ComfyUI models folder it must lie.

ComfyUI fills these combo inputs from the files on disk (``folder_paths.get_filename_list``), so a
missing model shows up only as ``value_not_in_list`` on such an input. The recorded catalogues come
from a server without models, which is why their lists are empty (or hold only fixed entries such as
VAELoader's ``pixel_space``) and why the validator takes the files from a deployment profile instead.
"""

from __future__ import annotations

import re

__all__ = ["INPUT_FOLDER", "MODEL_INPUTS", "model_folder"]

INPUT_FOLDER = "input"
"""The pseudo-folder holding the files LoadImage and friends read (ComfyUI's ``input/`` directory)."""

MODEL_INPUTS: dict[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("CreateHookModelAsLora", "ckpt_name"): "checkpoints",
    ("CreateHookModelAsLoraModelOnly", "ckpt_name"): "checkpoints",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name1"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name2"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name4"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("CreateHookLora", "lora_name"): "loras",
    ("CreateHookLoraModelOnly", "lora_name"): "loras",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("DiffusersLoader", "model_path"): "diffusers",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("ModelPatchLoader", "name"): "model_patches",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
    # RES4LYF's loaders read the same folders as the stock ones they replace.
    ("FluxLoader", "model_name"): "diffusion_models",
    ("FluxLoader", "clip_vision_name"): "clip_vision",
    ("FluxLoader", "style_model_name"): "style_models",
    ("FluxLoader", "vae_name"): "vae",
    ("SD35Loader", "model_name"): "diffusion_models",
    ("ClownModelLoader", "model_name"): "diffusion_models",
}

# For custom loaders not in the table: the input names that custom packs reuse from the stock loaders.
_NAME_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^ckpt_name$"), "checkpoints"),
    (re.compile(r"^unet_name$"), "diffusion_models"),
    (re.compile(r"^clip_name\d*$"), "text_encoders"),
    (re.compile(r"^vae_name$"), "vae"),
    (re.compile(r"^lora_name(_\d+)?$"), "loras"),
    (re.compile(r"^control_net_name$"), "controlnet"),
    (re.compile(r"^upscale_model(_name)?$"), "upscale_models"),
)


def model_folder(class_type: str, input_name: str) -> str | None:
    """The models folder an input's value must name a file of, or None if it names no model."""
    folder = MODEL_INPUTS.get((class_type, input_name))
    if folder is not None:
        return folder
    for pattern, guessed in _NAME_PATTERNS:
        if pattern.match(input_name):
            return guessed
    return None
