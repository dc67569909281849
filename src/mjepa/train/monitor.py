"""Training monitors: collapse indicators, metrics files (JSON lines, optional TensorBoard), a progress line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

import torch


def _nan_unless_finite(value: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """``value``, or NaN when ``pooled`` holds a non-finite entry (decided on the device, no host read)."""
    return torch.where(torch.isfinite(pooled).all(), value, torch.full_like(value, float("nan")))


def feature_std_tensor(pooled: torch.Tensor) -> torch.Tensor:
    """:func:`feature_std` as a device scalar (no host read)."""
    if pooled.shape[0] < 2:
        return torch.full((), float("nan"), device=pooled.device)
    safe = torch.nan_to_num(pooled.float(), nan=0.0, posinf=0.0, neginf=0.0)
    normed = torch.nn.functional.normalize(safe, dim=-1)
    return _nan_unless_finite(normed.std(dim=0).mean(), pooled)


def feature_std(pooled: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension standard deviation across the batch of L2-normalised features.

    Collapsed features (every clip mapped to the same vector) give 0; well-spread features of width D give about
    ``1/sqrt(D)``. NaN for fewer than 2 clips or non-finite features.
    """
    return float(feature_std_tensor(pooled))


def _centred_svdvals(pooled: torch.Tensor) -> torch.Tensor:
    """Singular values of the batch-centred features (non-finite entries read as 0; callers mask the result)."""
    x = torch.nan_to_num(pooled.float(), nan=0.0, posinf=0.0, neginf=0.0)
    return torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))


def centred_singular_values(pooled: torch.Tensor) -> torch.Tensor | None:
    """Singular values of the batch-centred features; None for fewer than 2 clips or non-finite features."""
    if pooled.shape[0] < 2 or not bool(torch.isfinite(pooled).all()):
        return None
    return _centred_svdvals(pooled)


def effective_rank_tensor(pooled: torch.Tensor) -> torch.Tensor:
    """:func:`effective_rank` as a device scalar (no host read)."""
    if pooled.shape[0] < 2:
        return torch.full((), float("nan"), device=pooled.device)
    singular = _centred_svdvals(pooled)
    total = singular.sum()
    p = singular / total.clamp_min(torch.finfo(singular.dtype).tiny)
    entropy = -(torch.where(p > 0, p * p.clamp_min(torch.finfo(p.dtype).tiny).log(), torch.zeros_like(p))).sum()
    value = torch.where(total > 0, torch.exp(entropy), torch.ones_like(total))
    return _nan_unless_finite(value, pooled)


def effective_rank(pooled: torch.Tensor) -> float:
    """``exp(entropy)`` of the normalised singular values of the centred features (Roy & Vetterli, 2007).

    1 when every clip lies on one line; up to ``min(batch, width)`` when the features use every direction. NaN for
    fewer than 2 clips or non-finite features.
    """
    return float(effective_rank_tensor(pooled))


def variance_shares(pooled: torch.Tensor, count: int) -> list[float]:
    """The share of the centred features' total variance along each of their ``count`` leading directions.

    The effective rank says how many directions the features use; these shares say which pattern of collapse it
    is: one direction that takes most of the variance, or many that shrink together. Fewer than ``count`` values
    when the batch or width is smaller; empty for fewer than 2 clips or non-finite features.
    """
    singular = centred_singular_values(pooled)
    if singular is None:
        return []
    variances = singular.square()
    total = variances.sum()
    if total <= 0:
        return []
    return [float(v) for v in (variances / total)[:count]]


def collapse_metric_tensors(pooled_targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Target feature std and effective rank per mode, as device scalars (read them together, once)."""
    out = {}
    for mode, pooled in pooled_targets.items():
        out[f"target_std_{mode}"] = feature_std_tensor(pooled)
        out[f"effective_rank_{mode}"] = effective_rank_tensor(pooled)
    return out


def collapse_metrics(pooled_targets: dict[str, torch.Tensor]) -> dict[str, float]:
    tensors = collapse_metric_tensors(pooled_targets)
    if not tensors:
        return {}
    values = torch.stack([t.double() for t in tensors.values()]).tolist()
    return dict(zip(tensors, values))


def collapse_warnings(
    metrics: dict[str, float], width: int, batch: int, std_threshold: float, rank_fraction: float
) -> list[str]:
    """Human-readable warnings for indicators below their thresholds."""
    warnings = []
    rank_floor = rank_fraction * min(width, batch)
    for key, value in metrics.items():
        if key.startswith("target_std_") and value == value and value < std_threshold:
            warnings.append(
                f"{key}={value:.4f} is below run.collapse_std_threshold={std_threshold}: target features "
                f"are collapsing (see docs/troubleshooting.md)"
            )
        if key.startswith("effective_rank_") and value == value and value < rank_floor:
            warnings.append(
                f"{key}={value:.2f} is below {rank_floor:.2f} (run.collapse_rank_fraction x "
                f"min(width, batch)): pooled embeddings span few directions"
            )
    return warnings


class MetricsWriter:
    """One JSON object per logged step in ``metrics.jsonl``; the same scalars to TensorBoard when asked."""

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int = 0) -> None:
        self.path = run_dir / "metrics.jsonl"
        if self.path.exists():
            self._drop_lines_after(resume_step)
        self.handle = open(self.path, "a", encoding="utf-8")
        self.tensorboard = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError(
                    "run.tensorboard=true needs the tensorboard package: pip install tensorboard"
                ) from None
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))

    def _drop_lines_after(self, step: int) -> None:
        """A resumed run repeats the steps after its checkpoint: drop the lines it will write again (and any line
        cut short by a kill), so every step appears once."""
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        tmp.replace(self.path)

    def write(self, step: int, values: dict[str, float]) -> None:
        self.handle.write(json.dumps({"step": step, **values}) + "\n")
        self.handle.flush()
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, step)

    def close(self) -> None:
        self.handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class ProgressLine:
    """``step 120/400 [####......] loss 2.310  12.3 clips/s  ETA 3m12s``: redrawn in place on a terminal, one
    line per call otherwise (log files)."""

    def __init__(self, total_steps: int, start_step: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.start = total_steps, start_step
        self.stream = stream
        self.started = time.perf_counter()
        self.interactive = stream.isatty()

    def update(self, step: int, loss: float, clips_per_second: float) -> None:
        done = step - self.start
        elapsed = time.perf_counter() - self.started
        eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
        width = 20
        filled = int(width * step / self.total)
        bar = "#" * filled + "." * (width - filled)
        eta_text = format_duration(eta) if eta == eta else "?"
        line = f"step {step}/{self.total} [{bar}] loss {loss:.4f}  {clips_per_second:.1f} clips/s  ETA {eta_text}"
        if self.interactive:
            self.stream.write("\r" + line)
            if step >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
