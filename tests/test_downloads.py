"""Downloads are written as they arrive, and a small one is inspected from the bytes already in hand."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from harness.providers.base import inspect_image, save_stream
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
