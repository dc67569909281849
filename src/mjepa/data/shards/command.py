"""``mjepa data shard MANIFEST --out DIR``: pack a manifest into WebDataset tar shards that training reads directly.

Each item is re-encoded small (video short side <= --max-short-side at the source frame rate capped at --max-fps,
audio 16 kHz mono FLAC); items the decoder cannot read are skipped and listed in DIR/skipped.jsonl. Shards are
packed in parallel (--workers) and the packing resumes where it stopped: run the same command again. The result,
DIR/manifest.jsonl, is a manifest like any other: train with data.shards=[DIR] (or data.manifests), evaluate with
DIR in place of a manifest. Layout and reasons: docs/data.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from mjepa.data.manifests.manifest import SHARD_FOLDER_MANIFEST, ManifestError, read_manifest
from mjepa.data.shards.pack import PackSettings, pack_shard, plan_shards, shard_complete, shard_name

SETTINGS_FILE = "pack_settings.json"
INFO_FILE = "info.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa data shard", description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="JSON-lines manifest to pack")
    parser.add_argument("--out", required=True, help="folder for the shards (created; an unfinished one resumes)")
    parser.add_argument(
        "--items-per-shard",
        type=int,
        default=1000,
        help="items per tar shard (default 1000: about 0.3-1 GB for 10 s clips at 256 px)",
    )
    parser.add_argument("--max-short-side", type=int, default=256, help="video short side at most this (pixels)")
    parser.add_argument(
        "--max-fps",
        type=float,
        default=8.0,
        help="video frame rate at most this (default 8); keep it at or above the training and "
        "evaluation data.frames_per_second (the recipe's is 4)",
    )
    parser.add_argument(
        "--keyframe-seconds",
        type=float,
        default=1.0,
        help="seconds between video key frames (a random window decodes from the one before it)",
    )
    parser.add_argument("--crf", type=int, default=23, help="x264 quality (lower = better and larger)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="shards packed at once")
    parser.add_argument(
        "--decode-timeout",
        type=float,
        default=300.0,
        help="seconds one item may take before it is skipped as a timeout",
    )
    return parser


def _check_settings(out: Path, record: dict) -> None:
    """An output folder holds shards of one manifest and one set of settings: resume them, never mix."""
    path = out / SETTINGS_FILE
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored != record:
            changed = sorted(k for k in set(stored) | set(record) if stored.get(k) != record.get(k))
            raise ValueError(
                f"{out} holds shards packed with other settings ({', '.join(changed)} differ); "
                "pack into a new --out folder"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _remove_temporaries(out: Path) -> None:
    for stale in out.glob("*.tmp"):
        stale.unlink()  # a shard that was being written when the packing stopped; it is packed again


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class _Progress:
    """One status line: shards and items done, skipped, rate and time left; rewritten in place on a terminal."""

    def __init__(self, total_items: int, total_shards: int, shards_done: int, stream) -> None:
        self.total_items, self.total_shards, self.stream = total_items, total_shards, stream
        self.items = self.skipped = 0
        self.shards = shards_done
        self.started = time.monotonic()

    def show(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        rate = self.items / elapsed if elapsed > 0 else 0.0
        left = f"  {_duration((self.total_items - self.items) / rate)} left" if rate > 0 and not final else ""
        end = "\r" if self.stream.isatty() and not final else "\n"
        self.stream.write(
            f"shards {self.shards}/{self.total_shards}  items {self.items}/{self.total_items}  "
            f"skipped {self.skipped}  {rate:.1f} items/s{left}{end}"
        )
        self.stream.flush()


def pack_manifest(
    manifest: str,
    out: str | os.PathLike,
    settings: PackSettings,
    items_per_shard: int,
    workers: int,
    progress=sys.stderr,
) -> dict:
    """Pack every shard not yet complete, then write DIR/manifest.jsonl, skipped.jsonl and info.json."""
    out = Path(out)
    entries = read_manifest(manifest)
    record = {
        "manifest": os.path.abspath(manifest),
        "num_entries": len(entries),
        "items_per_shard": items_per_shard,
        **settings.to_dict(),
    }
    _check_settings(out, record)
    _remove_temporaries(out)
    jobs = plan_shards(entries, items_per_shard)
    todo = [job for job in jobs if not shard_complete(out, job.number)]
    status = _Progress(sum(len(job.entries) for job in todo), len(jobs), len(jobs) - len(todo), progress)
    last_shown = 0.0
    with (
        multiprocessing.Manager() as manager,
        ProcessPoolExecutor(max_workers=max(1, min(workers, len(todo) or 1))) as pool,
    ):
        items_done = manager.Queue()
        pending = {pool.submit(pack_shard, job, out, settings, items_done) for job in todo}
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while not items_done.empty():
                status.items += items_done.get()
            for future in finished:
                counts = future.result()
                status.shards += 1
                status.skipped += counts["skipped"]
            if pending and (finished or time.monotonic() - last_shown > 2.0):
                status.show()
                last_shown = time.monotonic()
    status.show(final=True)
    return _finish(out, len(jobs), record)


def _finish(out: Path, num_shards: int, record: dict) -> dict:
    lines, skipped, shards = [], [], []
    for number in range(num_shards):
        name = shard_name(number)
        part = (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        lost = (out / f"{name}.skipped.jsonl").read_text(encoding="utf-8").splitlines()
        lines += part
        skipped += lost
        shards.append(
            {
                "shard": f"{name}.tar",
                "items": len(part),
                "skipped": len(lost),
                "bytes": (out / f"{name}.tar").stat().st_size,
            }
        )
    (out / "skipped.jsonl").write_text("".join(line + "\n" for line in skipped), encoding="utf-8")
    info = {
        "num_items": len(lines),
        "num_skipped": len(skipped),
        "num_shards": num_shards,
        "bytes": sum(s["bytes"] for s in shards),
        "settings": record,
        "shards": shards,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tmp = out / (SHARD_FOLDER_MANIFEST + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, out / SHARD_FOLDER_MANIFEST)  # last: a folder with a manifest.jsonl is complete
    return info


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = PackSettings(
            max_short_side=args.max_short_side,
            max_fps=args.max_fps,
            crf=args.crf,
            keyframe_seconds=args.keyframe_seconds,
            decode_timeout_s=args.decode_timeout,
        )
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        info = pack_manifest(args.manifest, args.out, settings, args.items_per_shard, args.workers)
    except (ManifestError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"packed {info['num_items']} items into {info['num_shards']} shards ({info['bytes'] / 1e6:.1f} MB) in "
        f"{args.out}; {info['num_skipped']} skipped (listed in {Path(args.out) / 'skipped.jsonl'})"
    )
    if info["num_items"] == 0:
        print("error: no item could be packed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
