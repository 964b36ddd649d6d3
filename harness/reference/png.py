"""The reference endpoint's saved images: flat-colour PNGs, byte for byte as Pillow writes them.

Encoding the pixels is most of a save's cost (5.5 ms for 512×512 RGB at SaveImage's compress_level 4,
more than all of the server's own work on a prompt), yet a flat image's pixel data depends only on its
mode, size, colour and level. So the image is encoded once per such key, and each save writes Pillow's
chunks around it: the signature and IHDR, the PngInfo's text chunks (the prompt and workflow, which differ
per prompt), then the cached IDAT and IEND, the order Pillow's PNG writer uses for an RGB/RGBA image.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

from PIL import Image, PngImagePlugin

__all__ = ["write_flat_png"]

_TEXT_CHUNKS = (b"tEXt", b"iTXt", b"zTXt")
"""What PngInfo.add_text and add_itxt make; Pillow writes them after IHDR, before the pixels."""
_SIGNATURE_AND_IHDR = 8 + 4 + 4 + 13 + 4  # PNG signature, then IHDR's length, type, 13 data bytes and CRC


@functools.lru_cache(maxsize=32)
def _encoded(mode: str, size: tuple[int, int], colour: tuple[int, ...], compress_level: int) -> tuple[bytes, bytes]:
    """(signature + IHDR, IDAT chunks + IEND) of the flat image without text chunks."""
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, "PNG", compress_level=compress_level)
    data = buffer.getvalue()
    return data[:_SIGNATURE_AND_IHDR], data[_SIGNATURE_AND_IHDR:]


def write_flat_png(path: Path, mode: str, size: tuple[int, int], colour: tuple[int, ...], *,
                   info: PngImagePlugin.PngInfo | None, compress_level: int) -> None:
    """Write the PNG ``Image.new(mode, size, colour).save(path, pnginfo=info, compress_level=...)`` writes."""
    chunks = info.chunks if info else []
    if mode not in ("RGB", "RGBA") or any(cid not in _TEXT_CHUNKS for cid, _, _ in chunks):
        Image.new(mode, size, colour).save(path, pnginfo=info, compress_level=compress_level)
        return
    head, pixels = _encoded(mode, size, colour, compress_level)
    with path.open("wb") as fh:
        fh.write(head)
        for cid, data, _ in chunks:
            PngImagePlugin.putchunk(fh, cid, data)
        fh.write(pixels)
