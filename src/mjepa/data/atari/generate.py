"""AtariAV: a small, real audio-visual dataset generated on the spot from Atari 2600 games.

The demo needs genuine audio-visual data that anyone can produce offline in about a minute. The Arcade Learning
Environment (the ``ale-py`` package, which ships the game ROMs) emulates the console's picture *and* its sound chip,
so a seeded policy playing a few games yields short video clips whose sound is causally tied to what is on screen
(a shot, a bounce, an explosion). ``generate_atari_av`` writes them as ordinary ``.mp4`` files plus mjepa manifests,
so the dataset is read by the same code as any other dataset.

Emulator audio (ale-py 0.12, ``setBool("sound_obs", True)``; measured and read from its source):
    ``ALEInterface.getAudio()`` returns, after every emulated frame, 512 ``uint8`` mono samples. The sound chip (TIA)
    is emulated at 31,400 Hz but ALE hands out exactly 512 samples per 1/60 s frame, so we treat the stream as
    30,720 Hz (512 x 60). That keeps audio and video exactly in sync; the price is that pitches are about 2 % lower
    than on the real console. The chip's output is unipolar (silence reads as a constant, often 128, sometimes
    not), so the generator removes the slowly varying offset with a 1/30 s moving-average high-pass filter
    before resampling to 16 kHz mono and encoding to AAC.

Play:
    Each (game, split) pair is one independent play *segment*: its own emulator seeded from (seed, game name,
    split), a few seconds of unrecorded warm-up, then ``n`` consecutive non-overlapping clips. Because a segment
    never feeds two splits, adjacent or continuous gameplay never straddles train/val/test. A game over inside a
    segment resets the game and play continues. Actions are chosen every 4 emulator frames (the usual Atari
    decision rate), either uniformly at random (``policy="random"``) or keeping the previous action with
    probability 0.75 (``policy="sticky"``, longer purposeful-looking moves). The emulator's own sticky-action
    randomness is switched off (``repeat_action_probability = 0``) so the policy alone decides what is pressed.
    Video frames are taken every ``60 / fps`` emulator frames; each is the pixel-wise maximum of that frame and
    the one before, because several games draw objects on alternate frames only (flicker).

Splits (per game): ``round(0.15 * clips_per_game)`` clips (at least 1) each for val and test, the rest train.
``test_clips_per_game`` sets the test split's size on its own (the train and val splits keep the rule above): a
larger test split makes the rare event tags' average precision, and so a probe's mAP, less dependent on a handful of
clips. Because each split is its own play segment, a longer test segment starts with the same clips as a shorter one
and leaves the train and val clips unchanged.

Label scheme (``labels.json`` holds the vocabulary, in this order):
    ``game:<rom id>``      the game, e.g. ``game:pong`` (exactly one per clip);
    ``event:reward``       the game reported a nonzero reward (score change, either sign) during the clip;
    ``event:life_lost``    the player's life counter went down during the clip;
    ``event:game_over``    the game ended during the clip (and was restarted);
    ``event:silent``       at least 90 % of the clip's emulator frames produced no sound at all (the chip is
                           bursty: pong or breakout clips vary around this line, enduro is never silent).
The game label is an easy target for the video and (less easily) the audio probe; the event tags are sparse,
multi-label, and carried by both modalities, which leaves headroom for audio-visual probes.

Output folder::

    out_dir/
      train.jsonl val.jsonl test.jsonl   mjepa manifests (paths relative to out_dir; start=0, end=clip length)
      labels.json                        label vocabulary and its description
      info.json                          generation settings, counts, library versions (written last)
      clips/<split>/<game>-<index>.mp4   H.264 (mpeg4 where PyAV lacks libx264) video + AAC 16 kHz mono audio

Same seed and settings give byte-identical manifests and ``labels.json`` (the mp4 bytes may differ between
library versions). Generation writes into a hidden sibling folder and renames it into place at the end, so an
interrupted run never leaves a folder that looks complete; a later call with the same settings reuses the
finished folder without emulating anything.

Code: this module holds the public API, settings, caching and manifests; the emulator play loop is in
:mod:`mjepa.data.atari.play` and the mp4/AAC clip writing in :mod:`mjepa.data.atari.encode`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mjepa.data.atari.encode import AUDIO_SAMPLE_RATE, write_clip
from mjepa.data.atari.play import (
    ALE_AUDIO_RATE,
    ALE_AUDIO_SAMPLES_PER_FRAME,
    EMULATOR_FPS,
    EVENT_LABELS,
    SILENT_FRAME_FRACTION,
    import_ale_py,
    import_ale_roms,
    play_segment,
)
from mjepa.data.manifests.manifest import ManifestEntry, write_manifest
from mjepa.data.shards.pack import video_codec

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "DEFAULT_GAMES",
    "EVENT_LABELS",
    "POLICIES",
    "SPLITS",
    "atari_av_manifest_path",
    "available_atari_games",
    "generate_atari_av",
    "read_atari_av_labels",
]

DEFAULT_GAMES = ("pong", "breakout", "space_invaders", "seaquest", "ms_pacman", "enduro", "asteroids", "frogger")
# ROMs that ale-py 0.12 ships but cannot load: its own checksum test rejects them and the emulator then ends the
# whole Python process (checked one ROM per process). They are refused up front with a clear error instead.
UNLOADABLE_GAMES = ("combat", "joust", "maze_craze", "warlords")
SPLITS = ("train", "val", "test")
POLICIES = ("random", "sticky")

# Bump when a change to this module (or to atari_play / atari_encode) changes the generated data, so cached
# folders are regenerated.
GENERATOR_VERSION = 1
GENERATOR_NAME = "mjepa.data.atari"

VAL_FRACTION = 0.15
TEST_FRACTION = 0.15

_MANIFEST_NAMES = {split: f"{split}.jsonl" for split in SPLITS}
_INFO_NAME = "info.json"
_LABELS_NAME = "labels.json"


def available_atari_games() -> list[str]:
    """ROM ids that the installed ale-py ships and can load (any of them can be passed in ``games``)."""
    roms = import_ale_roms()
    return sorted(set(roms.get_all_rom_ids()) - set(UNLOADABLE_GAMES))


def atari_av_manifest_path(root: str | os.PathLike, split: str) -> Path:
    """Path of a split's manifest inside a dataset folder made by ``generate_atari_av``."""
    if split not in SPLITS:
        raise ValueError(f"unknown AtariAV split {split!r}; expected one of {', '.join(SPLITS)}")
    return Path(root) / _MANIFEST_NAMES[split]


