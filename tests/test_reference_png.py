"""The reference's saved PNGs (harness.reference.png) are the bytes Pillow itself writes for the same image."""

from __future__ import annotations

import json

import pytest
from PIL import Image, PngImagePlugin

from harness.reference.png import write_flat_png


@pytest.mark.parametrize(("mode", "size", "colour", "level", "texts"), [
    ("RGB", (512, 512), (255, 255, 255), 4, {"prompt": json.dumps({"1": {"class_type": "EmptyImage"}})}),
    ("RGB", (64, 48), (0, 128, 7), 4, None),
    ("RGBA", (33, 17), (1, 2, 3, 4), 1, {"prompt": "{}", "workflow": json.dumps({"nodes": []})}),
    # A value latin-1 cannot hold becomes an iTXt chunk, as Pillow's add_text makes it.
    ("RGB", (8, 8), (9, 9, 9), 4, {"workflow": json.dumps({"title": "画像"}, ensure_ascii=False)}),
    ("L", (16, 16), (5,), 4, {"prompt": "{}"}),  # a mode the shortcut does not take: Pillow writes it
])
def test_a_saved_png_is_the_file_pillow_writes(tmp_path, mode, size, colour, level, texts):
    info = None
    if texts is not None:
        info = PngImagePlugin.PngInfo()
        for key, value in texts.items():
            info.add_text(key, value)
    ours, pillows = tmp_path / "ours.png", tmp_path / "pillow.png"
    for _ in range(2):  # the second write comes from the cache
        write_flat_png(ours, mode, size, colour, info=info, compress_level=level)
        Image.new(mode, size, colour if len(colour) > 1 else colour[0]).save(pillows, pnginfo=info, compress_level=level)
        assert ours.read_bytes() == pillows.read_bytes()
    with Image.open(ours) as img:
        assert (img.mode, img.size) == (mode, size)
        assert img.text == (texts or {})
