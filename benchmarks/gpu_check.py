"""GPU figures of the real training step, for ``benchmarks/gpu_check.sh`` (one CUDA GPU, a few minutes).

- A ViT-L step (``vitl16-as2m``: real grids, the preset's per-GPU batch at ``--world-size`` ranks, bf16 autocast,
  SDPA restricted to the flash kernel, activation checkpointing), with and without ``torch.compile``: step time,
  device reads per step, MFU against the GPU's bf16 dense peak, peak memory against the cost model.
- FSDP2 on one GPU (a process group of one): the sharded step gives the loss of the plain step.
- One epoch of V-JEPA 2's probe grid (20 attentive heads) at AS-20K audio's shape, one head at a time and with
  ``heads_per_pass="auto"`` (batched heads), features streamed from CPU memory.

Each part reports its figures or its error; the whole prints one JSON object (and writes it with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import traceback

import torch

from mjepa.cost_model import estimate_step_memory, gpu_bytes_needed, step_flops_per_gpu
from mjepa.data.batch import Batch
from mjepa.masks import MaskSampler, masks_to
from mjepa.models.mjepa import MJEPA
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.device_reads import DeviceReadCounter
from mjepa.train.optim import build_optimizer
from mjepa.train.step import train_step

# Dense bf16 peaks (TFLOP/s, no sparsity) by a substring of torch.cuda.get_device_name().
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "L4": 121.0,
    "B200": 2250.0,
}


def bf16_peak(name: str) -> float | None:
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def section(results: dict, name: str, fn) -> None:
    started = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as err:  # noqa: BLE001 - a diagnostic script reports every part, failed or not
        results[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
    results[name]["seconds"] = round(time.perf_counter() - started, 1)
    print(f"[gpu_check] {name}: {json.dumps({k: v for k, v in results[name].items() if k != 'traceback'})}", flush=True)


def preset_inputs(preset: str, per_gpu: int, device: torch.device):
    config = load_pretrain_config(preset, ["data.source=synthetic", "data.mixture_weights=[]"])
    data = config.data
    gen = torch.Generator().manual_seed(0)
    batch = Batch(
        audio=torch.randn(per_gpu, data.audio_frames, data.mel_bins, generator=gen),
        video=torch.randn(per_gpu, 3, data.num_frames, data.image_size, data.image_size, generator=gen),
    )
    audio_grid, video_grid = config.token_grids()
    masks = MaskSampler(config.masks, audio_grid, video_grid).sample(per_gpu, seed=0)
    return config, batch.to(device), masks_to(masks, device), masks


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def vit_step(
    preset: str, per_gpu: int, compiled: bool, steps: int, warmup: int, device: torch.device = torch.device("cuda")
) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    on_cuda = device.type == "cuda"
    config, batch, masks, host_masks = preset_inputs(preset, per_gpu, device)
    torch.manual_seed(0)
    model = MJEPA(config.model)
    model.set_activation_checkpointing(True)
    model.to(device)
    if compiled:
        for encoder in model.encoders.values():
            encoder.blocks.compile()
    optimizer = build_optimizer(model.named_trainable_parameters(), 1e-4, 0.04)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    times, reads = [], []
    amp = torch.bfloat16 if on_cuda else None
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION if on_cuda else SDPBackend.MATH):
        compile_started = time.perf_counter()
        for _ in range(warmup):
            result = train_step(model, optimizer, batch, masks, 0.99925, amp, 10.0)
        _sync(device)
        warmup_seconds = time.perf_counter() - compile_started
        for _ in range(steps):
            started = time.perf_counter()
            with DeviceReadCounter() as counter:
                result = train_step(model, optimizer, batch, masks, 0.99925, amp, 10.0)
            _sync(device)
            times.append(time.perf_counter() - started)
            reads.append(counter.count)
    step_s = statistics.median(times)
    data = config.data
    audio_shape, video_shape = (
        (1, data.audio_frames, data.mel_bins),
        (1, 3, data.num_frames, data.image_size, data.image_size),
    )
    flops = step_flops_per_gpu(config.model, per_gpu, audio_shape, video_shape, host_masks)
    peak = bf16_peak(torch.cuda.get_device_name()) if on_cuda else None
    predicted = estimate_step_memory(
        config.model,
        per_gpu,
        audio_shape,
        video_shape,
        host_masks,
        amp=True,
        checkpointing=True,
        strategy="ddp",
        world_size=1,
    )
    return {
        "preset": preset,
        "per_gpu_batch": per_gpu,
        "compiled": compiled,
        "flash_attention": True,
        "activation_checkpointing": True,
        "warmup_seconds": round(warmup_seconds, 1),
        "step_seconds_median": step_s,
        "step_seconds_all": times,
        "clips_per_second": per_gpu / step_s,
        "device_reads_per_step": max(reads),
        "loss": result.values()["loss"],
        "tflop_per_step": flops / 1e12,
        "achieved_tflops": flops / step_s / 1e12,
        "mfu": None if peak is None else flops / step_s / (peak * 1e12),
        "bf16_peak_tflops": peak,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if on_cuda else None,
        "cost_model_gib": predicted.total / 2**30,
        "cost_model_with_slack_gib": gpu_bytes_needed(predicted) / 2**30,
    }


def fsdp_one_gpu(steps: int, device: torch.device = torch.device("cuda")) -> dict:
    import torch.distributed as dist

    from mjepa.train.parallel import apply_fsdp, unwrapped
    from mjepa.train.step import accumulated_step

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29531")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    try:
        amp = torch.bfloat16 if device.type == "cuda" else None
        config, batch, masks, _ = preset_inputs("tiny-cpu", 8, device)
        losses = {}
        for name in ("plain", "fsdp"):
            torch.manual_seed(0)
            model = MJEPA(config.model).to(device)
            if name == "fsdp":
                apply_fsdp(model, device.type, 1)
            optimizer = build_optimizer(model.named_trainable_parameters(), 1e-3, 0.04)
            parallel = unwrapped(model)
            losses[name] = [
                accumulated_step(parallel, optimizer, [(batch, masks)], 0.99, amp, 10.0).values()["loss"]
                for _ in range(steps)
            ]
        gap = max(abs(a - b) / abs(b) for a, b in zip(losses["fsdp"], losses["plain"]))
        return {"losses": losses, "max_relative_gap": gap, "agree": gap < 1e-2}
    finally:
        dist.destroy_process_group()


def probe_epoch(
    items: int, tokens: int, width: int, heads_per_pass, device: torch.device = torch.device("cuda")
) -> dict:
    """One epoch of V-JEPA 2's probe grid (20 heads) through ``train_probe_grid``, features in CPU memory (fp16)
    streamed to the GPU a batch at a time, as ``mjepa probe`` does at paper scale."""
    from mjepa.eval.probe import ProbeSettings, resolve_heads_per_pass, train_probe_grid

    settings = ProbeSettings(epochs=1, heads_per_pass=heads_per_pass)
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(items, tokens, width, generator=gen).half()
    targets = (torch.rand(items, 527, generator=gen) < 0.02).float()
    per_pass = resolve_heads_per_pass(settings, device, tokens, width)
    torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    started = time.perf_counter()
    train_probe_grid(settings, features, None, targets, multi_label=True, device=device)
    _sync(device)
    seconds = time.perf_counter() - started
    return {
        "items": items,
        "tokens_per_item": tokens,
        "width": width,
        "heads": len(settings.grid()),
        "heads_per_pass": per_pass,
        "epoch_seconds": seconds,
        "head_rows_per_second": items * len(settings.grid()) / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="vitl16-as2m")
    parser.add_argument("--world-size", type=int, default=8, help="ranks the preset's global batch is split over")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU")
    config = load_pretrain_config(args.preset, ["data.source=synthetic", "data.mixture_weights=[]"])
    per_gpu = config.run.batch_size // args.world_size
    results = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16_peak_tflops": bf16_peak(torch.cuda.get_device_name()),
    }
    section(results, "vit_step_eager", lambda: vit_step(args.preset, per_gpu, False, args.steps, args.warmup))
    torch.cuda.empty_cache()
    if not args.skip_compile:
        section(results, "vit_step_compiled", lambda: vit_step(args.preset, per_gpu, True, args.steps, args.warmup))
        torch.cuda.empty_cache()
    section(results, "fsdp2_one_gpu", lambda: fsdp_one_gpu(3))
    # AS-20K audio's shape (512 tokens of a ViT-L), V-JEPA 2's grid: one head at a time, then batched heads.
    for per_pass in (1, "auto"):
        section(
            results,
            f"probe_grid_epoch_{per_pass}",
            lambda: probe_epoch(1024, 512, config.model.encoder.width, per_pass),  # noqa: B023 (called at once)
        )
        torch.cuda.empty_cache()
    text = json.dumps(results, indent=2)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text)
    print(text)


if __name__ == "__main__":
    main()