def read_atari_av_labels(root: str | os.PathLike) -> list[str]:
    """The label vocabulary of a dataset folder, in its fixed order (games first, then events)."""
    path = Path(root) / _LABELS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: AtariAV labels.json not found; run generate_atari_av first")
    with open(path, encoding="utf-8") as handle:
        return list(json.load(handle)["labels"])


def generate_atari_av(
    out_dir: str | os.PathLike,
    games: Sequence[str] = DEFAULT_GAMES,
    clips_per_game: int = 40,
    clip_seconds: float = 4.0,
    fps: int = 15,
    size: int = 64,
    seed: int = 0,
    policy: str = "random",
    progress: Callable[[str], None] | None = print,
    workers: int = 1,
    test_clips_per_game: int | None = None,
) -> Path:
    """Generate (or reuse) the AtariAV dataset in ``out_dir`` and return ``out_dir``.

    ``progress`` receives one line per game (and one line when a cached folder is reused); pass ``None`` for
    silence. ``workers`` games are played at once in separate processes; the output does not depend on it. See the
    module docstring for the play, split and label rules.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    settings = _settings_record(games, clips_per_game, clip_seconds, fps, size, seed, policy, test_clips_per_game)
    out_dir = Path(out_dir)
    report = progress if progress is not None else (lambda message: None)

    if _is_complete_dataset(out_dir, settings):
        report(f"AtariAV: reusing {out_dir} (same settings)")
        return out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"AtariAV out_dir {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and _read_info(out_dir) is None:
        # Never overwrite a folder we did not make ourselves.
        raise FileExistsError(f"AtariAV out_dir {out_dir} is not empty and holds no AtariAV dataset; choose another")

    # Fail on a missing ale-py or an unknown game before any folder is created.
    import_ale_py()
    _check_games(settings["games"])

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out_dir)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        _generate_into(partial, settings, report, workers)
        _install(partial, out_dir, settings)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return out_dir


# --------------------------------------------------------------------------------------------------------------
# settings and cache


def _settings_record(
    games: Sequence[str],
    clips_per_game: int,
    clip_seconds: float,
    fps: int,
    size: int,
    seed: int,
    policy: str,
    test_clips_per_game: int | None = None,
) -> dict:
    if isinstance(games, str):
        raise TypeError(f"games must be a sequence of game names, got the string {games!r}")
    games = [str(game) for game in games]
    if not games:
        raise ValueError("games must name at least one game, got an empty sequence")
    duplicates = sorted({game for game in games if games.count(game) > 1})
    if duplicates:
        raise ValueError(f"games must not repeat, got {duplicates[0]!r} more than once")
    if isinstance(clips_per_game, bool) or not isinstance(clips_per_game, int) or clips_per_game < len(SPLITS):
        raise ValueError(f"clips_per_game must be an integer >= {len(SPLITS)} (one per split), got {clips_per_game!r}")
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0 or EMULATOR_FPS % fps != 0:
        valid = [rate for rate in range(1, EMULATOR_FPS + 1) if EMULATOR_FPS % rate == 0]
        raise ValueError(f"fps must divide the emulator's {EMULATOR_FPS} fps, one of {valid}, got {fps!r}")
    video_frames = float(clip_seconds) * fps
    if clip_seconds <= 0 or abs(video_frames - round(video_frames)) > 1e-9:
        raise ValueError(
            f"clip_seconds must be positive and a whole number of video frames at {fps} fps, got {clip_seconds!r}"
        )
    if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size % 2:
        raise ValueError(f"size must be an even integer >= 16 (H.264 4:2:0 needs even sides), got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if test_clips_per_game is not None and (
        isinstance(test_clips_per_game, bool) or not isinstance(test_clips_per_game, int) or test_clips_per_game < 1
    ):
        raise ValueError(f"test_clips_per_game must be an integer >= 1 or None, got {test_clips_per_game!r}")
    record = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "games": games,
        "clips_per_game": clips_per_game,
        "clip_seconds": float(clip_seconds),
        "fps": fps,
        "size": size,
        "seed": seed,
        "policy": policy,
        "audio_sample_rate": AUDIO_SAMPLE_RATE,
    }
    # Recorded only when set, so folders generated with the default split rule stay valid caches.
    if test_clips_per_game is not None:
        record["test_clips_per_game"] = test_clips_per_game
    return record


def _read_info(folder: Path) -> dict | None:
    """info.json of an AtariAV folder, or None when the folder holds none (or someone else's)."""
    path = folder / _INFO_NAME
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict) or info.get("settings", {}).get("generator") != GENERATOR_NAME:
        return None
    return info


