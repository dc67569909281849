"""DoomAV: audio-visual clips of a first-person 3D game with its real sound, generated on the spot with ViZDoom.

Where AtariAV gives 2D screens and chip sound, DoomAV gives a 3D first-person view and the sampled sound effects of
Doom (Freedoom's, bundled with ViZDoom): shots, monsters, doors, pickups, in stereo, tied to what is on screen. Each
(scenario, split) is its own seeded play segment (:mod:`mjepa.data.vizdoom.play`), so continuous gameplay never
straddles two splits; clips are ``clip_steps`` policy steps (35 steps: 4.0 s at 8.75 frames per second).

Output folder::

    out_dir/
      train.jsonl val.jsonl test.jsonl   manifests (paths relative to out_dir), labels scenario:* and event:*,
                                         meta fields source, package, version, licence
      avc-{train,val,test}.jsonl         audio-visual correspondence: each clip with its own sound (av:matched)
                                         and with the next clip's (av:shifted, through audio_path)
      labels.json                        the label vocabulary
      info.json                          settings, counts and versions (written last)
      clips/<split>/<scenario>-<index>.mp4   H.264 (mpeg4 where PyAV lacks libx264) at 35/4 fps, size x size,
                                             AAC 22,050 Hz stereo

The folder is written beside its final place and renamed into it at the end, so an interrupted run never leaves a
folder that looks complete; a finished folder with the same settings is reused.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction
from importlib import metadata
from pathlib import Path

import av
import numpy as np

from mjepa.data.manifests.manifest import ManifestEntry, write_manifest
from mjepa.data.shards.pack import video_codec
from mjepa.data.vizdoom.play import (
    AUDIO_RATE,
    EVENT_LABELS,
    TICS_PER_SECOND,
    TICS_PER_STEP,
    RecordedClip,
    ScenarioPlayer,
    openal_library_dir,
)

DEFAULT_SCENARIOS = ("basic", "defend_the_center", "defend_the_line", "health_gathering", "deadly_corridor")
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"val": 0.15, "test": 0.15}
CLIP_STEPS = 35  # 140 tics: 4 s
WARMUP_STEPS = 8  # unrecorded steps at the start of each segment (the first frames of a level are a fade-in)
LICENCE = "ViZDoom: MIT; Freedoom game data: BSD-3-Clause"
GENERATOR_VERSION = 2  # bump when a change alters the generated folder, so cached folders are rebuilt
AUDIO_BIT_RATE = 96000


def split_sizes(clips: int) -> dict[str, int]:
    """Clips per split of one scenario: 15 % (at least 1) each for val and test, the rest for train."""
    held = {split: max(1, round(fraction * clips)) for split, fraction in SPLIT_FRACTIONS.items()}
    train = clips - sum(held.values())
    if train < 1:
        raise ValueError(f"clips_per_scenario={clips} leaves no training clip: expected at least 3")
    return {"train": train, **held}


def segment_seed(seed: int, scenario: str, split: str) -> int:
    """The engine and policy seed of one (scenario, split) segment."""
    return zlib.crc32(f"{seed}:{scenario}:{split}".encode()) & 0x7FFFFFFF


def generate_doom_av(
    out_dir: str | os.PathLike,
    scenarios: Sequence[str] = DEFAULT_SCENARIOS,
    clips_per_scenario: int = 40,
    seed: int = 0,
    size: int = 64,
    cache: str | os.PathLike | None = None,
    report=print,
) -> Path:
    """Play each scenario, write the clips and manifests into ``out_dir``; returns it. ``cache`` holds the fetched
    OpenAL packages (default: ``~/.cache/mjepa/debian``)."""
    out = Path(out_dir)
    settings = {
        "generator": "mjepa.data.vizdoom",
        "generator_version": GENERATOR_VERSION,
        "scenarios": list(scenarios),
        "clips_per_scenario": clips_per_scenario,
        "seed": seed,
        "size": size,
        "clip_steps": CLIP_STEPS,
    }
    info_path = out / "info.json"
    previous = json.loads(info_path.read_text()).get("settings", {}) if info_path.is_file() else None
    if previous == settings:
        report(f"{out}: already generated with these settings")
        return out
    if out.exists() and any(out.iterdir()) and (previous or {}).get("generator") != settings["generator"]:
        # Only a DoomAV folder of other settings is replaced; anything else there is the user's.
        raise FileExistsError(f"{out} is not empty and holds no DoomAV set; choose another folder")
    sizes = split_sizes(clips_per_scenario)
    openal = openal_library_dir(cache or Path.home() / ".cache" / "mjepa" / "debian")
    building = out.parent / f".{out.name}.building-{os.getpid()}"  # one per run: two runs never share it
    manifests: dict[str, list[ManifestEntry]] = {split: [] for split in SPLITS}
    version = metadata.version("vizdoom")
    for scenario in scenarios:
        for split in SPLITS:
            player = ScenarioPlayer(scenario, segment_seed(seed, scenario, split), openal)
            try:
                player.record_clip(WARMUP_STEPS)
                for index in range(sizes[split]):
                    clip = player.record_clip(CLIP_STEPS)
                    relative = Path("clips") / split / f"{scenario}-{index:04d}.mp4"
                    write_av_clip(building / relative, clip, size)
                    manifests[split].append(_entry(relative, clip, version))
            finally:
                player.close()
        report(f"doom-av: {scenario}: {clips_per_scenario} clips")
    for split, entries in manifests.items():
        write_manifest(building / f"{split}.jsonl", entries, paths_from=building)
        pairs = correspondence_entries(entries)
        if pairs:  # a split with one clip per scenario has none
            write_manifest(building / f"avc-{split}.jsonl", pairs, paths_from=building)
    vocabulary = [f"scenario:{s}" for s in scenarios] + list(EVENT_LABELS)
    (building / "labels.json").write_text(json.dumps({"labels": vocabulary}, indent=2) + "\n")
    counts = {split: len(entries) for split, entries in manifests.items()}
    info = {"settings": settings, "counts": counts, "vizdoom": version, "licence": LICENCE, "av": av.__version__}
    (building / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    building.rename(out)
    return out


def correspondence_entries(entries: list[ManifestEntry]) -> list[ManifestEntry]:
    """The audio-visual correspondence task of one split: every clip twice, once with its own sound
    (``av:matched``) and once with the sound of the next clip of the same scenario, 4 s later in the same play
    segment (``av:shifted``; the last clip takes the first one's). Both halves hold the same videos and the same
    sounds, so only their pairing tells them apart."""
    by_scenario: dict[str, list[ManifestEntry]] = {}
    for entry in entries:
        scenario = next(label for label in entry.labels if label.startswith("scenario:"))
        by_scenario.setdefault(scenario, []).append(entry)
    pairs = []
    for clips in by_scenario.values():
        if len(clips) < 2:
            continue  # one clip has no other sound to pair with
        for index, entry in enumerate(clips):
            other = clips[(index + 1) % len(clips)]
            pairs.append(replace(entry, labels=("av:matched",)))
            pairs.append(replace(entry, audio_path=other.path, labels=("av:shifted",)))
    return pairs


def _entry(relative: Path, clip: RecordedClip, version: str) -> ManifestEntry:
    seconds = len(clip.frames) * TICS_PER_STEP / TICS_PER_SECOND
    meta = (("source", "doom-av"), ("package", "vizdoom"), ("version", version), ("licence", LICENCE))
    return ManifestEntry(str(relative), start=0.0, end=round(seconds, 6), labels=tuple(clip.labels), meta=meta)


def write_av_clip(path: Path, clip: RecordedClip, size: int) -> None:
    """``clip`` as an mp4: its frames at 35/4 fps scaled to ``size`` x ``size``, its stereo audio as AAC, both
    starting at time 0 (frame ``k`` at ``4k / 35`` s, audio sample ``n`` at ``n / 22050`` s)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream(video_codec(), rate=Fraction(TICS_PER_SECOND, TICS_PER_STEP))
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(TICS_PER_STEP, TICS_PER_SECOND)
        video.thread_count = 1
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "stereo"
        audio.bit_rate = AUDIO_BIT_RATE
        for index, screen in enumerate(clip.frames):
            frame = av.VideoFrame.from_ndarray(screen, format="rgb24")
            frame = frame.reformat(width=size, height=size, format="yuv420p", interpolation="AREA")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        samples = (clip.audio.astype(np.float32) / 32768.0).T.copy()  # (2, n) planar
        source = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        source.sample_rate = AUDIO_RATE
        source.pts = 0
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE, frame_size=1024)
        for chunk in resampler.resample(source) + resampler.resample(None):
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
