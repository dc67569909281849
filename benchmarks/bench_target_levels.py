"""Step time and memory of one target level against several, at a preset's real token grids, with a narrow model.

Each configuration runs in a fresh process: it builds the preset's model narrowed to ``--width`` (the preset's own
depth, so its target blocks exist), a batch of the preset's real input shapes and its masks, runs ``--warmup``
untimed and ``--steps`` timed training steps (``mjepa.train.step.train_step``), and reads the resident-set high-water
mark (VmHWM) before and after. The difference is the step's peak working memory on the CPU.

    python benchmarks/bench_target_levels.py --preset vitl16-as2m [--width 64] [--batch-size 2]

Also printed: the target tensors' bytes at the real width per GPU (analytic: levels x batch x tokens x width x 4),
which is what the levels add to the step's memory at scale. Writes JSON (default
benchmarks/results/bench_target_levels.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

from bench_json import write_record

CHILD = """
import dataclasses, json, statistics, sys, time, torch
from mjepa.config import PredictorConfig
from mjepa.masks import MaskSampler
from mjepa.models.mjepa import MJEPA
from mjepa.data.batch import Batch
from mjepa.pretrain_config import load_pretrain_config
from mjepa.terms import active_modes
from mjepa.train.optim import build_optimizer
from mjepa.train.step import train_step

args = json.loads(sys.argv[1])
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
torch.manual_seed(0)
config = load_pretrain_config(args["preset"], args["overrides"])
model_config = dataclasses.replace(
    config.model, encoder=dataclasses.replace(config.model.encoder, width=args["width"], num_heads=2),
    predictor=PredictorConfig(width=args["width"], depth=2, num_heads=2),
    objective=dataclasses.replace(config.model.objective, target_layers=tuple(args["levels"])))
model = MJEPA(model_config)
d, b = config.data, args["batch_size"]
batch = Batch(audio=torch.randn(b, d.audio_frames, d.mel_bins),
              video=torch.randn(b, 3, d.num_frames, d.image_size, d.image_size))
grids = model.token_grids(batch.audio.shape, batch.video.shape)
masks = MaskSampler(config.masks, grids[0], grids[1], active_modes(model_config.objective)).sample(b, seed=0)
optimizer = build_optimizer(model.named_trainable_parameters(), lr=1e-4, weight_decay=0.04)
before = hwm()
times = []
for step in range(args["warmup"] + args["steps"]):
    start = time.perf_counter()
    result = train_step(model, optimizer, batch, masks, ema_momentum=0.999)
    result.values()
    if step >= args["warmup"]:
        times.append(time.perf_counter() - start)
print(json.dumps({"levels": args["levels"], "step_s": statistics.median(times), "peak_step_mib": hwm() - before,
                  "terms": sorted(result.terms)}))
"""


def run_child(settings: dict) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(settings)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="vitl16-as2m")
    parser.add_argument("--width", type=int, default=64, help="narrow encoder and predictor width (default 64)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--per-gpu-batch", type=int, default=32, help="batch per GPU for the analytic figure")
    parser.add_argument("--out", default="benchmarks/results/bench_target_levels.json")
    args = parser.parse_args()

    from mjepa.config import ModelConfig
    from mjepa.pretrain_config import load_pretrain_config

    overrides = ["data.manifests=[a,b,c,d]"] if args.preset.startswith("vitg") else ["data.manifests=[a]"]
    config = load_pretrain_config(args.preset, overrides)
    preset_levels = list(config.model.objective.target_blocks(config.model.encoder.depth))
    rows = []
    for levels in ([config.model.encoder.depth - 1], preset_levels):
        row = run_child(
            {
                "preset": args.preset,
                "overrides": overrides,
                "width": args.width,
                "levels": levels,
                "batch_size": args.batch_size,
                "warmup": args.warmup,
                "steps": args.steps,
            }
        )
        rows.append(row)
        print(
            f"{args.preset} width {args.width}, batch {args.batch_size}, target blocks {levels}: "
            f"{row['step_s']:.2f} s/step, peak step memory {row['peak_step_mib']:.0f} MiB"
        )
    real = (
        ModelConfig.from_size("large").encoder.width if args.preset.startswith("vitl") else config.model.encoder.width
    )
    tokens = {"A": 0, "V": 0, "AV": 0}
    d, enc = config.data, config.model.encoder
    audio = (d.audio_frames // enc.audio_patch_time) * (d.mel_bins // enc.audio_patch_freq)
    video = (d.num_frames // enc.video_tubelet_time) * (d.image_size // enc.video_patch_size) ** 2
    tokens.update(A=audio, V=video, AV=audio + video)
    per_level = sum(tokens.values()) * args.per_gpu_batch * real * 4
    print(
        f"target tensors at width {real}, batch {args.per_gpu_batch} per GPU, modes A+V+AV: "
        f"{per_level / 2**30:.2f} GiB per level, {len(preset_levels) * per_level / 2**30:.2f} GiB for "
        f"{len(preset_levels)} levels (predicted)"
    )
    write_record(
        args.out,
        {
            "preset": args.preset,
            "width": args.width,
            "batch_size": args.batch_size,
            "machine": platform.processor() or platform.machine(),
            "measured": rows,
            "predicted_target_gib_per_level": per_level / 2**30,
            "predicted_for_batch_per_gpu": args.per_gpu_batch,
            "levels": preset_levels,
        },
    )


if __name__ == "__main__":
    main()
