"""Probe results as JSON, a Markdown table and a PNG bar chart."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from mjepa.eval.run_probe import EncoderResult

METRIC_NAMES = {"map": "mAP", "top1": "top-1 accuracy"}


def markdown_table(task: str, results: list[EncoderResult]) -> str:
    lines = [
        f"| task | encoder | modality | {METRIC_NAMES.get(results[0].metric, results[0].metric)} | "
        "chosen head (lr, wd) | skipped items |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        heads = "; ".join(f"{h['lr']:g}, {h['weight_decay']:g}" for h in r.chosen_heads)
        lines.append(f"| {task} | {r.encoder} | {r.modality} | {100 * r.score:.2f} | {heads} | {r.skipped_items} |")
    lines.append("")
    lines.append(f"Selection rule: {results[0].selection_rule}.")
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, task: str, header: dict, results: list[EncoderResult]) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "png": out_dir / "results.png"}
    paths["json"].write_text(json.dumps({**header, "results": [asdict(r) for r in results]}, indent=2))
    paths["markdown"].write_text(f"# {task}: frozen {header['protocol']} probe\n\n" + markdown_table(task, results))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(results), 3.2))
    names = [f"{r.encoder}\n{r.modality}" for r in results]
    values = [100 * r.score for r in results]
    ax.bar(names, values, color=["tab:blue" if r.encoder == "trained" else "tab:gray" for r in results])
    for x, v in enumerate(values):
        ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(METRIC_NAMES.get(results[0].metric, results[0].metric) + " (%)")
    ax.set_title(f"{task} ({header['protocol']} probe)")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths
