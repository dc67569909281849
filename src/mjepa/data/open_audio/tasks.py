"""Probing tasks on the open-audio clips, split so that they test generalisation, not memory.

Each task classifies one field of its clips (the phrase, the word, the digit) and keeps another field disjoint
between its splits (the voice pack, the language): no voice or language of a test item is ever seen in training.

- ``holdout``: the groups are shuffled with a fixed seed; a fifth of them (at least one) are the test groups, a fifth
  the validation groups, the rest train. A class must occur in training; val and test items of other classes are
  dropped and counted.
- ``leave-one-out``: one fold per group, that group's items the test split and every other group's the training
  split (no validation split: the head is chosen on training, and the results say so).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from mjepa.data.manifests.manifest import ManifestEntry

SPLIT_SEED = 0
HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class TaskRule:
    name: str
    sources: tuple[str, ...]  # the sources whose clips it uses (prefixes: "asterisk-" takes every language)
    label_field: str
    group_field: str
    scheme: str  # "holdout" or "leave-one-out"
    description: str

    def uses(self, source: str) -> bool:
        return any(source == s or (s.endswith("-") and source.startswith(s)) for s in self.sources)


TASK_RULES = {
    rule.name: rule
    for rule in (
        TaskRule(
            "hedgewars-phrase",
            ("hedgewars-voices",),
            "phrase",
            "voice",
            "holdout",
            "which phrase a voice line says, on voice packs never heard in training",
        ),
        TaskRule(
            "ktuberling-word",
            ("ktuberling-words",),
            "word",
            "language",
            "holdout",
            "which word is spoken, in languages never heard in training",
        ),
        TaskRule(
            "megaglest-event",
            ("megaglest-sounds",),
            "event",
            "faction",
            "holdout",
            "which event a game sound is (attack, death, hit, a unit's reply), on factions never heard in training",
        ),
        TaskRule(
            "spoken-digit",
            ("asterisk-",),
            "digit",
            "language",
            "leave-one-out",
            "which digit 0-9 is spoken, in a language held out of training (one fold per language)",
        ),
    )
}


@dataclass
class TaskSplit:
    """One fold of a task: its entries per split, and what was dropped."""

    fold: str | None
    splits: dict[str, list[ManifestEntry]]
    dropped: int  # val / test items of a class training never has

    def groups(self, split: str, field: str) -> set[str]:
        return {str(entry.meta_value(field)) for entry in self.splits[split]}


def labelled(entries: list[ManifestEntry], rule: TaskRule) -> list[ManifestEntry]:
    """The entries of the rule's sources that carry its label and group fields, labelled with the class only."""
    out = []
    for entry in entries:
        label, group = entry.meta_value(rule.label_field), entry.meta_value(rule.group_field)
        if rule.uses(str(entry.meta_value("source"))) and label is not None and group is not None:
            out.append(
                ManifestEntry(
                    entry.path, entry.audio_path, entry.start, entry.end, (str(label),), entry.has_audio, entry.meta
                )
            )
    return out


def split_task(entries: list[ManifestEntry], rule: TaskRule, seed: int = SPLIT_SEED) -> list[TaskSplit]:
    """The folds of ``rule`` over ``entries`` (the whole open-audio manifest)."""
    items = labelled(entries, rule)
    groups = sorted({str(e.meta_value(rule.group_field)) for e in items})
    if rule.scheme == "leave-one-out":
        if len(groups) < 2:
            raise ValueError(f"task {rule.name}: needs at least 2 values of {rule.group_field!r}, found {groups}")
        return [_assign(items, rule, {"test": {g}, "train": set(groups) - {g}}, fold=g) for g in groups]
    if len(groups) < 3:
        raise ValueError(f"task {rule.name}: needs at least 3 values of {rule.group_field!r}, found {groups}")
    order = groups[:]
    random.Random(seed).shuffle(order)
    held = max(1, round(HELD_OUT_SHARE * len(order)))
    return [
        _assign(
            items,
            rule,
            {"test": set(order[:held]), "val": set(order[held : 2 * held]), "train": set(order[2 * held :])},
            fold=None,
        )
    ]


def _assign(items: list[ManifestEntry], rule: TaskRule, by_split: dict[str, set[str]], fold: str | None) -> TaskSplit:
    splits: dict[str, list[ManifestEntry]] = {name: [] for name in by_split}
    for entry in items:
        group = str(entry.meta_value(rule.group_field))
        for name, members in by_split.items():
            if group in members:
                splits[name].append(entry)
    trained = {entry.labels[0] for entry in splits["train"]}
    dropped = 0
    for name in splits:
        if name != "train":
            kept = [e for e in splits[name] if e.labels[0] in trained]
            dropped += len(splits[name]) - len(kept)
            splits[name] = kept
    return TaskSplit(fold, splits, dropped)


def class_counts(entries: list[ManifestEntry]) -> dict[str, int]:
    return dict(sorted(Counter(e.labels[0] for e in entries).items()))
