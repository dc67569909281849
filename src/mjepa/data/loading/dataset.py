"""Manifest entries -> training samples, with broken items skipped, counted and listed (never replaced).

``AudioVisualDataset[i]`` returns either a :class:`Sample` or a :class:`SkippedItem` that says which file failed
and why. :func:`collate_samples` drops the skipped items from the batch and hands them on in
``LoadedBatch.skipped``, so the training or evaluation loop can add them to a :class:`SkipLog` and report them.
Nothing is substituted: a batch with a broken item is simply one sample smaller.

Randomness (window start, crop, flip) comes from a generator seeded by ``(seed, epoch, index)``, or by
``(seed, stream position)`` for keys from the training stream (``mjepa.data.loading.stream``), so a sample is the same
whichever worker or rank loads it, which is what exact resume needs.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mjepa.data.batch import Batch
from mjepa.data.manifests.manifest import EntryTable, ManifestEntry
from mjepa.data.media.decode import ClipSpec, MediaError, decode_entry, decode_entry_isolated
from mjepa.data.media.info import media_errors
from mjepa.data.media.isolation import IsolatedRunner
from mjepa.data.preprocess.fbank import AudioFrontendConfig, audio_features
from mjepa.data.preprocess.video_transforms import VideoTransformConfig, eval_video_transform, train_video_transform
from mjepa.seeding import derived_generator

MISSING_AUDIO_CHOICES = ("flag", "skip")
MISSING_VIDEO_CHOICES = ("skip", "none", "flag")


@dataclass
class Sample:
    index: int
    audio: torch.Tensor  # (target_frames, mel_bins) normalised log-mel; zeros when has_audio is False
    audio_valid_frames: int  # frames holding audio, the rest is padding
    video: torch.Tensor | None  # (3, T, S, S) normalised, None for audio-only items
    labels: torch.Tensor  # (num_classes,) multi-hot float
    has_audio: bool
    position: int | None = None  # stream position for keys from the training stream (mjepa.data.loading.stream)
    video_offset: float = 0.0  # seconds from the first audio sample to the first video frame
    has_video: bool = True  # False: ``video`` holds placeholder frames (zeros) for an item that has none


@dataclass(frozen=True)
class SkippedItem:
    index: int
    path: str
    reason: str
    detail: str


@dataclass
class LoadedBatch:
    batch: Batch | None  # None when every item of the batch was skipped
    labels: torch.Tensor | None  # (B, num_classes)
    indices: torch.Tensor | None  # (B,) manifest indices
    audio_valid_frames: torch.Tensor | None  # (B,)
    skipped: list[SkippedItem] = field(default_factory=list)
    rows: torch.Tensor | None = None  # (B,) position of each kept sample in the requested batch
    positions: list[int] | None = None  # stream position of each kept sample (training stream only)
    masks: dict | None = None  # mjepa.masks.Masks drawn by the training loader's collate, one row per sample

    @property
    def requested(self) -> int:
        """Items asked for: the kept ones and the skipped ones."""
        return (0 if self.batch is None else self.batch.batch_size) + len(self.skipped)

    def pin_memory(self) -> LoadedBatch:
        """Page-locked copies of the tensors the step moves to the GPU (the DataLoader's pin-memory thread calls
        this), so those copies run asynchronously."""
        batch = self.batch
        if batch is not None:
            batch = batch.map_tensors(torch.Tensor.pin_memory)
        masks = None if self.masks is None else {m: [p.pin_memory() for p in pairs] for m, pairs in self.masks.items()}
        return LoadedBatch(
            batch, self.labels, self.indices, self.audio_valid_frames, self.skipped, self.rows, self.positions, masks
        )


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """Generator for one item's augmentations, a pure function of (seed, epoch, index)."""
    return derived_generator(seed, epoch, index)


def multi_hot(labels: tuple[str, ...], vocabulary: dict[str, int], where: str) -> torch.Tensor:
    out = torch.zeros(len(vocabulary))
    for label in labels:
        if label not in vocabulary:
            raise ValueError(f"{where}: label {label!r} is not in the label vocabulary of {len(vocabulary)} classes")
        out[vocabulary[label]] = 1.0
    return out


