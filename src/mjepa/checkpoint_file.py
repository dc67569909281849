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
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {first_line}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an mjepa checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    return payload
