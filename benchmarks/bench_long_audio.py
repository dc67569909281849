"""Embedding throughput and peak memory against input length: one clip of 1, 5, 10 (and more) minutes.

Each length runs in a fresh process: it loads the model, makes the waveform, reads the resident-set high-water mark
(VmHWM), embeds the clip (``encode_audio(..., timestamps=True)``, as the X-ARES and HEAR adapters do) and reads the mark
again. The difference is what embedding the clip added at its peak; it should not grow with the length beyond the
outputs themselves.

    python benchmarks/bench_long_audio.py [--model mjepa-tiny] [--minutes 1,5,10] [--out ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

from bench_json import write_record

CHILD = """
import json, sys, time
import numpy as np
import torch
import mjepa

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
model = mjepa.load(args["model"])
rng = np.random.default_rng(0)
waveform = (0.1 * rng.standard_normal(int(args["minutes"] * 60 * 16000))).astype(np.float32)
before = hwm()
start = time.perf_counter()
emb = model.encode_audio(waveform, 16000, timestamps=True, batch_size=args["batch_size"])
seconds = time.perf_counter() - start
print(json.dumps({"minutes": args["minutes"], "peak_added_mib": hwm() - before, "seconds": seconds,
                  "windows": len(emb.window_starts), "frames": int(emb.frames.shape[0]),
                  "input_mib": waveform.nbytes / 2**20}))
"""


def run_child(settings: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mjepa-tiny")
    parser.add_argument("--minutes", default="1,5,10", help="comma-separated input lengths in minutes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/bench_long_audio.json")
    args = parser.parse_args()
    rows = []
    for minutes in (float(m) for m in args.minutes.split(",") if m):
        row = run_child(
            {"model": args.model, "minutes": minutes, "batch_size": args.batch_size, "threads": args.threads}
        )
        rows.append(row)
        print(
            f"{minutes:g} min: {row['windows']} windows, {row['frames']} frames, peak +{row['peak_added_mib']:.0f} MiB "
            f"(input {row['input_mib']:.0f} MiB), {row['seconds']:.1f} s = "
            f"{60 * minutes / row['seconds']:.0f} s of audio per second"
        )
    write_record(
        args.out,
        {
            "model": args.model,
            "machine": platform.processor() or platform.machine(),
            "threads": args.threads,
            "batch_size": args.batch_size,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