def _is_complete_dataset(folder: Path, settings: dict) -> bool:
    info = _read_info(folder)
    if info is None or info["settings"] != settings:
        return False
    # info.json is written last, but check the small files too in case someone deleted parts by hand.
    needed = [folder / name for name in _MANIFEST_NAMES.values()] + [folder / _LABELS_NAME]
    return all(path.is_file() for path in needed)


def _remove_stale_partials(out_dir: Path) -> None:
    """Delete partial folders left by generations that were killed (their process no longer exists)."""
    for candidate in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid_text = candidate.name.rsplit("-", 1)[-1]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


def _install(partial: Path, out_dir: Path, settings: dict) -> None:
    """Move a finished partial folder to out_dir in one rename (replacing an older AtariAV folder there)."""
    if _is_complete_dataset(out_dir, settings):
        return  # another process finished the same dataset meanwhile; keep theirs
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.replace(partial, out_dir)
        return
    # An AtariAV folder made with other settings: swap it out, then delete it.
    retired = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    os.replace(out_dir, retired)
    os.replace(partial, out_dir)
    shutil.rmtree(retired, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# generation


def _check_games(games: list[str]) -> None:
    valid = available_atari_games()
    for game in games:
        if game in UNLOADABLE_GAMES:
            raise ValueError(f"Atari game {game!r} cannot be played: the ale-py ROM fails ale-py's own checksum test")
        if game not in valid:
            raise ValueError(f"unknown Atari game {game!r}; expected one of {', '.join(valid)}")


def _split_sizes(clips_per_game: int, test_clips_per_game: int | None = None) -> dict[str, int]:
    val = max(1, round(VAL_FRACTION * clips_per_game))
    default_test = max(1, round(TEST_FRACTION * clips_per_game))
    test = default_test if test_clips_per_game is None else test_clips_per_game
    # The training split is what remains under the default rule, whatever size the test split is given.
    return {"train": clips_per_game - val - default_test, "val": val, "test": test}


def _segment_seed_sequence(seed: int, game: str, split: str) -> np.random.SeedSequence:
    # Keyed by names, not positions, so adding a game to the list leaves the other games' clips unchanged.
    return np.random.SeedSequence([seed, zlib.crc32(game.encode()), SPLITS.index(split)])


def _generate_game(folder: Path, settings: dict, game: str) -> tuple[dict[str, list[ManifestEntry]], float]:
    """Play and write one game's clips for every split; returns the manifest entries per split and the seconds
    it took."""
    started = time.perf_counter()
    ale_py = import_ale_py()
    split_sizes = _split_sizes(settings["clips_per_game"], settings.get("test_clips_per_game"))
    codec = video_codec()
    # One reformatter per game: it keeps its scaling context, which a fresh frame.reformat() rebuilds.
    reformatter = VideoReformatter()
    entries: dict[str, list[ManifestEntry]] = {split: [] for split in SPLITS}
    for split in SPLITS:
        seed_sequence = _segment_seed_sequence(settings["seed"], game, split)
        clips = play_segment(ale_py, game, seed_sequence, split_sizes[split], settings)
        for index, clip in enumerate(clips):
            relative = f"clips/{split}/{game}-{index:04d}.mp4"
            write_clip(folder / relative, clip, settings["fps"], settings["size"], codec, reformatter)
            entries[split].append(
                ManifestEntry(
                    path=relative,
                    start=0.0,
                    end=settings["clip_seconds"],
                    labels=tuple([f"game:{game}"] + clip["events"]),
                    has_audio=True,
                )
            )
    return entries, time.perf_counter() - started


def _generate_into(folder: Path, settings: dict, report: Callable[[str], None], workers: int) -> None:
    started = time.perf_counter()
    games = settings["games"]
    codec = video_codec()
    for split in SPLITS:
        (folder / "clips" / split).mkdir(parents=True, exist_ok=True)
    per_game: dict[str, dict[str, list[ManifestEntry]]] = {}

    def finished(game: str, result: tuple[dict[str, list[ManifestEntry]], float]) -> None:
        per_game[game] = result[0]
        clips = sum(len(split_entries) for split_entries in result[0].values())
        report(f"AtariAV: [{len(per_game)}/{len(games)}] {game}: {clips} clips in {result[1]:.1f} s")

    if workers == 1 or len(games) == 1:
        for game in games:
            finished(game, _generate_game(folder, settings, game))
    else:
        # Each game's play depends only on (seed, game, split), so games run in any order in any process; the
        # manifests below are assembled in the games' listed order.
        with ProcessPoolExecutor(max_workers=min(workers, len(games)), mp_context=get_context("spawn")) as pool:
            submitted = {pool.submit(_generate_game, folder, settings, game): game for game in games}
            for future in as_completed(submitted):
                finished(submitted[future], future.result())
    entries = {split: [entry for game in games for entry in per_game[game][split]] for split in SPLITS}

    vocabulary = [f"game:{game}" for game in games] + list(EVENT_LABELS)
    for split in SPLITS:
        write_manifest(folder / _MANIFEST_NAMES[split], entries[split], paths_from=folder)
    _write_json(folder / _LABELS_NAME, _labels_record(vocabulary))
    counts = {
        split: {
            "clips": len(entries[split]),
            "labels": {label: sum(label in entry.labels for entry in entries[split]) for label in vocabulary},
        }
        for split in SPLITS
    }
    info = {
        "settings": settings,
        "counts": counts,
        "video_codec": codec,
        "audio_codec": "aac",
        "emulator_audio": {
            "sample_rate": ALE_AUDIO_RATE,
            "samples_per_frame": ALE_AUDIO_SAMPLES_PER_FRAME,
            "dtype": "uint8",
            "channels": 1,
        },
        "versions": {"ale_py": metadata.version("ale-py"), "av": av.__version__, "numpy": np.__version__},
        "generation_seconds": round(time.perf_counter() - started, 2),
    }
    # Written last: its presence with matching settings is what marks the folder complete.
    _write_json(folder / _INFO_NAME, info)


def _labels_record(vocabulary: list[str]) -> dict:
    return {
        "labels": vocabulary,
        "groups": {
            "game": [label for label in vocabulary if label.startswith("game:")],
            "event": list(EVENT_LABELS),
        },
        "descriptions": {
            "game:<rom id>": "the game being played; exactly one per clip",
            "event:reward": "the game reported a nonzero reward (score change) during the clip",
            "event:life_lost": "the player's life counter went down during the clip",
            "event:game_over": "the game ended during the clip and was restarted",
            "event:silent": f"at least {SILENT_FRAME_FRACTION:.0%} of the clip's emulator frames had no sound",
        },
    }


def _write_json(path: Path, record: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, sort_keys=False)
        handle.write("\n")
