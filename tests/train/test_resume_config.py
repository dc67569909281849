"""Resuming under a changed config is refused (one line, naming the keys), unless the change cannot alter the run."""

import shutil

import pytest

from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.loop import pretrain
from mjepa.train.resume_config import resume_changes
from mjepa.typed_config import to_dict
from pretrain_helpers import step_losses, synthetic_run


def test_changes_that_alter_the_run_are_listed_and_the_rest_are_not(tmp_path):
    saved = to_dict(load_pretrain_config("tiny-cpu", synthetic_run(tmp_path / "a", 4)))
    moved = load_pretrain_config(
        "tiny-cpu",
        synthetic_run(
            tmp_path / "b",
            4,
            extra=("run.checkpoint_every=1", "run.keep_checkpoints=7", "data.num_workers=0", "run.log_every=3"),
        ),
    )
    assert resume_changes(saved, moved) == []
    changed = load_pretrain_config("tiny-cpu", synthetic_run(tmp_path / "a", 6, extra=("optim.peak_lr=0.002",)))
    assert resume_changes(saved, changed) == [
        f"optim.peak_lr: {saved['optim']['peak_lr']!r} -> 0.002",
        "run.steps: 4 -> 6",
    ]
    del saved["optim"]["peak_lr"]  # a checkpoint from before a key existed: its value is unknown, not a change
    assert resume_changes(saved, changed) == ["run.steps: 4 -> 6"]


def test_a_changed_learning_rate_on_resume_is_refused_and_the_folder_is_kept(tmp_path):
    run_dir = tmp_path / "run"
    pretrain(load_pretrain_config("tiny-cpu", synthetic_run(run_dir, 4, extra=("run.checkpoint_every=2",))))
    config_before = (run_dir / "config.yaml").read_text()
    info_before = (run_dir / "run_info.json").read_text()
    changed = load_pretrain_config("tiny-cpu", synthetic_run(run_dir, 4, extra=("optim.peak_lr=0.002",)))
    with pytest.raises(ValueError) as caught:
        pretrain(changed)
    message = str(caught.value)
    assert "\n" not in message and "optim.peak_lr" in message and "latest.pt" in message
    assert "run.allow_resume_changes=true" in message
    assert (run_dir / "config.yaml").read_text() == config_before
    assert (run_dir / "run_info.json").read_text() == info_before


@pytest.mark.slow
def test_a_moved_run_folder_resumes_and_an_allowed_change_is_announced(tmp_path, capsys):
    first = tmp_path / "first"
    pretrain(load_pretrain_config("tiny-cpu", synthetic_run(first, 4, extra=("run.checkpoint_every=2",))))
    moved = tmp_path / "moved"
    shutil.copytree(first, moved)
    (moved / "checkpoints" / "latest.pt").unlink()  # resume from step 2, in the new place
    shutil.copy(moved / "checkpoints" / "step_00000002.pt", moved / "checkpoints" / "latest.pt")
    capsys.readouterr()
    pretrain(load_pretrain_config("tiny-cpu", synthetic_run(moved, 4, extra=("run.checkpoint_every=1",))))
    assert "at step 2" in capsys.readouterr().out
    assert step_losses(moved)[4] == step_losses(first)[4]  # the same run, continued exactly
    allowed = synthetic_run(moved, 4, extra=("optim.peak_lr=0.002", "run.allow_resume_changes=true"))
    pretrain(load_pretrain_config("tiny-cpu", allowed))
    assert "warning: resuming with a changed setting" in capsys.readouterr().out
