"""Playing a ViZDoom scenario with a seeded policy and recording what it shows and what it sounds like.

ViZDoom (PyPI ``vizdoom``) runs a Doom engine as a child process and hands back, after every action, the screen and
the audio of the game tics that the action lasted. The engine plays its sound through OpenAL, which the wheel does
not bundle: without ``libopenal.so.1`` it says "Sound init failed. Using nosound." and the audio buffer holds zeros.
:func:`openal_library_dir` fetches Debian's OpenAL (``libopenal1`` and its ``libsndio7.0``) with ``apt-get download``
and hands its folder to the engine through ``LD_LIBRARY_PATH``; ``+snd_efx 0`` turns off the reverb extension that
aborts the bundled engine on OpenAL without EFX.

Time: the engine runs 35 tics per second. Each policy step lasts ``TICS_PER_STEP`` tics (4: 114 ms, 8.75 steps per
second, the usual ViZDoom frame skip). Step ``k`` records the screen *before* its action (the world at tic
``4k``) and the audio of its 4 tics ``[4k, 4k + 4)``, so frame ``k`` and audio sample ``4k * rate / 35`` are the
same moment.

Labels come from the game's own counters over a clip: ``event:shot`` (the selected weapon's ammunition fell),
``event:hurt`` (health fell), ``event:kill`` (the kill counter rose), ``event:pickup`` (the item counter rose or
health rose), plus ``scenario:<name>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TICS_PER_SECOND = 35
TICS_PER_STEP = 4
AUDIO_RATE = 22050  # the engine's SR_22050 (it offers 11,025, 22,050 and 44,100 Hz)
SAMPLES_PER_STEP = AUDIO_RATE * TICS_PER_STEP // TICS_PER_SECOND  # 2,520
OPENAL_PACKAGES = ("libopenal1", "libsndio7.0")
EVENT_LABELS = ("event:shot", "event:hurt", "event:kill", "event:pickup")
KEEP_ACTION_PROBABILITY = 0.75  # the policy keeps its previous buttons with this probability (purposeful moves)
COUNTERS = ("SELECTED_WEAPON_AMMO", "HEALTH", "KILLCOUNT", "ITEMCOUNT")


def import_vizdoom():
    try:
        import vizdoom
    except ImportError:
        raise ImportError(
            "the ViZDoom source needs the vizdoom package: pip install 'mjepa[vizdoom]' (or pip install vizdoom)"
        ) from None
    return vizdoom


def available_scenarios() -> list[str]:
    """The scenario names (``.cfg`` stems) that the installed vizdoom ships."""
    folder = Path(import_vizdoom().scenarios_path)
    return sorted(p.stem for p in folder.glob("*.cfg"))


def openal_library_dir(cache: str | os.PathLike) -> Path:
    """The folder holding Debian's ``libopenal.so.1`` and ``libsndio.so.7``, fetched into ``cache`` once."""
    from mjepa.data.debian import fetch_package

    folders = []
    for name in OPENAL_PACKAGES:
        package = fetch_package(name, cache)
        found = sorted(package.root.glob("usr/lib/*/lib*.so*"))
        if not found:
            raise FileNotFoundError(f"{name}: the package holds no shared library under usr/lib")
        folders.append(found[0].parent)
    if len({str(f) for f in folders}) != 1:  # both unpack into their own tree; put them side by side
        target = Path(cache) / "openal-lib"
        target.mkdir(parents=True, exist_ok=True)
        for folder in folders:
            for library in folder.glob("lib*.so*"):
                link = target / library.name
                if not link.exists():
                    link.symlink_to(library.resolve())
        return target
    return folders[0]


@dataclass
class RecordedClip:
    frames: list[np.ndarray]  # (H, W, 3) uint8, one per step
    audio: np.ndarray  # (steps * SAMPLES_PER_STEP, 2) int16, stereo
    labels: list[str]
    counters: dict[str, list[float]] = field(default_factory=dict)  # per step, for tests and inspection


