"""GM-Instruments: labelled notes of recorded instruments, rendered from a General MIDI SoundFont.

A transfer set of real recorded audio that installs from package registries, with nothing downloaded at run time:
a SoundFont holds multi-sampled recordings of real instruments, and FluidSynth plays them note by note. The default
SoundFont is FluidR3 GM (Debian's ``fluid-soundfont-gm``, MIT licence, 148 MB); FluidSynth comes from Debian's
``libfluidsynth3`` and the ``pyfluidsynth`` binding from PyPI (``pip install 'mjepa[instruments]'``).

What a clip is: one note of one General MIDI program, held for ``HOLD_SECONDS`` and released, recorded for
``CLIP_SECONDS`` at 16 kHz mono (the two SoundFont channels averaged), with FluidSynth's reverb and chorus off. The
samples are recordings, but each note is the recorded sample of the nearest pitch, resampled to the note asked for
and shaped by the SoundFont's envelope: not a performance.

Task: the instrument family, the 10 General MIDI families of the acoustic programs 0-79 (piano, chromatic
percussion, organ, guitar, bass, strings, ensemble, brass, reed, pipe), 8 programs each. It mirrors NSynth's
instrument-family task, and so does the split: by instrument. Within each family a seeded shuffle puts 5 programs
in train, 1 in val and 2 in test, so the test split holds only instruments the probe never heard.

Notes: pitches ``PITCHES`` (C3 to C5 in whole tones) at velocities ``VELOCITIES``; a note that renders silent
(peak below ``SILENT_PEAK``) is left out and counted in ``info.json``.

Output folder::

    out_dir/
      train.jsonl val.jsonl test.jsonl   mjepa manifests, labels ``family:<name>`` and ``program:<number>``
      info.json                          settings, the programs of each split, counts, versions (written last)
      clips/<program>-<pitch>-<velocity>.flac
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile

from mjepa.data.manifests.manifest import ManifestEntry, write_manifest

GM_FAMILIES = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
)
PROGRAMS_PER_FAMILY = 8
SPLIT_PROGRAMS = {"train": 5, "val": 1, "test": 2}  # per family
PITCHES = tuple(range(48, 73, 2))
VELOCITIES = (70, 110)
HOLD_SECONDS = 1.0
CLIP_SECONDS = 2.0
SAMPLE_RATE = 16000
SILENT_PEAK = 1e-3
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
GENERATOR = "mjepa.data.instruments"
GENERATOR_VERSION = 1

__all__ = ["DEFAULT_SOUNDFONT", "GM_FAMILIES", "generate_instruments", "split_programs"]


def split_programs(seed: int) -> dict[str, list[int]]:
    """The General MIDI programs of each split: per family, a seeded shuffle of its 8 programs cut 5 / 1 / 2."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[int]] = {split: [] for split in SPLIT_PROGRAMS}
    for family in range(len(GM_FAMILIES)):
        programs = [int(p) for p in rng.permutation(PROGRAMS_PER_FAMILY) + family * PROGRAMS_PER_FAMILY]
        start = 0
        for split, count in SPLIT_PROGRAMS.items():
            splits[split] += sorted(programs[start : start + count])
            start += count
    return {split: sorted(programs) for split, programs in splits.items()}


def _import_fluidsynth():
    try:
        import fluidsynth
    except (ImportError, OSError) as err:
        raise RuntimeError(
            "GM-Instruments needs FluidSynth: install Debian's libfluidsynth3 (or your system's "
            f"FluidSynth 2) and `pip install 'mjepa[instruments]'` ({err})"
        ) from None
    return fluidsynth


