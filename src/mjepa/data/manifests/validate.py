"""Check every file of a manifest before training: find missing, corrupt, truncated, silent and audio-less items.

Each entry gets exactly one verdict, the first that applies in this order:

``missing`` (no such file), ``zero_length`` (0 bytes), ``truncated`` (shorter than its own headers declare, see
:mod:`mjepa.data.media.container_check`, or a stream that stops early), ``implausible`` (its header declares a
duration, sample rate, channel count or frame size past :class:`mjepa.data.media.info.MediaLimits`: refused before
decoding), ``unreadable`` (FFmpeg cannot open or decode it,
or it has neither audio nor video), ``no_audio_stream`` (only when audio is required: the entry does not say
``has_audio: false`` and ``require_audio`` is on), ``too_short`` (segment shorter than ``min_duration_s``),
``non_finite`` (NaN or infinite audio samples), ``decoder_error`` (the decoder raised something unexpected on it),
``crashed`` / ``timeout`` (the decoder crashed, or ran past ``DECODE_TIMEOUT_S``, on it: each file is checked in a
helper process, so neither stops the validation),
``silent_audio`` (RMS of the whole segment below ``silence_rms``), else ``ok``.

The audio of every item is decoded in full, one chunk at a time (memory stays flat for hours of audio); video is
checked by
decoding its first frame, or every frame with ``full_video_decode`` (slow, but finds corruption in the middle).

Command line (``mjepa data validate`` calls :func:`main`)::

    mjepa data validate MANIFEST [--min-duration S] [--silence-rms R] [--allow-no-audio] [--full-video-decode]
                                 [--workers N] [--json OUT] [--clean-manifest OUT]

Exit status: 0 when every item is ok, 1 when any is not (so scripts can stop before a bad training run),
2 when the manifest itself cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

import av

from mjepa.data.manifests.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest
from mjepa.data.media.decode import MediaError, audio_statistics, probe_media
from mjepa.data.media.info import open_media, truncation_or_none, unexpected_error
from mjepa.data.media.isolation import IsolatedRunner

VERDICTS = (
    "ok",
    "missing",
    "zero_length",
    "truncated",
    "implausible",
    "unreadable",
    "no_audio_stream",
    "too_short",
    "non_finite",
    "decoder_error",
    "crashed",
    "timeout",
    "silent_audio",
)
# -80 dBFS: well below room noise in any real recording, well above digital silence and dither.
DEFAULT_SILENCE_RMS = 1e-4
# Silence and duration checks do not depend on the rate; 16 kHz keeps decoding cheap.
_CHECK_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class ValidationIssue:
    """One item that is not ok."""

    path: str
    reason: str
    detail: str


@dataclass(frozen=True)
class _ItemResult:
    reason: str
    detail: str
    has_audio: bool | None


@dataclass
class ValidationReport:
    """Verdict counts over a manifest, the bad items with their details, and the entries that passed."""

    total: int
    counts: dict[str, int]
    issues: list[ValidationIssue]
    good_entries: list[ManifestEntry] = field(default_factory=list)

    @property
    def num_bad(self) -> int:
        return len(self.issues)

    @property
    def all_ok(self) -> bool:
        return not self.issues

    def format_report(self, max_issues: int = 50) -> str:
        lines = [f"validated {self.total} items: {self.counts.get('ok', 0)} ok, {self.num_bad} bad"]
        for reason in VERDICTS[1:]:
            if self.counts.get(reason):
                lines.append(f"  {reason:<16} {self.counts[reason]}")
        for issue in self.issues[:max_issues]:
            lines.append(f"{issue.reason}: {issue.path}: {issue.detail}")
        if len(self.issues) > max_issues:
            lines.append(f"... and {len(self.issues) - max_issues} more (see --json for all)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "counts": dict(self.counts),
            "issues": [{"path": i.path, "reason": i.reason, "detail": i.detail} for i in self.issues],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)


def _check_video(path: str, full_decode: bool) -> None:
    """Decode the first video frame (or all of them); raise MediaError on failure."""
    try:
        with open_media(path) as container:
            stream = container.streams.video[0]
            decoded = 0
            for _ in container.decode(stream):
                decoded += 1
                if not full_decode:
                    break
    except av.error.FFmpegError as err:
        truncation = truncation_or_none(path)
        if truncation is not None:
            raise MediaError(path, "truncated", truncation) from None
        raise MediaError(path, "unreadable", f"video decoding failed ({err})") from None
    if decoded == 0:
        raise MediaError(path, "unreadable", "video stream holds no decodable frame")


def _validate_one(
    entry: ManifestEntry,
    min_duration_s: float,
    silence_rms: float,
    require_audio: bool,
    full_video_decode: bool,
) -> _ItemResult:
    try:
        info = probe_media(entry.path)
        truncation = truncation_or_none(entry.path)
        if truncation is not None:
            raise MediaError(entry.path, "truncated", truncation)
        audio_info = probe_media(entry.audio_path) if entry.audio_path is not None else info
        if not info.has_video and not audio_info.has_audio:
            raise MediaError(entry.path, "unreadable", "file has neither a video nor an audio stream")
        if info.has_video:
            _check_video(entry.path, full_video_decode)
        has_audio = audio_info.has_audio
        audio_expected = require_audio and entry.has_audio is not False
        if audio_expected and not has_audio:
            raise MediaError(audio_info.path, "no_audio_stream", "file has no audio stream")
        audio = None
        if has_audio:
            audio = audio_statistics(audio_info.path, entry.start, entry.end, sample_rate=_CHECK_SAMPLE_RATE)
            if audio.non_finite:
                raise MediaError(
                    audio_info.path,
                    "non_finite",
                    f"{audio.non_finite} of {audio.num_samples} audio samples are NaN or infinite",
                )
        file_duration = info.video_duration if info.has_video else info.audio_duration
        if file_duration is None and audio is not None:
            file_duration = audio.num_samples / _CHECK_SAMPLE_RATE
        if file_duration is not None:
            start = entry.start or 0.0
            end = file_duration if entry.end is None else min(entry.end, file_duration)
            duration = end - start
            if duration < min_duration_s:
                raise MediaError(
                    entry.path, "too_short", f"segment lasts {duration:.3f} s, less than the {min_duration_s} s minimum"
                )
        if audio is not None and audio.rms < silence_rms:
            return _ItemResult("silent_audio", f"audio RMS {audio.rms:.2e} is below {silence_rms:.0e}", has_audio)
        return _ItemResult("ok", "", has_audio)
    except MediaError as err:
        return _ItemResult(err.reason, err.detail, None)
    except Exception as err:  # noqa: BLE001
        # A validator must get through millions of files; anything the decoder throws on one of them is a verdict
        # about that file, counted and reported like the others, not a reason to lose the whole run.
        converted = unexpected_error(entry.path, err)
        return _ItemResult(converted.reason, converted.detail, None)


# One helper process per validating process (mjepa.data.media.isolation): a file that crashes or hangs the decoder gets
# the verdict "crashed" or "timeout", and the rest of the manifest is still checked.
_RUNNER: IsolatedRunner | None = None
DECODE_TIMEOUT_S = 300.0


def _validate_star(arguments: tuple) -> _ItemResult:
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = IsolatedRunner(DECODE_TIMEOUT_S)
    entry = arguments[0]
    try:
        return _RUNNER(entry.path, _validate_one, *arguments)
    except MediaError as err:
        return _ItemResult(err.reason, err.detail, None)


def validate_manifest(
    entries: Sequence[ManifestEntry],
    min_duration_s: float = 0.0,
    silence_rms: float = DEFAULT_SILENCE_RMS,
    require_audio: bool = True,
    full_video_decode: bool = False,
    num_workers: int = 1,
) -> ValidationReport:
    """Open every entry's media and classify it (see module docstring). Never stops at a bad item.

    ``good_entries`` in the report are the ok entries with ``has_audio`` filled in from what was found."""
    jobs = [(entry, min_duration_s, silence_rms, require_audio, full_video_decode) for entry in entries]
    if num_workers > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            results = list(pool.map(_validate_star, jobs, chunksize=16))
    else:
        results = [_validate_star(job) for job in jobs]
    counts = {verdict: 0 for verdict in VERDICTS}
    issues = []
    good = []
    for entry, result in zip(entries, results):
        counts[result.reason] += 1
        if result.reason == "ok":
            good.append(replace(entry, has_audio=result.has_audio))
        else:
            issues.append(ValidationIssue(entry.path, result.reason, result.detail))
    return ValidationReport(total=len(entries), counts=counts, issues=issues, good_entries=good)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mjepa data validate",
        description="Open every file of a manifest; report missing, corrupt, truncated, silent, audio-less items.",
    )
    parser.add_argument("manifest", help="JSON-lines manifest to check")
    parser.add_argument(
        "--min-duration", type=float, default=0.0, metavar="S", help="flag segments shorter than S seconds"
    )
    parser.add_argument(
        "--silence-rms", type=float, default=DEFAULT_SILENCE_RMS, metavar="R", help="flag audio with RMS below R"
    )
    parser.add_argument("--allow-no-audio", action="store_true", help="do not flag files without an audio stream")
    parser.add_argument("--full-video-decode", action="store_true", help="decode every video frame (slow)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="processes to check files in parallel")
    parser.add_argument("--json", metavar="OUT", help="write the full report as JSON to OUT")
    parser.add_argument(
        "--clean-manifest", metavar="OUT", help="write the ok entries (with has_audio filled in) to OUT"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``mjepa data validate``; returns the exit status (0 all ok, 1 bad items, 2 bad manifest)."""
    args = build_parser().parse_args(argv)
    try:
        entries = read_manifest(args.manifest)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = validate_manifest(
        entries,
        min_duration_s=args.min_duration,
        silence_rms=args.silence_rms,
        require_audio=not args.allow_no_audio,
        full_video_decode=args.full_video_decode,
        num_workers=args.workers,
    )
    print(report.format_report())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(report.to_json() + "\n")
    if args.clean_manifest:
        write_manifest(args.clean_manifest, report.good_entries)
    return 0 if report.all_ok else 1
