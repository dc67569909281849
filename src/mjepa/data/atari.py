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
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from fractions import Fraction
from importlib import metadata
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mjepa.data.manifest import ManifestEntry, write_manifest

DEFAULT_GAMES = ("pong", "breakout", "space_invaders", "seaquest", "ms_pacman", "enduro", "asteroids", "frogger")
SPLITS = ("train", "val", "test")
POLICIES = ("random", "sticky")
EVENT_LABELS = ("event:reward", "event:life_lost", "event:game_over", "event:silent")

EMULATOR_FPS = 60
ALE_AUDIO_SAMPLES_PER_FRAME = 512
ALE_AUDIO_RATE = EMULATOR_FPS * ALE_AUDIO_SAMPLES_PER_FRAME  # 30,720 Hz, see the module docstring
AUDIO_SAMPLE_RATE = 16000
# The mjepa audio front end works at 16 kHz; AAC at 16 kHz mono needs far less than this, but Atari square waves
# are harsh and we want the encoder to keep them.
AUDIO_BIT_RATE = 64000

# Bump when a change to this module changes the generated data, so cached folders are regenerated.
GENERATOR_VERSION = 1
AAC_FRAME_SAMPLES = 1024  # the AAC encoder takes exactly this many samples per frame
GENERATOR_NAME = "mjepa.data.atari"

ACTION_REPEAT = 4  # emulator frames between policy decisions
STICKY_KEEP_PROBABILITY = 0.75
WARMUP_SECONDS_MAX = 4  # unrecorded play before a segment's first clip, drawn uniformly in whole action steps
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15
SILENT_FRAME_FRACTION = 0.9  # Atari sound is bursty: most clips have some silent frames, few are this quiet
DC_WINDOW_SAMPLES = ALE_AUDIO_RATE // 30  # 1/30 s moving average: removes the chip's offset, keeps audible sound

_MANIFEST_NAMES = {split: f"{split}.jsonl" for split in SPLITS}
_INFO_NAME = "info.json"
_LABELS_NAME = "labels.json"


