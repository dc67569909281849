"""Importers: the metadata formats datasets ship with -> manifest entries.

Every importer returns an :class:`ImportResult`: the entries whose media file exists, and the ids of the items the
metadata names but whose file is absent. Missing files are normal (most AudioSet / VGGSound copies miss 5-15 % of
clips), so they are counted and reported, never an error. Malformed metadata *is* an error: ``ManifestError``
naming the file, the line (or item index) and the column.

Where media file names are not fixed by the dataset (AudioSet, VGGSound, Kinetics, SSv2 copies differ), the caller
gives ``path_patterns``: Python format strings relative to ``media_root``, tried in order, the first existing file
wins. Fields: ``{ytid}`` / ``{id}``, ``{start}`` / ``{end}`` (float seconds; ``{start:06.0f}`` writes 000030),
``{label}`` and ``{split}`` where the format has them. Example: ``"{ytid}_{start:.0f}.mp4"``.

Labels become manifest label strings: AudioSet MIDs are mapped to display names with ``class_labels_indices.csv``;
FSD50K, ESC-50, VGGSound and Kinetics use their class names; SSv2 uses the label-file key of the template.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mjepa.data.manifests.manifest import ManifestEntry, ManifestError

ESC50_FOLDS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class ImportResult:
    """Entries whose media exists, and the ids the metadata names whose media does not."""

    entries: tuple[ManifestEntry, ...]
    missing: tuple[str, ...]

    @property
    def num_referenced(self) -> int:
        return len(self.entries) + len(self.missing)

    def summary(self) -> str:
        share = 100.0 * len(self.missing) / self.num_referenced if self.num_referenced else 0.0
        return f"{len(self.entries)} of {self.num_referenced} items found; {len(self.missing)} missing ({share:.1f} %)"


class _Collector:
    """Accumulates found entries and missing ids while an importer walks its metadata."""

    def __init__(self):
        self.entries: list[ManifestEntry] = []
        self.missing: list[str] = []

    def add(self, item_id: str, path: str | None, entry_fields: dict) -> None:
        if path is None:
            self.missing.append(item_id)
        else:
            self.entries.append(ManifestEntry(path=path, **entry_fields))

    def result(self) -> ImportResult:
        return ImportResult(tuple(self.entries), tuple(self.missing))


def _normalise_patterns(path_patterns: str | Sequence[str]) -> tuple[str, ...]:
    patterns = (path_patterns,) if isinstance(path_patterns, str) else tuple(path_patterns)
    if not patterns:
        raise ValueError("path_patterns: give at least one pattern")
    return patterns


def _find_media(media_root: str | os.PathLike, patterns: tuple[str, ...], values: dict) -> str | None:
    for pattern in patterns:
        try:
            relative = pattern.format(**values)
        except KeyError as err:
            raise ValueError(
                f"path pattern {pattern!r} uses unknown field {err.args[0]!r}; available: {', '.join(sorted(values))}"
            ) from None
        except ValueError as err:
            raise ValueError(f"path pattern {pattern!r} does not fit the values {values}: {err}") from None
        candidate = os.path.join(media_root, relative)
        if os.path.isfile(candidate):
            return candidate
    return None


def _parse_float(text: str, where: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(f"{where}: column {column!r} must be a number, got {text!r}") from None
    if value < 0:
        raise ManifestError(f"{where}: column {column!r} must be >= 0, got {text!r}")
    return value


def _parse_int(text: str, where: str, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ManifestError(f"{where}: column {column!r} must be an integer, got {text!r}") from None


def _open_text(path: str | os.PathLike):
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: metadata file does not exist")
    return open(path, encoding="utf-8", newline="")


def _read_csv_with_header(path: str | os.PathLike, required: Sequence[str]) -> list[tuple[int, dict]]:
    """Rows of a headed CSV as (line number, {column: value}); checks the header and the field count."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ManifestError(f"{path}:1: empty file; expected a header with columns {', '.join(required)}")
        header = [name.strip() for name in header]
        absent = [name for name in required if name not in header]
        if absent:
            raise ManifestError(f"{path}:1: header lacks column {absent[0]!r}; found {', '.join(header)}")
        rows = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ManifestError(
                    f"{path}:{reader.line_num}: expected {len(header)} fields ({', '.join(header)}), got {len(row)}"
                )
            rows.append((reader.line_num, {name: cell.strip() for name, cell in zip(header, row)}))
    return rows


# --- AudioSet ---------------------------------------------------------------------------------------------------


