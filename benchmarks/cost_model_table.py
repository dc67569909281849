"""Predicted memory and FLOPs per GPU of the training step for ViT-L and ViT-g at the paper's shapes.

Uses ``mjepa.cost_model`` (validated against measured peaks by ``benchmarks/bench_memory.py``). For each model and
input shape, under DDP and FSDP2 on ``--world-size`` GPUs, bf16 autocast, with and without activation
checkpointing: the predicted per-GPU peak at ``--batch`` samples per GPU, its parts, the step's FLOPs per GPU and
the largest per-GPU batch that fits ``--gpu-gib`` (with the model's allocator slack and reserved memory).

    python benchmarks/cost_model_table.py                      # 80 GB cards, 8 GPUs, batch 8 per GPU
    python benchmarks/cost_model_table.py --gpu-gib 139 --world-size 64

Prints a Markdown table and writes JSON (default benchmarks/results/cost_model.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mjepa.config import ModelConfig
from mjepa.cost_model import (
    ALLOCATOR_SLACK,
    GPU_RESERVED_BYTES,
    estimate_step_memory,
    gpu_bytes_needed,
    max_batch_per_gpu,
    sample_masks,
    step_flops_per_gpu,
)
from mjepa.pretrain_config import load_pretrain_config

# (label, size, video frames, image size, audio fbank frames, video fps, the preset whose objective is used: its
# target levels)
SHAPES = (
    ("ViT-L/16, 16 frames 256 px + 10 s audio", "large", 16, 256, 1024, 4.0, "vitl16-as2m"),
    ("ViT-g/16, 16 frames 256 px + 10 s audio", "giant", 16, 256, 1024, 4.0, "vitg16-as2m-vm2m"),
    ("ViT-g/16 cool-down, 64 frames 256 px + 10 s audio", "giant", 64, 256, 1024, 16.0, "vitg16-as2m-vm2m-cooldown64"),
)


def preset_objective(preset: str):
    manifests = "[a,b,c,d]" if preset.startswith("vitg") else "[a]"
    return load_pretrain_config(preset, [f"data.manifests={manifests}"]).model.objective


def rows_for(args: argparse.Namespace) -> list[dict]:
    rows = []
    for label, size, frames, image, audio_frames, _fps, preset in SHAPES:
        config = ModelConfig.from_size(size, preset_objective(preset))
        audio_shape, video_shape = (1, audio_frames, 128), (1, 3, frames, image, image)
        masks = sample_masks(config, audio_shape, video_shape)
        flops = step_flops_per_gpu(config, args.batch, audio_shape, video_shape, masks)
        for strategy in ("ddp", "fsdp"):
            for checkpointing in (False, True):
                memory = estimate_step_memory(
                    config,
                    args.batch,
                    audio_shape,
                    video_shape,
                    masks,
                    amp=True,
                    checkpointing=checkpointing,
                    strategy=strategy,
                    world_size=args.world_size,
                )
                best = max_batch_per_gpu(
                    config,
                    audio_shape,
                    video_shape,
                    args.gpu_gib * 2**30,
                    True,
                    checkpointing,
                    strategy,
                    args.world_size,
                    masks,
                )
                rows.append(
                    {
                        "model": label,
                        "size": size,
                        "preset": preset,
                        "target_layers": list(config.objective.target_layers),
                        "frames": frames,
                        "image_size": image,
                        "audio_frames": audio_frames,
                        "strategy": strategy,
                        "world_size": args.world_size,
                        "activation_checkpointing": checkpointing,
                        "batch_per_gpu": args.batch,
                        "memory_gib": memory.as_gib(),
                        "gpu_gib_needed": gpu_bytes_needed(memory) / 2**30,
                        "tflop_per_step_per_gpu": flops / 1e12,
                        "max_batch_per_gpu": best,
                    }
                )
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"| model | strategy | checkpointing | state GiB | activations GiB | peak GiB at batch {args.batch} "
        f"| TFLOP/step at batch {args.batch} | max batch on {args.gpu_gib:g} GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["memory_gib"]
        state = m["parameters"] + m["gradients"] + m["optimizer"] + m["gathered_blocks"] + m["weight_copies"]
        lines.append(
            f"| {r['model']} | {r['strategy']}×{r['world_size']} | "
            f"{'on' if r['activation_checkpointing'] else 'off'} | {state:.1f} | "
            f"{m['saved_activations']:.1f} | {r['gpu_gib_needed']:.1f} | {r['tflop_per_step_per_gpu']:.1f} | "
            f"{r['max_batch_per_gpu']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu-gib", type=float, default=80.0, help="memory per GPU in GiB (default 80)")
    parser.add_argument("--world-size", type=int, default=8, help="GPUs (default 8)")
    parser.add_argument("--batch", type=int, default=8, help="per-GPU batch for the peak and FLOP columns")
    parser.add_argument("--out", default="benchmarks/results/cost_model.json")
    args = parser.parse_args()
    rows = rows_for(args)
    table = markdown(rows, args)
    print(table)
    record = {
        "benchmark": "cost_model_table",
        "command": f"python benchmarks/cost_model_table.py --gpu-gib {args.gpu_gib:g} --world-size "
        f"{args.world_size} --batch {args.batch}",
        "assumptions": {
            "precision": "bf16 autocast",
            "allocator_slack": ALLOCATOR_SLACK,
            "reserved_gib": GPU_RESERVED_BYTES / 2**30,
            "optimizer": "AdamW, fp32 states",
            "masks": "the recipe's two mask configurations, sampled once (seed 0)",
        },
        "rows": rows,
        "markdown": table,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
