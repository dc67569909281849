"""Step-indexed schedules for learning rate, weight decay and EMA momentum.

Every schedule is a pure function of the optimisation step (``0 .. total_steps - 1``), so a resumed run gets the
same values as an uninterrupted one, and each reaches its end value exactly at the last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def linear(start: float, end: float, step: int, span: int) -> float:
    """``start`` at step 0, ``end`` at step ``span`` (and after)."""
    if span <= 0 or step >= span:
        return end
    return start + (end - start) * step / span


@dataclass(frozen=True)
class LearningRateSchedule:
    """Linear warm-up ``start_lr -> peak_lr`` over ``warmup_steps``, constant, then an optional linear cool-down
    to ``final_lr`` over the last ``cooldown_steps`` (V-JEPA 2 style warm-up-constant-decay)."""

    start_lr: float
    peak_lr: float
    final_lr: float
    warmup_steps: int
    cooldown_steps: int
    total_steps: int

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")
        if self.warmup_steps < 0 or self.cooldown_steps < 0:
            raise ValueError("warmup_steps and cooldown_steps must be >= 0")
        if self.warmup_steps + self.cooldown_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) + cooldown_steps ({self.cooldown_steps}) exceed total_steps "
                f"({self.total_steps})"
            )
        for name in ("start_lr", "peak_lr", "final_lr"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def __call__(self, step: int) -> float:
        last = self.total_steps - 1
        cooldown_start = self.total_steps - self.cooldown_steps
        if self.cooldown_steps and step >= cooldown_start:
            # Cool-down ends exactly on the last step: span = cooldown_steps - 1 steps after its first.
            return linear(self.peak_lr, self.final_lr, step - cooldown_start, max(1, last - cooldown_start))
        if step < self.warmup_steps:
            return linear(self.start_lr, self.peak_lr, step, self.warmup_steps)
        return self.peak_lr


@dataclass(frozen=True)
class LinearSchedule:
    """``start`` at step 0 to ``end`` at the last step (weight decay, EMA momentum)."""

    start: float
    end: float
    total_steps: int

    def __call__(self, step: int) -> float:
        return linear(self.start, self.end, step, max(1, self.total_steps - 1))


def ema_initial_weight(momentum: LinearSchedule, steps: int) -> float:
    """The weight that the target encoder still gives its random initialisation after ``steps`` EMA updates.

    Each update keeps a fraction ``m_t`` of the target, so after steps ``0 .. steps-1`` the initial weights carry
    ``prod(m_t)``. The rest is an average of the trained weights. Probes and ``mjepa extract`` use the target
    encoder, so a short run with a momentum meant for a long one ends with a target that is mostly its random
    initialisation.
    """
    log_weight = sum(math.log(momentum(step)) for step in range(steps))
    return math.exp(log_weight)
