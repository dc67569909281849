"""Evaluation tasks: metric, label type, test views, and where the train / val / test items come from.

Datasets are read from manifests (build them with the importers of ``mjepa.data.manifests.importers``, see
docs/data.md); AtariAV is generated on the spot; ESC-50 reads its own ``meta/esc50.csv`` and runs the 5 official folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mjepa.data.manifests.manifest import ManifestEntry, read_manifest
from mjepa.eval.items import ViewSpec


@dataclass(frozen=True)
class TaskSpec:
    name: str
    metric: str  # "map" (multi-label) or "top1"
    views: ViewSpec
    audio_only: bool  # the dataset has no video (ESC-50, FSD50K)
    description: str

    @property
    def multi_label(self) -> bool:
        return self.metric == "map"


TASKS = {
    "atari": TaskSpec("atari", "map", ViewSpec(), False, "built-in AtariAV: game and event tags, mAP"),
    "as20k": TaskSpec("as20k", "map", ViewSpec(), False, "AudioSet-20K (balanced train / eval), mAP"),
    "esc50": TaskSpec("esc50", "top1", ViewSpec(), True, "ESC-50, accuracy over the 5 official folds"),
    "fsd50k": TaskSpec(
        "fsd50k", "map", ViewSpec(audio_windows=3), True, "FSD50K, mAP; long clips as 3 concatenated audio windows"
    ),
    "vggsound": TaskSpec("vggsound", "top1", ViewSpec(), False, "VGGSound, top-1"),
    "k400": TaskSpec(
        "k400",
        "top1",
        ViewSpec(clips=8, spatial_views=3),
        False,
        "Kinetics-400, top-1; per spatial view (3) the tokens of 8 temporal clips joined into one "
        "sequence, scores averaged over the views (V-JEPA 2's protocol)",
    ),
    "ssv2": TaskSpec(
        "ssv2",
        "top1",
        ViewSpec(clips=2, spatial_views=3),
        False,
        "Something-Something v2, top-1; per spatial view (3) the tokens of 2 temporal clips joined, "
        "scores averaged over the views (V-JEPA 2's protocol; no audio)",
    ),
    "manifest": TaskSpec("manifest", "map", ViewSpec(), False, "any user manifests (--metric chooses)"),
}


@dataclass
class TaskSplits:
    train: list[ManifestEntry]
    val: list[ManifestEntry]  # may be empty: the head is then chosen on the training split (stated)
    test: list[ManifestEntry]
    vocabulary: list[str]
    fold: str | None = None


def _vocabulary(*parts: list[ManifestEntry]) -> list[str]:
    return sorted({label for part in parts for entry in part for label in entry.labels})


def manifest_splits(train: str, val: str | None, test: str) -> TaskSplits:
    train_entries, test_entries = read_manifest(train), read_manifest(test)
    val_entries = read_manifest(val) if val else []
    return TaskSplits(train_entries, val_entries, test_entries, _vocabulary(train_entries, val_entries, test_entries))


def atari_splits(atari_dir: str) -> TaskSplits:
    from mjepa.data.atari.generate import atari_av_manifest_path, generate_atari_av, read_atari_av_labels

    if not (Path(atari_dir) / "info.json").is_file():  # an existing dataset is used as generated, whatever its size
        generate_atari_av(atari_dir)
    parts = [read_manifest(atari_av_manifest_path(atari_dir, split)) for split in ("train", "val", "test")]
    return TaskSplits(parts[0], parts[1], parts[2], read_atari_av_labels(atari_dir))


def esc50_folds(esc50_root: str) -> list[TaskSplits]:
    """The 5 official ESC-50 folds: fold k is the test set, the other four train (no validation split: ESC-50 has
    none, so the head is chosen on the training folds and this is written into the results)."""
    from mjepa.data.manifests.importers import esc50_fold_split

    root = Path(esc50_root)
    folds = []
    for fold in range(1, 6):
        train, test = esc50_fold_split(root / "meta" / "esc50.csv", root / "audio", fold)
        folds.append(
            TaskSplits(
                list(train.entries),
                [],
                list(test.entries),
                _vocabulary(list(train.entries), list(test.entries)),
                fold=str(fold),
            )
        )
    return folds
