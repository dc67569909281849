"""Long files (HowTo100M-style, minutes to hours) as fixed-length segments of a manifest.

Training draws a window from each manifest entry; a one-hour video as one entry would be seen as rarely as a
10-second clip. :func:`segment_entries` cuts every entry longer than ``seconds`` into consecutive segments of
``seconds`` (``start`` / ``end`` in the manifest), so each segment is drawn on its own and the audio of a segment
comes from the same span as its video (the decoder honours the bounds for both). A last piece shorter than
``min_seconds`` is dropped. :func:`media_files` lists the media files of a folder as entries, for collections that
come without metadata.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from mjepa.data.manifests.importers import ImportResult
from mjepa.data.manifests.manifest import ManifestEntry
from mjepa.data.media.decode import MediaError, probe_media

MEDIA_PATTERNS = ("*.mp4", "*.mkv", "*.webm", "*.avi", "*.mov")


def media_files(root: str | os.PathLike, patterns: Sequence[str] = MEDIA_PATTERNS) -> ImportResult:
    """Every file under ``root`` (recursively) matching one of ``patterns``, as unlabelled entries, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: media folder does not exist")
    found = sorted({p for pattern in patterns for p in root.rglob(pattern) if p.is_file()})
    return ImportResult(tuple(ManifestEntry(str(p)) for p in found), ())


def file_duration(entry: ManifestEntry) -> float | None:
    """The declared duration of the entry's media (video, else audio), None when it cannot be read."""
    try:
        info = probe_media(entry.path)
    except MediaError:
        return None
    return info.video_duration if info.has_video else info.audio_duration


def segment_entries(
    entries: Sequence[ManifestEntry],
    seconds: float,
    min_seconds: float | None = None,
    duration_of: Callable[[ManifestEntry], float | None] = file_duration,
) -> tuple[list[ManifestEntry], int]:
    """Each entry longer than ``seconds`` cut into consecutive ``seconds``-long segments (a last piece shorter
    than ``min_seconds``, default ``seconds / 2``, is dropped; an entry shorter than ``seconds`` stays whole).
    Returns the entries and how many files' durations could not be read (those stay whole, for ``mjepa data
    validate`` to judge)."""
    if not seconds > 0:
        raise ValueError(f"--segment-seconds must be > 0, got {seconds}")
    floor = seconds / 2 if min_seconds is None else min_seconds
    out, unknown = [], 0
    for entry in entries:
        start = entry.start or 0.0
        end = entry.end
        if end is None:
            duration = duration_of(entry)
            if duration is None:
                unknown += 1
                out.append(entry)
                continue
            end = duration
        length = end - start
        if length <= seconds:
            out.append(entry)
            continue
        for k in range(math.ceil(length / seconds)):
            piece_start = start + k * seconds
            piece_end = min(end, piece_start + seconds)
            if piece_end - piece_start >= floor or k == 0:
                out.append(replace(entry, start=round(piece_start, 3), end=round(piece_end, 3)))
    return out, unknown
