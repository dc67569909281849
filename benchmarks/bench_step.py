"""Time of the full 9-term MJEPA training step, with achieved GFLOP/s against the machine's measured peak.

In one run: the machine's fp32 and bf16 matrix-product throughput (best of a few GEMM shapes), then for each
encoder size, precision and implementation the wall time of the training step (forward, backward, AdamW, EMA) at
the given input shapes, its analytic FLOPs (mjepa.flops) and the ratio achieved / measured peak of that precision.

Implementations: ``ours`` is the model as it trains; ``reference`` is the same step with stock PyTorch kernels
(``mjepa.models.kernels.reference_kernels``): one forward per mode and mask configuration, stock ``nn.Linear``
autograd and attention in the autocast dtype. Both start from the same weights, batch and masks, so their first
losses must agree (to bf16 tolerance under bf16); the JSON records both.

    python benchmarks/bench_step.py                      # tiny and small, fp32 and bf16, default shapes
    python benchmarks/bench_step.py --sizes tiny --precisions fp32 --steps 5
    python benchmarks/bench_step.py --sizes small --precisions bf16 --implementations ours,reference

Prints a table and writes JSON (default benchmarks/results/bench_step.json).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import torch
import torch.nn.functional as F

from bench_json import write_record
from mjepa.config import MaskConfig, ModelConfig
from mjepa.data.batch import Batch
from mjepa.flops import step_flops
from mjepa.masks import MaskSampler
from mjepa.models.kernels import reference_kernels
from mjepa.models.mjepa import MJEPA
from mjepa.precision import cpu_has_fast_bf16
from mjepa.terms import active_modes
from mjepa.train.optim import build_optimizer
from mjepa.train.step import train_step

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# wall: elapsed time (the default; needs an otherwise idle machine). cpu: the process's CPU time, for a machine
# shared with other work: with one thread it counts the time the benchmark ran on a core, not the time it waited.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]
# (tokens, in, out): square shapes, and the linear layers of tiny/small/base blocks at the token counts of a step.
GEMM_SHAPES = (
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (4096, 384, 1536),
    (4096, 768, 3072),
    (1024, 192, 576),
    (2048, 192, 768),
    (2048, 768, 192),
    (1024, 384, 1152),
    (2048, 1536, 384),
    (2048, 768, 2304),
    (2048, 3072, 768),
)


def measure_matmul_gflops(dtype: torch.dtype, min_seconds: float, max_flops: float) -> dict:
    """Best GFLOP/s over a few GEMM shapes typical of the step (and a square one) and over operand layouts.

    Layouts of ``a @ b``: ``NT`` is ``F.linear(x, weight)`` with an ``(out, in)`` weight (what stock linear layers
    run); ``TN`` has ``a`` column-major and ``b`` row-major. On CPUs without native bf16 the emulated kernels differ by
    about 2x between these two (and run 10x+ slower with both operands row-major, a layout the model avoids), so the
    peak is the best of both: an efficiency figure against the slower layout's peak would flatter the step.
    """
    results = {}
    for m, k, n in GEMM_SHAPES:
        flops = 2.0 * m * k * n
        if flops > max_flops:
            continue
        x, weight = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
        x_col, weight_row = x.t().contiguous().t(), weight.t().contiguous()
        # Called at once, inside this iteration: the lambdas never outlive the loop variables they read.
        layouts = {"NT": lambda: F.linear(x, weight), "TN": lambda: x_col @ weight_row}  # noqa: B023
        for name, product in layouts.items():
            product()  # warm-up (library dispatch, packing buffers)
            reps, start = 0, CLOCK()
            while True:
                product()
                reps += 1
                elapsed = CLOCK() - start
                if elapsed >= min_seconds:
                    break
            results[f"{m}x{k}x{n} {name}"] = flops * reps / elapsed / 1e9
    return {"best_gflops": max(results.values()), "per_shape_gflops": results}


def bench_config(size: str, precision: str, implementation: str, args: argparse.Namespace) -> dict:
    kernels = reference_kernels() if implementation == "reference" else contextlib.nullcontext()
    with kernels:
        return _bench_config(size, precision, args) | {"implementation": implementation}


def _bench_config(size: str, precision: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    config = ModelConfig.from_size(size)
    model = MJEPA(config)
    optimizer = build_optimizer(model.named_trainable_parameters(), 1e-4, 0.04)
    b = args.batch_size
    gen = torch.Generator().manual_seed(0)
    batch = Batch(
        audio=torch.randn(b, args.audio_frames, args.mel_bins, generator=gen),
        video=torch.randn(b, 3, args.frames, args.image_size, args.image_size, generator=gen),
    )
    audio_grid, video_grid = model.token_grids(tuple(batch.audio.shape), tuple(batch.video.shape))
    masks = MaskSampler(MaskConfig(), audio_grid, video_grid, active_modes(config.objective)).sample(b, seed=0)
    flops = step_flops(config, b, tuple(batch.audio.shape), tuple(batch.video.shape), masks)
    amp = None if precision == "fp32" else torch.bfloat16
    first = None
    for _ in range(args.warmup):
        result = train_step(model, optimizer, batch, masks, ema_momentum=0.999, amp_dtype=amp)
        first = result.values()["loss"] if first is None else first
    times = []
    for _ in range(args.steps):
        start = CLOCK()
        result = train_step(model, optimizer, batch, masks, ema_momentum=0.999, amp_dtype=amp)
        times.append(CLOCK() - start)
        first = result.values()["loss"] if first is None else first
    step_seconds = sorted(times)[len(times) // 2]
    return {
        "size": size,
        "precision": precision,
        "batch_size": b,
        "encoder_params_millions": sum(p.numel() for p in model.encoders.parameters()) / 1e6,
        "tokens": {"A": audio_grid[0] * audio_grid[1], "V": video_grid[0] * video_grid[1] * video_grid[2]},
        "context_tokens": {m: [p.context.shape[1] for p in pairs] for m, pairs in masks.items()},
        "target_tokens": {m: [p.target.shape[1] for p in pairs] for m, pairs in masks.items()},
        "step_seconds_median": step_seconds,
        "step_seconds_all": times,
        "step_gflop": flops.training_step / 1e9,
        "attention_gflop": flops.attention_training_step / 1e9,
        "gflop_breakdown": {
            "target_forward": flops.target_forward / 1e9,
            "context_forward": (flops.context_forward + flops.context_embed_forward) / 1e9,
            "predictor_forward": flops.predictor_forward / 1e9,
            "cross_heads_forward": flops.cross_heads_forward / 1e9,
        },
        "achieved_gflops": flops.training_step / step_seconds / 1e9,
        "first_step_loss": first,
        "loss": result.values()["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,small", help="comma-separated encoder sizes (default: tiny,small)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated fp32,bf16 (default: both)")
    parser.add_argument("--implementations", default="ours", help="comma-separated ours,reference (default: ours)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--audio-frames", type=int, default=1024, help="fbank frames (default 1024 = 10 s)")
    parser.add_argument("--mel-bins", type=int, default=128)
    parser.add_argument("--frames", type=int, default=16, help="video frames (default 16)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median reported)")
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall time, or process CPU time on a shared machine (use with OMP_NUM_THREADS=1)",
    )
    parser.add_argument("--gemm-seconds", type=float, default=1.0, help="time spent per GEMM shape")
    parser.add_argument("--out", default="benchmarks/results/bench_step.json")
    args = parser.parse_args()

    global CLOCK
    CLOCK = CLOCKS[args.clock]
    precisions = args.precisions.split(",")
    unknown = [p for p in precisions if p not in DTYPES]
    if unknown:
        parser.error(f"unknown precision {unknown[0]!r}; expected fp32 or bf16")
    # Under bf16 on a CPU that emulates it, our attention runs in fp32 (mjepa.models.kernels): the fp32 peak is then
    # needed for the roofline of the mixed step as well.
    emulated = "bf16" in precisions and not cpu_has_fast_bf16() and "ours" in args.implementations
    peaks = {}
    for p in precisions + (["fp32"] if emulated and "fp32" not in precisions else []):
        # Without native bf16 (AVX512-BF16/AMX) bf16 GEMMs run ~20 GFLOP/s here: skip the largest shapes.
        max_flops = 1e13 if p == "fp32" or torch.cpu._is_avx512_bf16_supported() else 2e10
        peaks[p] = measure_matmul_gflops(DTYPES[p], args.gemm_seconds, max_flops)
        print(f"matmul peak {p}: {peaks[p]['best_gflops']:.1f} GFLOP/s  {peaks[p]['per_shape_gflops']}", flush=True)

    implementations = args.implementations.split(",")
    if any(i not in ("ours", "reference") for i in implementations):
        parser.error(f"--implementations: expected ours and/or reference, got {args.implementations!r}")
    rows = []
    for size in args.sizes.split(","):
        for p in precisions:
            for implementation in implementations:
                row = bench_config(size, p, implementation, args)
                row["efficiency_vs_matmul_peak"] = row["achieved_gflops"] / peaks[p]["best_gflops"]
                if p == "bf16" and emulated and implementation == "ours":
                    # The best time this op mix allows: linear products at the bf16 peak, attention at the fp32 one.
                    attention, linear = row["attention_gflop"], row["step_gflop"] - row["attention_gflop"]
                    ideal = linear / peaks["bf16"]["best_gflops"] + attention / peaks["fp32"]["best_gflops"]
                    row["efficiency_vs_mixed_peak"] = ideal / row["step_seconds_median"]
                    print(
                        f"{size:6s} {p} ours: attention runs in fp32 here ({100 * attention / row['step_gflop']:.0f} "
                        f"% of the FLOPs): {100 * row['efficiency_vs_mixed_peak']:.1f} % of the mixed "
                        "bf16-linear / fp32-attention peak",
                        flush=True,
                    )
                rows.append(row)
                print(
                    f"{size:6s} {p} {implementation:9s}: step {row['step_seconds_median']:.3f} s, "
                    f"{row['step_gflop']:.1f} GFLOP, {row['achieved_gflops']:.1f} GFLOP/s = "
                    f"{100 * row['efficiency_vs_matmul_peak']:.1f} % of the {p} matmul peak, first loss "
                    f"{row['first_step_loss']:.5f}",
                    flush=True,
                )
            ours = next((r for r in rows[-len(implementations) :] if r["implementation"] == "ours"), None)
            ref = next((r for r in rows[-len(implementations) :] if r["implementation"] == "reference"), None)
            if ours and ref:
                ours["speedup_vs_reference"] = ref["step_seconds_median"] / ours["step_seconds_median"]
                ours["first_loss_relative_difference"] = abs(ours["first_step_loss"] - ref["first_step_loss"]) / abs(
                    ref["first_step_loss"]
                )
                print(
                    f"{size:6s} {p}: ours is {ours['speedup_vs_reference']:.2f}x the reference, first losses "
                    f"differ by {100 * ours['first_loss_relative_difference']:.3f} %",
                    flush=True,
                )

    record = {
        "benchmark": "bench_step",
        "command": "python benchmarks/bench_step.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "matmul_peak": peaks,
        "results": rows,
    }
    write_record(args.out, record)


if __name__ == "__main__":
    main()
