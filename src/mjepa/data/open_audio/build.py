"""Build the open-audio dataset: fetch each source's package, decode every clip, write manifests and task splits.

    OUT/
      debs/, packages/PACKAGE/root/   the downloaded and unpacked packages (a cache: reused when present)
      clips.jsonl      every clip that decodes, with ``meta``: source, package, version, licence, duration_s and the
                       source's label fields (voice, phrase, language, word, digit, ...)
      pretrain.jsonl   the clips that no task uses in any split or fold: pretraining on them never sees a clip the
                       suite scores (klettres, the Fish Fillets dialogue, MegaGlest's unlabelled sounds, ...)
      skipped.json     files that did not decode, each with its reason
      tasks/TASK/[fold-GROUP/]{train,val,test}.jsonl   the probing tasks' splits (mjepa.data.open_audio.tasks)
      info.json        the settings, and per source its package, version, licence, clips, hours; per task its splits

A folder that already holds the same settings is reused as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mjepa.data.debian import PackageFetchError, copyright_grants, fetch_package
from mjepa.data.manifests.manifest import ManifestEntry, read_manifest, write_manifest
from mjepa.data.media.decode import decode_audio
from mjepa.data.media.info import MediaError
from mjepa.data.open_audio.sources import Clip, Source, resolve_sources
from mjepa.data.open_audio.tasks import TASK_RULES, TaskRule, class_counts, split_task

GENERATOR = "mjepa.data.open_audio"
GENERATOR_VERSION = 2
INFO_NAME, CLIPS_NAME, SKIPPED_NAME = "info.json", "clips.jsonl", "skipped.json"
PRETRAIN_NAME = "pretrain.jsonl"
DECODE_RATE = 16000


def settings_record(sources: Sequence[str], codec: str) -> dict:
    return {"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "sources": list(sources), "codec": codec}


def read_info(out: str | os.PathLike) -> dict | None:
    path = Path(out) / INFO_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def clip_duration(path: str) -> tuple[float | None, str, str]:
    """``(seconds, "", "")`` for a clip that decodes, else ``(None, reason, detail)``."""
    try:
        waveform, _ = decode_audio(path, sample_rate=DECODE_RATE)
    except MediaError as err:
        return None, err.reason, err.detail
    return waveform.numel() / DECODE_RATE, "", ""


def build_open_audio(
    out: str | os.PathLike,
    sources: Sequence[str],
    codec: str = "wav",
    workers: int = 1,
    progress: Callable[[str], None] | None = print,
) -> Path:
    """Build (or reuse) the dataset of ``sources`` in ``out``; see the module docstring for the layout."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    report = progress or (lambda message: None)
    settings = settings_record(sources, codec)
    info = read_info(out)
    if info is not None and info.get("settings") == settings and (out / CLIPS_NAME).is_file():
        report(f"open-audio: reusing {out} (same settings)")
        return out
    chosen = resolve_sources(list(sources), codec)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[ManifestEntry] = []
    skipped: list[dict] = []
    per_source = {}
    seen: dict[str, str] = {}  # content hash -> the first clip with those bytes, across every source
    for source in chosen:
        found, bad, record = _source_entries(source, out, workers, seen)
        entries += found
        skipped += bad
        per_source[source.name] = record
        report(
            f"open-audio: {source.name}: {record['clips']} clips, {record['hours']:.2f} h "
            f"({source.package} {record['version']}, {source.licence}); {len(bad)} skipped"
        )
    write_manifest(out / CLIPS_NAME, entries, paths_from=out)
    (out / SKIPPED_NAME).write_text(json.dumps(skipped, indent=2, ensure_ascii=False))
    tasks = {
        rule.name: _write_task(out, entries, rule)
        for rule in TASK_RULES.values()
        if any(rule.uses(source.name) for source in chosen)
    }
    scored = {path for task in tasks.values() for path in task.pop("paths")}
    pretrain = [entry for entry in entries if entry.path not in scored]
    write_manifest(out / PRETRAIN_NAME, pretrain, paths_from=out)
    record = {
        "settings": settings,
        "sources": per_source,
        "tasks": tasks,
        "clips": len(entries),
        "hours": round(sum(r["hours"] for r in per_source.values()), 3),
        "pretrain": {
            "clips": len(pretrain),
            "hours": round(sum(float(e.meta_value("duration_s")) for e in pretrain) / 3600, 3),
        },
        "skipped": len(skipped),
    }
    (out / INFO_NAME).write_text(json.dumps(record, indent=2, ensure_ascii=False))
    return out


def _source_entries(
    source: Source, out: Path, workers: int, seen: dict[str, str]
) -> tuple[list[ManifestEntry], list[dict], dict]:
    """The source's clips that decode, once each: a file with the same bytes as one already taken (packages reuse
    recordings, e.g. a language's script variants) is skipped as a duplicate, so no recording can sit on both sides
    of a split."""
    package = fetch_package(source.package, out)
    granted = source.licence_grant is not None and copyright_grants(package.root, source.package, source.licence_grant)
    if source.licence not in package.licences and not granted:
        raise PackageFetchError(
            f"{source.package} {package.version}: its copyright file lists {', '.join(package.licences) or 'none'}, "
            f"not {source.licence}; check the licence of its audio before using it"
        )
    clips = source.find_clips(package.root)
    if not clips:
        raise PackageFetchError(
            f"{source.package} {package.version}: no clips where {source.name} expects them "
            f"(has the package's layout changed?)"
        )
    paths = [str(clip.path) for clip in clips]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            durations = list(pool.map(clip_duration, paths, chunksize=16))
    else:
        durations = [clip_duration(p) for p in paths]
    entries, skipped = [], []
    for clip, (seconds, reason, detail) in zip(clips, durations):
        digest = hashlib.sha256(clip.path.read_bytes()).hexdigest()
        if seconds is not None and digest in seen:
            seconds, reason, detail = None, "duplicate", f"the same bytes as {seen[digest]}"
        if seconds is None:
            skipped.append({"path": str(clip.path), "source": source.name, "reason": reason, "detail": detail})
            continue
        seen[digest] = str(clip.path)
        entries.append(_entry(clip, source, package.version, seconds, out))
    hours = sum(float(e.meta_value("duration_s")) for e in entries) / 3600
    record = {
        "package": source.package,
        "version": package.version,
        "licence": source.licence,
        "clips": len(entries),
        "hours": round(hours, 3),
        "skipped": len(skipped),
        "download_bytes": package.deb_bytes,
        "description": source.description,
    }
    return entries, skipped, record


def _entry(clip: Clip, source: Source, version: str, seconds: float, out: Path) -> ManifestEntry:
    meta = (
        ("source", source.name),
        ("package", source.package),
        ("version", version),
        ("licence", source.licence),
        ("duration_s", round(seconds, 3)),
        *clip.fields,
    )
    return ManifestEntry(os.path.relpath(clip.path, out), labels=clip.labels, has_audio=True, meta=meta)


def _write_task(out: Path, entries: list[ManifestEntry], rule: TaskRule) -> dict:
    """Write the task's splits; the summary returned also lists every path they use (``paths``, for the caller)."""
    folds = []
    paths: set[str] = set()
    for split in split_task(entries, rule):
        folder = out / "tasks" / rule.name / (f"fold-{split.fold}" if split.fold is not None else "")
        summary = {"fold": split.fold, "dropped": split.dropped, "splits": {}}
        for name, items in split.splits.items():
            paths.update(item.path for item in items)
            write_manifest(folder / f"{name}.jsonl", items, paths_from=out)
            summary["splits"][name] = {
                "clips": len(items),
                "classes": len(class_counts(items)),
                rule.group_field: sorted(split.groups(name, rule.group_field)),
            }
        folds.append(summary)
    return {
        "label": rule.label_field,
        "disjoint": rule.group_field,
        "scheme": rule.scheme,
        "description": rule.description,
        "folds": folds,
        "paths": paths,
    }


def task_folds(out: str | os.PathLike, task: str) -> list[dict[str, list[ManifestEntry]]]:
    """The splits of ``task`` in a built folder, one dict per fold (``train``, ``test`` and ``val`` when it has one)."""
    folder = Path(out) / "tasks" / task
    if not folder.is_dir():
        raise ValueError(
            f"{out}: no task {task!r} (built tasks: "
            f"{', '.join(sorted(p.name for p in (Path(out) / 'tasks').glob('*'))) or 'none'})"
        )
    fold_dirs = sorted(p for p in folder.glob("fold-*") if p.is_dir()) or [folder]
    return [{path.stem: read_manifest(path) for path in sorted(d.glob("*.jsonl"))} for d in fold_dirs]
