"""Cheap structural checks that tell a truncated media file from a merely unreadable one.

Decoders report a cut file in many ways: an MP4 whose ``moov`` box was never written fails to open at all, one with
``moov`` at the front opens and then simply stops early, a cut WebM stops without an error. The container headers
say how large the file was meant to be, so comparing the sizes they declare with the size on disk names the
problem directly. Only the top-level structure is read (a few header bytes per box or element), never the media.

Supported: ISO-BMFF (MP4, MOV, M4A), Matroska / WebM (the Segment size), RIFF (WAV, AVI). Anything else returns
``None`` ("no structural evidence of truncation"), which is not a promise that the file is complete.
"""

from __future__ import annotations

import os
import struct

_MP4_TOP_LEVEL = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"moof"}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_MATROSKA_SEGMENT_ID = b"\x18\x53\x80\x67"
# A box walk never needs more steps than this on real files; the cap bounds the work on garbage input.
_MAX_BOXES = 100_000


def find_truncation(path: str | os.PathLike) -> str | None:
    """A one-line description of how the file is shorter than its own headers declare, or ``None``."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
        if len(head) >= 8 and head[4:8] in _MP4_TOP_LEVEL:
            return _check_mp4_boxes(handle, size)
        if head[:4] == b"RIFF" and len(head) >= 12:
            return _check_riff(head, size)
        if head[:4] == _EBML_MAGIC:
            return _check_matroska(handle, size)
    return None


def _check_mp4_boxes(handle, size: int) -> str | None:
    offset = 0
    for _ in range(_MAX_BOXES):
        if offset >= size:
            return None
        handle.seek(offset)
        header = handle.read(8)
        if len(header) < 8:
            return f"mp4 box header at byte {offset} is cut off ({len(header)} of 8 bytes present)"
        box_size, box_type = struct.unpack(">I4s", header)
        header_size = 8
        if box_size == 1:  # the real size follows as a 64-bit integer
            large = handle.read(8)
            if len(large) < 8:
                return f"mp4 box {box_type!r} at byte {offset} has a cut-off 64-bit size"
            box_size = struct.unpack(">Q", large)[0]
            header_size = 16
        elif box_size == 0:  # "extends to the end of the file": complete by definition
            return None
        if box_size < header_size:
            return None  # malformed rather than truncated; the decoder will name it
        if offset + box_size > size:
            name = box_type.decode("latin-1")
            return f"mp4 box '{name}' at byte {offset} declares {box_size} bytes but only {size - offset} remain"
        offset += box_size
    return None


def _check_riff(head: bytes, size: int) -> str | None:
    declared = struct.unpack("<I", head[4:8])[0]
    # Streaming writers leave 0 or 0xFFFFFFFF when the final size was unknown; that is not evidence of truncation.
    if declared in (0, 0xFFFFFFFF):
        return None
    if 8 + declared > size:
        form = head[8:12].decode("latin-1").strip()
        return f"RIFF/{form} header declares {8 + declared} bytes but the file has {size}"
    return None


def _read_ebml_vint(handle) -> tuple[int, int, bool] | None:
    """Read one EBML variable-length integer: (value, length in bytes, all value bits set = unknown size)."""
    first = handle.read(1)
    if not first:
        return None
    byte = first[0]
    length = 1
    mask = 0x80
    while length <= 8 and not byte & mask:
        mask >>= 1
        length += 1
    if length > 8:
        return None
    rest = handle.read(length - 1)
    if len(rest) < length - 1:
        return None
    value = byte & (mask - 1)
    for extra in rest:
        value = (value << 8) | extra
    unknown = value == (1 << (7 * length)) - 1
    return value, length, unknown


def _check_matroska(handle, size: int) -> str | None:
    handle.seek(4)
    header = _read_ebml_vint(handle)
    if header is None:
        return "matroska EBML header is cut off"
    header_size, _, _ = header
    segment_start = handle.tell() + header_size
    if segment_start + 4 > size:
        return f"matroska file ends at byte {size} before its Segment element"
    handle.seek(segment_start)
    if handle.read(4) != _MATROSKA_SEGMENT_ID:
        return None  # unusual layout (e.g. a Void element first); not evidence of truncation
    segment = _read_ebml_vint(handle)
    if segment is None:
        return "matroska Segment size is cut off"
    segment_size, _, unknown = segment
    if unknown:  # live-written files leave the size open
        return None
    declared_end = handle.tell() + segment_size
    if declared_end > size:
        return f"matroska Segment declares {declared_end} bytes but the file has {size}"
    return None
