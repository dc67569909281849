import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from mjepa.checkpoint_file import CheckpointError, load_checkpoint
from mjepa.train.checkpoint import CheckpointManager, atomic_torch_save

WRITER = textwrap.dedent("""
    import sys, torch
    from mjepa.train.checkpoint import CheckpointManager
    manager = CheckpointManager(sys.argv[1], keep=2)
    big = torch.randn(64, 1024, 1024)  # 256 MB: the write takes long enough to be killed in the middle
    print("writing", flush=True)
    manager.save({"step": 2, "model": {"w": big}}, step=2, periodic=False)
    print("done", flush=True)
""")


@pytest.mark.slow
def test_sigkill_during_checkpoint_write_leaves_previous_checkpoint_loadable(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    manager.save({"step": 1, "model": {"w": torch.ones(3)}}, step=1, periodic=True)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.time() + 60
    while not any(p.name.startswith(".latest.pt.tmp") for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None, "the writer never started its temporary file"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    payload = load_checkpoint(manager.latest_path)
    assert payload["step"] == 1 and torch.equal(payload["model"]["w"], torch.ones(3))


def test_periodic_checkpoints_rotate_and_latest_follows(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in range(1, 5):
        manager.save({"step": step}, step=step, periodic=True)
    assert [p.name for p in manager.periodic_paths()] == ["step_00000003.pt", "step_00000004.pt"]
    manager.save({"step": 5}, step=5, periodic=False)
    assert load_checkpoint(manager.latest_path)["step"] == 5
    assert load_checkpoint(tmp_path / "step_00000004.pt")["step"] == 4  # not changed by the new latest


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_checkpoint_is_refused_without_running_its_payload(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Payload()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"format": "mjepa-checkpoint-v1", "model": evil}, handle, protocol=2)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert not marker.exists()


def test_non_mjepa_file_is_a_clear_error(tmp_path):
    atomic_torch_save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mjepa checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
