"""OpenEXR images among an endpoint's outputs, which Pillow cannot open: proven whole from their header.

0.33.0's SaveImageAdvanced writes 32-bit float EXR files and lists them among the node's images. The
header's ``dataWindow`` gives the size; for a scanline image every chunk the offset table names must lie
inside the file, the last one whole, so a truncated download is caught. Tiled, deep and multi-part files
are read to their header only.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

__all__ = ["BrokenEXR", "read_exr"]

_MAGIC = b"\x76\x2f\x31\x01"
_NOT_SCANLINE = 0x200 | 0x800 | 0x1000
"""Version flags of a tiled, deep or multi-part file: any of them, and the offset table is not checked."""
_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
"""Scanlines per chunk by compression: NO, RLE, ZIPS, ZIP, PIZ, PXR24, B44, B44A, DWAA, DWAB."""
_MAX_HEADER = 1 << 20


class BrokenEXR(ValueError):
    """The file starts as an OpenEXR image, but is not a whole one."""


def read_exr(fh: BinaryIO, size: int) -> tuple[int, int] | None:
    """(width, height) of an OpenEXR image, or None when the file is not one; BrokenEXR when it is cut short."""
    fh.seek(0)
    head = fh.read(_MAX_HEADER)
    if head[:4] != _MAGIC:
        return None
    if len(head) < 8:
        raise BrokenEXR("its EXR header is cut short")
    flags = struct.unpack("<I", head[4:8])[0]
    attributes, end = _attributes(head, 8)
    window = attributes.get((b"dataWindow", b"box2i"))
    if window is None or len(window) != 16:
        raise BrokenEXR("its EXR header has no dataWindow")
    x_min, y_min, x_max, y_max = struct.unpack("<4i", window)
    width, height = x_max - x_min + 1, y_max - y_min + 1
    if width <= 0 or height <= 0:
        raise BrokenEXR(f"its EXR dataWindow is empty ({x_min}, {y_min}, {x_max}, {y_max})")
    compression = attributes.get((b"compression", b"compression"), b"\0")[0]
    if not flags & _NOT_SCANLINE and compression in _LINES_PER_CHUNK:
        _check_chunks(fh, size, end, -(-height // _LINES_PER_CHUNK[compression]))
    return width, height


def _attributes(head: bytes, offset: int) -> tuple[dict[tuple[bytes, bytes], bytes], int]:
    """The header's attributes by (name, type), and where the header ends (after its closing zero byte)."""
    found = {}
    while True:
        if offset >= len(head):
            raise BrokenEXR("its EXR header is cut short")
        if head[offset] == 0:
            return found, offset + 1
        name_end = head.find(b"\0", offset)
        type_end = head.find(b"\0", name_end + 1)
        if name_end < 0 or type_end < 0 or type_end + 5 > len(head):
            raise BrokenEXR("its EXR header is cut short")
        length = struct.unpack("<i", head[type_end + 1:type_end + 5])[0]
        start = type_end + 5
        if length < 0 or start + length > len(head):
            raise BrokenEXR(f"its EXR header is cut short in the attribute {head[offset:name_end].decode('latin-1')!r}")
        found[(head[offset:name_end], head[name_end + 1:type_end])] = head[start:start + length]
        offset = start + length


def _check_chunks(fh: BinaryIO, size: int, table: int, chunks: int) -> None:
    """Every chunk the offset table names lies after it and inside the file; the last one is whole."""
    if table + 8 * chunks > size:  # before reading it: a header may claim billions of lines
        raise BrokenEXR(f"its EXR file is cut short in the offset table of {chunks:,} chunks")
    fh.seek(table)
    raw = fh.read(8 * chunks)
    if len(raw) < 8 * chunks:
        raise BrokenEXR(f"its EXR file is cut short in the offset table of {chunks} chunks")
    offsets = struct.unpack(f"<{chunks}Q", raw)
    last = max(offsets)
    if min(offsets) < table + 8 * chunks or last + 8 > size:
        raise BrokenEXR(f"its EXR offset table points past the end of the file ({size:,} bytes)")
    fh.seek(last + 4)
    length = struct.unpack("<i", fh.read(4))[0]
    if last + 8 + length > size:
        raise BrokenEXR(f"its EXR file is cut short: the chunk at byte {last:,} needs {8 + length:,} bytes, "
                        f"{size - last:,} are left")
