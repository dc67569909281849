"""Checkpoint files: atomic writes, a rolling ``latest.pt`` plus rotated periodic copies, safe loading.

A checkpoint holds only tensors and plain Python values (dicts, lists, strings, numbers), so it is loaded with
``torch.load(weights_only=True)``: loading never unpickles arbitrary objects, and a crafted file cannot run code.

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the target, so a run
killed in the middle of a write leaves the previous checkpoint intact and loadable.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from mjepa.checkpoint_file import CHECKPOINT_FORMAT, CheckpointError

_PERIODIC = re.compile(r"^step_(\d{8})\.pt$")


class CheckpointWriteError(CheckpointError):
    """A checkpoint that cannot be written (full disk, read-only folder); the previous one is left intact."""


# Temporary names of writes in progress: ``.NAME.tmp-PID`` and ``.latest.pt.link-PID``.
_TEMPORARY = re.compile(r"^\.(.+\.tmp|latest\.pt\.link)-\d+$")
_HEADROOM_BYTES = 64 * 2**20  # torch.save's archive structure on top of the tensor bytes


def payload_bytes(value: Any) -> int:
    """Bytes of the tensors in a (nested) payload: about what ``torch.save`` writes."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(payload_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(payload_bytes(v) for v in value)
    return 0


def atomic_torch_save(payload: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``. A write that cannot complete (too
    little free space, checked first; a full or read-only disk) raises CheckpointWriteError naming ``path`` and
    leaves no temporary file behind."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {err.strerror or err}") from None
    needed = payload_bytes(payload) + _HEADROOM_BYTES
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise CheckpointWriteError(
            f"cannot write checkpoint {path}: {free / 2**30:.2f} GiB free on its disk, about "
            f"{needed / 2**30:.2f} GiB needed"
        )
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # torch.save reports a full disk as a RuntimeError
        reason = getattr(err, "strerror", None) or str(err).strip().splitlines()[0]
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {reason}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform lets a folder be opened for that.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def periodic_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the ``step_XXXXXXXX.pt`` checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _PERIODIC.match(p.name))]
    return sorted(found)


class CheckpointManager:
    """``<dir>/latest.pt`` rewritten at every save, plus ``<dir>/step_XXXXXXXX.pt`` for periodic saves, of which
    the newest ``keep`` are kept."""

    def __init__(self, folder: str | Path, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.folder = Path(folder)
        self.keep = keep

    @property
    def latest_path(self) -> Path:
        return self.folder / "latest.pt"

    def periodic_paths(self) -> list[Path]:
        return [path for _, path in periodic_checkpoints(self.folder)]

    def save(self, payload: dict[str, Any], step: int, periodic: bool) -> Path:
        payload = {"format": CHECKPOINT_FORMAT, **payload}
        if not periodic:
            atomic_torch_save(payload, self.latest_path)
            return self.latest_path
        # Write the (large) file once; latest.pt becomes a second name for it, swapped in atomically.
        step_path = self.folder / f"step_{step:08d}.pt"
        atomic_torch_save(payload, step_path)
        tmp = self.folder / f".latest.pt.link-{os.getpid()}"
        try:
            os.link(step_path, tmp)
            os.replace(tmp, self.latest_path)
        except OSError:  # file systems without hard links
            tmp.unlink(missing_ok=True)
            atomic_torch_save(payload, self.latest_path)
        for old in self.periodic_paths()[: -self.keep]:
            old.unlink()
        return step_path

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete what writes that were killed mid-way left behind (their process is gone); returns the paths."""
        if not self.folder.is_dir():
            return []
        stale = [p for p in self.folder.iterdir() if _TEMPORARY.match(p.name)]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def latest(self) -> Path | None:
        return self.latest_path if self.latest_path.is_file() else None

    def resume_candidates(self) -> list[Path]:
        """The checkpoints a run can resume from, best first: ``latest.pt``, then the periodic ones, newest first,
        leaving out a periodic file that is ``latest.pt`` under another name (the same file, hard-linked)."""
        candidates = [self.latest_path] if self.latest_path.is_file() else []
        latest_id = _file_id(self.latest_path)
        for path in reversed(self.periodic_paths()):
            if latest_id is None or _file_id(path) != latest_id:
                candidates.append(path)
        return candidates

    def set_aside(self, path: Path) -> Path:
        """Rename a checkpoint that cannot be loaded to ``NAME.damaged`` (kept for inspection; never resumed from or
        rotated away)."""
        target = path.with_name(f"{path.name}.damaged")
        os.replace(path, target)
        return target


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino
