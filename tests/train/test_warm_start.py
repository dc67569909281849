"""run.init_from takes a model folder or a shipped name: a target-only folder starts both encoders (a warm start),
with fresh predictors; an encoder that does not fit the run's model is a one-line error."""

from __future__ import annotations

import pytest
import torch

import mjepa
from mjepa.checkpoint_file import CheckpointError, load_checkpoint
from mjepa.pretrain_config import load_pretrain_config
from mjepa.train.loop import pretrain
from pretrain_helpers import synthetic_run

STILL = (  # a step that barely moves the weights, so the checkpoint shows where the run started
    "optim.start_lr=1e-12",
    "optim.peak_lr=1e-12",
    "optim.final_lr=1e-12",
    "optim.weight_decay=0",
    "optim.final_weight_decay=0",
    "optim.warmup_steps=0",
    "optim.cooldown_steps=0",
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("warm")
    pretrain(load_pretrain_config("tiny-cpu", synthetic_run(root / "source", 4, extra=("run.seed=7",))))
    out = root / "exported"
    mjepa.load(str(root / "source" / "checkpoints" / "latest.pt")).save_pretrained(out, parts="target")
    return out


def test_a_target_only_folder_starts_both_encoders(folder, tmp_path):
    from safetensors.torch import load_file

    exported = load_file(str(folder / "model.safetensors"))
    run = tmp_path / "warm"
    pretrain(load_pretrain_config("tiny-cpu", synthetic_run(run, 1, extra=(f"run.init_from={folder}", *STILL))))
    state = load_checkpoint(run / "checkpoints" / "latest.pt")["model"]
    for key, value in exported.items():
        inner = key.removeprefix("target_encoders.")
        for prefix in ("encoders.", "target_encoders."):
            assert torch.allclose(state[prefix + inner], value, atol=1e-6), prefix + inner
    cold = tmp_path / "cold"
    pretrain(load_pretrain_config("tiny-cpu", synthetic_run(cold, 1, extra=STILL)))
    cold_state = load_checkpoint(cold / "checkpoints" / "latest.pt")["model"]
    qkv = "encoders.shared.blocks.blocks.0.attn.qkv.weight"
    assert not torch.allclose(cold_state[qkv], state[qkv])
    assert torch.equal(cold_state["predictors.shared.norm.weight"], state["predictors.shared.norm.weight"])


def test_an_encoder_that_does_not_fit_is_a_clear_error(folder, tmp_path):
    extra = (f"run.init_from={folder}", "model.encoder.width=96", "model.predictor.width=96", *STILL)
    with pytest.raises(CheckpointError, match=r"run.init_from=.*does not fit this run's model"):
        pretrain(load_pretrain_config("tiny-cpu", synthetic_run(tmp_path / "bad", 1, extra=extra)))