def _installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def render_note(synth, program: int, pitch: int, velocity: int, soundfont_id: int) -> np.ndarray:
    """One note, held then released, as float32 mono at ``SAMPLE_RATE``; the synth is silenced afterwards."""
    synth.program_select(0, soundfont_id, 0, program)
    synth.noteon(0, pitch, velocity)
    held = synth.get_samples(int(HOLD_SECONDS * SAMPLE_RATE))
    synth.noteoff(0, pitch)
    released = synth.get_samples(int((CLIP_SECONDS - HOLD_SECONDS) * SAMPLE_RATE))
    synth.all_sounds_off(0)
    synth.get_samples(SAMPLE_RATE // 10)  # let the cut voices finish before the next note
    stereo = np.concatenate([held, released]).reshape(-1, 2).astype(np.float32) / 32768.0
    return stereo.mean(axis=1)


def generate_instruments(
    out_dir: str | os.PathLike,
    soundfont: str | os.PathLike = DEFAULT_SOUNDFONT,
    seed: int = 0,
    progress: Callable[[str], None] | None = print,
) -> Path:
    """Render GM-Instruments into ``out_dir`` (reused when it already holds the same settings); returns the folder."""
    out_dir = Path(out_dir)
    soundfont = Path(soundfont)
    report = progress or (lambda message: None)
    if not soundfont.is_file():
        raise FileNotFoundError(
            f"{soundfont}: SoundFont not found; on Debian/Ubuntu `apt install fluid-soundfont-gm` "
            "installs FluidR3 GM there, or pass --soundfont PATH"
        )
    settings = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "soundfont": soundfont.name,
        "soundfont_bytes": soundfont.stat().st_size,
        "seed": seed,
        "pitches": list(PITCHES),
        "velocities": list(VELOCITIES),
        "hold_seconds": HOLD_SECONDS,
        "clip_seconds": CLIP_SECONDS,
        "sample_rate": SAMPLE_RATE,
    }
    info_path = out_dir / "info.json"
    if info_path.is_file() and json.loads(info_path.read_text()).get("settings") == settings:
        report(f"GM-Instruments: reusing {out_dir} (same settings)")
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"{out_dir} is not empty and holds no GM-Instruments set with these settings; choose another folder"
        )
    fluidsynth = _import_fluidsynth()
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "clips").mkdir(parents=True)
    synth = fluidsynth.Synth(gain=0.5, samplerate=SAMPLE_RATE, **{"synth.reverb.active": 0, "synth.chorus.active": 0})
    try:
        soundfont_id = synth.sfload(str(soundfont))
        if soundfont_id < 0:
            raise ValueError(f"{soundfont}: FluidSynth could not load this SoundFont")
        programs = split_programs(seed)
        entries: dict[str, list[ManifestEntry]] = {split: [] for split in programs}
        silent: list[str] = []
        for split, split_programs_list in programs.items():
            for program in split_programs_list:
                family = GM_FAMILIES[program // PROGRAMS_PER_FAMILY]
                for pitch in PITCHES:
                    for velocity in VELOCITIES:
                        name = f"clips/{program:03d}-{pitch}-{velocity}.flac"
                        audio = render_note(synth, program, pitch, velocity, soundfont_id)
                        if np.abs(audio).max() < SILENT_PEAK:
                            silent.append(name)
                            continue
                        soundfile.write(partial / name, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
                        entries[split].append(
                            ManifestEntry(
                                name, None, 0.0, CLIP_SECONDS, (f"family:{family}", f"program:{program}"), True
                            )
                        )
            report(f"GM-Instruments: {split}: {len(entries[split])} notes of {len(split_programs_list)} programs")
    finally:
        synth.delete()
    for split, split_entries in entries.items():
        write_manifest(partial / f"{split}.jsonl", split_entries, paths_from=partial)
    info = {
        "settings": settings,
        "programs": programs,
        "families": list(GM_FAMILIES),
        "counts": {split: len(split_entries) for split, split_entries in entries.items()},
        "silent_notes": silent,
        "versions": {"pyfluidsynth": _installed_version("pyfluidsynth")},
    }
    (partial / "info.json").write_text(json.dumps(info, indent=2) + "\n")  # written last: marks the set complete
    if out_dir.exists():
        out_dir.rmdir()
    os.replace(partial, out_dir)
    return out_dir
