"""Peak memory of the full training step on CPU, with and without activation checkpointing.

Each configuration runs in a fresh process: it builds the model, optimiser, batch and masks, reads the resident
set size (VmRSS), runs one training step and reads the high-water mark (VmHWM). The difference is the step's peak
working memory: activations, gradients and the optimiser state allocated on the first step. The same step also
runs under the PyTorch profiler, whose allocation events give the peak of live tensor bytes (what a GPU's caching
allocator would have to hold, without the CPU allocator's slack). Beside both: the prediction of
``mjepa.cost_model`` for the same shapes and masks. Figures are MiB.

    python benchmarks/bench_memory.py                       # tiny and small, default shapes, batch 2
    python benchmarks/bench_memory.py --sizes tiny --batch-size 4

Writes JSON (default benchmarks/results/bench_memory.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, torch
from mjepa.config import MaskConfig, ModelConfig
from mjepa.masks import MaskSampler
from mjepa.models.mjepa import MJEPA
from mjepa.data.batch import Batch
from mjepa.train.optim import build_optimizer
from mjepa.train.step import train_step

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # kB -> MiB

size, checkpointing, b, frames, image, audio_frames = sys.argv[1], sys.argv[2] == "1", *map(int, sys.argv[3:7])
torch.manual_seed(0)
model = MJEPA(ModelConfig.from_size(size))
model.set_activation_checkpointing(checkpointing)
optimizer = build_optimizer(model.named_trainable_parameters(), 1e-4, 0.04)
batch = Batch(torch.randn(b, audio_frames, 128), torch.randn(b, 3, frames, image, image))
grids = model.token_grids(tuple(batch.audio.shape), tuple(batch.video.shape))
masks = MaskSampler(MaskConfig(), grids[0], grids[1]).sample(b, seed=0)
before = status("VmRSS")
train_step(model, optimizer, batch, masks, ema_momentum=0.999)
peak = status("VmHWM")
params = sum(p.numel() for p in model.parameters()) * 4 / 2**20

# Peak of live tensor bytes over a second step (the optimiser state now exists: add it back).
from torch.profiler import profile, ProfilerActivity
optimizer.zero_grad(set_to_none=True)
state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    train_step(model, optimizer, batch, masks, ema_momentum=0.999)
live = top = 0
for t, n in sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"):
    live += n
    top = max(top, live)

from mjepa.cost_model import estimate_step_memory
predicted = estimate_step_memory(model.config, b, tuple(batch.audio.shape), tuple(batch.video.shape), masks, amp=False,
                                 checkpointing=checkpointing)
print(json.dumps({"rss_before_mib": before, "peak_mib": peak, "parameters_mib": params,
                  "live_tensor_peak_mib": (top + state) / 2**20, "predicted_step_peak_mib": predicted.step_peak / 2**20,
                  "predicted_saved_activations_mib": predicted.saved_activations / 2**20}))
"""


def measure(size: str, checkpointing: bool, args: argparse.Namespace) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            size,
            "1" if checkpointing else "0",
            str(args.batch_size),
            str(args.frames),
            str(args.image_size),
            str(args.audio_frames),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    record = json.loads(out.stdout.strip().splitlines()[-1])
    record.update(
        size=size, activation_checkpointing=checkpointing, step_peak_mib=record["peak_mib"] - record["rss_before_mib"]
    )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,small")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--audio-frames", type=int, default=1024)
    parser.add_argument("--out", default="benchmarks/results/bench_memory.json")
    args = parser.parse_args()
    rows = []
    for size in args.sizes.split(","):
        for checkpointing in (False, True):
            row = measure(size, checkpointing, args)
            rows.append(row)
            print(
                f"{size:6s} checkpointing={'on ' if checkpointing else 'off'}: step peak {row['step_peak_mib']:.0f} "
                f"MiB above {row['rss_before_mib']:.0f} MiB (parameters {row['parameters_mib']:.0f} MiB); live "
                f"tensors {row['live_tensor_peak_mib']:.0f} MiB; cost model {row['predicted_step_peak_mib']:.0f} MiB",
                flush=True,
            )
    record = {
        "benchmark": "bench_memory",
        "command": f"python benchmarks/bench_memory.py --sizes {args.sizes} --batch-size {args.batch_size} "
        f"--frames {args.frames} --image-size {args.image_size} --audio-frames {args.audio_frames}",
        "results": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
