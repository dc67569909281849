"""Loader throughput: samples per second per worker for decode + fbank + video transforms.

Two shapes:
- default: 10 s clips (640x360 H.264 at 25 fps, AAC 44.1 kHz stereo, like a typical AudioSet download), 16 frames
  at 4 fps, 224 px random resized crop, 1024 x 128 fbank;
- demo: AtariAV clips (64 px, 15 fps, 4 s, 16 kHz mono AAC), 8 frames at 4 fps... as the demo reads them.

The test media are written by this script with PyAV. Each configuration is timed in a single process (one worker's
throughput), with decoding in the process and in an isolating helper process (``data.isolate_decoding``, the
training default), so the cost of the isolation is measured. From the default-shape rate and the analytic FLOPs of a ViT-L training step it estimates how many
workers one GPU needs to keep the step fed (see the printed assumptions).

    python benchmarks/bench_data.py
    python benchmarks/bench_data.py --items 40 --gpu-tflops 989 --gpu-utilisation 0.4 --per-gpu-batch 32

Prints the figures and writes JSON (default benchmarks/results/bench_data.json).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from mjepa.config import MaskConfig, ModelConfig
from mjepa.data.dataset import AudioVisualDataset, Sample
from mjepa.data.decode import ClipSpec
from mjepa.data.fbank import AudioFrontendConfig
from mjepa.data.manifest import ManifestEntry
from mjepa.data.video_transforms import VideoTransformConfig
from mjepa.flops import step_flops
from mjepa.masks import MaskSampler


def write_clip(path: Path, seconds: float, width: int, height: int, fps: int, sample_rate: int,
               channels: int, seed: int) -> Path:
    """A clip with moving noise-textured video and a noisy chord, so the encoders do real work."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=sample_rate)
        audio.layout = "stereo" if channels == 2 else "mono"
        texture = rng.integers(0, 256, (height, width * 2, 3), dtype=np.uint8)
        for i in range(int(seconds * fps)):
            shift = (i * 4) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, shift:shift + width]), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        wave = 0.2 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 660 * t)) + 0.02 * rng.standard_normal(t.size)
        samples = np.tile(wave.astype(np.float32), (channels, 1))
        chunk = 1024
        for start in range(0, samples.shape[1], chunk):
            part = np.ascontiguousarray(samples[:, start:start + chunk])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=audio.layout.name)
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    return path


def time_dataset(dataset: AudioVisualDataset, items: int) -> dict:
    dataset[0]  # warm-up: codec and resampler set-up
    start = time.perf_counter()
    for i in range(items):
        sample = dataset[i % len(dataset)]
        if not isinstance(sample, Sample):
            raise RuntimeError(f"benchmark clip failed to load: {sample}")
    seconds = time.perf_counter() - start
    return {"items": items, "seconds": seconds, "samples_per_second": items / seconds}


def vit_l_step_seconds(per_gpu_batch: int, gpu_tflops: float, utilisation: float) -> tuple[float, float]:
    """Estimated ViT-L step time at the default shapes from analytic FLOPs, a peak and a utilisation."""
    config = ModelConfig.from_size("large")
    audio_shape, video_shape = (per_gpu_batch, 1024, 128), (per_gpu_batch, 3, 16, 224, 224)
    masks = MaskSampler(MaskConfig(), (64, 8), (8, 14, 14)).sample(per_gpu_batch, seed=0)
    flops = step_flops(config, per_gpu_batch, audio_shape, video_shape, masks).training_step
    return flops / (gpu_tflops * 1e12 * utilisation), flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24, help="samples timed per configuration")
    parser.add_argument("--per-gpu-batch", type=int, default=32, help="ViT-L clips per GPU per step")
    parser.add_argument("--gpu-tflops", type=float, default=989.0, help="GPU bf16 dense peak (H100 SXM: 989)")
    parser.add_argument("--gpu-utilisation", type=float, default=0.4, help="assumed model FLOP utilisation")
    parser.add_argument("--out", default="benchmarks/results/bench_data.json")
    args = parser.parse_args()

    torch.set_num_threads(1)  # a loader worker runs single-threaded
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shapes = {
            "default": dict(
                media=dict(seconds=10.0, width=640, height=360, fps=25, sample_rate=44100, channels=2),
                clip=ClipSpec(num_frames=16, frames_per_second=4.0),
                audio=AudioFrontendConfig(),
                video=VideoTransformConfig(output_size=224),
            ),
            "demo": dict(
                media=dict(seconds=4.0, width=64, height=64, fps=15, sample_rate=16000, channels=1),
                clip=ClipSpec(num_frames=8, frames_per_second=4.0),
                audio=AudioFrontendConfig(target_frames=384),
                video=VideoTransformConfig(output_size=64, eval_short_side=64),
            ),
        }
        for name, shape in shapes.items():
            clips = [write_clip(root / f"{name}_{i}.mp4", seed=i, **shape["media"]) for i in range(4)]
            for isolated in (False, True):
                dataset = AudioVisualDataset(
                    [ManifestEntry(str(c)) for c in clips], [], shape["clip"], shape["audio"], shape["video"],
                    training=True, seed=0, decode_timeout_s=120.0 if isolated else None,
                )
                result = time_dataset(dataset, args.items)
                result.update(shape=name, isolated_decoding=isolated, media=shape["media"],
                              clip=shape["clip"].to_dict(), fbank_frames=shape["audio"].target_frames,
                              crop=shape["video"].output_size)
                rows.append(result)
                print(f"{name:8s} {'isolated' if isolated else 'in-process':10s}: "
                      f"{result['samples_per_second']:.2f} samples/s per worker "
                      f"({result['items']} items in {result['seconds']:.1f} s)", flush=True)
            plain, isolated_row = rows[-2], rows[-1]
            print(f"{name:8s} isolation costs {100 * (1 - isolated_row['samples_per_second'] / plain['samples_per_second']):.1f} % "
                  f"of a worker's throughput", flush=True)

    step_seconds, step_flop = vit_l_step_seconds(args.per_gpu_batch, args.gpu_tflops, args.gpu_utilisation)
    needed = args.per_gpu_batch / step_seconds
    per_worker = next(r for r in rows if r["shape"] == "default" and r["isolated_decoding"])["samples_per_second"]
    workers = math.ceil(needed / per_worker)
    print(f"ViT-L step, batch {args.per_gpu_batch} per GPU: {step_flop / 1e12:.1f} TFLOP, estimated "
          f"{step_seconds:.2f} s at {args.gpu_utilisation:.0%} of {args.gpu_tflops:.0f} TFLOP/s -> "
          f"{needed:.1f} samples/s -> {workers} loader workers per GPU at {per_worker:.2f} samples/s each")
    record = {
        "benchmark": "bench_data",
        "command": f"python benchmarks/bench_data.py --items {args.items} --per-gpu-batch {args.per_gpu_batch} "
                   f"--gpu-tflops {args.gpu_tflops} --gpu-utilisation {args.gpu_utilisation}",
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "av": av.__version__},
        "results": rows,
        "vit_l_estimate": {"per_gpu_batch": args.per_gpu_batch, "step_tflop": step_flop / 1e12,
                           "assumed_gpu_tflops": args.gpu_tflops, "assumed_utilisation": args.gpu_utilisation,
                           "step_seconds": step_seconds, "samples_per_second_needed": needed,
                           "workers_per_gpu": workers},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
