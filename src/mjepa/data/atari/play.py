"""AtariAV play: one seeded emulator segment cut into clips of screens, emulator audio and event labels.

The play rules (policies, warm-up, anti-flicker frames, event definitions) are described in the module docstring
of :mod:`mjepa.data.atari.generate`, which drives this module.
"""

from __future__ import annotations

import numpy as np

EVENT_LABELS = ("event:reward", "event:life_lost", "event:game_over", "event:silent")

EMULATOR_FPS = 60
ALE_AUDIO_SAMPLES_PER_FRAME = 512
ALE_AUDIO_RATE = EMULATOR_FPS * ALE_AUDIO_SAMPLES_PER_FRAME  # 30,720 Hz, see mjepa.data.atari.generate's docstring

ACTION_REPEAT = 4  # emulator frames between policy decisions
STICKY_KEEP_PROBABILITY = 0.75
WARMUP_SECONDS_MAX = 4  # unrecorded play before a segment's first clip, drawn uniformly in whole action steps
SILENT_FRAME_FRACTION = 0.9  # Atari sound is bursty: most clips have some silent frames, few are this quiet


def import_ale_py():
    """The ale-py module, with its logging quietened; ImportError naming the package when it is missing."""
    try:
        import ale_py
    except ImportError as err:
        raise ImportError("AtariAV needs the ale-py package (pip install 'ale-py>=0.12'); it was not found") from err
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # ALE prints a banner and seed lines otherwise
    return ale_py


def import_ale_roms():
    """ale-py's ROM registry (imported after :func:`import_ale_py` so the logger is quiet first)."""
    import_ale_py()
    from ale_py import roms

    return roms


def play_segment(
    ale_py, game: str, seed_sequence: np.random.SeedSequence, num_clips: int, settings: dict
) -> list[dict]:
    """Play one independent segment and cut it into ``num_clips`` consecutive clips.

    ``seed_sequence`` seeds both the emulator and the policy. Each clip is a dict with ``frames`` (list of
    210x160x3 uint8 screens), ``audio`` (uint8 emulator samples) and ``events`` (event labels in EVENT_LABELS
    order).
    """
    emulator_seed, policy_seed = seed_sequence.spawn(2)
    rng = np.random.default_rng(policy_seed)
    ale = _open_emulator(ale_py, game, emulator_seed)
    frames_per_clip = round(settings["clip_seconds"] * EMULATOR_FPS)
    video_step = EMULATOR_FPS // settings["fps"]
    warmup_frames = _draw_warmup_frames(rng, video_step)
    player = _PolicyPlayer(ale, rng, sticky=settings["policy"] == "sticky")
    screens = _ScreenSampler(ale, video_step)

    for _ in range(warmup_frames):
        player.step()
    if warmup_frames:
        screens.remember_current()
    return [_record_clip(player, screens, frames_per_clip) for _ in range(num_clips)]


def _open_emulator(ale_py, game: str, emulator_seed: np.random.SeedSequence):
    """A fresh ALEInterface with ``game`` loaded and every emulation setting pinned."""
    ale = ale_py.ALEInterface()
    # Every setting that affects emulation is set explicitly, so ale-py default changes cannot alter the data.
    ale.setInt("random_seed", int(emulator_seed.generate_state(1)[0] % (2**31 - 1)))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    ale.setInt("max_num_frames_per_episode", 0)
    ale.setBool("color_averaging", False)
    ale.setBool("sound_obs", True)
    ale.loadROM(str(import_ale_roms().get_rom_path(game)))
    audio_size = ale.getAudioSize()
    if audio_size != ALE_AUDIO_SAMPLES_PER_FRAME:
        raise RuntimeError(
            f"ale-py returned {audio_size} audio samples per frame; AtariAV expects {ALE_AUDIO_SAMPLES_PER_FRAME}"
        )
    return ale