class AudioVisualDataset(Dataset):
    """Decoded, transformed samples of a manifest.

    ``training``: random window start, random resized crop and flip (seeded per item), and with
    ``audio_window="full"`` at most one front-end window of audio, centred on the video window (see
    ``ClipSpec.audio_seconds``); otherwise a centred window and a centre crop. ``require_video``: items without a video
    stream are skipped (an audio-only dataset passes False). ``missing_audio``: ``"flag"`` keeps items without audio
    with ``has_audio=False`` (the objective leaves them out of the audio terms); ``"skip"`` skips them.
    ``missing_video``: ``"skip"`` skips items without video (the same as ``require_video``), ``"none"`` gives them
    no video (audio-only datasets), ``"flag"`` gives them placeholder frames (zeros, in the shape of the others) and
    ``has_video=False``, so that audio-only and audio-visual items train together (the objective leaves them out of
    the video terms). None follows ``require_video``.
    ``decode_timeout_s``: decode in a helper process (:mod:`mjepa.data.media.isolation`), so that a decoder crash skips
    the file (reason ``crashed``) and a decode longer than this skips it too (``timeout``); None decodes in the calling
    process.
    """

    def __init__(
        self,
        entries: list[ManifestEntry],
        label_vocabulary: list[str],
        clip: ClipSpec,
        audio: AudioFrontendConfig,
        video: VideoTransformConfig,
        training: bool,
        seed: int = 0,
        require_video: bool = True,
        missing_audio: str = "flag",
        decode_timeout_s: float | None = None,
        uint8_video: bool = False,
        missing_video: str | None = None,
    ) -> None:
        if missing_audio not in MISSING_AUDIO_CHOICES:
            raise ValueError(f"missing_audio={missing_audio!r} is not valid; expected one of {MISSING_AUDIO_CHOICES}")
        if missing_video is None:
            missing_video = "skip" if require_video else "none"
        if missing_video not in MISSING_VIDEO_CHOICES:
            raise ValueError(f"missing_video={missing_video!r} is not valid; expected one of {MISSING_VIDEO_CHOICES}")
        if len(set(label_vocabulary)) != len(label_vocabulary):
            raise ValueError("label_vocabulary holds duplicate labels")
        self.entries = EntryTable(entries)  # shared by forked loader workers, not copied (see EntryTable)
        self.vocabulary = {label: i for i, label in enumerate(label_vocabulary)}
        if training and clip.audio_window == "full" and clip.audio_seconds is None:
            # Training uses one window of audio: decode only that much, around the video window.
            clip = dataclasses.replace(clip, audio_seconds=audio.waveform_seconds())
        self.clip, self.audio, self.video = clip, audio, video
        self.training, self.seed = training, seed
        self.require_video, self.missing_audio = missing_video == "skip", missing_audio
        self.missing_video = missing_video
        # Training video as uint8 crops, normalised on the device (mjepa.train.loop): a quarter of the bytes.
        self.uint8_video = uint8_video
        # Decoding in a helper process: a crash or a hang on one file skips that file (mjepa.data.media.isolation).
        self.runner = None if decode_timeout_s is None else IsolatedRunner(decode_timeout_s)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | tuple[int, int]) -> Sample | SkippedItem:
        """``dataset[index]`` (augmentations keyed by ``(seed, epoch, index)``) or ``dataset[(index, position)]``
        from the training stream (augmentations keyed by ``(seed, stream position)``)."""
        position = None
        if isinstance(key, tuple):
            index, position = key
            generator = derived_generator(self.seed, position) if self.training else None
        else:
            index = key
            generator = item_generator(self.seed, self.epoch, index) if self.training else None
        entry = self.entries[index]
        labels = multi_hot(entry.labels, self.vocabulary, f"manifest item {index} ({entry.path})")
        try:
            with media_errors(entry.path):  # whatever a file makes the decoder or a transform raise is about it
                audio, valid, video, has_audio, offset = self._load(entry, generator)
        except MediaError as err:
            return SkippedItem(index, str(err.path), err.reason, err.detail)
        has_video = video is not None
        if not has_video and self.missing_video == "flag":
            video = self._placeholder_video()
        return Sample(index, audio, valid, video, labels, has_audio, position, offset, has_video)

    def _placeholder_video(self) -> torch.Tensor:
        """Zero frames in the shape (and dtype) of a transformed clip, for an item without video."""
        size = self.video.output_size
        dtype = torch.uint8 if self.uint8_video and self.training else torch.float32
        return torch.zeros(3, self.clip.num_frames, size, size, dtype=dtype)

    def _load(self, entry: ManifestEntry, generator: torch.Generator | None):
        options = dict(
            window_start=None,
            generator=generator,
            require_video=self.require_video,
            require_audio=self.missing_audio == "skip",
        )
        if self.runner is not None:
            clip = decode_entry_isolated(self.runner, entry, self.clip, **options)
        else:
            clip = decode_entry(entry, self.clip, **options)
        if clip.has_audio:
            audio, valid = audio_features(clip.waveform, self.audio)
        else:
            audio, valid = torch.zeros(self.audio.target_frames, self.audio.num_mel_bins), 0
        video = None
        if clip.has_video:
            if self.training:
                video = train_video_transform(clip.frames, self.video, generator, normalise=not self.uint8_video)
            else:
                video = eval_video_transform(clip.frames, self.video)
        return audio, valid, video, clip.has_audio, clip.video_offset


