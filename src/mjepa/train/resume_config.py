"""Refuse to resume a run under a config that changes what it computes.

A resumed run is exact only when it continues with the config it was trained with (docs/training.md). A changed
learning rate, mask or batch size on resume would otherwise be applied silently from the resume step on, and the
run folder would no longer describe one run. Settings that only say where and how the same computation runs
(output folder, checkpoint cadence, logging, device, parallel strategy, loader workers) may change freely.
"""

from __future__ import annotations

from typing import Any

from mjepa.pretrain_config import PretrainConfig
from mjepa.typed_config import to_dict

# Dotted keys whose change leaves the trained model and its data stream the same.
CHANGEABLE_ON_RESUME = frozenset(
    {
        "run.out_dir",
        "run.checkpoint_every",
        "run.keep_checkpoints",
        "run.log_every",
        "run.tensorboard",
        "run.device",
        "run.distributed",
        "run.compile",
        "run.activation_checkpointing",
        "run.nan_policy",
        "run.max_skipped_steps",
        "run.collapse_std_threshold",
        "run.collapse_rank_fraction",
        "run.init_from",
        "run.allow_resume_changes",
        "data.num_workers",
        "data.atari_dir",
        "data.atari_test_clips_per_game",
    }
)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(
    before: dict, after: dict, only: tuple[str, ...] = (), ignore: frozenset[str] = frozenset()
) -> list[str]:
    """``key: before -> after`` for each setting of two config dicts that differs and matters; with ``only``, for
    the keys that start with one of those prefixes; never for the keys in ``ignore``. Keys one side lacks (added to
    mjepa since the other was written) are not compared: their old value is unknown."""
    old, new = flatten(before), flatten(after)
    return [
        f"{key}: {old[key]!r} -> {new[key]!r}"
        for key in sorted(old.keys() & new.keys())
        if key not in CHANGEABLE_ON_RESUME
        and key not in ignore
        and old[key] != new[key]
        and (not only or key.startswith(only))
    ]


def resume_changes(saved: dict, current: PretrainConfig, only: tuple[str, ...] = ()) -> list[str]:
    """``key: saved -> current`` for each setting that differs and matters (``config_changes``)."""
    return config_changes(saved, to_dict(current), only)


def join_changes(changes: list[str], shown: int = 4) -> str:
    """The first ``shown`` changes for a one-line error, and how many more there are."""
    more = len(changes) - shown
    return "; ".join(changes[:shown]) + (f"; and {more} more" if more > 0 else "")


def check_resume_config(saved: dict, current: PretrainConfig, checkpoint: str) -> list[str]:
    """Raise a one-line error when resuming from ``checkpoint`` would change the run; with
    ``run.allow_resume_changes=true`` return the changes instead, for the caller to print."""
    changes = resume_changes(saved, current)
    if changes and not current.run.allow_resume_changes:
        raise ValueError(
            f"resuming {checkpoint} with a config it was not trained with ({join_changes(changes)}); "
            "run the same command again, use a new run.out_dir, or pass run.allow_resume_changes=true"
        )
    return changes
