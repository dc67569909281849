"""Shared settings for the pretraining tests: a depth-2 tiny model on small synthetic or AtariAV clips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TINY_RUN = [
    "model.encoder.depth=2",
    "model.encoder.width=64",
    "model.encoder.num_heads=2",
    "model.predictor.width=64",
    "model.predictor.depth=1",
    "model.predictor.num_heads=2",
    "data.audio_frames=128",
    "data.mel_bins=64",
    "data.image_size=64",
    "data.num_frames=4",
    "optim.warmup_steps=2",
    "optim.cooldown_steps=2",
    "run.log_every=1",
    "run.precision=fp32",
    "run.device=cpu",
]


def synthetic_run(out_dir: Path, steps: int, batch_size: int = 4, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        *TINY_RUN,
        "data.source=synthetic",
        f"run.steps={steps}",
        f"run.batch_size={batch_size}",
        f"run.out_dir={out_dir}",
        *extra,
    ]


def cli_env() -> dict[str, str]:
    """Environment for child processes: same interpreter, single-threaded BLAS for reproducible timing."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mjepa.cli", *args], capture_output=True, text=True, timeout=timeout, env=cli_env()
    )


def step_losses(run_dir: Path) -> dict[int, float]:
    """Loss per step from metrics.jsonl; a step logged twice (before a kill and after resume) keeps the last."""
    losses = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        losses[record["step"]] = record["loss"]
    return losses
