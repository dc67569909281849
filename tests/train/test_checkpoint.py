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
    with pytest.raises(CheckpointError, match="is damaged or not an mjepa checkpoint") as refused:
        load_checkpoint(path)
    assert not marker.exists()
    assert "weights_only" not in str(refused.value)  # never the advice to load it unsafely


def test_non_mjepa_file_is_a_clear_error(tmp_path):
    atomic_torch_save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an mjepa checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_a_truncated_checkpoint_is_called_damaged(tmp_path):
    atomic_torch_save({"format": "mjepa-checkpoint-v1", "w": torch.ones(1000)}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt is damaged or not an mjepa checkpoint: \S") as refused:
        load_checkpoint(tmp_path / "cut.pt")
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.slow
def test_a_damaged_latest_resumes_from_the_newest_checkpoint_that_loads(tmp_path, capsys):
    from mjepa.pretrain_config import load_pretrain_config
    from mjepa.train.loop import pretrain
    from pretrain_helpers import step_losses, synthetic_run

    run = tmp_path / "run"
    overrides = synthetic_run(run, steps=6, extra=("run.checkpoint_every=2", "run.keep_checkpoints=3"))
    pretrain(load_pretrain_config("tiny-cpu", overrides))
    reference = step_losses(run)
    folder = run / "checkpoints"
    # Damage the file in place: latest.pt and step_00000006.pt are one file under two names.
    with open(folder / "latest.pt", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00" * 4096)
    (run / "metrics.jsonl").write_text("")  # so that the steps run again are the ones logged
    capsys.readouterr()
    pretrain(load_pretrain_config("tiny-cpu", overrides))
    out = capsys.readouterr().out
    assert "latest.pt is damaged or not an mjepa checkpoint" in out and "kept aside as latest.pt.damaged" in out
    assert "resuming from" in out and "step_00000004.pt at step 4" in out
    assert (folder / "latest.pt.damaged").is_file() and load_checkpoint(folder / "latest.pt")["step"] == 6
    assert step_losses(run) == {step: loss for step, loss in reference.items() if step > 4}


@pytest.mark.slow
def test_no_loadable_checkpoint_is_one_clear_error(tmp_path):
    from mjepa.cli import main
    from pretrain_helpers import synthetic_run

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "latest.pt").write_bytes(b"not a checkpoint")
    assert main(["pretrain", *synthetic_run(tmp_path / "run", steps=2)]) == 2