def _draw_warmup_frames(rng: np.random.Generator, video_step: int) -> int:
    # A warm-up that is a whole number of video and action steps starts the first clip on both boundaries.
    alignment = int(np.lcm(video_step, ACTION_REPEAT))
    return int(rng.integers(0, WARMUP_SECONDS_MAX * EMULATOR_FPS // alignment + 1)) * alignment


class _PolicyPlayer:
    """Advances the emulator one frame at a time, choosing a new action every ACTION_REPEAT frames."""

    def __init__(self, ale, rng: np.random.Generator, sticky: bool):
        self.ale = ale
        self._rng = rng
        self._sticky = sticky
        self._actions = ale.getMinimalActionSet()
        self._action = self._actions[0]
        self._lives = ale.lives()
        self._frame_number = 0  # emulator frames played in this segment, warm-up included

    def step(self) -> tuple[int, bool, bool]:
        """Play one frame; returns its reward and whether a life was lost and the game ended (then restarted)."""
        if self._frame_number % ACTION_REPEAT == 0:
            keep = self._sticky and self._rng.random() < STICKY_KEEP_PROBABILITY
            if not keep:
                self._action = self._actions[int(self._rng.integers(len(self._actions)))]
        self._frame_number += 1
        reward = self.ale.act(self._action)
        lives = self.ale.lives()
        life_lost = lives < self._lives
        game_over = self.ale.game_over()
        if game_over:
            self.ale.reset_game()
            lives = self.ale.lives()
        self._lives = lives
        return reward, life_lost, game_over


class _ScreenSampler:
    """Takes a video frame every ``video_step`` emulator frames, as the pixel-wise maximum with the screen before
    it (several games draw objects on alternate frames only)."""

    def __init__(self, ale, video_step: int):
        self._ale = ale
        self._video_step = video_step
        self._screen = np.empty((*ale.getScreenDims(), 3), dtype=np.uint8)
        self._previous: np.ndarray | None = None

    def remember_current(self) -> None:
        """Keep the current screen as the one before the next video frame."""
        self._ale.getScreenRGB(self._screen)
        self._previous = self._screen.copy()

    def after_frame(self, clip_frame: int, frames: list[np.ndarray]) -> None:
        """Call after each emulated frame of a clip; appends to ``frames`` on video frames."""
        phase = clip_frame % self._video_step
        is_video_frame = phase == 0
        # Keep the screen before each video frame too, for the anti-flicker maximum.
        precedes_video_frame = phase == self._video_step - 1
        if not (is_video_frame or precedes_video_frame):
            return
        self._ale.getScreenRGB(self._screen)
        if is_video_frame:
            previous = self._previous
            frames.append(self._screen.copy() if previous is None else np.maximum(self._screen, previous))
        if precedes_video_frame:
            self._previous = self._screen.copy()


def _record_clip(player: _PolicyPlayer, screens: _ScreenSampler, frames_per_clip: int) -> dict:
    """Play one clip's frames, collecting its video frames, emulator audio and events."""
    audio = np.empty((frames_per_clip, ALE_AUDIO_SAMPLES_PER_FRAME), dtype=np.uint8)
    frames: list[np.ndarray] = []
    any_reward = any_life_lost = any_game_over = False
    for clip_frame in range(frames_per_clip):
        reward, life_lost, game_over = player.step()
        player.ale.getAudio(audio[clip_frame])
        screens.after_frame(clip_frame, frames)
        any_reward |= reward != 0
        any_life_lost |= life_lost
        any_game_over |= game_over
    silent_frames = int(np.sum(audio.min(axis=1) == audio.max(axis=1)))
    flags = {
        "event:reward": any_reward,
        "event:life_lost": any_life_lost,
        "event:game_over": any_game_over,
        "event:silent": silent_frames >= SILENT_FRAME_FRACTION * frames_per_clip,
    }
    return {"frames": frames, "audio": audio.reshape(-1), "events": [e for e in EVENT_LABELS if flags[e]]}
