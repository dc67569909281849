"""A stand-in for pyfluidsynth, so GM-Instruments tests need neither FluidSynth nor a SoundFont."""

from __future__ import annotations

import numpy as np


class ToneSynth:
    """FluidSynth's calls as GM-Instruments makes them, answered with a sine per program (program 7 is silent)."""

    def __init__(self, gain, samplerate, **settings):
        self.rate, self.program, self.pitch, self.phase = int(samplerate), 0, 60, 0

    def sfload(self, path):
        return 1

    def program_select(self, channel, soundfont_id, bank, program):
        self.program = program

    def noteon(self, channel, pitch, velocity):
        self.pitch, self.velocity = pitch, velocity

    def noteoff(self, channel, pitch):
        pass

    def all_sounds_off(self, channel):
        pass

    def get_samples(self, count):
        t = (np.arange(count) + self.phase) / self.rate
        self.phase += count
        level = 0.0 if self.program == 7 else self.velocity / 127 * 0.3
        tone = level * np.sin(2 * np.pi * (110 + 5 * self.program) * 2 ** ((self.pitch - 60) / 12) * t)
        return np.repeat((tone * 32767).astype(np.int16), 2)  # interleaved stereo, as pyfluidsynth returns it

    def delete(self):
        pass


class FakeFluidsynth:
    Synth = ToneSynth
