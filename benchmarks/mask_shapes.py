"""Block shapes of the mask generators on the presets' token grids: how many rows (frequency bands for audio) and
columns each block spans, how often an audio target is a pure time mask, and the fixed context / target lengths.

    python benchmarks/mask_shapes.py [--draws 1000] [--out benchmarks/results/mask_shapes.json]

Counts come from the generators the training loader uses (mjepa.masks.sample_blocks, sample_block_mask), seeded,
so the record is the same on every machine.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

from bench_json import write_record
from mjepa.config import MaskConfig
from mjepa.masks import fixed_lengths, sample_block_mask, sample_blocks

# (name, mask configs, grid as the sampler holds it: (1, time, frequency) for audio, (T, H, W) for video)
GRIDS = (
    ("audio 1024 x 128 (vitl16-as2m, vitg16-*)", "audio", (1, 64, 8)),
    ("audio 384 x 128 (tiny-cpu, mjepa-tiny)", "audio", (1, 24, 8)),
    ("video 16 x 224 x 224 (vitl16-as2m)", "video", (8, 14, 14)),
    ("video 16 x 256 x 256 (vitg16-*)", "video", (8, 16, 16)),
)


def pure_time_share(cfg, grid, draws: int, seed: int) -> float:
    """Share of audio targets in which every masked time step is masked at every frequency."""
    gen = torch.Generator().manual_seed(seed)
    pure = 0
    for _ in range(draws):
        plane = sample_block_mask(cfg, grid, gen).view(grid[1], grid[2])
        masked_steps = plane.any(dim=1)
        pure += bool(plane[masked_steps].all())
    return pure / draws


def shapes(cfg, grid, draws: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    rows, columns = Counter(), Counter()
    for _ in range(draws):
        for _, _, h, w in sample_blocks(cfg, grid[1:], gen):
            rows[h] += 1
            columns[w] += 1
    total = sum(rows.values())
    return {
        "height_share": {k: round(v / total, 4) for k, v in sorted(rows.items())},
        "width_share": {k: round(v / total, 4) for k, v in sorted(columns.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/mask_shapes.json")
    args = parser.parse_args()
    masks = MaskConfig()
    record = {"draws": args.draws, "seed": args.seed, "grids": []}
    for name, modality, grid in GRIDS:
        for cfg in getattr(masks, modality):
            lengths = fixed_lengths(cfg, grid, masks.length_quantile, masks.min_context)
            entry = {
                "grid": name,
                "num_blocks": cfg.num_blocks,
                "spatial_scale": cfg.spatial_scale,
                "aspect_ratio": list(cfg.aspect_ratio),
                "context": lengths.context,
                "target": lengths.target,
                **shapes(cfg, grid, args.draws, args.seed),
            }
            if modality == "audio":
                entry["pure_time_share"] = pure_time_share(cfg, grid, args.draws, args.seed)
            record["grids"].append(entry)
            axis = "frequency rows" if modality == "audio" else "columns"
            spread = ", ".join(f"{k}: {100 * v:.1f} %" for k, v in entry["width_share"].items())
            extra = f"; pure time masks {100 * entry['pure_time_share']:.1f} %" if modality == "audio" else ""
            print(
                f"{name} | {cfg.num_blocks} x {cfg.spatial_scale}: context {lengths.context}, target "
                f"{lengths.target}; {axis} per block {spread}{extra}"
            )
    write_record(args.out, record)


if __name__ == "__main__":
    main()
