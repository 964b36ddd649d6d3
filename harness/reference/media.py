"""Videos and sounds the reference endpoint saves: real containers holding a header and no frames.

The reference computes no pixels or samples (see ``nodes``), so its SaveVideo and SaveWEBM write what a
check can read of a video, its container and frame size: MP4 (``ftyp``, then ``moov`` with the track's
``tkhd`` and ``hdlr vide``) or Matroska (EBML header, then a Segment whose Tracks hold the video track's
pixel size); ``harness.providers.videos`` reads these as it reads PyAV's. SaveAudio writes a FLAC stream
of no samples (its STREAMINFO block only).
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["write_flac", "write_video"]

_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
"""The identity transform every ``mvhd`` and ``tkhd`` carries."""


def write_video(path: Path, container: str, width: int, height: int) -> None:
    """Write ``container`` (``mp4``, ``mkv`` or ``webm``) at ``path``, its video track ``width`` × ``height``."""
    path.write_bytes(_mp4(width, height) if container == "mp4" else _matroska(container, width, height))


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _mp4(width: int, height: int) -> bytes:
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    # version 0, flags, times 0, timescale 1000, duration 0, rate 1.0, volume 1.0, reserved, matrix, predefined, next track 2
    mvhd = _box(b"mvhd", struct.pack(">IIIII", 0, 0, 0, 1000, 0), struct.pack(">IH", 0x10000, 0x100), bytes(10), _MATRIX,
                bytes(24), struct.pack(">I", 2))
    # flags 3 (enabled, in movie), times 0, track 1, reserved, duration 0, reserved, layer, group, volume 0, reserved, matrix, size
    tkhd = _box(b"tkhd", struct.pack(">IIIIII", 3, 0, 0, 1, 0, 0), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0), _MATRIX,
                struct.pack(">II", width << 16, height << 16))
    mdhd = _box(b"mdhd", struct.pack(">IIIII", 0, 0, 0, 1000, 0), struct.pack(">HH", 0x55C4, 0))  # language "und"
    hdlr = _box(b"hdlr", struct.pack(">II", 0, 0), b"vide", bytes(12), b"VideoHandler\0")
    return ftyp + _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr)))


def _element(element_id: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + (len(body) | 1 << 56).to_bytes(8, "big") + body


def _uint(element_id: int, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _matroska(container: str, width: int, height: int) -> bytes:
    doc_type = b"webm" if container == "webm" else b"matroska"
    header = _element(0x1A45DFA3, _uint(0x4286, 1), _uint(0x42F7, 1), _uint(0x42F2, 4), _uint(0x42F3, 8),
                      _element(0x4282, doc_type), _uint(0x4287, 4), _uint(0x4285, 2))
    codec = b"V_VP9" if container == "webm" else b"V_MPEG4/ISO/AVC"
    track = _element(0xAE, _uint(0xD7, 1), _uint(0x73C5, 1), _uint(0x83, 1), _element(0x86, codec),
                     _element(0xE0, _uint(0xB0, width), _uint(0xBA, height)))
    return header + _element(0x18538067, _element(0x1654AE6B, track))


def write_flac(path: Path, sample_rate: int = 44100, channels: int = 1) -> None:
    """A FLAC stream of no samples at ``path``: ``fLaC`` and its one (last) metadata block, STREAMINFO."""
    # block sizes 4096, frame sizes unknown (0), then 20 bits rate, 3 bits channels - 1, 5 bits depth - 1
    # (16 bits), 36 bits samples (0); the MD5 of no audio is left zero, "not computed".
    packed = (sample_rate << 44) | ((channels - 1) << 41) | (15 << 36)
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + packed.to_bytes(8, "big") + bytes(16)
    path.write_bytes(b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info)