def collate_samples(items: list[Sample | SkippedItem]) -> LoadedBatch:
    """Stack the good samples; pass the skipped ones on for reporting."""
    rows = [i for i, s in enumerate(items) if isinstance(s, Sample)]
    samples = [items[i] for i in rows]
    skipped = [s for s in items if isinstance(s, SkippedItem)]
    if not samples:
        return LoadedBatch(None, None, None, None, skipped)
    with_video = [s.video is not None for s in samples]
    if any(with_video) and not all(with_video):
        raise ValueError(
            "a batch mixes items with and without video; give the dataset missing_video='flag' (placeholder frames "
            "and has_video=False) or 'skip'"
        )
    video = torch.stack([s.video for s in samples]) if all(with_video) else None
    flags = [s.has_video for s in samples]
    valid_frames = [s.audio_valid_frames for s in samples]
    full = [v >= s.audio.shape[-2] for v, s in zip(valid_frames, samples)]
    batch = Batch(
        audio=torch.stack([s.audio for s in samples]),
        video=video,
        has_audio=torch.tensor([s.has_audio for s in samples]),
        video_offset=torch.tensor([s.video_offset for s in samples], dtype=torch.float32),
        has_video=None if all(flags) else torch.tensor(flags),
        audio_valid_frames=None if all(full) else torch.tensor(valid_frames),
    )
    return LoadedBatch(
        batch,
        torch.stack([s.labels for s in samples]),
        torch.tensor([s.index for s in samples]),
        torch.tensor([s.audio_valid_frames for s in samples]),
        skipped,
        torch.tensor(rows),
        [s.position for s in samples] if all(s.position is not None for s in samples) else None,
    )


class SkipLog:
    """Every item skipped during a run: counts per reason over all draws, and each distinct (file, reason) once.

    With ``live_path``, each distinct skip is appended to that JSON-lines file as it happens (one line per file and
    reason, however often the file is drawn), so a crash or a kill loses none of them; reopening the file on resume
    reads back what it already holds. ``state`` / ``load_state`` carry only the counts (checkpoints stay small at
    AudioSet scale)."""

    def __init__(self, live_path: str | Path | None = None, state: dict | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self.draws = 0  # items asked of the loader, skipped or not
        self.items: list[SkippedItem] = []
        self._seen: set[tuple[str, str]] = set()
        self.live_path = None if live_path is None else Path(live_path)
        if self.live_path is not None and self.live_path.exists():
            for line in self.live_path.read_text(encoding="utf-8").splitlines():
                try:
                    item = SkippedItem(**json.loads(line))
                except (ValueError, TypeError):
                    continue  # a line cut short by a kill mid-write
                if (item.path, item.reason) not in self._seen:
                    self._seen.add((item.path, item.reason))
                    self.items.append(item)
        if state is not None:
            self.load_state(state)

    def add(self, skipped: list[SkippedItem], requested: int | None = None) -> None:
        """Record the skipped items of a batch of ``requested`` items (default: just the skipped ones)."""
        self.draws += len(skipped) if requested is None else requested
        fresh = []
        for item in skipped:
            self.counts[item.reason] += 1
            if (item.path, item.reason) not in self._seen:
                self._seen.add((item.path, item.reason))
                self.items.append(item)
                fresh.append(item)
        if fresh and self.live_path is not None:
            self.live_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.live_path, "a", encoding="utf-8") as handle:
                for item in fresh:
                    handle.write(json.dumps(vars(item), ensure_ascii=False) + "\n")

    @property
    def total(self) -> int:
        """Skipped draws (a file drawn twice counts twice)."""
        return sum(self.counts.values())

    def top_reasons(self, count: int = 3) -> str:
        """``"12 missing (e.g. /a.mp4), 3 truncated (e.g. /b.mkv)"``: the most frequent reasons with an example."""
        example = {}
        for item in self.items:
            example.setdefault(item.reason, item.path)
        return ", ".join(
            f"{n} {reason} (e.g. {example.get(reason, '?')})" for reason, n in self.counts.most_common(count)
        )

    def state(self) -> dict:
        return {"counts": dict(self.counts), "draws": self.draws}

    def load_state(self, state: dict) -> None:
        self.counts = Counter({str(k): int(v) for k, v in state.get("counts", {}).items()})
        self.draws = int(state.get("draws", self.total))

    def summary(self) -> str:
        if not self.total:
            return "no items skipped"
        parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        return f"{self.total} items skipped ({parts}); {len(self.items)} distinct files"

    def write(self, path: str | Path) -> None:
        record = {
            "num_skipped": self.total,
            "counts": dict(self.counts),
            "num_files": len(self.items),
            "items": [vars(item) for item in self.items],
        }
        Path(path).write_text(json.dumps(record, indent=2, ensure_ascii=False))
