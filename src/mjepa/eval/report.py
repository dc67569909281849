"""Probe results as JSON, a Markdown table and a PNG bar chart."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mjepa.eval.run_probe import EncoderResult

METRIC_NAMES = {"map": "mAP", "top1": "top-1 accuracy"}


def markdown_table(task: str, results: list[EncoderResult]) -> str:
    """One row per result; where the labels come in groups (AtariAV's ``game:*`` and ``event:*``), a column per
    group gives its mAP alone, so a saturated group cannot hide the other."""
    metric = METRIC_NAMES.get(results[0].metric, results[0].metric)
    groups = common_label_groups(results)
    lines = [
        f"| task | encoder | modality | {metric} | "
        + "".join(f"{metric} `{g}:*` | " for g in groups)
        + "chosen head (lr, wd) | skipped items |",
        "|---" * (6 + len(groups)) + "|",
    ]
    for r in results:
        heads = "; ".join(f"{h['lr']:g}, {h['weight_decay']:g}" for h in r.chosen_heads)
        per_group = "".join(f"{100 * group_mean(r, g):.2f} | " for g in groups)
        lines.append(
            f"| {task} | {r.encoder} | {r.modality} | {100 * r.score:.2f} | {per_group}{heads} | {r.skipped_items} |"
        )
    lines.append("")
    lines.append(f"Selection rule: {results[0].selection_rule}.")
    return "\n".join(lines) + "\n"


def common_label_groups(results: list[EncoderResult]) -> list[str]:
    """The tag groups that every chosen head of every result was scored on."""
    found = [set(head.get("test_group_scores", {})) for result in results for head in result.chosen_heads]
    return sorted(set.intersection(*found)) if found else []


def group_mean(result: EncoderResult, group: str) -> float:
    """A result's mAP over one tag group, averaged over its folds' chosen heads."""
    values = [head["test_group_scores"][group] for head in result.chosen_heads]
    return sum(values) / len(values)


def grouped_scores(results: list[EncoderResult]) -> dict[str, dict[str, list[float]]]:
    """Scores (%) per input modality, then per encoder, one per result (several when probe seeds were repeated)."""
    groups: dict[str, dict[str, list[float]]] = {}
    for r in results:
        groups.setdefault(r.modality, {}).setdefault(r.encoder, []).append(100 * r.score)
    return groups


def _bar_chart(ax, results: list[EncoderResult]) -> None:
    """One group of bars per input, one bar per encoder: the mean over its results, with the standard deviation
    over probe seeds as an error bar where there are several."""
    import statistics

    groups = grouped_scores(results)
    encoders = list(dict.fromkeys(r.encoder for r in results))
    width = 0.8 / len(encoders)
    palette = ["tab:blue", "tab:orange", "tab:gray", "tab:green", "tab:purple"]
    for index, encoder in enumerate(encoders):
        xs, means, errors = [], [], []
        for position, modality in enumerate(groups):
            values = groups[modality].get(encoder)
            if values:
                xs.append(position - 0.4 + width * (index + 0.5))
                means.append(statistics.fmean(values))
                errors.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        ax.bar(xs, means, width, yerr=errors, capsize=3, label=encoder, color=palette[index % len(palette)])
        for x, mean, error in zip(xs, means, errors):
            ax.text(x, mean + error, f"{mean:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.legend(fontsize=8, loc="lower right")


def write_results(out_dir: Path, task: str, header: dict, results: list[EncoderResult]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "png": out_dir / "results.png"}
    paths["json"].write_text(json.dumps({**header, "results": [asdict(r) for r in results]}, indent=2))
    paths["markdown"].write_text(f"# {task}: frozen {header['protocol']} probe\n\n" + markdown_table(task, results))
    modalities = list(dict.fromkeys(r.modality for r in results))
    fig, ax = plt.subplots(figsize=(2.4 + 2.2 * len(modalities), 3.6))
    _bar_chart(ax, results)
    ax.set_ylabel(METRIC_NAMES.get(results[0].metric, results[0].metric) + " (%)")
    ax.set_title(f"{task} ({header['protocol']} probe)")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths
