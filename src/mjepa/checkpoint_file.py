"""Reading a training checkpoint safely: the file format training writes (``mjepa.train.checkpoint``) and
evaluation, the API and the command line read.

A checkpoint holds only tensors and plain Python values, so it is loaded with ``torch.load(weights_only=True)``:
loading never unpickles arbitrary objects, and a crafted file cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "mjepa-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or is not an mjepa checkpoint."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to read is reported as one clear error
        raise CheckpointError(
            f"checkpoint {path} is damaged or not an mjepa checkpoint: {_load_failure(err)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an mjepa checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return payload


def _load_failure(err: Exception) -> str:
    """What went wrong, in our words. mjepa checkpoints hold only tensors and plain values, so a file the safe loader
    refuses is damaged or foreign: torch's own message would advise loading it unsafely, which is never the fix."""
    text = str(err).strip()
    if text.startswith("Weights only load failed"):
        return "it holds data a safe load refuses (a damaged file, or one written by other code)"
    first = text.splitlines()[0] if text else type(err).__name__
    return first.split(". ")[0]  # e.g. "PytorchStreamReader failed reading zip archive: ... central directory"
