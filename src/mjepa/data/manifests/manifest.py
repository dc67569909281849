"""The one manifest schema every mjepa dataset is read through.

A manifest is a JSON-lines file, one media item per line:

    {"path": "clips/abc.mp4", "audio_path": null, "start": 0.0, "end": 10.0,
     "labels": ["Speech", "Dog"], "has_audio": true}

- ``path``: the media file (video with or without audio, or an audio-only file). Relative paths are resolved
  against the manifest's folder, so a dataset folder can be moved as a whole.
- ``audio_path``: optional separate audio file for the same item (for datasets that ship audio apart).
- ``start`` / ``end``: optional segment bounds in seconds inside the file; ``null`` means the whole file.
- ``labels``: list of label strings (may be empty for unlabelled pretraining data).
- ``has_audio``: ``true`` / ``false`` when known, ``null`` when not yet checked.
- ``meta``: optional object of descriptive fields, each a string or a number (where an item comes from, its licence,
  the label fields a split is made on: ``{"package": "hedgewars-data", "voice": "Pirate"}``). Written only when set.

Every line is checked on read; a bad line raises ``ManifestError`` naming the file, line and key.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mjepa.data.media.members import is_url, read_text

_KEYS = ("path", "audio_path", "start", "end", "labels", "has_audio", "meta")

MetaValue = str | int | float


class ManifestError(ValueError):
    """A manifest line that does not follow the schema."""


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    audio_path: str | None = None
    start: float | None = None
    end: float | None = None
    labels: tuple[str, ...] = field(default_factory=tuple)
    has_audio: bool | None = None
    meta: tuple[tuple[str, MetaValue], ...] = ()  # descriptive fields, in order: (name, value) pairs

    def meta_value(self, name: str) -> MetaValue | None:
        """The ``meta`` field ``name`` (None when the entry has none of that name)."""
        return dict(self.meta).get(name)

    def with_paths(self, path: str, audio_path: str | None) -> ManifestEntry:
        return replace(self, path=path, audio_path=audio_path)

    def resolved(self, root: str | os.PathLike) -> ManifestEntry:
        """The same entry with relative paths made absolute against ``root``."""

        def fix(p: str | None) -> str | None:
            if p is None or os.path.isabs(p):
                return p
            return os.path.normpath(os.path.join(root, p))

        return self.with_paths(fix(self.path), fix(self.audio_path))

    def to_json(self) -> str:
        record = {
            "path": self.path,
            "audio_path": self.audio_path,
            "start": self.start,
            "end": self.end,
            "labels": list(self.labels),
            "has_audio": self.has_audio,
        }
        if self.meta:
            record["meta"] = dict(self.meta)
        return json.dumps(record, ensure_ascii=False)


class EntryTable(Sequence[ManifestEntry]):
    """Entries kept as one buffer of JSON lines plus their offsets, decoded on access.

    A list of entries is a Python object per entry (about 570 bytes each with shard paths: 1 GB for AudioSet-2M). A
    DataLoader worker forked from the process shares those pages only until it touches an entry's reference count,
    so over an epoch every worker ends up with its own copy: 16 workers, 16 GB per rank. Two NumPy buffers have no
    reference counts to touch, and take about the manifest's size on disk."""

    def __init__(self, entries: Iterable[ManifestEntry]) -> None:
        lines = [entry.to_json().encode("utf-8") for entry in entries]
        self._offsets = np.zeros(len(lines) + 1, dtype=np.int64)
        np.cumsum([len(line) for line in lines], out=self._offsets[1:])
        self._data = np.frombuffer(b"".join(lines), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> ManifestEntry:
        if isinstance(index, slice):
            raise TypeError("EntryTable takes one index at a time")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"entry {index} is outside the table of {len(self)}")
        record = json.loads(self._data[self._offsets[index] : self._offsets[index + 1]].tobytes())
        return ManifestEntry(
            record["path"],
            record["audio_path"],
            record["start"],
            record["end"],
            tuple(record["labels"]),
            record["has_audio"],
            tuple(record.get("meta", {}).items()),
        )

    @property
    def nbytes(self) -> int:
        return self._data.nbytes + self._offsets.nbytes


# The longest manifest line read (a real entry is well under 1 KiB): a longer one is refused, never buffered whole.
MAX_LINE_CHARS = 1 << 20


def _file_name(value: object, key: str, where: str) -> str:
    """``value`` as a path the operating system can take (a lone surrogate from a JSON escape cannot be one)."""
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where}: key {key!r} must be a non-empty string, got {_short(value)}")
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        raise ManifestError(f"{where}: key {key!r} is not a valid file name ({value!a})") from None
    return value


def _short(value: object) -> str:
    text = ascii(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _parse_line(obj: object, where: str) -> ManifestEntry:
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_KEYS))
    if unknown:
        raise ManifestError(f"{where}: unknown key {_short(unknown[0])}; expected keys {', '.join(_KEYS)}")
    path = _file_name(obj.get("path"), "path", where)
    audio_path = obj.get("audio_path")
    if audio_path is not None:
        audio_path = _file_name(audio_path, "audio_path", where)
    bounds = {}
    for key in ("start", "end"):
        value = obj.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf")
        ):
            raise ManifestError(
                f"{where}: key {key!r} must be a non-negative finite number or null, got {_short(value)}"
            )
        bounds[key] = None if value is None else float(value)
    if bounds["start"] is not None and bounds["end"] is not None and bounds["end"] <= bounds["start"]:
        raise ManifestError(f"{where}: 'end' ({bounds['end']}) must be greater than 'start' ({bounds['start']})")
    labels = obj.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ManifestError(f"{where}: key 'labels' must be a list of strings, got {_short(labels)}")
    has_audio = obj.get("has_audio")
    if has_audio is not None and not isinstance(has_audio, bool):
        raise ManifestError(f"{where}: key 'has_audio' must be true, false or null, got {_short(has_audio)}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict) or not all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in meta.values()
    ):
        raise ManifestError(f"{where}: key 'meta' must be an object of strings and numbers, got {_short(meta)}")
    return ManifestEntry(
        path, audio_path, bounds["start"], bounds["end"], tuple(labels), has_audio, tuple(meta.items())
    )


