"""Probe-grid cost: one epoch measured on this machine at the demo's shapes, and predictions for the paper's tasks.

Measured: the wall time of one epoch of ``train_probe_grid`` on random features of the demo's shapes (the tiny model
on AtariAV: width 192; 192 audio, 64 video, 256 audio-visual tokens per clip; the AtariAV training split), with the
demo's probe (one head, 4 attention heads) and with V-JEPA 2's grid (20 heads, 16 attention heads), on ``--device``;
and the grid with 4 and 20 heads per batched pass (stacked weights, ``mjepa.eval.stacked_probe``) instead of one at a
time.

Predicted (not measured): time and GPU memory of the whole probe grid (V-JEPA 2's 20 heads, 20 epochs, batch 32)
with a ViT-L encoder (width 1024) on one H100 at 40 % of its 989 TFLOP/s bf16 peak, from the attentive probe's
analytic FLOPs, for AS-20K (A / V / AV), ESC-50 (5 folds) and K400 (video). Features stay in CPU memory and stream
to the GPU a batch at a time, so GPU memory is the probes' weights and optimiser state plus the activations of the
heads trained together (``heads_per_pass="auto"`` on an 80 GB H100 with 75 GiB free: as many as half of that holds).

    python benchmarks/bench_probe.py                     # results: benchmarks/results/bench_probe.json
    python benchmarks/bench_probe.py --device cuda --items 2048
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from bench_json import write_record
from mjepa.eval.probe import (
    ATARI_PROBE_HEADS,
    AUTO_PASS_MEMORY_SHARE,
    SELF_ATTENTION_BLOCKS,
    VJEPA2_LEARNING_RATES,
    VJEPA2_PROBE_HEADS,
    VJEPA2_WEIGHT_DECAYS,
    ProbeSettings,
    build_probe,
    probe_activation_bytes,
    train_probe_grid,
)

H100_BF16_TFLOPS = 989.0
ASSUMED_MFU = 0.4
H100_FREE_BYTES = 75 * 2**30
# (task, modality): training rows per fold, folds, tokens per row, feature rows kept per item (test views)
PAPER_TASKS = {
    ("as20k", "audio"): (20_550, 1, 512),
    ("as20k", "video"): (20_550, 1, 1568),
    ("as20k", "av"): (20_550, 1, 2080),
    ("esc50", "audio"): (1_600, 5, 512),
    ("k400", "video"): (240_000, 1, 1568),
}


def probe_flops_per_row(tokens: int, width: int) -> float:
    """Forward FLOPs of the attentive probe for one row: 3 self-attention blocks (linear layers 24·T·D², attention
    4·T²·D each) and the cross-attention block (key/value projections of every token, 4·T·D²)."""
    block = 24 * tokens * width**2 + 4 * tokens**2 * width
    return SELF_ATTENTION_BLOCKS * block + 4 * tokens * width**2


def predicted_grid(rows: int, folds: int, tokens: int, width: int, heads: int, epochs: int, batch: int) -> dict:
    flops = 3 * probe_flops_per_row(tokens, width) * rows * heads * epochs * folds  # forward + backward
    seconds = flops / (H100_BF16_TFLOPS * 1e12 * ASSUMED_MFU)
    probe_params = sum(
        p.numel() for p in build_probe(ProbeSettings(num_heads=VJEPA2_PROBE_HEADS), width, 527).parameters()
    )
    state_bytes = probe_params * heads * (4 + 4 + 8)  # weights, gradients, AdamW moments (fp32)
    per_head = probe_activation_bytes(ProbeSettings(batch_size=batch), tokens, width)
    per_pass = max(1, min(heads, int(AUTO_PASS_MEMORY_SHARE * H100_FREE_BYTES // per_head)))
    feature_bytes = rows * tokens * width * 2  # fp16, in CPU memory
    return {
        "tflop": flops / 1e12,
        "hours": seconds / 3600,
        "heads_per_pass_auto": per_pass,
        "gpu_memory_gib": (state_bytes + per_pass * per_head) / 2**30,
        "cpu_feature_memory_gib": feature_bytes / 2**30,
    }


def measured_epoch(items: int, tokens: int, width: int, settings: ProbeSettings, device: torch.device) -> float:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(items, tokens, width, generator=gen).half()
    targets = (torch.rand(items, 26, generator=gen) < 0.1).float()
    started = time.perf_counter()
    train_probe_grid(settings, features, None, targets, multi_label=True, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--items", type=int, default=224, help="training rows (AtariAV's train split: 224)")
    parser.add_argument("--out", default="benchmarks/results/bench_probe.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    demo = ProbeSettings(learning_rates=(1e-3,), weight_decays=(0.05,), epochs=1, num_heads=ATARI_PROBE_HEADS)
    vjepa2 = ProbeSettings(epochs=1)
    measured = []
    for modality, tokens in (("audio", 192), ("video", 64), ("av", 256)):
        for name, settings in (("demo probe, 1 head", demo), ("V-JEPA 2 grid, 20 heads", vjepa2)):
            seconds = measured_epoch(args.items, tokens, 192, settings, device)
            measured.append(
                {
                    "modality": modality,
                    "tokens": tokens,
                    "probe": name,
                    "heads": len(settings.grid()),
                    "epoch_seconds": seconds,
                }
            )
            print(
                f"measured  {modality:5s} {name:24s}: {seconds:6.2f} s per epoch ({args.items} rows, {device})",
                flush=True,
            )

    for per_pass in (4, None):  # the grid's heads trained together in one batched pass, against one at a time
        settings = ProbeSettings(epochs=1, heads_per_pass=per_pass)
        seconds = measured_epoch(args.items, 192, 192, settings, device)
        measured.append(
            {
                "modality": "audio",
                "tokens": 192,
                "probe": f"V-JEPA 2 grid, {per_pass or 20} heads per pass",
                "heads": len(settings.grid()),
                "heads_per_pass": per_pass,
                "epoch_seconds": seconds,
            }
        )
        print(
            f"measured  audio V-JEPA 2 grid, {per_pass or 20:2d} heads per pass: {seconds:6.2f} s per epoch", flush=True
        )

    heads = len(VJEPA2_LEARNING_RATES) * len(VJEPA2_WEIGHT_DECAYS)
    predicted = []
    for (task, modality), (rows, folds, tokens) in PAPER_TASKS.items():
        row = predicted_grid(rows, folds, tokens, 1024, heads, epochs=20, batch=32)
        row.update(task=task, modality=modality, rows=rows, folds=folds, tokens=tokens)
        predicted.append(row)
        print(
            f"predicted {task:6s} {modality:5s}: {row['hours']:6.2f} h on one H100, {row['heads_per_pass_auto']} heads "
            f"per pass, GPU {row['gpu_memory_gib']:.1f} "
            f"GiB, features {row['cpu_feature_memory_gib']:.0f} GiB in CPU memory",
            flush=True,
        )

    record = {
        "benchmark": "bench_probe",
        "command": f"python benchmarks/bench_probe.py --device {args.device} --items {args.items}",
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        },
        "measured": measured,
        "predicted": {
            "assumptions": {
                "gpu": "H100",
                "bf16_tflops": H100_BF16_TFLOPS,
                "mfu": ASSUMED_MFU,
                "heads": heads,
                "epochs": 20,
                "batch": 32,
                "width": 1024,
            },
            "tasks": predicted,
        },
    }
    write_record(args.out, record)


if __name__ == "__main__":
    main()
