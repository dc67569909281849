"""``mjepa data import FORMAT ... --out MANIFEST``: a dataset's own metadata -> an mjepa manifest.

Missing media files are not an error: they are counted, and their ids are written to ``MANIFEST.missing.txt``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mjepa.data.manifests import importers
from mjepa.data.manifests.manifest import ManifestError, write_manifest
from mjepa.data.manifests.segments import MEDIA_PATTERNS, media_files, segment_entries


def _patterns(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(p for p in text.split(",") if p) if text else default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mjepa data import", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="format", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--out", required=True, help="manifest to write (JSON lines)")
        p.add_argument(
            "--segment-seconds",
            type=float,
            default=None,
            metavar="S",
            help="cut entries longer than S seconds into consecutive S-second segments (long videos)",
        )
        p.add_argument(
            "--min-segment-seconds",
            type=float,
            default=None,
            metavar="M",
            help="drop a last segment shorter than M seconds (default S/2)",
        )
        return p

    p = add("audioset", "AudioSet segment CSV + class_labels_indices.csv")
    p.add_argument("segments_csv")
    p.add_argument("--class-labels", required=True)
    p.add_argument("--media-root", required=True)
    p.add_argument("--patterns", help="comma-separated file-name patterns, e.g. '{ytid}_{start:.0f}.mp4'")
    p.add_argument("--full-videos", action="store_true", help="files are full videos: entries carry start/end")
    p = add("ast", "AST / AudioMAE data JSON")
    p.add_argument("json_path")
    p.add_argument("--class-labels", required=True)
    p.add_argument("--media-root", default=None)
    p = add("esc50", "ESC-50 meta/esc50.csv (all folds; mjepa probe --task esc50 splits them)")
    p.add_argument("esc50_root", help="folder holding meta/esc50.csv and audio/")
    p = add("fsd50k", "FSD50K ground truth (dev.csv or eval.csv)")
    p.add_argument("csv_path")
    p.add_argument("--audio-dir", required=True)
    p.add_argument("--split", choices=("train", "val", "eval"), required=True)
    p = add("vggsound", "VGGSound CSV")
    p.add_argument("csv_path")
    p.add_argument("--media-root", required=True)
    p.add_argument("--patterns")
    p.add_argument("--split", choices=("train", "test"), default=None)
    p = add("kinetics", "Kinetics CSV (label,youtube_id,time_start,time_end,split)")
    p.add_argument("csv_path")
    p.add_argument("--media-root", required=True)
    p.add_argument("--patterns")
    p.add_argument("--full-videos", action="store_true")
    p = add("files", "every media file under a folder, unlabelled (e.g. HowTo100M videos)")
    p.add_argument("media_root")
    p.add_argument("--patterns", help="comma-separated glob patterns (default: *.mp4,*.mkv,*.webm,*.avi,*.mov)")
    p = add("ssv2", "Something-Something v2 annotation JSON + labels.json")
    p.add_argument("annotations_json")
    p.add_argument("--labels-json", required=True)
    p.add_argument("--media-root", required=True)
    p.add_argument("--patterns")
    return parser


def run_import(args: argparse.Namespace) -> importers.ImportResult:
    fmt = args.format
    if fmt == "audioset":
        return importers.import_audioset_csv(
            args.segments_csv,
            args.class_labels,
            args.media_root,
            _patterns(args.patterns, ("{ytid}_{start:.0f}.mp4",)),
            args.full_videos,
        )
    if fmt == "ast":
        return importers.import_ast_json(args.json_path, args.class_labels, args.media_root)
    if fmt == "esc50":
        root = Path(args.esc50_root)
        return importers.import_esc50(root / "meta" / "esc50.csv", root / "audio", importers.ESC50_FOLDS)
    if fmt == "fsd50k":
        if args.split == "eval":
            return importers.import_fsd50k_eval(args.csv_path, args.audio_dir)
        return importers.import_fsd50k_dev(args.csv_path, args.audio_dir, args.split)
    if fmt == "vggsound":
        return importers.import_vggsound(
            args.csv_path, args.media_root, _patterns(args.patterns, ("{ytid}_{start:06.0f}.mp4",)), args.split
        )
    if fmt == "kinetics":
        return importers.import_kinetics(
            args.csv_path,
            args.media_root,
            _patterns(args.patterns, ("{label}/{ytid}_{start:06.0f}_{end:06.0f}.mp4",)),
            args.full_videos,
        )
    if fmt == "files":
        return media_files(args.media_root, _patterns(args.patterns, MEDIA_PATTERNS))
    return importers.import_ssv2(
        args.annotations_json, args.labels_json, args.media_root, _patterns(args.patterns, ("{id}.webm",))
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run_import(args)
    except (ManifestError, ValueError, OSError) as err:
        print(f"mjepa data import: error: {err}", file=sys.stderr)
        return 2
    entries, unknown = list(result.entries), 0
    if args.segment_seconds is not None:
        try:
            entries, unknown = segment_entries(entries, args.segment_seconds, args.min_segment_seconds)
        except ValueError as err:
            print(f"mjepa data import: error: {err}", file=sys.stderr)
            return 2
        print(
            f"segmented {len(result.entries)} items into {len(entries)} entries of at most {args.segment_seconds:g} s"
            + (f"; {unknown} files whose duration could not be read were kept whole" if unknown else "")
        )
    write_manifest(args.out, entries)
    if result.missing:
        Path(str(args.out) + ".missing.txt").write_text("\n".join(result.missing) + "\n")
    print(
        f"{result.summary()}; wrote {args.out}"
        + (f" (missing ids in {args.out}.missing.txt)" if result.missing else "")
    )
    return 0
