import pytest
import torch

from mjepa.checkpoint_file import load_checkpoint
from mjepa.data import synthetic
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.loop import TrainingStopped, pretrain
from pretrain_helpers import synthetic_run

BAD_STEP = 3  # 1-based step whose batch carries a NaN


@pytest.fixture
def nan_at_step_three(monkeypatch):
    original = synthetic.synthetic_clip
    batch_size = 4  # synthetic_run's default

    def poisoned(seed, index, *shape, **kwargs):
        audio, video, label = original(seed, index, *shape, **kwargs)
        if index == (BAD_STEP - 1) * batch_size:  # the first clip of the bad step (stream position = clip index)
            audio[0, 0] = float("nan")
        return audio, video, label

    # Loader workers are forked, so they inherit the patch.
    monkeypatch.setattr(synthetic, "synthetic_clip", poisoned)


def _config(tmp_path, policy):
    return load_pretrain_config(
        "tiny-cpu", synthetic_run(tmp_path / "run", 6, extra=(f"run.nan_policy={policy}", "run.checkpoint_every=2"))
    )


def _params(state):
    return {k: v for k, v in state.items() if k.startswith("encoders.")}


@pytest.mark.slow
def test_injected_nan_is_skipped_and_training_continues(nan_at_step_three, tmp_path, capsys):
    result = pretrain(_config(tmp_path, "skip"))
    assert result.last_step == 6
    assert f"step {BAD_STEP} skipped: non-finite" in capsys.readouterr().out
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["model"]
    assert all(torch.isfinite(v).all() for v in state.values())


def test_injected_nan_stops_the_run_and_keeps_the_last_good_checkpoint(nan_at_step_three, tmp_path):
    with pytest.raises(TrainingStopped, match=f"non-finite values at step {BAD_STEP}"):
        pretrain(_config(tmp_path, "stop"))
    latest = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert latest["step"] == 2  # the checkpoint before the bad step, never overwritten
    assert all(torch.isfinite(v).all() for v in _params(latest["model"]).values())


@pytest.mark.slow
def test_stop_policy_exits_with_a_clear_message_from_the_command_line(tmp_path):
    from pretrain_helpers import run_cli

    # An impossible learning rate blows the loss up: with nan_policy=stop the command says so and exits 3.
    args = synthetic_run(
        tmp_path / "run",
        6,
        extra=("run.nan_policy=stop", "optim.peak_lr=1e30", "optim.start_lr=1e30", "optim.grad_clip=null"),
    )
    result = run_cli(["pretrain", *args])
    assert result.returncode == 3, result.stderr
    assert "non-finite values at step" in result.stderr and "Traceback" not in result.stderr
