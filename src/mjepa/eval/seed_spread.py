"""Scores over probe seeds: their mean and spread, and whether one set of scores is ahead of another by more than
that spread. A frozen probe trained for a few epochs moves by points between seeds, so comparisons are made on
these summaries, not on single runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class SeedSpread:
    """One encoder's scores on one input, one per probe seed (fractions, printed as percentages)."""

    scores: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def std(self) -> float:
        """Sample standard deviation (0 for a single seed)."""
        return statistics.stdev(self.scores) if len(self.scores) > 1 else 0.0

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "values": list(self.scores)}

    def __str__(self) -> str:
        return f"{100 * self.mean:.1f} ± {100 * self.std:.1f}"


def beats(better: SeedSpread, worse: SeedSpread) -> bool:
    """Whether ``better`` is ahead by more than the spread over probe seeds: its mean minus ``worse``'s exceeds the
    larger of the two standard deviations, and its worst seed is above ``worse``'s best."""
    margin = better.mean - worse.mean
    return margin > max(better.std, worse.std) and min(better.scores) > max(worse.scores)
