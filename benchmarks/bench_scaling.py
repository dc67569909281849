"""Step time against the number of tokens: audio length, video frames and resolution, with attention's share.

For one encoder size and precision, the full training step is timed at a series of input shapes that vary one of
audio length, frame count and image size from a base shape. For each shape: the tokens per sample, the median step
time, the share of the step spent in attention kernels (forward and backward, from the PyTorch profiler) and
attention's share of the step's analytic FLOPs (``mjepa.flops``). Writes JSON and a plot of step time against
tokens with the attention part shaded.

    python benchmarks/bench_scaling.py                          # tiny, fp32, batch 1
    python benchmarks/bench_scaling.py --size small --precision bf16
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from mjepa.config import MaskConfig, ModelConfig
from mjepa.data.batch import Batch
from mjepa.flops import step_flops
from mjepa.masks import MaskSampler
from mjepa.models.mjepa import MJEPA
from mjepa.terms import active_modes
from mjepa.train.optim import build_optimizer
from mjepa.train.step import train_step

BASE = {"audio_frames": 512, "frames": 8, "image_size": 128}
SWEEPS = {
    "audio_frames": (256, 512, 1024, 2048),
    "frames": (4, 8, 16, 32),
    "image_size": (64, 128, 192, 256),
}
ATTENTION_OPS = ("scaled_dot_product", "flash_attention")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: for a shared machine, with one thread


def measure(size: str, amp: torch.dtype | None, shape: dict, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    config = ModelConfig.from_size(size)
    model = MJEPA(config)
    optimizer = build_optimizer(model.named_trainable_parameters(), 1e-4, 0.04)
    b = args.batch_size
    batch = Batch(
        torch.randn(b, shape["audio_frames"], 128),
        torch.randn(b, 3, shape["frames"], shape["image_size"], shape["image_size"]),
    )
    audio_grid, video_grid = model.token_grids(tuple(batch.audio.shape), tuple(batch.video.shape))
    masks = MaskSampler(MaskConfig(), audio_grid, video_grid, active_modes(config.objective)).sample(b, seed=0)
    flops = step_flops(config, b, tuple(batch.audio.shape), tuple(batch.video.shape), masks)
    step = lambda: train_step(model, optimizer, batch, masks, ema_momentum=0.999, amp_dtype=amp)  # noqa: E731
    step()
    times = []
    for _ in range(args.steps):
        start = args.clock()
        step()
        times.append(args.clock() - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages)
    attention = sum(e.self_cpu_time_total for e in averages if any(k in e.key for k in ATTENTION_OPS))
    tokens = {"A": audio_grid[0] * audio_grid[1], "V": video_grid[0] * video_grid[1] * video_grid[2]}
    return {
        **shape,
        "tokens_per_sample": tokens["A"] + tokens["V"],
        "tokens": tokens,
        "step_seconds_median": sorted(times)[len(times) // 2],
        "attention_time_share": attention / total,
        "attention_flop_share": flops.attention_training_step / flops.training_step,
        "step_gflop": flops.training_step / 1e9,
    }


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SWEEPS), figsize=(4 * len(SWEEPS), 3.6), sharey=True)
    for ax, (knob, _) in zip(axes, SWEEPS.items()):
        mine = sorted((r for r in rows if r["sweep"] == knob), key=lambda r: r["tokens_per_sample"])
        x = [r["tokens_per_sample"] for r in mine]
        total = [r["step_seconds_median"] for r in mine]
        attention = [r["step_seconds_median"] * r["attention_time_share"] for r in mine]
        ax.fill_between(x, 0, attention, alpha=0.5, label="attention kernels")
        ax.fill_between(x, attention, total, alpha=0.3, label="everything else")
        ax.plot(x, total, "o-", color="black", label="step")
        for r in mine:
            ax.annotate(
                str(r[knob]),
                (r["tokens_per_sample"], r["step_seconds_median"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
            )
        ax.set_title(f"varying {knob.replace('_', ' ')}")
        ax.set_xlabel("tokens per sample (A + V)")
    axes[0].set_ylabel("step time (s)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per shape (median reported)")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall time, or process CPU time on a shared machine (use with OMP_NUM_THREADS=1)",
    )
    parser.add_argument("--out", default="benchmarks/results/bench_scaling.json")
    parser.add_argument("--plot", default="docs/figures/step_scaling.png")
    args = parser.parse_args()
    clock_name, args.clock = args.clock, CLOCKS[args.clock]
    amp = torch.bfloat16 if args.precision == "bf16" else None
    rows = []
    for knob, values in SWEEPS.items():
        for value in values:
            shape = dict(BASE, **{knob: value})
            row = {"sweep": knob, **measure(args.size, amp, shape, args)}
            rows.append(row)
            print(
                f"{knob}={value:5d}: {row['tokens_per_sample']:5d} tokens, step {row['step_seconds_median']:.3f} s, "
                f"attention {100 * row['attention_time_share']:.1f} % of time, "
                f"{100 * row['attention_flop_share']:.1f} % of FLOPs",
                flush=True,
            )
    title = (
        f"{args.size}, {args.precision}, batch {args.batch_size}; base shape audio {BASE['audio_frames']} "
        f"frames, video {BASE['frames']}x{BASE['image_size']}px"
    )
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    plot(rows, Path(args.plot), title)
    record = {
        "benchmark": "bench_scaling",
        "command": f"python benchmarks/bench_scaling.py --size {args.size} --precision {args.precision} "
        f"--batch-size {args.batch_size} --steps {args.steps} --clock {clock_name}",
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "base": BASE,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