def read_audioset_class_labels(class_labels_csv: str | os.PathLike) -> list[tuple[str, str]]:
    """``class_labels_indices.csv`` (index,mid,display_name) -> [(mid, display_name)] ordered by index."""
    by_index: dict[int, tuple[str, str]] = {}
    for line, row in _read_csv_with_header(class_labels_csv, ("index", "mid", "display_name")):
        where = f"{class_labels_csv}:{line}"
        index = _parse_int(row["index"], where, "index")
        if index in by_index:
            raise ManifestError(f"{where}: column 'index' repeats index {index}")
        if not row["mid"] or not row["display_name"]:
            raise ManifestError(f"{where}: columns 'mid' and 'display_name' must not be empty")
        by_index[index] = (row["mid"], row["display_name"])
    expected = list(range(len(by_index)))
    if sorted(by_index) != expected:
        raise ManifestError(f"{class_labels_csv}: indices must be 0..{len(by_index) - 1} without gaps")
    return [by_index[index] for index in expected]


def _mid_names(class_labels_csv: str | os.PathLike) -> dict[str, str]:
    return dict(read_audioset_class_labels(class_labels_csv))


def _map_mids(mids_text: str, names: dict[str, str], where: str, column: str) -> tuple[str, ...]:
    labels = []
    for mid in (part.strip() for part in mids_text.split(",")):
        if not mid:
            continue
        if mid not in names:
            raise ManifestError(f"{where}: column {column!r} has MID {mid!r} that is not in the class label file")
        labels.append(names[mid])
    return tuple(labels)


def import_audioset_csv(
    segments_csv: str | os.PathLike,
    class_labels_csv: str | os.PathLike,
    media_root: str | os.PathLike,
    path_patterns: str | Sequence[str] = ("{ytid}_{start:.0f}.mp4",),
    segment_bounds_in_file: bool = False,
) -> ImportResult:
    """AudioSet segment CSV (``# YTID, start_seconds, end_seconds, positive_labels`` after ``#`` comment lines).

    ``segment_bounds_in_file``: the media files are the full videos, so the entries carry start/end; by default the
    files are already cut to the 10 s segment and the entries cover the whole file."""
    names = _mid_names(class_labels_csv)
    patterns = _normalise_patterns(path_patterns)
    collector = _Collector()
    with _open_text(segments_csv) as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        for row in reader:
            if not row or row[0].lstrip().startswith("#"):
                continue
            where = f"{segments_csv}:{reader.line_num}"
            if len(row) != 4:
                raise ManifestError(
                    f"{where}: expected 4 fields (YTID, start_seconds, end_seconds, positive_labels), got {len(row)}"
                )
            ytid = row[0].strip()
            if not ytid:
                raise ManifestError(f"{where}: column 'YTID' is empty")
            start = _parse_float(row[1], where, "start_seconds")
            end = _parse_float(row[2], where, "end_seconds")
            if end <= start:
                raise ManifestError(
                    f"{where}: column 'end_seconds' ({end}) must be greater than start_seconds ({start})"
                )
            labels = _map_mids(row[3], names, where, "positive_labels")
            path = _find_media(media_root, patterns, {"ytid": ytid, "start": start, "end": end})
            bounds = {"start": start, "end": end} if segment_bounds_in_file else {}
            collector.add(ytid, path, {"labels": labels, **bounds})
    return collector.result()


def import_ast_json(
    json_path: str | os.PathLike,
    class_labels_csv: str | os.PathLike,
    media_root: str | os.PathLike | None = None,
) -> ImportResult:
    """AST / AudioMAE data JSON: ``{"data": [{"wav": path, "labels": "mid1,mid2"}, ...]}``.

    Relative ``wav`` paths are resolved against ``media_root`` (default: the JSON file's folder)."""
    names = _mid_names(class_labels_csv)
    root = Path(json_path).parent if media_root is None else Path(media_root)
    with _open_text(json_path) as handle:
        try:
            document = json.load(handle)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{json_path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ManifestError(f"{json_path}: expected an object with a list under key 'data'")
    collector = _Collector()
    for index, item in enumerate(document["data"]):
        where = f"{json_path}: data[{index}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{where}: expected an object, got {type(item).__name__}")
        wav = item.get("wav")
        if not isinstance(wav, str) or not wav:
            raise ManifestError(f"{where}: key 'wav' must be a non-empty string, got {wav!r}")
        mids = item.get("labels", "")
        if not isinstance(mids, str):
            raise ManifestError(f"{where}: key 'labels' must be a comma-separated string of MIDs, got {mids!r}")
        labels = _map_mids(mids, names, where, "labels")
        path = wav if os.path.isabs(wav) else str(root / wav)
        collector.add(wav, path if os.path.isfile(path) else None, {"labels": labels})
    return collector.result()


# --- ESC-50 -----------------------------------------------------------------------------------------------------

_ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")


def import_esc50(
    meta_csv: str | os.PathLike, audio_root: str | os.PathLike, folds: Sequence[int] = ESC50_FOLDS
) -> ImportResult:
    """ESC-50 ``meta/esc50.csv`` rows of the given official folds; files under ``audio_root`` (the ``audio/``
    folder). Labels are the category names."""
    wanted = set(folds)
    bad = sorted(wanted - set(ESC50_FOLDS))
    if bad:
        raise ValueError(f"import_esc50: fold {bad[0]} is not an official ESC-50 fold (1-5)")
    collector = _Collector()
    for line, row in _read_csv_with_header(meta_csv, _ESC50_COLUMNS):
        where = f"{meta_csv}:{line}"
        fold = _parse_int(row["fold"], where, "fold")
        if fold not in ESC50_FOLDS:
            raise ManifestError(f"{where}: column 'fold' must be 1-5, got {row['fold']!r}")
        _parse_int(row["target"], where, "target")
        if not row["filename"] or not row["category"]:
            raise ManifestError(f"{where}: columns 'filename' and 'category' must not be empty")
        if fold not in wanted:
            continue
        path = os.path.join(audio_root, row["filename"])
        collector.add(row["filename"], path if os.path.isfile(path) else None, {"labels": (row["category"],)})
    return collector.result()


def esc50_fold_split(
    meta_csv: str | os.PathLike, audio_root: str | os.PathLike, test_fold: int
) -> tuple[ImportResult, ImportResult]:
    """(train, test) for one official cross-validation fold: test = that fold, train = the other four. The
    official folds keep all clips cut from one recording together, so no recording leaks across the split."""
    if test_fold not in ESC50_FOLDS:
        raise ValueError(f"esc50_fold_split: test_fold must be 1-5, got {test_fold}")
    train_folds = [fold for fold in ESC50_FOLDS if fold != test_fold]
    return import_esc50(meta_csv, audio_root, train_folds), import_esc50(meta_csv, audio_root, (test_fold,))


# --- FSD50K -----------------------------------------------------------------------------------------------------


def _fsd50k_rows(
    csv_path: str | os.PathLike, audio_dir: str | os.PathLike, required: Sequence[str], split: str | None
) -> ImportResult:
    collector = _Collector()
    for line, row in _read_csv_with_header(csv_path, required):
        where = f"{csv_path}:{line}"
        if not row["fname"]:
            raise ManifestError(f"{where}: column 'fname' is empty")
        if "split" in required and row["split"] not in ("train", "val"):
            raise ManifestError(f"{where}: column 'split' must be 'train' or 'val', got {row['split']!r}")
        if split is not None and row["split"] != split:
            continue
        labels = tuple(label.strip() for label in row["labels"].split(",") if label.strip())
        if not labels:
            raise ManifestError(f"{where}: column 'labels' is empty")
        path = os.path.join(audio_dir, f"{row['fname']}.wav")
        collector.add(row["fname"], path if os.path.isfile(path) else None, {"labels": labels, "has_audio": True})
    return collector.result()


def import_fsd50k_dev(
    dev_csv: str | os.PathLike, audio_dir: str | os.PathLike, split: str | None = None
) -> ImportResult:
    """FSD50K ``ground_truth/dev.csv`` (fname,labels,mids,split); ``split`` = "train", "val" or None for both.
    Files are ``{fname}.wav`` in ``audio_dir`` (FSD50K.dev_audio)."""
    if split not in (None, "train", "val"):
        raise ValueError(f"import_fsd50k_dev: split must be 'train', 'val' or None, got {split!r}")
    return _fsd50k_rows(dev_csv, audio_dir, ("fname", "labels", "mids", "split"), split)


def import_fsd50k_eval(eval_csv: str | os.PathLike, audio_dir: str | os.PathLike) -> ImportResult:
    """FSD50K ``ground_truth/eval.csv`` (fname,labels,mids); files ``{fname}.wav`` in ``audio_dir``."""
    return _fsd50k_rows(eval_csv, audio_dir, ("fname", "labels", "mids"), None)


# --- VGGSound ---------------------------------------------------------------------------------------------------


