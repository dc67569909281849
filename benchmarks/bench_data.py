"""Loader throughput: samples per second per worker for decode + fbank + video transforms, loose files vs shards.

Two shapes:
- default: 10 s clips (640x360 H.264 at 25 fps, AAC 44.1 kHz stereo, like a typical AudioSet download), 16 frames
  at 4 fps, 224 px random resized crop, 1024 x 128 fbank;
- demo: AtariAV clips (64 px, 15 fps, 4 s, 16 kHz mono AAC), 8 frames at 4 fps... as the demo reads them.

The test media are written by this script with PyAV. Each configuration is timed in a single process (one worker's
throughput, i.e. per CPU core), with decoding in the process and in an isolating helper process
(``data.isolate_decoding``, the training default), so the cost of the isolation is measured. The same clips are then
packed with ``mjepa data shard`` (default settings: short side 256, at most 30 fps, audio 16 kHz FLAC) and read back
from the shards with the same transforms. From the shard rate at the default shape and the cost model's ViT-L step
time (bench_rehearsal's prediction: analytic FLOPs at 40 % of an H100's bf16 peak) it states how many cores one GPU
needs to keep the step fed.

    python benchmarks/bench_data.py
    python benchmarks/bench_data.py --items 40 --per-gpu-batch 32

Prints the figures and writes JSON (default benchmarks/results/bench_data.json).
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from bench_json import write_record
from bench_rehearsal import ASSUMED_MFU, H100_BF16_TFLOPS, predicted_step_ms
from mjepa.data.loading.dataset import AudioVisualDataset, Sample
from mjepa.data.manifests.manifest import ManifestEntry, read_manifest, write_manifest
from mjepa.data.media.decode import ClipSpec
from mjepa.data.preprocess.fbank import AudioFrontendConfig
from mjepa.data.preprocess.video_transforms import VideoTransformConfig
from mjepa.data.shards.command import pack_manifest
from mjepa.data.shards.pack import PackSettings


def write_clip(
    path: Path, seconds: float, width: int, height: int, fps: int, sample_rate: int, channels: int, seed: int
) -> Path:
    """A clip with a moving, smoothly textured picture (coarse noise blown up, plus a little grain: closer to camera
    footage than pure noise, which no codec compresses) and a noisy chord, so the decoders do real work."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=sample_rate)
        audio.layout = "stereo" if channels == 2 else "mono"
        coarse = rng.integers(0, 256, (height // 16, width // 8, 3), dtype=np.uint8)
        smooth = (
            av.VideoFrame.from_ndarray(coarse, format="rgb24")
            .reformat(width=width * 2, height=height, interpolation="BICUBIC")
            .to_ndarray()
        )
        grain = rng.integers(-6, 7, smooth.shape)
        texture = np.clip(smooth.astype(np.int16) + grain, 0, 255).astype(np.uint8)
        for i in range(int(seconds * fps)):
            shift = (i * 4) % width
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[:, shift : shift + width]), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        wave = 0.2 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 660 * t)) + 0.02 * rng.standard_normal(t.size)
        samples = np.tile(wave.astype(np.float32), (channels, 1))
        chunk = 1024
        for start in range(0, samples.shape[1], chunk):
            part = np.ascontiguousarray(samples[:, start : start + chunk])
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


def packed_entries(clips: list[Path], out: Path) -> tuple[list[ManifestEntry], dict]:
    """The clips packed into one shard folder with the default settings; entries and packing figures."""
    manifest = out.with_suffix(".jsonl")
    write_manifest(manifest, [ManifestEntry(str(c)) for c in clips])
    start = time.perf_counter()
    info = pack_manifest(
        str(manifest), out, PackSettings(), items_per_shard=len(clips), workers=1, progress=open("/dev/null", "w")
    )
    seconds = time.perf_counter() - start
    return read_manifest(out), {
        "pack_seconds_per_clip": seconds / len(clips),
        "shard_bytes_per_clip": info["bytes"] / len(clips),
        "loose_bytes_per_clip": sum(c.stat().st_size for c in clips) / len(clips),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24, help="samples timed per configuration")
    parser.add_argument("--per-gpu-batch", type=int, default=32, help="ViT-L clips per GPU per step")
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
            shard_entries, packing = packed_entries(clips, root / f"{name}_shards")
            print(
                f"{name:8s} packing: {packing['pack_seconds_per_clip']:.2f} s per clip, "
                f"{packing['loose_bytes_per_clip'] / 1e3:.0f} kB loose -> "
                f"{packing['shard_bytes_per_clip'] / 1e3:.0f} kB in a shard",
                flush=True,
            )
            sources = {"loose": [ManifestEntry(str(c)) for c in clips], "shards": shard_entries}
            for source, entries in sources.items():
                for isolated in (False, True):
                    dataset = AudioVisualDataset(
                        entries,
                        [],
                        shape["clip"],
                        shape["audio"],
                        shape["video"],
                        training=True,
                        seed=0,
                        decode_timeout_s=120.0 if isolated else None,
                    )
                    result = time_dataset(dataset, args.items)
                    result.update(
                        shape=name,
                        source=source,
                        isolated_decoding=isolated,
                        media=shape["media"],
                        clip=shape["clip"].to_dict(),
                        fbank_frames=shape["audio"].target_frames,
                        crop=shape["video"].output_size,
                        **(packing if source == "shards" else {}),
                    )
                    rows.append(result)
                    print(
                        f"{name:8s} {source:6s} {'isolated' if isolated else 'in-process':10s}: "
                        f"{result['samples_per_second']:.2f} samples/s per core "
                        f"({result['items']} items in {result['seconds']:.1f} s)",
                        flush=True,
                    )

    step_seconds = predicted_step_ms("vitl16-as2m", args.per_gpu_batch) / 1e3
    needed = args.per_gpu_batch / step_seconds
    cores = {}
    for source in ("loose", "shards"):
        rate = next(r for r in rows if r["shape"] == "default" and r["source"] == source and r["isolated_decoding"])[
            "samples_per_second"
        ]
        cores[source] = {"samples_per_second_per_core": rate, "cores_per_gpu": math.ceil(needed / rate)}
        print(
            f"ViT-L, batch {args.per_gpu_batch} per GPU, predicted step {step_seconds:.2f} s -> {needed:.1f} "
            f"samples/s -> {cores[source]['cores_per_gpu']} cores per GPU reading {source} "
            f"at {rate:.2f} samples/s each"
        )
    record = {
        "benchmark": "bench_data",
        "command": f"python benchmarks/bench_data.py --items {args.items} --per-gpu-batch {args.per_gpu_batch}",
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "av": av.__version__},
        "results": rows,
        "vit_l_estimate": {
            "per_gpu_batch": args.per_gpu_batch,
            "assumed_gpu_tflops": H100_BF16_TFLOPS,
            "assumed_utilisation": ASSUMED_MFU,
            "predicted_step_seconds": step_seconds,
            "samples_per_second_needed": needed,
            "cores_per_gpu": cores,
        },
    }
    write_record(args.out, record)


if __name__ == "__main__":
    main()
