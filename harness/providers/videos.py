"""Videos among an endpoint's outputs: proven whole and measured from their container, never decoded.

ComfyUI lists a saved video among a node's ``images`` (SaveVideo, SaveWEBM: ``"animated": [true]`` beside
it), and RunPod's worker and Vast's wrapper hand it back with the images. Pillow cannot open MP4 or
WebM, so without this a video that an endpoint made was reported as an image that does not decode.

Two container families cover what ComfyUI writes (PyAV: MP4, MKV and WebM, MOV when a loaded video's
container is kept): ISO BMFF (MP4, MOV; the frame size in the video track's ``tkhd``) and Matroska (MKV,
WebM; ``PixelWidth``/``PixelHeight`` of the video track). Every top-level structure is walked to the
end of the file (up to _MAX_WALKED), the way Pillow's ``verify`` reads an image through, so a truncated
download is caught.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["BrokenVideo", "Video", "read_video", "video_suffix"]

_BMFF_FIRST = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}
"""Box types an ISO BMFF file starts with: ``ftyp``, or in an old QuickTime file one of the others."""
_EBML = b"\x1a\x45\xdf\xa3"
_SEGMENT, _TRACKS, _TRACK_ENTRY, _TRACK_TYPE, _VIDEO = 0x18538067, 0x1654AE6B, 0xAE, 0x83, 0xE0
_PIXEL_WIDTH, _PIXEL_HEIGHT, _DOC_TYPE = 0xB0, 0xBA, 0x4282
_NAMES = {0x1A45DFA3: "EBML header", _SEGMENT: "Segment", _TRACKS: "Tracks", 0x1F43B675: "Cluster"}
_UNKNOWN = -1
"""A Matroska element of unknown size (a live stream's Segment or Cluster): it runs to its parent's end."""
_MAX_HEADER = 16 << 20
"""The most of a ``moov`` box or Tracks element read into memory (their sample tables and codec data: an
hour of 30 fps video has some 2 MB of them)."""
_MAX_WALKED = 100_000
"""Top-level structures walked at most (an hour of one-second fragments is 7,200 boxes): a file of
millions of tiny boxes from an endpoint must not keep the harness busy."""
_MAX_EBML_HEADER = 4096
"""The most an EBML header (a few version fields and the DocType) may claim."""


class BrokenVideo(ValueError):
    """The file is an MP4/MOV/MKV/WebM container, but not a whole one."""


@dataclass(frozen=True)
class Video:
    format: str
    """``MP4``, ``MOV``, ``MKV`` or ``WEBM``."""
    width: int
    height: int


def read_video(fh: BinaryIO, size: int) -> Video | None:
    """The video a file (``fh`` at its start, ``size`` bytes) holds, or None when it is not an ISO BMFF or
    Matroska container at all.

    Raises BrokenVideo when it is one but is cut short, has no video track or no frame size."""
    head = fh.read(12)
    if head[:4] == _EBML:
        return _matroska(fh, size)
    if len(head) >= 8 and head[4:8] in _BMFF_FIRST:
        return _bmff(fh, size, head)
    return None


def video_suffix(data: bytes) -> str | None:
    """A file name's suffix for a video's bytes (``.mp4``, ``.mov``, ``.webm``, ``.mkv``), None if no video."""
    if data[4:8] in _BMFF_FIRST:
        return ".mov" if data[8:12] == b"qt  " else ".mp4"
    if data[:4] == _EBML:
        return ".webm" if b"webm" in data[:64] else ".mkv"
    return None


def _walk(fh: BinaryIO, offset: int, limit: int, header_at, wanted, what: str, fmt: str) -> bytes | None:
    """The payload of the first ``wanted`` structure from ``offset`` to ``limit``, every one on the way
    checked to fit (``header_at(offset, limit)`` reads one at ``fh``'s position: kind, payload start, end);
    past _MAX_WALKED structures the rest is left unwalked."""
    found, walked = None, 0
    while offset < limit:
        if walked == _MAX_WALKED:
            if found is not None:
                break
            raise BrokenVideo(f"its {fmt} container holds more than {_MAX_WALKED:,} top-level structures before its {what}")
        walked += 1
        fh.seek(offset)
        kind, start, end = header_at(offset, limit)
        if kind == wanted and found is None:
            if end - start > _MAX_HEADER:
                raise BrokenVideo(f"its {fmt} {what} is {end - start:,} bytes, more than the {_MAX_HEADER >> 20} MB read")
            fh.seek(start)
            found = fh.read(end - start)
        offset = end
    return found


# ISO BMFF (ISO/IEC 14496-12): boxes of a 32-bit size (1: a 64-bit size follows; 0: to the end) and a type.

def _bmff(fh: BinaryIO, size: int, head: bytes) -> Video:
    fmt = "MOV" if head[4:8] == b"ftyp" and head[8:12] == b"qt  " else "MP4"
    moov = _walk(fh, 0, size, lambda offset, limit: _box_at(fh.read(16), offset, limit, fmt), b"moov", "'moov' box", fmt)
    if moov is None:
        raise BrokenVideo(f"its {fmt} container has no 'moov' box (the file was not finished)")
    for trak in _children(moov, b"trak", fmt):
        mdia = next(_children(trak, b"mdia", fmt), b"")
        hdlr = next(_children(mdia, b"hdlr", fmt), b"")
        if hdlr[8:12] != b"vide":
            continue
        tkhd = next(_children(trak, b"tkhd", fmt), b"")
        if len(tkhd) < 84:
            raise BrokenVideo(f"its {fmt} video track has no track header ('tkhd') with a frame size")
        width, height = struct.unpack(">II", tkhd[-8:])  # 16.16 fixed point, the last fields of a tkhd
        return _sized(fmt, width >> 16, height >> 16)
    raise BrokenVideo(f"its {fmt} container has no video track")


def _box_at(header: bytes, offset: int, limit: int, fmt: str) -> tuple[bytes, int, int]:
    """(type, payload start, end) of the box whose header is ``header``, at ``offset`` of a span ending at ``limit``."""
    if len(header) < 8:
        raise BrokenVideo(f"its {fmt} container is cut short at byte {offset:,} of {limit:,}")
    length, kind = struct.unpack(">I4s", header[:8])
    start = offset + 8
    if length == 1:
        if len(header) < 16:
            raise BrokenVideo(f"its {fmt} container is cut short at byte {offset:,} of {limit:,}")
        length, start = struct.unpack(">Q", header[8:16])[0], offset + 16
    elif length == 0:
        length = limit - offset
    end = offset + length
    if end < start or end > limit:
        raise BrokenVideo(f"its {fmt} container is cut short: the {kind.decode('latin-1')!r} box at byte {offset:,} "
                          f"needs {length:,} bytes, {limit - offset:,} are left")
    return kind, start, end


def _children(payload: bytes, wanted: bytes, fmt: str):
    """The payloads of the boxes of type ``wanted`` directly inside ``payload``."""
    offset = 0
    while offset + 8 <= len(payload):
        kind, start, end = _box_at(payload[offset:offset + 16], offset, len(payload), fmt)
        if kind == wanted:
            yield payload[start:end]
        offset = end


# Matroska (RFC 9559): elements of a variable-length ID and a variable-length size.

def _matroska(fh: BinaryIO, size: int) -> Video:
    fh.seek(0)
    _, start, end = _element(fh, 0, size, "Matroska")
    if end - start > _MAX_EBML_HEADER:
        raise BrokenVideo(f"its Matroska EBML header is {end - start:,} bytes, not a header")
    fh.seek(start)
    doc_type = next((v for i, v in _elements(fh.read(end - start), "Matroska") if i == _DOC_TYPE), b"")
    fmt = "WEBM" if doc_type.rstrip(b"\0") == b"webm" else "MKV"
    fh.seek(end)
    segment_id, start, segment_end = _element(fh, end, size, fmt)
    if segment_id != _SEGMENT:
        raise BrokenVideo(f"its {fmt} container holds no Segment after its EBML header")
    tracks = _walk(fh, start, segment_end, lambda offset, limit: _element(fh, offset, limit, fmt), _TRACKS, "Tracks element", fmt)
    if tracks is None:
        raise BrokenVideo(f"its {fmt} container has no Tracks element")
    for element, entry in _elements(tracks, fmt):
        fields = dict(_elements(entry, fmt)) if element == _TRACK_ENTRY else {}
        if int.from_bytes(fields.get(_TRACK_TYPE, b""), "big") == 1:  # 1: a video track
            video = dict(_elements(fields.get(_VIDEO, b""), fmt))
            width, height = (int.from_bytes(video.get(key, b""), "big") for key in (_PIXEL_WIDTH, _PIXEL_HEIGHT))
            return _sized(fmt, width, height)
    raise BrokenVideo(f"its {fmt} container has no video track")


def _element(fh: BinaryIO, offset: int, limit: int, fmt: str) -> tuple[int, int, int]:
    """(ID, data start, end) of the element at ``offset`` (``fh`` positioned there), inside a span ending at ``limit``."""
    header = fh.read(12)
    element, id_length = _vint(header, 0, keep_marker=True)
    length, size_length = _vint(header, id_length) if id_length else (0, 0)
    if not id_length or not size_length:
        raise BrokenVideo(f"its {fmt} container is cut short or garbled at byte {offset:,} of {limit:,}")
    start = offset + id_length + size_length
    end = limit if length == _UNKNOWN else start + length
    if end > limit:
        name = _NAMES.get(element, f"element {element:#x}")
        raise BrokenVideo(f"its {fmt} container is cut short: the {name} at byte {offset:,} needs "
                          f"{end - offset:,} bytes, {limit - offset:,} are left")
    return element, start, end


def _elements(data: bytes, fmt: str):
    """(ID, data) of each element directly inside ``data``."""
    offset = 0
    while offset < len(data):
        element, id_length = _vint(data, offset, keep_marker=True)
        length, size_length = _vint(data, offset + id_length) if id_length else (0, 0)
        if not id_length or not size_length:
            raise BrokenVideo(f"its {fmt} container is garbled inside an element")
        start = offset + id_length + size_length
        end = len(data) if length == _UNKNOWN else start + length
        if end > len(data):
            raise BrokenVideo(f"its {fmt} container is cut short inside an element")
        yield element, data[start:end]
        offset = end


def _vint(data: bytes, offset: int, keep_marker: bool = False) -> tuple[int, int]:
    """(value, length) of the variable-length integer at ``offset``; length 0 when none can be read there.
    IDs keep their length marker (``keep_marker``); a size of all ones is _UNKNOWN."""
    if offset >= len(data) or not data[offset]:
        return 0, 0
    length = 9 - data[offset].bit_length()
    if offset + length > len(data):
        return 0, 0
    value = int.from_bytes(data[offset:offset + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (_UNKNOWN if value == (1 << (7 * length)) - 1 else value), length


def _sized(fmt: str, width: int, height: int) -> Video:
    if not width or not height:
        raise BrokenVideo(f"its {fmt} video track gives no frame size")
    return Video(fmt, width, height)