def import_vggsound(
    csv_path: str | os.PathLike,
    media_root: str | os.PathLike,
    path_patterns: str | Sequence[str] = ("{ytid}_{start:06.0f}.mp4",),
    split: str | None = None,
    clip_seconds: float = 10.0,
) -> ImportResult:
    """VGGSound CSV without header: ``ytid,start_seconds,label,split`` (labels may be quoted and hold commas).
    ``split``: "train", "test" or None for all. Files are assumed cut to the ``clip_seconds`` clip."""
    patterns = _normalise_patterns(path_patterns)
    collector = _Collector()
    with _open_text(csv_path) as handle:
        reader = csv.reader(handle)
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{csv_path}:{reader.line_num}"
            if len(row) != 4:
                raise ManifestError(f"{where}: expected 4 fields (ytid, start_seconds, label, split), got {len(row)}")
            ytid, start_text, label, row_split = (cell.strip() for cell in row)
            if not ytid or not label:
                raise ManifestError(f"{where}: columns 'ytid' and 'label' must not be empty")
            start = _parse_float(start_text, where, "start_seconds")
            if row_split not in ("train", "test"):
                raise ManifestError(f"{where}: column 'split' must be 'train' or 'test', got {row_split!r}")
            if split is not None and row_split != split:
                continue
            values = {"ytid": ytid, "start": start, "end": start + clip_seconds, "label": label, "split": row_split}
            path = _find_media(media_root, patterns, values)
            collector.add(f"{ytid}_{start:g}", path, {"labels": (label,)})
    return collector.result()


# --- Kinetics ---------------------------------------------------------------------------------------------------


def import_kinetics(
    csv_path: str | os.PathLike,
    media_root: str | os.PathLike,
    path_patterns: str | Sequence[str] = ("{label}/{ytid}_{start:06.0f}_{end:06.0f}.mp4",),
    segment_bounds_in_file: bool = False,
) -> ImportResult:
    """Kinetics CSV with header ``label,youtube_id,time_start,time_end,split`` (test lists without ``label`` are
    accepted; their entries have no labels). Many Kinetics clips have no audio stream, so ``has_audio`` is left
    unknown for the validator to fill in."""
    rows = _read_csv_with_header(csv_path, ("youtube_id", "time_start", "time_end"))
    patterns = _normalise_patterns(path_patterns)
    collector = _Collector()
    for line, row in rows:
        where = f"{csv_path}:{line}"
        ytid = row["youtube_id"]
        if not ytid:
            raise ManifestError(f"{where}: column 'youtube_id' is empty")
        start = _parse_float(row["time_start"], where, "time_start")
        end = _parse_float(row["time_end"], where, "time_end")
        if end <= start:
            raise ManifestError(f"{where}: column 'time_end' ({end}) must be greater than time_start ({start})")
        label = row.get("label", "")
        values = {"ytid": ytid, "start": start, "end": end, "label": label, "split": row.get("split", "")}
        path = _find_media(media_root, patterns, values)
        bounds = {"start": start, "end": end} if segment_bounds_in_file else {}
        collector.add(ytid, path, {"labels": (label,) if label else (), **bounds})
    return collector.result()


# --- Something-Something v2 ---------------------------------------------------------------------------------------


def _ssv2_class_name(template: str) -> str:
    # labels.json keys are the templates without the square brackets around the placeholders.
    return template.replace("[", "").replace("]", "")


def import_ssv2(
    annotations_json: str | os.PathLike,
    labels_json: str | os.PathLike,
    media_root: str | os.PathLike,
    path_patterns: str | Sequence[str] = ("{id}.webm",),
) -> ImportResult:
    """SSv2 annotation list (``[{"id", "label", "template", "placeholders"}, ...]``) with ``labels.json``
    (template -> class index). The test list has only ``id``; its entries get no labels. SSv2 has no audio,
    so every entry has ``has_audio=False``."""
    with _open_text(labels_json) as handle:
        try:
            classes = json.load(handle)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{labels_json}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(classes, dict):
        raise ManifestError(f"{labels_json}: expected an object mapping template -> class index")
    with _open_text(annotations_json) as handle:
        try:
            items = json.load(handle)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{annotations_json}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(items, list):
        raise ManifestError(f"{annotations_json}: expected a list of annotation objects")
    patterns = _normalise_patterns(path_patterns)
    collector = _Collector()
    for index, item in enumerate(items):
        where = f"{annotations_json}: item [{index}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{where}: expected an object, got {type(item).__name__}")
        video_id = item.get("id")
        if isinstance(video_id, int) and not isinstance(video_id, bool):
            video_id = str(video_id)
        if not isinstance(video_id, str) or not video_id:
            raise ManifestError(f"{where}: key 'id' must be a non-empty string, got {video_id!r}")
        labels: tuple[str, ...] = ()
        if "template" in item:
            template = item["template"]
            if not isinstance(template, str):
                raise ManifestError(f"{where}: key 'template' must be a string, got {template!r}")
            class_name = _ssv2_class_name(template)
            if class_name not in classes:
                raise ManifestError(f"{where}: key 'template' {template!r} has no class in {labels_json}")
            labels = (class_name,)
        path = _find_media(media_root, patterns, {"id": video_id, "label": labels[0] if labels else ""})
        collector.add(video_id, path, {"labels": labels, "has_audio": False})
    return collector.result()
