"""Did a run drift or collapse? Numbers from its metrics.jsonl, for ``mjepa plot --summary`` and docs/results.md.

Drift: each intra-modal term is smoothed with a trailing mean over ``window`` logged steps; the rise is the smoothed
final value over the smoothed minimum, minus one (0 = the loss never came back up). Collapse: the effective rank
and feature std of the targets at the end against their best (a ratio near 1 = no collapse).
"""

from __future__ import annotations

from dataclasses import dataclass

INTRA_TERMS = ("intra_A", "intra_V", "intra_AV")
COLLAPSE_KEYS = (
    "effective_rank_A",
    "effective_rank_V",
    "effective_rank_AV",
    "target_std_A",
    "target_std_V",
    "target_std_AV",
)


@dataclass(frozen=True)
class Drift:
    key: str
    min_step: int
    min_value: float  # smoothed
    final_value: float  # smoothed
    rise: float  # final / min - 1


@dataclass(frozen=True)
class Collapse:
    key: str
    best_step: int
    best_value: float  # smoothed maximum
    final_value: float  # smoothed
    final_over_best: float


def smoothed(steps: list[int], values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _series(records: dict[int, dict], key: str) -> tuple[list[int], list[float]]:
    steps = [s for s, r in records.items() if key in r]
    return steps, [float(records[s][key]) for s in steps]


def _smoothed_series(records: dict[int, dict], keys: tuple[str, ...], window: int):
    """(key, steps, smoothed values) for each of ``keys`` the records hold."""
    for key in keys:
        steps, values = _series(records, key)
        if steps:
            yield key, steps, smoothed(steps, values, window)


def loss_drift(records: dict[int, dict], window: int = 20) -> list[Drift]:
    drifts = []
    for key, steps, smooth in _smoothed_series(records, INTRA_TERMS, window):
        low = min(range(len(smooth)), key=smooth.__getitem__)
        drifts.append(Drift(key, steps[low], smooth[low], smooth[-1], smooth[-1] / smooth[low] - 1.0))
    return drifts


def collapse_indicators(records: dict[int, dict], window: int = 20) -> list[Collapse]:
    out = []
    for key, steps, smooth in _smoothed_series(records, COLLAPSE_KEYS, window):
        best = max(range(len(smooth)), key=smooth.__getitem__)
        out.append(Collapse(key, steps[best], smooth[best], smooth[-1], smooth[-1] / smooth[best]))
    return out


def summary_markdown(records: dict[int, dict], window: int = 20) -> str:
    lines = [
        f"Smoothed over {window} logged steps.",
        "",
        "| intra-modal term | minimum (step) | final | rise |",
        "|---|---|---|---|",
    ]
    for d in loss_drift(records, window):
        lines.append(f"| {d.key} | {d.min_value:.4f} ({d.min_step}) | {d.final_value:.4f} | {100 * d.rise:+.1f} % |")
    lines += ["", "| collapse indicator | best (step) | final | final / best |", "|---|---|---|---|"]
    for c in collapse_indicators(records, window):
        lines.append(
            f"| {c.key} | {c.best_value:.4g} ({c.best_step}) | {c.final_value:.4g} | {c.final_over_best:.2f} |"
        )
    return "\n".join(lines)