# The manifest inside a shard folder written by ``mjepa data shard``.
SHARD_FOLDER_MANIFEST = "manifest.jsonl"


def _parse_lines(lines: Iterable[str], name: str) -> Iterator[ManifestEntry]:
    found = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{where}: not valid JSON ({err.msg})") from None
        except RecursionError:
            raise ManifestError(f"{where}: not a manifest entry (JSON nested too deeply)") from None
        except ValueError as err:  # e.g. an integer of thousands of digits
            raise ManifestError(f"{where}: not a manifest entry ({str(err).split(';')[0]})") from None
        found = True
        yield _parse_line(obj, where)
    if not found:
        raise ManifestError(f"{name}: the manifest has no entries (expected one JSON object per line)")


def _entries(path: Path) -> Iterator[ManifestEntry]:
    """The manifest's entries as written (paths not resolved), checked line by line; its errors name the file."""
    if path.is_dir() and (path / SHARD_FOLDER_MANIFEST).is_file():
        path = path / SHARD_FOLDER_MANIFEST
    if not path.exists():
        raise ManifestError(f"{path}: manifest file does not exist")
    if path.is_dir():
        raise ManifestError(
            f"{path}: is a folder without a {SHARD_FOLDER_MANIFEST}; expected a JSON-lines manifest "
            "file or a shard folder written by mjepa data shard"
        )
    if not stat.S_ISREG(path.stat().st_mode):
        raise ManifestError(f"{path}: not a regular file (a FIFO, device or socket cannot be a manifest)")
    try:
        # utf-8-sig: a byte-order mark, as some editors write one, is read past.
        with open(path, encoding="utf-8-sig") as handle:
            yield from _parse_lines(_bounded_lines(handle, str(path)), str(path))
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not a text manifest (expected UTF-8 JSON lines, one object per line)") from None


def _bounded_lines(handle, name: str) -> Iterator[str]:
    """The file's lines, each at most ``MAX_LINE_CHARS`` long (a longer one is an error, never read whole)."""
    number = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise ManifestError(f"{name}:{number}: line longer than {MAX_LINE_CHARS} characters; not a manifest")
        yield line


def _url_entries(url: str) -> tuple[str, list[ManifestEntry]]:
    """The manifest at a URL (a shard folder's URL means its manifest.jsonl) and the URL it was read from."""
    if not url.endswith(".jsonl"):
        url = url.rstrip("/") + "/" + SHARD_FOLDER_MANIFEST
    try:
        text = read_text(url)
    except FileNotFoundError:
        raise ManifestError(f"{url}: manifest does not exist") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{url}: not a text manifest (expected UTF-8 JSON lines, one object per line)") from None
    return url, list(_parse_lines(text.removeprefix("\ufeff").splitlines(), url))


def _under_url(entry: ManifestEntry, base: str) -> ManifestEntry:
    def fix(p: str | None) -> str | None:
        return p if p is None or is_url(p) or p.startswith("/") else f"{base}/{p}"

    return entry.with_paths(fix(entry.path), fix(entry.audio_path))


def read_manifest(path: str | os.PathLike, resolve_paths: bool = True) -> list[ManifestEntry]:
    """Read and check a JSON-lines manifest; relative media paths are resolved against its folder.

    ``path`` may also be a shard folder (``mjepa data shard``'s output, read through its ``manifest.jsonl``) or the
    URL of one, or of a manifest (``file://``, ``s3://``, ``gs://``: read through fsspec)."""
    if is_url(str(path)):
        url, entries = _url_entries(str(path))
        base = url.rsplit("/", 1)[0]
        return [_under_url(entry, base) if resolve_paths else entry for entry in entries]
    path = Path(path)
    root = path if path.is_dir() else path.parent
    return [entry.resolved(root) if resolve_paths else entry for entry in _entries(path)]


def check_manifest_opens(path: str | os.PathLike) -> None:
    """Fail now, with :func:`read_manifest`'s message, if ``path`` is missing, empty, not text or its first entry is
    malformed; cheap (reads up to the first entry), for checks before a run writes anything."""
    if is_url(str(path)):
        _url_entries(str(path))
        return
    next(_entries(Path(path)))


def write_manifest(
    path: str | os.PathLike, entries: list[ManifestEntry], paths_from: str | os.PathLike | None = None
) -> None:
    """Write entries as JSON lines (atomically: a temporary file, then rename).

    Relative media paths in ``entries`` are taken relative to ``paths_from`` (default: the current folder, as
    :func:`read_manifest` returns them) and written relative to the manifest's own folder, which is how they are
    read back: a manifest written anywhere points at the same files. Absolute paths stay absolute."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = os.path.abspath(paths_from if paths_from is not None else os.getcwd())
    folder = os.path.abspath(path.parent)

    def rebase(p: str | None) -> str | None:
        if p is None or os.path.isabs(p):
            return p
        return os.path.relpath(os.path.join(base, p), folder)

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for entry in entries:
            moved = entry.with_paths(rebase(entry.path), rebase(entry.audio_path))
            handle.write(moved.to_json() + "\n")
    os.replace(tmp, path)
