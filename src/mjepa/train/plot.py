"""``mjepa plot RUN_DIR``: draw a run's metrics.jsonl as PNG curves (losses, terms, schedules, monitors)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

PANELS = (
    ("total loss", ("loss",)),
    ("intra-modal terms", ("intra_A", "intra_V", "intra_AV")),
    (
        "cross-modal terms",
        ("cross_A_to_V", "cross_V_to_A", "cross_A_to_AV", "cross_V_to_AV", "cross_AV_to_A", "cross_AV_to_V"),
    ),
    ("learning rate", ("lr",)),
    ("EMA momentum", ("ema_momentum",)),
    ("gradient norm", ("grad_norm",)),
    ("target feature std (collapse)", ("target_std_A", "target_std_V", "target_std_AV")),
    ("effective rank (collapse)", ("effective_rank_A", "effective_rank_V", "effective_rank_AV")),
    ("throughput (clips/s)", ("clips_per_second",)),
)


def read_metrics(run_dir: Path) -> dict[int, dict]:
    """Step -> record; a step logged twice (a run killed and resumed) keeps its last record."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"{path} does not exist: is {run_dir} an mjepa run folder?")
    records = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{number}: not valid JSON") from None
        records[int(record["step"])] = record
    if not records:
        raise ValueError(f"{path} holds no metrics yet")
    return dict(sorted(records.items()))


def plot_run(run_dir: Path, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir)
    steps = list(records)
    panels = [(title, [k for k in keys if any(k in r for r in records.values())]) for title, keys in PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, keys) in zip(axes.flat, panels):
        for key in keys:
            ax.plot(steps, [records[s].get(key, float("nan")) for s in steps], label=key, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        if len(keys) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa plot", description="Draw a run's training curves as a PNG.")
    parser.add_argument("run_dir", help="run folder (holds metrics.jsonl)")
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/curves.png)")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="also print the drift of the intra-modal losses and the collapse indicators (Markdown)",
    )
    parser.add_argument("--window", type=int, default=20, help="smoothing window of --summary, in logged steps")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run_dir)
    try:
        out = plot_run(run_dir, Path(args.out) if args.out else run_dir / "curves.png")
        if args.summary:
            from mjepa.train.stability import summary_markdown

            print(summary_markdown(read_metrics(run_dir), args.window))
    except ValueError as err:
        print(f"mjepa plot: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