def available_atari_games() -> list[str]:
    """ROM ids that the installed ale-py ships (any of them can be passed in ``games``)."""
    roms = _import_ale_roms()
    return sorted(roms.get_all_rom_ids())


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
) -> Path:
    """Generate (or reuse) the AtariAV dataset in ``out_dir`` and return ``out_dir``.

    ``progress`` receives one line per game (and one line when a cached folder is reused); pass ``None`` for
    silence. See the module docstring for the play, split and label rules.
    """
    settings = _settings_record(games, clips_per_game, clip_seconds, fps, size, seed, policy)
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
    ale_py = _import_ale_py()
    _check_games(settings["games"])

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out_dir)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        _generate_into(partial, settings, ale_py, report)
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
        raise ValueError(f"clip_seconds must be positive and a whole number of video frames at {fps} fps, "
                         f"got {clip_seconds!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size % 2:
        raise ValueError(f"size must be an even integer >= 16 (H.264 4:2:0 needs even sides), got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
    return {
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


def _import_ale_py():
    try:
        import ale_py
    except ImportError as err:
        raise ImportError("AtariAV needs the ale-py package (pip install 'ale-py>=0.12'); it was not found") from err
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # ALE prints a banner and seed lines otherwise
    return ale_py


def _import_ale_roms():
    _import_ale_py()
    from ale_py import roms

    return roms


def _check_games(games: list[str]) -> None:
    valid = available_atari_games()
    for game in games:
        if game not in valid:
            raise ValueError(f"unknown Atari game {game!r}; expected one of {', '.join(valid)}")


def _split_sizes(clips_per_game: int) -> dict[str, int]:
    val = max(1, round(VAL_FRACTION * clips_per_game))
    test = max(1, round(TEST_FRACTION * clips_per_game))
    return {"train": clips_per_game - val - test, "val": val, "test": test}


def _segment_seed_sequence(seed: int, game: str, split: str) -> np.random.SeedSequence:
    # Keyed by names, not positions, so adding a game to the list leaves the other games' clips unchanged.
    return np.random.SeedSequence([seed, zlib.crc32(game.encode()), SPLITS.index(split)])


def _video_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def _generate_into(folder: Path, settings: dict, ale_py, report: Callable[[str], None]) -> None:
    started = time.perf_counter()
    games = settings["games"]
    split_sizes = _split_sizes(settings["clips_per_game"])
    entries: dict[str, list[ManifestEntry]] = {split: [] for split in SPLITS}
    codec = _video_codec()
    # One reformatter for the whole run: it keeps its scaling context, which a fresh frame.reformat() rebuilds.
    reformatter = VideoReformatter()
    for game_number, game in enumerate(games, start=1):
        game_started = time.perf_counter()
        for split in SPLITS:
            clips = _play_segment(ale_py, game, split, split_sizes[split], settings)
            for index, clip in enumerate(clips):
                relative = f"clips/{split}/{game}-{index:04d}.mp4"
                _write_clip(folder / relative, clip, settings["fps"], settings["size"], codec, reformatter)
                entries[split].append(
                    ManifestEntry(
                        path=relative,
                        start=0.0,
                        end=settings["clip_seconds"],
                        labels=tuple([f"game:{game}"] + clip["events"]),
                        has_audio=True,
                    )
                )
        report(
            f"AtariAV: [{game_number}/{len(games)}] {game}: {settings['clips_per_game']} clips "
            f"in {time.perf_counter() - game_started:.1f} s"
        )

    vocabulary = [f"game:{game}" for game in games] + list(EVENT_LABELS)
    for split in SPLITS:
        write_manifest(folder / _MANIFEST_NAMES[split], entries[split])
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
        "emulator_audio": {"sample_rate": ALE_AUDIO_RATE, "samples_per_frame": ALE_AUDIO_SAMPLES_PER_FRAME,
                           "dtype": "uint8", "channels": 1},
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


def _play_segment(ale_py, game: str, split: str, num_clips: int, settings: dict) -> list[dict]:
    """Play one independent segment and cut it into ``num_clips`` consecutive clips.

    Each clip is a dict with ``frames`` (list of 210x160x3 uint8 screens), ``audio`` (uint8 emulator samples)
    and ``events`` (event labels in EVENT_LABELS order).
    """
    seed_sequence = _segment_seed_sequence(settings["seed"], game, split)
    emulator_seed, policy_seed = seed_sequence.spawn(2)
    rng = np.random.default_rng(policy_seed)

    ale = ale_py.ALEInterface()
    # Every setting that affects emulation is set explicitly, so ale-py default changes cannot alter the data.
    ale.setInt("random_seed", int(emulator_seed.generate_state(1)[0] % (2**31 - 1)))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    ale.setInt("max_num_frames_per_episode", 0)
    ale.setBool("color_averaging", False)
    ale.setBool("sound_obs", True)
    ale.loadROM(str(_import_ale_roms().get_rom_path(game)))
    actions = ale.getMinimalActionSet()
    audio_size = ale.getAudioSize()
    if audio_size != ALE_AUDIO_SAMPLES_PER_FRAME:
        raise RuntimeError(f"ale-py returned {audio_size} audio samples per frame; AtariAV expects "
                           f"{ALE_AUDIO_SAMPLES_PER_FRAME}")

    frames_per_clip = round(settings["clip_seconds"] * EMULATOR_FPS)
    video_step = EMULATOR_FPS // settings["fps"]
    # A warm-up that is a whole number of video and action steps starts the first clip on both boundaries.
    alignment = int(np.lcm(video_step, ACTION_REPEAT))
    warmup_frames = int(rng.integers(0, WARMUP_SECONDS_MAX * EMULATOR_FPS // alignment + 1)) * alignment

    state = {"action": actions[0], "lives": ale.lives(), "previous_screen": None}
    screen = np.empty((*ale.getScreenDims(), 3), dtype=np.uint8)

    def step(frame_number: int) -> tuple[int, bool, bool]:
        if frame_number % ACTION_REPEAT == 0:
            keep = settings["policy"] == "sticky" and rng.random() < STICKY_KEEP_PROBABILITY
            if not keep:
                state["action"] = actions[int(rng.integers(len(actions)))]
        reward = ale.act(state["action"])
        lives = ale.lives()
        life_lost = lives < state["lives"]
        game_over = ale.game_over()
        if game_over:
            ale.reset_game()
            lives = ale.lives()
        state["lives"] = lives
        return reward, life_lost, game_over

    frame_number = 0
    for _ in range(warmup_frames):
        step(frame_number)
        frame_number += 1
    if warmup_frames:
        ale.getScreenRGB(screen)
        state["previous_screen"] = screen.copy()

    clips = []
    for _ in range(num_clips):
        audio = np.empty((frames_per_clip, ALE_AUDIO_SAMPLES_PER_FRAME), dtype=np.uint8)
        frames = []
        any_reward = any_life_lost = any_game_over = False
        for clip_frame in range(frames_per_clip):
            reward, life_lost, game_over = step(frame_number)
            ale.getAudio(audio[clip_frame])
            # Keep the screen before each video frame too, for the anti-flicker maximum.
            phase = clip_frame % video_step
            if phase == 0 or phase == video_step - 1:
                ale.getScreenRGB(screen)
                if phase == 0:
                    previous = state["previous_screen"]
                    frames.append(screen.copy() if previous is None else np.maximum(screen, previous))
                if phase == video_step - 1:
                    state["previous_screen"] = screen.copy()
            any_reward |= reward != 0
            any_life_lost |= life_lost
            any_game_over |= game_over
            frame_number += 1
        silent_frames = int(np.sum(audio.min(axis=1) == audio.max(axis=1)))
        flags = {
            "event:reward": any_reward,
            "event:life_lost": any_life_lost,
            "event:game_over": any_game_over,
            "event:silent": silent_frames >= SILENT_FRAME_FRACTION * frames_per_clip,
        }
        clips.append({"frames": frames, "audio": audio.reshape(-1), "events": [e for e in EVENT_LABELS if flags[e]]})
    return clips


def _remove_dc(signal: np.ndarray, window: int) -> np.ndarray:
    """Subtract a centred moving average (a cheap high-pass); edges are padded with the edge value."""
    padded = np.pad(signal.astype(np.float64), (window // 2, window - 1 - window // 2), mode="edge")
    running = np.concatenate([[0.0], np.cumsum(padded)])
    local_mean = (running[window:] - running[:-window]) / window
    return signal - local_mean


def _emulator_audio_to_float(audio: np.ndarray) -> np.ndarray:
    centred = (audio.astype(np.float64) - 128.0) / 128.0
    return np.clip(_remove_dc(centred, DC_WINDOW_SAMPLES), -1.0, 1.0).astype(np.float32)


def _write_clip(path: Path, clip: dict, fps: int, size: int, codec: str, reformatter: VideoReformatter) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream(codec, rate=fps)
        video.width = size
        video.height = size
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(1, fps)
        video.thread_count = 1  # clips are tiny; threads cost more than they save
        if codec == "libx264":
            video.options = {"crf": "20", "preset": "veryfast"}
        else:
            video.bit_rate = 400_000
        audio = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE)
        audio.layout = "mono"
        audio.bit_rate = AUDIO_BIT_RATE
        # ffmpeg's default AAC search is twice as slow for no audible gain on 8-bit chip sound.
        audio.options = {"aac_coder": "fast"}

        for index, screen in enumerate(clip["frames"]):
            frame = av.VideoFrame.from_ndarray(screen, format="rgb24")
            # Area averaging keeps thin Atari sprites (balls, bullets) visible when shrinking 210x160 screens.
            frame = reformatter.reformat(frame, width=size, height=size, format="yuv420p", interpolation="AREA")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))

        waveform = _emulator_audio_to_float(clip["audio"])
        source = av.AudioFrame.from_ndarray(waveform[None, :], format="flt", layout="mono")
        source.sample_rate = ALE_AUDIO_RATE
        source.pts = 0
        # libswresample low-passes before decimating; Atari square waves would alias badly otherwise.
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_SAMPLE_RATE,
                                      frame_size=AAC_FRAME_SAMPLES)
        for resampled in resampler.resample(source) + resampler.resample(None):
            container.mux(audio.encode(resampled))
        container.mux(audio.encode(None))
