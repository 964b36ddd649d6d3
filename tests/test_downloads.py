"""Downloads are written as they arrive, and a small one is inspected from the bytes already in hand; a
video among the outputs (ComfyUI lists SaveVideo's with the images) is proven whole from its container."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from harness.providers.base import inspect_image, output_suffix, save_stream
from harness.providers.capped import ReplyTooLarge
from harness.run.endpoints import Limits


async def _chunks(data: bytes, size: int):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_small_download_is_kept_and_inspected_from_memory_like_the_file(tmp_path):
    png = _png()
    held = asyncio.run(save_stream(tmp_path / "a.png", _chunks(png, 100), Limits()))
    assert held == png == (tmp_path / "a.png").read_bytes()
    from_memory, from_disk = inspect_image(tmp_path / "a.png", "a.png", data=held), inspect_image(tmp_path / "a.png", "a.png")
    assert from_memory == from_disk and (from_memory.format, from_memory.width, from_memory.height) == ("PNG", 64, 32)
    broken = png[:-20]
    (tmp_path / "b.png").write_bytes(broken)
    assert inspect_image(tmp_path / "b.png", "b.png", data=broken).error == inspect_image(tmp_path / "b.png", "b.png").error
    assert inspect_image(tmp_path / "b.png", "b.png", data=broken).error


def test_a_large_download_is_written_whole_and_not_held(tmp_path):
    data = b"x" * ((8 << 20) + 1)
    assert asyncio.run(save_stream(tmp_path / "big.bin", _chunks(data, 1 << 20), Limits())) is None
    assert (tmp_path / "big.bin").stat().st_size == len(data)


@pytest.mark.parametrize("declared", [None, 3 << 20], ids=["chunked", "content-length"])
def test_a_download_past_output_mb_stops_and_leaves_no_file(tmp_path, declared):
    """Past ``limits.output_mb`` the download stops (at once when its Content-Length says so) and the
    partial file goes: a disk is not filled by an endpoint that never stops sending."""
    sent = []

    async def endless():
        for _ in range(64):
            sent.append(1)
            yield b"x" * (1 << 20)

    with pytest.raises(ReplyTooLarge, match=r"more than 2 MB, the most the harness reads \(limits.output_mb"):
        asyncio.run(save_stream(tmp_path / "big.png", endless(), Limits(output_mb=2), declared))
    assert not (tmp_path / "big.png").exists()
    assert len(sent) == (0 if declared else 3)


OUTPUTS = Path(__file__).resolve().parents[1] / "fixtures" / "outputs"


@pytest.mark.parametrize("name, fmt, size", [
    ("h264_64x48.mp4", "MP4", (64, 48)),
    ("h264_aac_80x48.mp4", "MP4", (80, 48)),  # its first track is the sound one
    ("h264_48x64.mkv", "MKV", (48, 64)),
    ("vp9_64x32.webm", "WEBM", (64, 32)),
    ("h264_32x48.mov", "MOV", (32, 48)),
    ("rgb_float_64x48_zip.exr", "EXR", (64, 48)),
    ("rgb_float_64x48_none.exr", "EXR", (64, 48)),
])
def test_a_video_or_an_exr_image_is_an_output_with_its_format_and_size(name, fmt, size):
    """Real PyAV files, written as ComfyUI's SaveVideo writes them, and real OpenEXR files, as its
    SaveImageAdvanced writes them (fixtures/outputs/README.md): formats Pillow cannot open."""
    path = OUTPUTS / name
    data = path.read_bytes()
    from_memory, from_disk = inspect_image(path, name, data=data), inspect_image(path, name)
    assert from_memory == from_disk
    assert (from_memory.error, from_memory.format, from_memory.width, from_memory.height) == (None, fmt, *size)
    assert output_suffix(data) == path.suffix


@pytest.mark.parametrize("name, cut, error", [
    ("h264_64x48.mp4", -10, "is not a whole video: its MP4 container is cut short: the 'moov' box at byte 799 needs "
                            "952 bytes, 942 are left"),
    ("h264_64x48.mp4", 40, "is not a whole video: its MP4 container has no 'moov' box (the file was not finished)"),
    ("vp9_64x32.webm", -10, "is not a whole video: its WEBM container is cut short: the Segment at byte 36 needs "
                            "582 bytes, 572 are left"),
    ("h264_48x64.mkv", 12, "is not a whole video: its Matroska container is cut short: the EBML header at byte 0 "
                           "needs 40 bytes, 12 are left"),
    ("aac_only.mp4", None, "is not a whole video: its MP4 container has no video track"),
    ("rgb_float_64x48_zip.exr", -10, "is not a whole image: its EXR file is cut short: the chunk at byte 646 needs "
                                     "140 bytes, 130 are left"),
    ("rgb_float_64x48_none.exr", 400, "is not a whole image: its EXR file is cut short in the offset table of 48 chunks"),
    ("rgb_float_64x48_zip.exr", 100, "is not a whole image: its EXR header is cut short"),
])
def test_a_video_or_exr_cut_short_or_without_pictures_is_no_output(tmp_path, name, cut, error):
    data = (OUTPUTS / name).read_bytes()[:cut]
    (tmp_path / name).write_bytes(data)
    assert inspect_image(tmp_path / name, name, data=data).error == inspect_image(tmp_path / name, name).error == error


def test_a_file_that_is_neither_still_says_it_is_no_image(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\0\0\0\x18notaboxatall" * 4)
    assert inspect_image(tmp_path / "x.bin", "x.bin").error.startswith("does not decode as an image: cannot identify image file")
    assert output_suffix(b"\x89PNG\r\n") == ".png" and output_suffix(b"GIF89a") == ".gif" and output_suffix(b"??") == ".bin"


def test_what_an_endpoint_sends_cannot_keep_the_check_busy_or_fill_memory(tmp_path):
    """A file of 200,000 empty boxes is walked no further than 100,000; an EXR header claiming two billion
    lines and a Matroska header claiming gigabytes are refused before anything of that size is read."""
    import struct

    boxes = struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0" + struct.pack(">I4s", 8, b"free") * 200_000
    exr = (OUTPUTS / "rgb_float_64x48_zip.exr").read_bytes()
    at = exr.index(b"dataWindow\0box2i\0") + len(b"dataWindow\0box2i\0") + 4
    huge_exr = exr[:at] + struct.pack("<4i", 0, 0, 63, 2_000_000_000) + exr[at + 16:]
    huge_ebml = b"\x1a\x45\xdf\xa3" + b"\x01" + (3 << 30).to_bytes(7, "big") + bytes(64)
    long_ebml = b"\x1a\x45\xdf\xa3" + b"\x01" + (10_240).to_bytes(7, "big") + bytes(10_240)
    errors = [inspect_image(tmp_path / "x", "x", data=data).error for data in (boxes, huge_exr, huge_ebml, long_ebml)]
    assert errors == [
        "is not a whole video: its MP4 container holds more than 100,000 top-level structures before its 'moov' box",
        "is not a whole image: its EXR file is cut short in the offset table of 125,000,001 chunks",
        "is not a whole video: its Matroska container is cut short: the EBML header at byte 0 needs 3,221,225,484 bytes, 76 are left",
        "is not a whole video: its Matroska EBML header is 10,240 bytes, not a header",
    ]
