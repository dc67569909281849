"""Long audio streams: windows are built a batch at a time, so embedding memory does not grow with the input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mjepa.data.preprocess.fbank import AudioFrontendConfig, fbank_for_config, fbank_windows
from mjepa.embedding_windows import AudioSource

CHILD = """
import json, sys
import numpy as np
import mjepa

def peak_mib():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1024

model = mjepa.load("mjepa-tiny")
waveform = (0.1 * np.random.default_rng(0).standard_normal(int(float(sys.argv[1]) * 60 * 16000))).astype(np.float32)
before = peak_mib()
embeddings = model.encode_audio(waveform, 16000, timestamps=True, batch_size=8)
print(json.dumps({"added": peak_mib() - before, "frames": int(embeddings.frames.shape[0])}))
"""


def test_windows_built_one_at_a_time_equal_the_whole_clip_cut():
    config = AudioFrontendConfig(target_frames=384)
    waveform = np.random.default_rng(1).standard_normal(16000 * 25).astype(np.float32) * 0.2 + 0.05  # with a DC
    whole, valid = fbank_windows(fbank_for_config(torch.from_numpy(waveform), config), config)
    source = AudioSource(waveform, config)
    assert torch.equal(source.valid_frames, valid) and len(source.start_frames) == whole.shape[0] == 7
    for index in range(whole.shape[0]):
        assert torch.allclose(source.window(index), whole[index], atol=1e-4)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_length_of_the_input():
    added = {}
    for minutes in (1, 5, 10):
        done = subprocess.run([sys.executable, "-c", CHILD, str(minutes)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout.strip().splitlines()[-1])
        assert record["frames"] == minutes * 375  # 160 ms steps
        added[minutes] = record["added"]
    # The whole-clip log-mel took about 48 MiB a minute (480 MiB at 10 minutes); windows a batch at a time take what
    # one batch needs, whatever the length.
    assert added[10] < added[1] + 64 and added[5] < added[1] + 64, added