class ScenarioPlayer:
    """One engine playing one scenario with a seeded sticky-random policy; episodes restart when they end."""

    def __init__(self, scenario: str, seed: int, openal_dir: str | os.PathLike, resolution: str = "RES_160X120"):
        vzd = import_vizdoom()
        if scenario not in available_scenarios():
            raise ValueError(f"scenario {scenario!r}: expected one of {', '.join(available_scenarios())}")
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(openal_dir), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
        )  # the engine is a child process: it reads this when it starts
        os.environ.setdefault("ALSOFT_DRIVERS", "null")  # no sound card: render into the loopback buffer only
        game = vzd.DoomGame()
        game.load_config(os.path.join(vzd.scenarios_path, f"{scenario}.cfg"))
        game.set_window_visible(False)
        # The engine writes its settings file; keep it beside the OpenAL libraries, not in the caller's folder.
        game.set_doom_config_path(str(Path(openal_dir) / "_vizdoom.ini"))
        game.set_screen_resolution(getattr(vzd.ScreenResolution, resolution))
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_sound_enabled(True)
        game.set_audio_buffer_enabled(True)
        game.set_audio_sampling_rate(vzd.SamplingRate.SR_22050)
        game.set_audio_buffer_size(TICS_PER_STEP)
        game.add_game_args("+snd_efx 0")
        game.set_mode(vzd.Mode.PLAYER)
        game.set_seed(seed % (2**31))
        game.clear_available_game_variables()  # the scenario's own list would come first and shift ours
        for name in COUNTERS:
            game.add_available_game_variable(getattr(vzd.GameVariable, name))
        game.set_console_enabled(False)
        game.init()
        self.game, self.scenario = game, scenario
        self.rng = np.random.default_rng(seed)
        self.buttons = len(game.get_available_buttons())
        self.action = [0] * self.buttons
        self.sound_checked = False
        game.new_episode()

    def record_clip(self, steps: int) -> RecordedClip:
        """``steps`` policy steps: a frame before each action, the audio of each action's tics, the clip's labels."""
        frames, audio = [], []
        counters = {name: [] for name in COUNTERS}
        events = set()
        for _ in range(steps):
            if self.game.is_episode_finished():
                self.game.new_episode()
            state = self.game.get_state()
            frames.append(np.ascontiguousarray(state.screen_buffer))
            before = dict(zip(COUNTERS, state.game_variables))
            self._choose_action()
            self.game.make_action(self.action, TICS_PER_STEP)
            after_state = None if self.game.is_episode_finished() else self.game.get_state()
            if after_state is not None:
                audio.append(after_state.audio_buffer[-SAMPLES_PER_STEP:])
                events |= _events(before, dict(zip(COUNTERS, after_state.game_variables)))
            else:  # the episode ended inside this step: its last tics' audio is not handed out
                audio.append(np.zeros((SAMPLES_PER_STEP, 2), dtype=np.int16))
            for name in COUNTERS:
                counters[name].append(float(before[name]))
        labels = [f"scenario:{self.scenario}", *sorted(events)]
        return RecordedClip(frames, np.concatenate(audio), labels, counters)

    def _choose_action(self) -> None:
        if self.rng.random() >= KEEP_ACTION_PROBABILITY or not any(self.action):
            self.action = [int(b) for b in self.rng.random(self.buttons) < 0.5]

    def close(self) -> None:
        self.game.close()


def _events(before: dict[str, float], after: dict[str, float]) -> set[str]:
    events = set()
    if after["SELECTED_WEAPON_AMMO"] < before["SELECTED_WEAPON_AMMO"]:
        events.add("event:shot")
    if after["HEALTH"] < before["HEALTH"]:
        events.add("event:hurt")
    if after["KILLCOUNT"] > before["KILLCOUNT"]:
        events.add("event:kill")
    if after["ITEMCOUNT"] > before["ITEMCOUNT"] or after["HEALTH"] > before["HEALTH"]:
        events.add("event:pickup")
    return events
